"""Spark conf put together from several layers (sparkgate's, the operator's, a profile's, a job's)."""

from __future__ import annotations

from collections.abc import Mapping

#: Spark conf that holds comma-separated lists: a later layer's value adds to an earlier one's.
LIST_CONF = ("spark.jars", "spark.sql.extensions")


def merge_conf(*layers: Mapping[str, str]) -> dict[str, str]:
    """The layers' conf, later winning, except :data:`LIST_CONF` keys, whose values add up."""
    merged: dict[str, str] = {}
    for layer in layers:
        for k, v in layer.items():
            merged[k] = f"{merged[k]},{v}" if k in LIST_CONF and merged.get(k) else v
    return merged
