"""Spark conf from several layers."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sparkgate.spark.conf import merge_conf, parse_properties, properties_text, spark_defaults


def test_later_layers_win_and_lists_add_up() -> None:
    merged = merge_conf(
        {"spark.jars": "/a.jar", "spark.x": "1", "spark.sql.extensions": "A"},
        {"spark.jars": "/b.jar", "spark.x": "2"},
        {"spark.sql.extensions": "B", "spark.jars": ""},
    )
    assert merged == {"spark.jars": "/a.jar,/b.jar,", "spark.x": "2", "spark.sql.extensions": "A,B"}
    assert merge_conf({}, {"spark.jars": "/c.jar"}) == {"spark.jars": "/c.jar"}


def test_a_properties_file_reads_as_java_reads_it() -> None:
    text = (
        "# a comment\n"
        "! another\n"
        "spark.a = 1\n"
        "spark.b:2\n"
        "spark.c   three words  \n"
        "  spark.d=-Dx=1 \\\n"
        "      -Dy=2\n"
        "spark.e\\:key=\\u0041\\tb\\\\\r\n"
        "spark.f\n"
        "spark.a=again\n"
    )
    assert parse_properties(text) == {
        "spark.a": "again",
        "spark.b": "2",
        "spark.c": "three words",
        "spark.d": "-Dx=1 -Dy=2",
        "spark.e:key": "A\tb\\",
        "spark.f": "",
    }


def test_what_properties_text_writes_reads_back() -> None:
    rng = random.Random(7)
    alphabet = "ab =:#!\\\t\n\r é\u2603"
    for _ in range(500):
        conf = {
            "spark." + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8))): "x"
            + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
            + "y"
            for _ in range(rng.randint(1, 4))
        }
        assert parse_properties(properties_text(conf)) == conf


def test_spark_defaults_come_from_the_conf_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPARK_CONF_DIR", raising=False)
    assert spark_defaults(tmp_path) == {}
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "spark-defaults.conf").write_text("spark.driver.defaultJavaOptions  -Dfrom=home\nother 1\n")
    assert spark_defaults(tmp_path) == {"spark.driver.defaultJavaOptions": "-Dfrom=home"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "spark-defaults.conf").write_text("spark.x=1\n")
    monkeypatch.setenv("SPARK_CONF_DIR", str(elsewhere))
    assert spark_defaults(tmp_path) == {"spark.x": "1"}


def test_values_are_trimmed_as_spark_trims_them() -> None:
    # Control characters and spaces go at either end; escaped line breaks and other spaces stay.
    text = "spark.a=\\t x \\u0001\nspark.b=x\\n\nspark.c=\\u00a0x\\u00a0\n"
    assert parse_properties(text) == {"spark.a": "x", "spark.b": "x\n", "spark.c": "\u00a0x\u00a0"}
