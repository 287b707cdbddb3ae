"""sparkgate's driver plugin: built once per source and Spark, and never half-written."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sparkgate.errors import ConfigError
from sparkgate.spark.home import default_spark_home
from sparkgate.spark.plugin import plugin_jar

pytestmark = pytest.mark.skipif(shutil.which("javac") is None, reason="needs a JDK")


def test_builders_at_once_share_one_whole_jar(tmp_path: Path) -> None:
    home = default_spark_home()
    with ThreadPoolExecutor(2) as pool:
        jars = list(pool.map(lambda _: plugin_jar(home, tmp_path), range(2)))
    assert jars[0] == jars[1] and jars[0].stat().st_size > 1000
    assert [p.name for p in tmp_path.iterdir()] == [jars[0].name]  # nothing staged left behind
    assert plugin_jar(home, tmp_path) == jars[0]  # cached


def test_another_spark_at_the_same_path_gets_a_jar_of_its_own(tmp_path: Path) -> None:
    """The cache outlives state directories and upgrades: its key has the Spark jars, not only their path."""
    home = tmp_path / "spark"
    (home / "jars").mkdir(parents=True)
    for jar in (default_spark_home() / "jars").glob("*.jar"):
        (home / "jars" / jar.name).symlink_to(jar)
    built = plugin_jar(home, tmp_path / "cache")
    any_jar = sorted((home / "jars").glob("*.jar"))[0]
    (home / "jars" / "an-upgraded-dependency.jar").symlink_to(any_jar.resolve())  # (the same path, other jars)
    rebuilt = plugin_jar(home, tmp_path / "cache")
    assert rebuilt != built and built.is_file() and rebuilt.is_file()


def test_a_cache_it_cannot_write_is_a_clear_error(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    with pytest.raises(ConfigError, match="could not be built into"):
        plugin_jar(default_spark_home(), blocked / "plugins")
