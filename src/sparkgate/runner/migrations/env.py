"""Alembic environment for the runner's job store (run by JobStore.migrate with a live connection)."""

from __future__ import annotations

from alembic import context

from sparkgate.runner.store import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - always given by JobStore.migrate
    raise RuntimeError("run migrations through sparkgate.runner.store.JobStore.migrate")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
