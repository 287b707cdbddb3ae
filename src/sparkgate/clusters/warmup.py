"""Warm a fresh Spark Connect driver the way real clients will use it.

Run as ``python -m sparkgate.clusters.warmup sc://127.0.0.1:PORT [--token-from-stdin]`` by the
local provider once a driver answers (the driver's token, if it has one, comes on stdin). A raw
``SELECT`` is not enough: a user's first session on a fresh driver still took ~0.5 s more than on
a used one, because pyspark's paths — ``spark.sql`` as a SQL *command*, limits, schema analysis,
Arrow conversion, local relations — had never been JIT-compiled. A pyspark client in a child
process exercises exactly those paths (and keeps pyspark's threads and finalizers out of the
gateway process).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
from typing import Any


def wait_listening(url: str, timeout: float = 600.0) -> None:
    """Wait until the server of ``url`` accepts connections (this process may start with it)."""
    host, _, port = url.removeprefix("sc://").partition("/")[0].rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=1.0).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


#: Rounds of queries (:func:`_full_round`), then new sessions of ``SELECT 1`` and a small Arrow
#: result (what a user's first cell costs). Measured on 2 cores with paired platform starts: a new
#: session's ``SELECT 1``, then a shuffle and ``toPandas`` on the warm driver (p50 over runs):
#: three rounds (~8 s of warm-up) 0.21-0.23 s and 0.67-0.77 s in three runs; two rounds and three
#: new sessions (~7.5 s) 0.19 s and 0.72 s in one; one round and six new sessions (~6.5 s)
#: 0.23-0.33 s and 0.76-0.86 s in three: one round leaves a user's first shuffle slower.
FULL_ROUNDS = 2
SESSION_ROUNDS = 3


def warm(url: str, full_rounds: int = FULL_ROUNDS, session_rounds: int = SESSION_ROUNDS) -> None:
    from pyspark.sql import SparkSession

    wait_listening(url)

    # Batch jobs (the runner's pool mode) read and write Parquet: warm those paths too. The driver
    # is on this machine (local provider), so a temporary directory here is one it can write.
    scratch = tempfile.mkdtemp(prefix="sparkgate-warmup-")
    try:
        for i in range(full_rounds):
            _full_round(SparkSession, url, f"{scratch}/{i}")
        for _ in range(session_rounds):
            _new_session(SparkSession, url)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _session(SparkSession: Any, url: str) -> Any:
    return SparkSession.builder.remote(url).config("spark.sparkgate.warmup", "true").create()


def _full_round(SparkSession: Any, url: str, scratch: str) -> None:
    """One session through the paths users' queries take: SQL, a shuffle, pandas and Arrow
    results, a local relation, Parquet written and read."""
    spark = _session(SparkSession, url)
    try:
        spark.sql("SELECT 1 AS one").first()
        spark.sql("SELECT id, id % 7 AS k FROM range(10000)").groupBy("k").count().collect()
        spark.range(50000).selectExpr("id", "cast(id AS string) AS s").toPandas()
        spark.createDataFrame([(1, "a"), (2, "b")], "x long, y string").schema  # noqa: B018
        spark.range(10).filter("id > 3").toArrow()
        path = f"{scratch}/t"
        spark.range(2000).selectExpr("id", "id % 10 AS k").write.mode("overwrite").parquet(path)
        spark.read.parquet(path).createOrReplaceTempView("w")
        spark.sql("SELECT k, count(*) AS n FROM w GROUP BY k ORDER BY k").collect()
    finally:
        spark.stop()


def _new_session(SparkSession: Any, url: str) -> None:
    spark = _session(SparkSession, url)
    try:
        spark.sql("SELECT 1 AS one").first()
        spark.range(10).filter("id > 3").toArrow()
    finally:
        spark.stop()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    token_from_stdin = args[1:] == ["--token-from-stdin"]
    if not (len(args) == 1 or token_from_stdin) or not args[0].startswith("sc://"):
        print("usage: python -m sparkgate.clusters.warmup sc://HOST:PORT [--token-from-stdin]", file=sys.stderr)
        return 2
    if token_from_stdin:
        # Set here, after the process started: /proc/PID/environ shows only what it started with.
        os.environ["SPARK_CONNECT_AUTHENTICATE_TOKEN"] = sys.stdin.readline().strip()
    warm(args[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
