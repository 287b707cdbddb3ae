"""The job store on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import pytest

from sparkgate.errors import NotFound
from sparkgate.runner.jobs import CANCELLED, COMPLETED, PENDING, RUNNING, Job, job_id
from sparkgate.runner.store import JobStore


def _job(name: str = "daily", team: str = "fe", user: str = "a@x") -> Job:
    return Job(
        id=job_id(team, name), name=name, team=team, environment="local", user=user, namespace="ns", manifest="m"
    )


def test_states_are_recorded_with_their_times(db_url: str) -> None:
    store = JobStore(db_url)
    store.migrate()
    store.migrate()  # idempotent
    job = _job()
    store.create(job)
    store.transition(job.id, RUNNING, "started", handle={"pid": 42}, attempts=1)
    store.update(job.id, spark_ui_url="http://ui")
    done = store.transition(job.id, COMPLETED, "finished", output_path="/out")
    assert done.state == COMPLETED and done.handle == {"pid": 42} and done.spark_ui_url == "http://ui"
    assert done.updated_at >= done.created_at and done.updated_at.tzinfo is not None
    # A finished job stays finished: a late transition changes nothing and leaves no event.
    assert store.transition(job.id, CANCELLED, "too late").state == COMPLETED
    events = store.events(job.id)
    assert [e.state for e in events] == [PENDING, RUNNING, COMPLETED]
    assert events[0].at <= events[1].at <= events[2].at
    store.close()


def test_lists_and_lookups(db_url: str) -> None:
    store = JobStore(db_url)
    store.migrate()
    a, b, c = _job("a"), _job("b", team="ds"), _job("c", user="b@x")
    for j in (a, b, c):
        store.create(j)
    store.transition(b.id, RUNNING)
    assert [j.id for j in store.list_jobs()] == [c.id, b.id, a.id]  # newest first
    assert [j.id for j in store.list_jobs(team="ds")] == [b.id]
    assert [j.id for j in store.list_jobs(user="b@x")] == [c.id]
    assert {j.id for j in store.active()} == {a.id, b.id, c.id}
    with pytest.raises(NotFound, match="no job 'nope'"):
        store.get("nope")
    store.close()
