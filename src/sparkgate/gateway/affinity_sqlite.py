"""SQLite-backed affinity store: routes survive a gateway restart.

A client whose stream broke because the gateway restarted comes back with ``ReattachExecute`` for
an operation that lives on one particular driver; the restarted gateway must still know which.

Reads are served from the in-memory copy loaded at start; writes go through to SQLite on a worker
thread (never on the event loop). Last-use times are flushed in batches on each sweep, so a busy
session costs no disk write per RPC.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from sparkgate.gateway.affinity import MemoryAffinityStore, Route

_SCHEMA = """
CREATE TABLE IF NOT EXISTS routes (
    user_id     TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    driver_id   TEXT NOT NULL,
    address     TEXT NOT NULL,
    team        TEXT NOT NULL,
    environment TEXT NOT NULL,
    owner       TEXT NOT NULL DEFAULT '',
    created_at  REAL NOT NULL,
    last_used   REAL NOT NULL,
    PRIMARY KEY (user_id, session_id)
)
"""

_COLUMNS = "user_id, session_id, driver_id, address, team, environment, owner, created_at, last_used"


class SqliteAffinityStore(MemoryAffinityStore):
    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self._path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    async def __aenter__(self) -> SqliteAffinityStore:
        await asyncio.to_thread(self._open)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self._close, self._apply_touches())

    def _open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(_SCHEMA)
        self._db = db
        for row in db.execute(f"SELECT {_COLUMNS} FROM routes"):
            self._add(Route(*row))

    def _close(self, touched: dict[tuple[str, str], float]) -> None:
        self._write_sweep(touched, [])
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _exec(self, sql: str, params: tuple[object, ...] | list[tuple[object, ...]], many: bool = False) -> None:
        with self._lock:
            if self._db is None:
                return
            if many:
                self._db.executemany(sql, params)  # type: ignore[arg-type]
            else:
                self._db.execute(sql, params)  # type: ignore[arg-type]

    async def put(self, route: Route) -> None:
        await super().put(route)
        await asyncio.to_thread(
            self._exec,
            f"INSERT OR REPLACE INTO routes ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                route.user_id,
                route.session_id,
                route.driver_id,
                route.address,
                route.team,
                route.environment,
                route.owner,
                route.created_at,
                route.last_used,
            ),
        )

    async def delete(
        self, key: tuple[str, str], *, driver_id: str = "", lost: str = "", lost_ttl: float = 0.0
    ) -> Route | None:
        r = await super().delete(key, driver_id=driver_id)
        if r is not None:
            await asyncio.to_thread(self._exec, "DELETE FROM routes WHERE user_id=? AND session_id=?", key)
        return r

    def _write_sweep(self, touched: dict[tuple[str, str], float], dead: list[Route]) -> None:
        with self._lock:
            if self._db is None:
                return
            self._db.executemany(
                "UPDATE routes SET last_used=? WHERE user_id=? AND session_id=?",
                [(ts, k[0], k[1]) for k, ts in touched.items()],
            )
            self._db.executemany("DELETE FROM routes WHERE user_id=? AND session_id=?", [r.key for r in dead])

    async def sweep(self, idle_before: float, *, lost: str = "", lost_ttl: float = 0.0) -> list[Route]:
        # The in-memory part runs on the loop (the dict is read there on every RPC), in slices;
        # only the disk writes go to a thread.
        touched = await self._apply_touches_in_slices()
        dead = await self._idle_in_slices(idle_before)
        for r in dead:
            self._remove(r.key)
        if touched or dead:
            await asyncio.to_thread(self._write_sweep, touched, dead)
        return dead
