"""Which Spark a distribution runs."""

from __future__ import annotations

from pathlib import Path

from sparkgate.spark.home import spark_version_of, version_matches


def test_spark_version_from_release_file_or_jar(tmp_path: Path) -> None:
    (tmp_path / "jars").mkdir()
    (tmp_path / "jars" / "spark-core_2.13-4.0.1.jar").touch()
    assert spark_version_of(tmp_path) == "4.0.1"
    (tmp_path / "RELEASE").write_text("Spark 3.5.3 built for Hadoop 3.3.4\n")
    assert spark_version_of(tmp_path) == "3.5.3"


def test_version_prefixes_match() -> None:
    assert version_matches("4.1", "4.1.4") and version_matches("4.1.4", "4.1.4") and version_matches("4", "4.1.4")
    assert not version_matches("4.1.3", "4.1.4") and not version_matches("3.5", "4.1.4")
