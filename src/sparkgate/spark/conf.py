"""Spark conf put together from several layers (sparkgate's, the operator's, a profile's, a job's)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

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


_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch != "\\" or i + 1 == len(text):
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[i + 2 : i + 6]):
            out.append(chr(int(text[i + 2 : i + 6], 16)))
            i += 6
            continue
        out.append(_ESCAPES.get(nxt, nxt))
        i += 2
    return "".join(out)


def parse_properties(text: str) -> dict[str, str]:
    """A Java properties file's entries, read as ``java.util.Properties.load`` reads them
    (comments, ``=``/``:``/blank separators, continuation lines, escapes), values trimmed as Spark
    trims them."""
    entries: dict[str, str] = {}
    lines = re.split(r"\r\n|\r|\n", text)
    i = 0
    while i < len(lines):
        line = lines[i].lstrip(" \t\f")
        i += 1
        if not line or line[0] in "#!":
            continue
        # A line ending in an odd number of backslashes continues on the next one.
        while (len(line) - len(line.rstrip("\\"))) % 2 == 1:
            line = line[:-1] + (lines[i].lstrip(" \t\f") if i < len(lines) else "")
            i += 1
        key_end = 0
        while key_end < len(line) and line[key_end] not in "=: \t\f":
            key_end += 2 if line[key_end] == "\\" else 1
        key_end = min(key_end, len(line))
        rest = line[key_end:].lstrip(" \t\f")
        if rest[:1] in ("=", ":"):
            rest = rest[1:].lstrip(" \t\f")
        entries[_unescape(line[:key_end])] = _trim(_unescape(rest))
    return entries


def _trim(value: str) -> str:
    """What Spark keeps of a value it loads (``Utils.trimExceptCRLF``): control characters and
    spaces at either end go, except CR and LF."""
    keep = [i for i, ch in enumerate(value) if ch > " " or ch in "\r\n"]
    return value[keep[0] : keep[-1] + 1] if keep else ""


def spark_defaults(spark_home: Path) -> dict[str, str]:
    """What ``spark-submit --load-spark-defaults`` reads: ``spark-defaults.conf`` in
    ``$SPARK_CONF_DIR``, else in the distribution's ``conf`` (empty when there is none)."""
    conf_dir = Path(os.environ["SPARK_CONF_DIR"]) if os.environ.get("SPARK_CONF_DIR") else spark_home / "conf"
    try:
        text = (conf_dir / "spark-defaults.conf").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    return {k: v for k, v in parse_properties(text).items() if k.startswith("spark.")}
