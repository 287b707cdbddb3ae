"""Servers every part of the suite may share: Debian's redis-server and haproxy, started once per
test run on free ports (``scripts/test`` installs them). Local drivers' class-data archive is kept
for the run in a directory of its own (built once, by the first driver's training run), not in
the user's cache."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from sparkgate.testing.haproxy import find_haproxy
from sparkgate.testing.redis import TempRedis, find_server

_CACHE = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    import tempfile

    config.stash[_CACHE] = os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="sparkgate-test-cache-")


def pytest_unconfigure(config: pytest.Config) -> None:
    import shutil

    if _CACHE in config.stash:
        shutil.rmtree(config.stash[_CACHE], ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def driver_class_archive(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Local drivers' class-data archive, built before the first test that starts drivers (as a
    gateway builds it after its first driver), so that every test's drivers start from it and no
    training run competes with a test."""
    if os.environ.get("SPARKGATE_FAST") == "1" or not any(i.get_closest_marker("spark") for i in request.session.items):
        return
    import asyncio

    from sparkgate.clusters.base import DriverSpec
    from sparkgate.clusters.local import LocalProvider
    from sparkgate.config import LocalProviderSettings

    async def build() -> None:
        async with LocalProvider(LocalProviderSettings(), tmp_path_factory.mktemp("class-archive")) as provider:
            driver = await provider.start_driver(DriverSpec())
            await provider.stop_driver(driver)
            await provider.class_archive_built()

    try:
        asyncio.run(build())
    except Exception as exc:  # (drivers start without it: slower, still right)
        import warnings

        warnings.warn(f"no class-data archive for the tests' drivers: {exc}", stacklevel=1)


def _missing(what: str, package: str) -> None:
    if os.environ.get("SPARKGATE_FAST") == "1":
        pytest.skip(f"{what} is not installed (SPARKGATE_FAST=1)")
    pytest.fail(f"{what} is not installed: scripts/test installs it (apt-get install {package})")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[TempRedis]:
    """Debian's redis-server on a free port, once per test run (tests use key prefixes of their own)."""
    if find_server() is None:
        _missing("Redis", "redis-server")
    server = TempRedis()
    with server:
        yield server


@pytest.fixture(scope="session")
def haproxy_binary() -> str:
    found = find_haproxy()
    if found is None:
        _missing("haproxy", "haproxy")
    assert found is not None
    return found
