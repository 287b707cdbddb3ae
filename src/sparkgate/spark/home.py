"""A Spark distribution on this machine: where it is and which Spark it runs."""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

from sparkgate.errors import DriverStartError


def default_spark_home() -> Path:
    """The ``pyspark`` package directory, which ships ``bin/spark-submit`` and the jars."""
    try:
        import pyspark
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise DriverStartError("local drivers need the pyspark package: pip install 'sparkgate[spark]'") from exc
    return Path(pyspark.__file__).parent


def user_cache_dir(kind: str) -> Path:
    """Where builds made against this machine's Spark are kept for every state directory of the
    user (``$XDG_CACHE_HOME/sparkgate/<kind>``, else ``~/.cache/sparkgate/<kind>``). A user
    without a home directory gets a new private directory per process: a fixed path in the shared
    temporary directory could be made by another user first, with jars of theirs in it."""
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:  # (no $HOME, and no home in the password database)
            base = _private_cache()
    return Path(base) / "sparkgate" / kind


@functools.cache
def _private_cache() -> str:
    return tempfile.mkdtemp(prefix="sparkgate-cache-")  # (mode 0700, made anew)


def jar_listing(spark_home: Path) -> str:
    """A distribution's jars as lines of name, size and time: another Spark, or the same path
    upgraded in place, lists differently (part of what builds made against it are keyed by)."""
    lines = []
    for jar in sorted((spark_home / "jars").glob("*.jar")):
        st = jar.stat()
        lines.append(f"{jar.name} {st.st_size} {st.st_mtime_ns}\n")
    return "".join(lines)


def spark_version_of(home: Path) -> str:
    """The Spark version a distribution runs: its ``RELEASE`` file, else its ``spark-core`` jar's name."""
    release = home / "RELEASE"
    if release.is_file():
        words = release.read_text(errors="replace").split()
        if len(words) >= 2 and words[0] == "Spark":
            return words[1]
    for jar in sorted((home / "jars").glob("spark-core_*.jar")):
        return jar.stem.rpartition("-")[2]
    return "unknown"


def version_matches(wanted: str, actual: str) -> bool:
    """``4.1`` matches ``4.1.4``; ``4.1.4`` matches only itself."""
    w, a = wanted.split("."), actual.split(".")
    return a[: len(w)] == w
