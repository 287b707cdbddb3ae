"""The job store: SQLAlchemy over SQLite (default, ``{state_dir}/runner.db``) or PostgreSQL.

Every state change is a row in ``job_events`` with its time, beside the job's current state in
``jobs``; the schema is created and upgraded by Alembic migrations (``runner/migrations``) when the
store opens. The store's methods are synchronous (SQLAlchemy's engine); the async service calls
them through ``asyncio.to_thread`` so the event loop never waits on the database.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sparkgate.errors import NotFound
from sparkgate.runner.jobs import ACTIVE, Event, Job, utcnow

log = logging.getLogger(__name__)

metadata = sa.MetaData()

jobs_table = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(63), primary_key=True),
    sa.Column("name", sa.String(63), nullable=False),
    sa.Column("team", sa.String(63), nullable=False, index=True),
    sa.Column("environment", sa.String(63), nullable=False),
    sa.Column("user_name", sa.String(255), nullable=False, index=True),
    sa.Column("namespace", sa.String(63), nullable=False),
    sa.Column("manifest", sa.Text, nullable=False),
    sa.Column("options", sa.Text, nullable=False, default="{}"),
    sa.Column("backend", sa.String(32), nullable=False, default=""),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("error", sa.Text, nullable=False, default=""),
    sa.Column("spark_ui_url", sa.Text, nullable=False, default=""),
    sa.Column("log_path", sa.Text, nullable=False, default=""),
    sa.Column("scratch_dir", sa.Text, nullable=False, default=""),
    sa.Column("output_path", sa.Text, nullable=False, default=""),
    sa.Column("handle", sa.Text, nullable=False, default="{}"),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
)

events_table = sa.Table(
    "job_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(63), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("message", sa.Text, nullable=False, default=""),
)

_JSON_FIELDS = {"options", "handle"}
_COLUMN = {"user": "user_name"}


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite gives naive datetimes back; everything stored is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def _to_row(job: Job) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for f in fields(Job):
        value = getattr(job, f.name)
        row[_COLUMN.get(f.name, f.name)] = json.dumps(value) if f.name in _JSON_FIELDS else value
    return row


def _from_row(row: Any) -> Job:
    m = row._mapping
    kwargs: dict[str, Any] = {}
    for f in fields(Job):
        value = m[_COLUMN.get(f.name, f.name)]
        if f.name in _JSON_FIELDS:
            value = json.loads(value or "{}")
        elif isinstance(value, dt.datetime):
            value = _utc(value)
        kwargs[f.name] = value
    return Job(**kwargs)


def database_url(url: str, state_dir: Path) -> str:
    """``runner.database_url``, with the default SQLite file under the state directory."""
    if url:
        return url
    path = (state_dir.expanduser() / "runner.db").resolve()
    return f"sqlite:///{path}"


class JobStore:
    def __init__(self, url: str) -> None:
        self.url = url
        connect_args: dict[str, Any] = {}
        if url.startswith("sqlite"):
            connect_args = {"check_same_thread": False, "timeout": 30}
        self.engine: Engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)
        if url.startswith("sqlite"):
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)

    def migrate(self) -> None:
        """Create or upgrade the schema to the newest migration."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        self.engine.dispose()

    # -- jobs ---------------------------------------------------------------------------------

    def create(self, job: Job) -> None:
        with self.engine.begin() as conn:
            conn.execute(jobs_table.insert().values(**_to_row(job)))
            conn.execute(
                events_table.insert().values(job_id=job.id, state=job.state, at=job.created_at, message="submitted")
            )

    def get(self, job_id: str) -> Job:
        with self.engine.connect() as conn:
            row = conn.execute(jobs_table.select().where(jobs_table.c.id == job_id)).first()
        if row is None:
            raise NotFound(f"no job {job_id!r} (sparkgate jobs lists them)")
        return _from_row(row)

    def list_jobs(self, *, team: str = "", user: str = "", state: str = "", limit: int = 50) -> list[Job]:
        q = jobs_table.select().order_by(jobs_table.c.created_at.desc()).limit(max(1, min(limit or 50, 1000)))
        if team:
            q = q.where(jobs_table.c.team == team)
        if user:
            q = q.where(jobs_table.c.user_name == user)
        if state:
            q = q.where(jobs_table.c.state == state)
        with self.engine.connect() as conn:
            return [_from_row(r) for r in conn.execute(q)]

    def count_jobs(self, *, state: str, user: str = "") -> int:
        """Jobs in ``state`` (of ``user``, if given)."""
        q = sa.select(sa.func.count()).select_from(jobs_table).where(jobs_table.c.state == state)
        if user:
            q = q.where(jobs_table.c.user_name == user)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def active(self) -> list[Job]:
        q = jobs_table.select().where(jobs_table.c.state.in_(sorted(ACTIVE)))
        with self.engine.connect() as conn:
            return [_from_row(r) for r in conn.execute(q)]

    def update(self, job_id: str, **values: Any) -> None:
        """Change fields without a state change (handle, log path, UI URL, ...)."""
        row = {_COLUMN.get(k, k): (json.dumps(v) if k in _JSON_FIELDS else v) for k, v in values.items()}
        with self.engine.begin() as conn:
            conn.execute(jobs_table.update().where(jobs_table.c.id == job_id).values(**row))

    def transition(self, job_id: str, state: str, message: str = "", **values: Any) -> Job:
        """Move a job to ``state`` (with an event row), unless it is already finished."""
        now = utcnow()
        row = {_COLUMN.get(k, k): (json.dumps(v) if k in _JSON_FIELDS else v) for k, v in values.items()}
        row.update(state=state, updated_at=now)
        with self.engine.begin() as conn:
            done = sa.and_(jobs_table.c.id == job_id, jobs_table.c.state.in_(sorted(ACTIVE)))
            changed = conn.execute(jobs_table.update().where(done).values(**row)).rowcount
            if changed:
                conn.execute(events_table.insert().values(job_id=job_id, state=state, at=now, message=message[:4000]))
        return self.get(job_id)

    def events(self, job_id: str) -> list[Event]:
        q = events_table.select().where(events_table.c.job_id == job_id).order_by(events_table.c.id)
        with self.engine.connect() as conn:
            return [Event(r.state, _utc(r.at) or utcnow(), r.message) for r in conn.execute(q)]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
