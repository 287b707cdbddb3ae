"""sparkgate's driver plugin: built once per source and Spark, and never half-written."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

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
