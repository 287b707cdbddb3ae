"""The local sample catalog's files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from sparkgate.sampledata import SCRATCH_NAMESPACE, write_pedregal_catalog

pytest.importorskip("pyarrow", reason="writing Parquet needs pyarrow (pip install -e '.[spark]')")


def test_pedregal_has_its_tables_and_an_empty_scratch_namespace(tmp_path: Path) -> None:
    day = dt.date(2026, 12, 4)
    written = write_pedregal_catalog(tmp_path, today=day)
    assert set(written) == {"raw.events", "raw.orders", "feature_store.user_features"}
    assert (tmp_path / "raw" / "events.schema.json").is_file()
    assert (tmp_path / SCRATCH_NAMESPACE).is_dir() and not any((tmp_path / SCRATCH_NAMESPACE).iterdir())
    # Written once a day; the scratch namespace is there again even if it was removed.
    (tmp_path / SCRATCH_NAMESPACE).rmdir()
    assert write_pedregal_catalog(tmp_path, today=day) == {}
    assert (tmp_path / SCRATCH_NAMESPACE).is_dir()
