from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparkgate.errors import BadRequest
from sparkgate.runner.manifest import json_schema, parse_manifest

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
