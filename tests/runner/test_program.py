"""What the job program refuses before Spark runs anything (the runs themselves: tests/e2e/test_runner.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sparkgate.errors import PermissionDenied
from sparkgate.runner.manifest import parse_manifest
from sparkgate.runner.program import (
    SANDBOX_READ,
    SANDBOX_REFUSED,
    SANDBOX_WRITE,
    Plan,
    enter_sandbox,
    main,
    read_error,
    step,
    subquery,
)
from tests.runner.test_manifest import GOOD


def plan(text: str, scratch: Path, catalog_root: Path | None = None) -> Plan:
    return Plan(
        parse_manifest(text).with_parameters(), scratch, sandbox=True, sample_limit=10, catalog_root=catalog_root
    )


def test_sandbox_sinks_stay_in_scratch(tmp_path: Path) -> None:
    p = plan(GOOD, tmp_path)
    assert p.sink_paths == [str((tmp_path / "out").resolve())]
    for sink in ("{from: daily, path: /etc/x}", "{from: daily, path: ../../x}", "{from: daily, table: db.t}"):
        text = GOOD.replace("{from: daily, path: out, format: parquet, mode: overwrite, partitionBy: [ds]}", sink)
        with pytest.raises(PermissionDenied, match=r"spec\.coreEtl\.sinks\[0\]"):
            plan(text, tmp_path)


def test_relative_paths_stay_in_the_job_s_output_directory_sandbox_or_not(tmp_path: Path) -> None:
    (tmp_path / "scratch").mkdir()
    (tmp_path / "scratch" / "link").symlink_to("/etc")
    for sink in ("{from: daily, path: ../x}", "{from: daily, path: link/x}"):
        text = GOOD.replace("{from: daily, path: out, format: parquet, mode: overwrite, partitionBy: [ds]}", sink)
        with pytest.raises(PermissionDenied, match="leaves the job's output directory"):
            Plan(
                parse_manifest(text).with_parameters(),
                tmp_path / "scratch",
                sandbox=False,
                sample_limit=None,
                catalog_root=None,
            )


def test_a_sandboxed_job_reads_what_its_sources_name(tmp_path: Path) -> None:
    text = GOOD.replace("path: data/stores.csv, format: csv", "path: /data/2026-*/stores.csv, format: csv")
    assert plan(text, tmp_path).read_roots() == ["/data/"]  # the glob's directory


class Refusing:
    """A session whose driver enforces the sandbox (or, with ``enforced=False``, does not)."""

    def __init__(self, enforced: bool) -> None:
        self.enforced = enforced
        self.conf = self
        self.set_conf: dict[str, str] = {}

    def set(self, key: str, value: str) -> None:
        self.set_conf[key] = value

    def sql(self, query: str) -> Refusing:
        return self

    @property
    def schema(self) -> None:
        if self.enforced:
            raise RuntimeError(f"(java.lang.SecurityException) {SANDBOX_REFUSED}calls into the JVM (java_method)")


def test_a_driver_that_does_not_enforce_the_sandbox_runs_nothing(tmp_path: Path) -> None:
    p = plan(GOOD, tmp_path, catalog_root=tmp_path / "cat")
    enforcing = Refusing(enforced=True)
    enter_sandbox(enforcing, p)
    assert enforcing.set_conf[SANDBOX_WRITE] == str(tmp_path.resolve())
    assert enforcing.set_conf[SANDBOX_READ].splitlines() == [
        str((tmp_path / "cat").resolve()),
        str((tmp_path / "data" / "stores.csv").resolve()),
    ]
    with pytest.raises(PermissionDenied, match="does not enforce the sandbox"):
        enter_sandbox(Refusing(enforced=False), p)


def test_a_sandbox_refusal_names_the_manifest_field() -> None:
    with pytest.raises(PermissionDenied) as refused, step("spec.coreEtl.transforms[0]", sandbox=True):
        raise RuntimeError(
            f"(java.lang.SecurityException) {SANDBOX_REFUSED}runs a script (TRANSFORM ... USING)\n\tat ..."
        )
    assert refused.value.message == (
        "sandbox: spec.coreEtl.transforms[0] runs a script (TRANSFORM ... USING); sandboxed jobs may not"
    )


def test_outside_the_sandbox_tables_map_to_the_local_catalog(tmp_path: Path) -> None:
    text = GOOD.replace(
        "{from: daily, path: out, format: parquet, mode: overwrite, partitionBy: [ds]}",
        "{from: daily, table: samples.daily}",
    )
    p = Plan(
        parse_manifest(text).with_parameters(),
        tmp_path,
        sandbox=False,
        sample_limit=None,
        catalog_root=tmp_path / "cat",
    )
    assert p.sink_paths == [(tmp_path / "cat" / "samples" / "daily").resolve()]


def test_refusals_exit_2_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "m.yaml"
    bad.write_text(GOOD.replace("mode: overwrite", "mode: replace"))
    assert main(["--manifest", str(bad), "--scratch", str(tmp_path)]) == 2
    assert "refused: invalid manifest: spec.coreEtl.sinks[0].mode" in capsys.readouterr().out
    # The whole reason is kept beside the job's output, for the runner to record.
    assert (read_error(tmp_path) or "").startswith("invalid manifest: spec.coreEtl.sinks[0].mode")


def test_the_manifest_is_a_file_and_a_missing_one_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--manifest", "jobs/j1/manifest.yaml", "--scratch", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert f"refused: manifest file jobs/j1/manifest.yaml does not exist (working directory {tmp_path})" in out
    assert main(["--manifest", str(tmp_path), "--scratch", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().out
    # The manifest's text itself goes by its own option (a SparkApplication's arguments carry it).
    bad = GOOD.replace("mode: overwrite", "mode: replace")
    assert main(["--manifest-yaml", bad, "--scratch", str(tmp_path)]) == 2
    assert "spec.coreEtl.sinks[0].mode" in capsys.readouterr().out


def test_the_standby_program_runs_in_the_jobs_directory(tmp_path: Path) -> None:
    """The runner's waiting job program moves into the job's directory before it reads its
    arguments: a path relative to anywhere else names nothing there, and the refusal says so."""
    pytest.importorskip("pyspark")
    job = tmp_path / "jobs" / "j1"
    job.mkdir(parents=True)
    (job / "manifest.yaml").write_text(GOOD)
    log = job / "driver.log"
    line = json.dumps({"cwd": str(job), "log": str(log), "argv": ["--manifest", "jobs/j1/manifest.yaml"]})
    done = subprocess.run(
        [sys.executable, "-m", "sparkgate.runner.program", "--standby"],
        input=line + "\n",
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert f"refused: manifest file jobs/j1/manifest.yaml does not exist (working directory {job})" in log.read_text()


def test_a_query_is_wrapped_on_lines_of_its_own() -> None:
    assert subquery("SELECT 1 -- one", "v") == "SELECT * FROM (\nSELECT 1 -- one\n) AS v"
    assert subquery("SELECT 1;  \n", "v") == "SELECT * FROM (\nSELECT 1\n) AS v"
    assert subquery("SELECT 1; -- one", "v") == "SELECT * FROM (\nSELECT 1-- one\n) AS v"


def test_the_job_checks_its_paths_again(tmp_path: Path) -> None:
    text = GOOD.replace(
        "{from: daily, path: out, format: parquet, mode: overwrite, partitionBy: [ds]}",
        "{from: daily, path: '{../..,z}/etc/x'}",
    )
    with pytest.raises(PermissionDenied, match="braces"):
        Plan(parse_manifest(text).with_parameters(), tmp_path, sandbox=False, sample_limit=None, catalog_root=None)
