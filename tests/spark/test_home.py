"""Which Spark a distribution runs, and where builds made against it are kept."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sparkgate.spark.home import spark_version_of, user_cache_dir, version_matches


def test_spark_version_from_release_file_or_jar(tmp_path: Path) -> None:
    (tmp_path / "jars").mkdir()
    (tmp_path / "jars" / "spark-core_2.13-4.0.1.jar").touch()
    assert spark_version_of(tmp_path) == "4.0.1"
    (tmp_path / "RELEASE").write_text("Spark 3.5.3 built for Hadoop 3.3.4\n")
    assert spark_version_of(tmp_path) == "3.5.3"


def test_version_prefixes_match() -> None:
    assert version_matches("4.1", "4.1.4") and version_matches("4.1.4", "4.1.4") and version_matches("4", "4.1.4")
    assert not version_matches("4.1.3", "4.1.4") and not version_matches("3.5", "4.1.4")


def test_the_user_cache_follows_xdg_and_is_private_without_a_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert user_cache_dir("plugins") == tmp_path / "sparkgate" / "plugins"
    monkeypatch.delenv("XDG_CACHE_HOME")

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", no_home)
    cache = user_cache_dir("plugins")
    private = cache.parent.parent
    assert private.is_dir() and private.stat().st_uid == os.getuid()
    assert private.stat().st_mode & 0o077 == 0  # (not a fixed path another user could make first)
    assert user_cache_dir("class-archives").parent.parent == private
