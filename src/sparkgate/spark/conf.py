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


def _escape_property(text: str, *, key: bool) -> str:
    """``text`` as java.util.Properties reads it back (keys also escape separators and spaces)."""
    out = []
    for i, ch in enumerate(text):
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch in "=:#!" and key:
            out.append("\\" + ch)
        elif ch == " " and (key or i == 0):
            out.append("\\ ")
        else:
            out.append(ch)
    return "".join(out)


def properties_text(conf: Mapping[str, str]) -> str:
    """``conf`` as the lines of a Java properties file (what ``--properties-file`` reads)."""
    return "".join(f"{_escape_property(k, key=True)}={_escape_property(v, key=False)}\n" for k, v in conf.items())
