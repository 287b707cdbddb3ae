"""Job stores on both databases: SQLite (a file) and PostgreSQL (a real server, started once)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparkgate.testing.postgres import TempPostgres, find_bin


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    if find_bin() is None:
        if os.environ.get("SPARKGATE_SKIP_POSTGRES") or os.environ.get("SPARKGATE_FAST") == "1":
            pytest.skip("PostgreSQL is not installed (SPARKGATE_FAST=1 or SPARKGATE_SKIP_POSTGRES set)")
        pytest.fail("PostgreSQL is not installed: scripts/test installs it (apt-get install postgresql)")
    with TempPostgres() as url:
        yield url


_counter = iter(range(1_000_000))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runner.db'}"
    server: str = request.getfixturevalue("postgres_server")
    # A fresh database per test on the shared server.
    import sqlalchemy as sa

    name = f"t{os.getpid()}_{next(_counter)}"
    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return server.rsplit("/", 1)[0] + f"/{name}"
