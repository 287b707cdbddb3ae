"""A pyspark user in its own process, for tests/e2e/test_security.py.

Reads cases as JSON on stdin — ``[{"name", "url", "sql", "keep"}]`` — runs each in order and prints
``{name: {"rows": [...]} | {"error": "..."}}`` as JSON. A case with ``keep`` leaves its session open
(for a later case that tries to use its session id). The CA to trust comes from the environment
(``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``), as a real user would set it.
"""

from __future__ import annotations

import json
import sys

from pyspark.sql.connect.session import SparkSession


def main() -> None:
    cases = json.load(sys.stdin)
    results: dict[str, dict[str, object]] = {}
    kept = []
    for case in cases:
        spark = SparkSession.builder.remote(case["url"]).create()
        try:
            rows = spark.sql(case.get("sql", "SELECT 1 AS one")).collect()
            results[case["name"]] = {"rows": [r.asDict() for r in rows]}
        except Exception as exc:  # the client's own error: what a user would see
            results[case["name"]] = {"error": f"{type(exc).__name__}: {exc}"}
        if case.get("keep"):
            kept.append(spark)
        else:
            try:
                spark.stop()
            except Exception:
                pass
    for spark in kept:
        spark.stop()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
