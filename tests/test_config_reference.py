"""The configuration reference: generated from the settings, committed, and kept current."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkgate.cli import main
from sparkgate.config_reference import COMMAND, reference, undocumented

DOC = Path(__file__).parent.parent / "docs" / "configuration.md"


def test_the_committed_reference_is_current() -> None:
    assert DOC.read_text() == reference(), f"docs/configuration.md is stale: run `{COMMAND}`"


def test_every_setting_is_explained() -> None:
    assert undocumented() == [], "add a #: comment above each of these fields in src/sparkgate/config.py"


def test_every_setting_is_in_the_reference() -> None:
    text = reference()
    for key in ("`client_gone_seconds`", "`max_concurrent_streams`", "`data_roots`", "`max_manifest_bytes`"):
        assert key in text
    assert "## `environments.<name>`" in text and "## `pool.profiles.<name>`" in text


def test_the_command_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--reference"]) == 0
    assert capsys.readouterr().out == reference()
