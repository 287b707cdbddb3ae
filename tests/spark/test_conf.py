"""Spark conf from several layers."""

from __future__ import annotations

from sparkgate.spark.conf import merge_conf


def test_later_layers_win_and_lists_add_up() -> None:
    merged = merge_conf(
        {"spark.jars": "/a.jar", "spark.x": "1", "spark.sql.extensions": "A"},
        {"spark.jars": "/b.jar", "spark.x": "2"},
        {"spark.sql.extensions": "B", "spark.jars": ""},
    )
    assert merged == {"spark.jars": "/a.jar,/b.jar,", "spark.x": "2", "spark.sql.extensions": "A,B"}
    assert merge_conf({}, {"spark.jars": "/c.jar"}) == {"spark.jars": "/c.jar"}
