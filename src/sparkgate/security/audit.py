"""The audit log: one JSON object per line for each security-relevant event.

Events: ``session.create``, ``session.release``, ``auth.failure``, ``permission.denied``,
``rpc.error``; each with ``ts`` (UTC, ISO 8601), ``event`` and what is known of ``who``, ``team``,
``environment``, ``session``, ``driver``, ``method``, ``status`` and ``reason``.

Writing happens on a background thread (a ``QueueHandler``/``QueueListener`` pair), so the event
loop never waits on the disk.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.handlers
import queue
import sys
from pathlib import Path
from typing import Any


class AuditLog:
    def __init__(self, path: Path | None, *, enabled: bool = True) -> None:
        """``path`` None writes to stderr."""
        self.path = path
        self.enabled = enabled
        self._logger = logging.getLogger(f"sparkgate.audit.{id(self)}")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        self._listener: logging.handlers.QueueListener | None = None
        self._handler: logging.Handler | None = None

    def start(self) -> None:
        if not self.enabled or self._listener is not None:
            return
        if self.path is None:
            target: logging.Handler = logging.StreamHandler(sys.stderr)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            target = logging.FileHandler(self.path, encoding="utf-8")
        target.setFormatter(logging.Formatter("%(message)s"))
        q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._handler = logging.handlers.QueueHandler(q)
        self._logger.addHandler(self._handler)
        self._listener = logging.handlers.QueueListener(q, target)
        self._listener.start()
        self._target = target

    def emit(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        record = {"ts": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"), "event": event}
        record.update((k, v) for k, v in fields.items() if v is not None and v != "")
        self._logger.info(json.dumps(record, default=str, separators=(",", ":")))

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()  # flushes what is queued
            self._listener = None
        if self._handler is not None:
            self._logger.removeHandler(self._handler)
            self._handler = None
            self._target.close()
