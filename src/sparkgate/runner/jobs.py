"""A job as the runner keeps it, and the states it goes through."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    """What a job is doing: the runner's five states, then the Spark Operator's that have no
    counterpart among them (kept as they are)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    SUSPENDING = "SUSPENDING"
    SUSPENDED = "SUSPENDED"
    RESUMING = "RESUMING"
    INVALIDATING = "INVALIDATING"


PENDING, RUNNING, COMPLETED, FAILED, CANCELLED = (
    JobState.PENDING,
    JobState.RUNNING,
    JobState.COMPLETED,
    JobState.FAILED,
    JobState.CANCELLED,
)
SUSPENDING, SUSPENDED, RESUMING, INVALIDATING = (
    JobState.SUSPENDING,
    JobState.SUSPENDED,
    JobState.RESUMING,
    JobState.INVALIDATING,
)
#: A job in one of these has ended; in any other it may still change.
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})
ACTIVE = frozenset(set(JobState) - TERMINAL)
#: How the job program's progress lines start in its log (what live views show of the log).
PROGRESS_MARK = "[sparkgate-job"

#: Kubernetes object names: at most 63 characters of [a-z0-9-].
MAX_ID = 63


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def job_id(team: str, name: str, nanos: int | None = None) -> str:
    """``{team}-{job}-{nanos}``, lower-cased, cleaned and capped to a valid Kubernetes name."""
    nanos = time.time_ns() if nanos is None else nanos
    stem = re.sub(r"[^a-z0-9-]+", "-", f"{team}-{name}".lower()).strip("-")
    suffix = f"-{nanos}"
    return (stem[: MAX_ID - len(suffix)].rstrip("-") or "job") + suffix


def namespace_for_job(team: str, environment: str, user: str) -> str:
    """The namespace a job runs in: a per-user one for local playground jobs, one shared playground
    namespace for ``test``, else the team's ``sjns-{team}-{environment}``."""
    if environment == "local":
        return f"sjns-playground-local-{hashlib.sha256(user.encode()).hexdigest()[:8]}"
    if environment == "test":
        return "sjns-playground-test"
    return f"sjns-{team}-{environment}"


@dataclass
class Job:
    id: str
    name: str
    team: str
    environment: str
    user: str
    namespace: str
    manifest: str
    options: dict[str, str] = field(default_factory=dict)
    backend: str = ""
    state: str = PENDING
    error: str = ""
    spark_ui_url: str = ""
    log_path: str = ""
    scratch_dir: str = ""
    output_path: str = ""
    #: What the backend needs to find the work again after a restart (pid, session id, app name).
    handle: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    created_at: dt.datetime = field(default_factory=utcnow)
    updated_at: dt.datetime = field(default_factory=utcnow)
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None

    @property
    def done(self) -> bool:
        return self.state in TERMINAL


@dataclass(frozen=True)
class Event:
    state: str
    at: dt.datetime
    message: str = ""
