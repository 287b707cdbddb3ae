from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparkgate.errors import BadRequest
from sparkgate.runner.manifest import Manifest, json_schema, parse_manifest, path_problems, sandbox_problems

SAMPLES = Path(__file__).parents[2] / "src" / "sparkgate" / "runner" / "samples"

GOOD = """
apiVersion: dcp.pedregal.doordash.com/v1
kind: SparkJob
metadata: {name: daily-orders, team: feature-engineering}
spec:
  engine: {version: "4.1"}
  parameters: {ds: "2024-06-01"}
  coreEtl:
    sources:
      - {name: orders, table: samples.orders}
      - {name: stores, path: data/stores.csv, format: csv, options: {header: "true"}}
    transforms:
      - {name: daily, sql: "SELECT * FROM orders WHERE ds = '${ds}'"}
    sinks:
      - {from: daily, path: out, format: parquet, mode: overwrite, partitionBy: [ds]}
"""


def test_a_good_manifest_and_its_parameters() -> None:
    m = parse_manifest(GOOD)
    assert m.metadata.name == "daily-orders" and m.spec.core_etl.sinks[0].partition_by == ["ds"]
    assert "2024-06-01" in m.with_parameters().spec.core_etl.transforms[0].sql
    assert "2024-06-09" in m.with_parameters({"ds": "2024-06-09"}).spec.core_etl.transforms[0].sql


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("mode: overwrite", "mode: replace"),
            "spec.coreEtl.sinks[0].mode: must be one of overwrite, append, error, ignore",
        ),
        (("{from: daily", "{from: nope"), "spec.coreEtl.sinks[0].from: no source or transform named 'nope'"),
        (("engine:", "engin:"), "spec.engin: unknown field"),
        (("name: orders,", "name: Orders,"), "spec.coreEtl.sources[0].name: must be a view name"),
        (
            ("table: samples.orders", "table: samples.orders, sql: SELECT 1"),
            "sources[0]: give exactly one of table, path or sql",
        ),
        (("name: daily-orders", "name: Daily_Orders"), "metadata.name: must be lower-case letters, digits and '-'"),
        (('version: "4.1"', "version: latest"), "spec.engine.version: must be a version"),
        (("name: daily, sql", "name: orders, sql"), "transforms[0].name: view 'orders' is defined twice"),
        (("kind: SparkJob", "kind: Job"), "kind: must be one of SparkJob"),
    ],
)
def test_bad_manifests_name_the_path_and_the_reason(change: tuple[str, str], message: str) -> None:
    with pytest.raises(BadRequest) as e:
        parse_manifest(GOOD.replace(*change))
    assert message in e.value.message


def test_bad_yaml_and_undefined_parameters() -> None:
    with pytest.raises(BadRequest, match="not valid YAML at line 2"):
        parse_manifest("a: 1\nb: [")
    with pytest.raises(BadRequest, match="must be a YAML mapping"):
        parse_manifest("- just a list")
    with pytest.raises(BadRequest, match=r"\$\{day\} is used but not defined"):
        parse_manifest(GOOD.replace("${ds}", "${day}")).with_parameters()


def test_samples_are_valid_and_the_schema_is_published() -> None:
    samples = sorted(SAMPLES.glob("*.yaml"))
    assert samples
    for f in samples:
        parse_manifest(f.read_text()).with_parameters()
    schema = json_schema()
    assert schema["properties"]["apiVersion"]["const"] == "dcp.pedregal.doordash.com/v1"
    assert "coreEtl" in json.dumps(schema)


def test_the_published_schema_file_is_current() -> None:
    published = Path(__file__).parents[2] / "schemas" / "sparkjob.schema.json"
    assert json.loads(published.read_text()) == json_schema(), (
        "run: sparkgate manifest-schema > schemas/sparkjob.schema.json"
    )


def _with_sink(path: str, options: str = "") -> Manifest:
    sink = f"{{from: daily, path: '{path}'{options}}}"
    return parse_manifest(
        GOOD.replace("{from: daily, path: out, format: parquet, mode: overwrite, partitionBy: [ds]}", sink)
    )


@pytest.mark.parametrize(
    ("path", "roots", "problem"),
    [
        ("out/daily", [], None),
        ("a/../b", [], None),
        ("../x", [], "../x leaves the job's output directory"),
        ("a/../../x", [], "leaves the job's output directory"),
        ("/etc/x", [], "outside the data roots of environment prod (environments.prod.data_roots: none are set)"),
        ("/data/lake/fe/x", ["/data/lake"], None),
        ("file:///data/lake/fe", ["/data/lake"], None),
        ("/data/lake/../etc", ["/data/lake"], "outside the data roots"),
        ("/data/lakehouse", ["/data/lake"], "outside the data roots"),
        ("s3a://lake/teams/fe/x", ["s3a://lake/teams"], None),
        ("S3A://lake/teams/fe/x", ["s3a://lake/teams/"], None),
        ("s3a://other/teams/fe", ["s3a://lake/teams"], "outside the data roots"),
        ("s3a://lake/teams/../secrets", ["s3a://lake/teams"], "outside the data roots"),
    ],
)
def test_paths_stay_in_the_job_s_output_directory_or_the_environment_s_data_roots(
    path: str, roots: list[str], problem: str | None
) -> None:
    problems = path_problems(_with_sink(path), "prod", roots)
    sink = [p for p in problems if p.path.startswith("spec.coreEtl.sinks")]
    if problem is None:
        assert sink == []
    else:
        assert len(sink) == 1 and sink[0].path == "spec.coreEtl.sinks[0].path" and problem in sink[0].message


def test_spark_s_path_option_is_refused_and_sources_are_checked_too() -> None:
    manifest = _with_sink("out", ", options: {PATH: /etc}")
    text = GOOD.replace("path: data/stores.csv", "path: /etc/passwd")
    assert [p.path for p in path_problems(manifest, "local")] == ["spec.coreEtl.sinks[0].options.path"]
    assert [p.path for p in path_problems(parse_manifest(text), "local")] == ["spec.coreEtl.sources[1].path"]


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("{../..,z}/{../..,z}/etc/passwd", "braces and backslashes are not allowed"),
        ("/data/lake/fe/{../..,z}/be", "braces and backslashes are not allowed"),
        ("a\\..\\..\\x", "braces and backslashes are not allowed"),
        ("file://data/lake/x", "a file: URI must be file:/path or file:///path"),
        ("file:data/x", "a file: URI must be file:/path or file:///path"),
    ],
)
def test_paths_that_spark_would_read_otherwise_than_they_look_are_refused(path: str, problem: str) -> None:
    (found,) = path_problems(_with_sink(path), "prod", ["/data/lake"])
    assert found.path == "spec.coreEtl.sinks[0].path" and problem in found.message


def test_jobs_may_not_turn_sql_on_files_back_on() -> None:
    text = GOOD.replace(
        'parameters: {ds: "2024-06-01"}',
        'parameters: {ds: "2024-06-01"}\n  sparkConf: {spark.sql.runSQLOnFiles: "true"}',
    )
    assert [p.path for p in path_problems(parse_manifest(text), "local")] == ["spec.sparkConf.spark.sql.runSQLOnFiles"]


def test_yaml_nested_too_deeply_is_a_problem_not_a_crash() -> None:
    with pytest.raises(BadRequest, match="nested too deeply"):
        parse_manifest("[" * 50000)


def test_a_sandboxed_job_may_only_tune_spark() -> None:
    conf = "{spark.sql.shuffle.partitions: '4', spark.sql.adaptive.enabled: 'true', spark.jars: x.jar, "
    conf += "spark.sql.catalog.x: y}"
    text = GOOD.replace("spec:\n", f"spec:\n  sparkConf: {conf}\n", 1)
    problems = sandbox_problems(parse_manifest(text))
    assert [p.path for p in problems] == ["spec.sparkConf.spark.jars", "spec.sparkConf.spark.sql.catalog.x"]
    assert "spark.sql.adaptive.*" in problems[0].message
    for sample in SAMPLES.glob("*.yaml"):  # what ships runs sandboxed
        assert sandbox_problems(parse_manifest(sample.read_text())) == []


def test_paths_with_control_characters_are_refused() -> None:
    text = GOOD.replace("path: out,", 'path: "out\\n/",')
    assert [p.path for p in path_problems(parse_manifest(text), "local")] == ["spec.coreEtl.sinks[0].path"]
