"""What the job program refuses before Spark runs anything (the runs themselves: tests/e2e/test_runner.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkgate.errors import PermissionDenied
from sparkgate.runner.manifest import parse_manifest
from sparkgate.runner.program import Plan, main
from tests.runner.test_manifest import GOOD


def plan(text: str, scratch: Path, **kw: object) -> Plan:
    return Plan(parse_manifest(text).with_parameters(), scratch, sandbox=True, sample_limit=10, catalog_root=None, **kw)  # type: ignore[arg-type]


def test_sandbox_sinks_stay_in_scratch(tmp_path: Path) -> None:
    p = plan(GOOD, tmp_path)
    assert p.sink_paths == [(tmp_path / "out").resolve()]
    for sink in ("{from: daily, path: /etc/x}", "{from: daily, path: ../../x}", "{from: daily, table: db.t}"):
        text = GOOD.replace("{from: daily, path: out, format: parquet, mode: overwrite, partitionBy: [ds]}", sink)
        with pytest.raises(PermissionDenied, match=r"sandbox: spec\.coreEtl\.sinks\[0\]"):
            plan(text, tmp_path)


def test_sandbox_refuses_jvm_calls(tmp_path: Path) -> None:
    text = GOOD.replace("SELECT * FROM orders", "SELECT reflect('java.lang.System', 'exit', 1) FROM orders")
    with pytest.raises(PermissionDenied, match="calls into the JVM"):
        plan(text, tmp_path)


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
