"""Local provider pieces that need no JVM (starting real drivers is covered in tests/e2e)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkgate.clusters.base import DriverSpec
from sparkgate.clusters.local import LocalProvider, spark_version_of, version_matches
from sparkgate.config import LocalProviderSettings
from sparkgate.errors import DriverStartError


def test_spark_version_from_release_file_or_jar(tmp_path: Path) -> None:
    (tmp_path / "jars").mkdir()
    (tmp_path / "jars" / "spark-core_2.13-4.0.1.jar").touch()
    assert spark_version_of(tmp_path) == "4.0.1"
    (tmp_path / "RELEASE").write_text("Spark 3.5.3 built for Hadoop 3.3.4\n")
    assert spark_version_of(tmp_path) == "3.5.3"


def test_version_prefixes_match() -> None:
    assert version_matches("4.1", "4.1.4") and version_matches("4.1.4", "4.1.4") and version_matches("4", "4.1.4")
    assert not version_matches("4.1.3", "4.1.4") and not version_matches("3.5", "4.1.4")


def test_a_profile_for_another_spark_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "RELEASE").write_text("Spark 4.1.4 built for Hadoop 3.4.1\n")
    provider = LocalProvider(LocalProviderSettings(spark_home=str(tmp_path)), tmp_path)
    provider.check_spec(DriverSpec(profile="ok", spark_version="4.1"))
    with pytest.raises(
        DriverStartError, match=r"profile 'old' needs Spark 3.5, but the local provider runs Spark 4.1.4"
    ):
        provider.check_spec(DriverSpec(profile="old", spark_version="3.5"))


def test_installed_pyspark_version_is_read() -> None:
    pyspark = pytest.importorskip("pyspark")
    provider = LocalProvider(LocalProviderSettings(), Path("/nonexistent"))
    assert provider.spark_version == pyspark.__version__
