"""A pytest plugin for Spark integration tests through the gateway (registered as ``sparkgate``).

    def test_orders(spark):                 # the fixture: one session per test session
        assert spark.sql("SELECT 1 AS x").first().x == 1

Configured by the environment variables Spark CI suites already set: ``SPARK_CONNECT_GATEWAY``,
``SPARK_CONNECT_TEAM``, ``SPARK_CONNECT_ENV`` (default ``test``), ``SPARK_CONNECT_USER``, or the
command-line options ``--spark-gateway``, ``--spark-team``, ``--spark-env``, ``--spark-user``.
Without a gateway, tests that use the fixture (or carry ``@pytest.mark.spark_connect``) are skipped,
saying how to enable them.
The session is stopped when the tests end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

_SKIP = "no Spark gateway configured: set SPARK_CONNECT_GATEWAY=host:port (and SPARK_CONNECT_TEAM) or --spark-gateway"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sparkgate", "Spark through the sparkgate gateway")
    group.addoption("--spark-gateway", help="gateway host:port (default $SPARK_CONNECT_GATEWAY)")
    group.addoption("--spark-team", help="team (default $SPARK_CONNECT_TEAM)")
    group.addoption("--spark-env", help="environment (default $SPARK_CONNECT_ENV, else test)")
    group.addoption("--spark-user", help="user (default $SPARK_CONNECT_USER, else your login)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "spark_connect: needs a Spark session through the gateway (skipped without one)")


def _settings(config: pytest.Config) -> dict[str, str | None]:
    def pick(option: str, env: str, default: str | None = None) -> str | None:
        value = config.getoption(option)
        return value or os.environ.get(env) or default

    return {
        "gateway": pick("--spark-gateway", "SPARK_CONNECT_GATEWAY"),
        "team": pick("--spark-team", "SPARK_CONNECT_TEAM"),
        "environment": pick("--spark-env", "SPARK_CONNECT_ENV", "test"),
        "user": pick("--spark-user", "SPARK_CONNECT_USER"),
    }


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _settings(config)["gateway"]:
        return
    skip = pytest.mark.skip(reason=_SKIP)
    for item in items:
        if _uses_our_fixture(item) or item.get_closest_marker("spark_connect") is not None:
            item.add_marker(skip)


def _uses_our_fixture(item: pytest.Item) -> bool:
    """The test's ``spark`` is this plugin's (a test module may define its own, as existing suites do)."""
    info = getattr(item, "_fixtureinfo", None)
    defs: Any = info.name2fixturedefs.get("spark") if info is not None else None
    return bool(defs) and getattr(defs[-1].func, "__module__", "") == __name__


@pytest.fixture(scope="session")
def spark(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A Spark Connect session through the gateway, shared by the test session, stopped at the end."""
    from sparkgate.client import get_spark

    s = _settings(request.config)
    if not s["gateway"]:
        pytest.skip(_SKIP)
    if not s["team"]:
        pytest.fail("SPARK_CONNECT_TEAM (or --spark-team) is needed with a Spark gateway")
    os.environ["SPARK_CONNECT_GATEWAY"] = str(s["gateway"])
    session = get_spark(str(s["team"]), str(s["environment"]), app_name=f"pytest-{s['user'] or 'ci'}", user=s["user"])
    try:
        yield session
    finally:
        session.stop()
