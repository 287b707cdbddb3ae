"""A live copy of the Kubernetes objects of one kind that match a label selector.

LIST, then WATCH from the list's resourceVersion, with bookmarks so a quiet watch still moves its
resourceVersion forward. When the watch ends (the server's timeout) it starts again from the last
resourceVersion seen. When that is too old (410 Gone) or the stream was cut, it LISTs again and
compares with its copy: an object gone in the gap is reported DELETED, one that changed MODIFIED,
so a deletion is never missed. Nothing else is needed to rebuild the copy after a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sparkgate.aio import TaskSupervisor
from sparkgate.errors import SparkgateError
from sparkgate.kube.api import Expired, Kind, KubeApi, Obj

log = logging.getLogger(__name__)

#: Seconds to wait before listing again after the API server failed a list or a watch.
RETRY_SECONDS = 1.0

Listener = Callable[[str, Obj], None]


def uid(obj: Obj) -> str:
    return str(obj["metadata"]["uid"])


class Informer:
    """``await informer.start()`` lists (the copy is complete when it returns), then watches in
    the background; ``listener(type, object)`` hears ADDED, MODIFIED and DELETED as they happen."""

    def __init__(
        self,
        api: KubeApi,
        kind: Kind,
        *,
        labels: str = "",
        namespace: str | None = None,
        listener: Listener | None = None,
    ) -> None:
        self.api = api
        self.kind = kind
        self.labels = labels
        self.namespace = namespace
        self.listener = listener
        #: The objects now, by uid.
        self.objects: dict[str, Obj] = {}
        self.resource_version = ""
        #: Times the copy was rebuilt from a list after the watch lost its place (tests, status).
        self.relists = 0
        self._tasks = TaskSupervisor(f"informer:{kind.plural}")
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        await self._list()
        self._tasks.spawn(f"watch-{self.kind.plural}", self._run())

    async def close(self) -> None:
        await self._tasks.close()

    def by_name(self, name: str) -> Obj | None:
        return next((o for o in self.objects.values() if o["metadata"]["name"] == name), None)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds after some change (False: ``timeout`` seconds passed)."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(predicate), timeout)
            except TimeoutError:
                return False
        return True

    async def observe(self, obj: Obj) -> None:
        """``obj`` as read directly (a GET), applied if the watch has not shown this version of it:
        a backstop for a watch that went quiet without ending."""
        known = self.objects.get(uid(obj))
        if known is None or known["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
            await self._apply("MODIFIED" if known is not None else "ADDED", obj)

    async def _list(self) -> None:
        items, rv = await self.api.list(self.kind, namespace=self.namespace, labels=self.labels)
        listed = {uid(o): o for o in items}
        for key in list(self.objects):
            if key not in listed:
                await self._apply("DELETED", self.objects[key])
        for key, obj in listed.items():
            known = self.objects.get(key)
            if known is None:
                await self._apply("ADDED", obj)
            elif known["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                await self._apply("MODIFIED", obj)
        self.resource_version = rv

    async def _run(self) -> None:
        while True:
            try:
                async for kind, obj in self.api.watch(
                    self.kind, resource_version=self.resource_version, namespace=self.namespace, labels=self.labels
                ):
                    self.resource_version = str(obj.get("metadata", {}).get("resourceVersion") or self.resource_version)
                    if kind != "BOOKMARK":
                        await self._apply(kind, {"kind": self.kind.kind, "apiVersion": self.kind.api_version, **obj})
                continue  # (the server ended the watch: resume from the last version)
            except asyncio.CancelledError:
                raise
            except Expired:
                log.info("watch of %s expired (410): listing again", self.kind.plural)
            except SparkgateError as exc:
                log.warning("watch of %s stopped (%s): listing again", self.kind.plural, exc.message)
                await asyncio.sleep(RETRY_SECONDS)
            except Exception:
                log.exception("watch of %s failed: listing again", self.kind.plural)
                await asyncio.sleep(RETRY_SECONDS)
            await self._relist()

    async def _relist(self) -> None:
        while True:
            try:
                await self._list()
                self.relists += 1
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("listing %s failed (%s); retrying", self.kind.plural, exc)
                await asyncio.sleep(RETRY_SECONDS)

    async def _apply(self, kind: str, obj: Obj) -> None:
        key = uid(obj)
        if kind == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj
        if self.listener is not None:
            try:
                self.listener(kind, obj)
            except Exception:
                log.exception("listener of %s failed on %s", self.kind.plural, kind)
        async with self._changed:
            self._changed.notify_all()
