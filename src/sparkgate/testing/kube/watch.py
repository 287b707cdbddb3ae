"""Watches: each subscriber's view of the stream of changes, filtered as the API server filters it.

A change is recorded once (:class:`Change`: the object before and after); each :class:`Watch`
turns it into the event its selector sees. An object that starts matching a selector arrives as
``ADDED``, one that stops matching as ``DELETED``, like the real watch cache does. A watch's queue
is unbounded, so a slow subscriber never holds up a writer.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sparkgate.testing.kube.resources import ResourceType
from sparkgate.testing.kube.selectors import Selector

Obj = dict[str, Any]

ADDED, MODIFIED, DELETED, BOOKMARK, ERROR = "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"


@dataclass(frozen=True)
class Change:
    """One write, as the store recorded it (``old`` is None for a creation)."""

    resource_version: int
    type: str
    resource: ResourceType
    obj: Obj
    old: Obj | None = None


@dataclass(frozen=True)
class WatchEvent:
    type: str
    object: Obj


class Watch:
    """One subscription: ``async for event in watch`` (or :meth:`next` with a timeout); :meth:`close` ends it."""

    def __init__(
        self,
        resource: ResourceType,
        namespace: str | None,
        selector: Selector,
        on_close: Callable[[Watch], None],
    ) -> None:
        self.resource = resource
        self.namespace = namespace
        self.selector = selector
        self._queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()
        self._on_close = on_close
        self.closed = False

    def _sees(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        if self.namespace is not None and obj["metadata"].get("namespace") != self.namespace:
            return False
        return self.selector.matches(obj)

    def offer(self, change: Change) -> None:
        """Queue the event ``change`` means to this watch, if any."""
        if self.closed or change.resource is not self.resource:
            return
        now, before = self._sees(change.obj), self._sees(change.old)
        if change.type == DELETED:
            kind = DELETED if now else None
        elif now:
            kind = MODIFIED if before else ADDED
        else:
            kind = DELETED if before else None
        if kind is not None:
            self._queue.put_nowait(WatchEvent(kind, copy.deepcopy(change.obj)))

    def deliver(self, event: WatchEvent) -> None:
        self._queue.put_nowait(event)

    @property
    def pending(self) -> bool:
        """True if events are queued (a bookmark may be sent only when none is)."""
        return not self._queue.empty()

    async def next(self, timeout: float | None = None) -> WatchEvent | None:
        """The next event; None after ``timeout`` seconds without one, or once the watch is closed."""
        if self.closed and self._queue.empty():
            return None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(None)  # wakes a reader waiting in next()
            self._on_close(self)

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> WatchEvent:
        event = await self.next()
        if event is None:
            raise StopAsyncIteration
        return event

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
