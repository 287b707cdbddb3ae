"""The API server's storage: objects, the ``resourceVersion`` counter, the change history, watches.

One counter for all kinds, as etcd's revision. Every change is kept in a bounded history (the
watch cache) and offered to every open :class:`~.watch.Watch`; a watch from a ``resourceVersion``
older than the history gets 410 Expired, like the real server once etcd has compacted. Objects
handed out are copies: the stored ones never change once written.
"""

from __future__ import annotations

import copy
from collections import deque
from typing import Any

from sparkgate.testing.kube.resources import ResourceType
from sparkgate.testing.kube.selectors import EVERYTHING, Selector
from sparkgate.testing.kube.status import bad_request, expired, not_found
from sparkgate.testing.kube.watch import ADDED, DELETED, Change, Watch, WatchEvent

Obj = dict[str, Any]
Key = tuple[ResourceType, str, str]


class Storage:
    def __init__(self, *, history_size: int = 1000) -> None:
        self._objects: dict[Key, Obj] = {}
        self._uids: dict[str, Key] = {}
        self._rv = 0
        self._history: deque[Change] = deque()
        self._history_size = history_size
        #: Changes at or below this resourceVersion are no longer in the history.
        self._compacted = 0
        self._watches: set[Watch] = set()

    # -- reads -----------------------------------------------------------------------------------

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    def _key(self, resource: ResourceType, namespace: str | None, name: str) -> Key:
        return (resource, (namespace or "") if resource.namespaced else "", name)

    def find(self, resource: ResourceType, namespace: str | None, name: str) -> Obj | None:
        obj = self._objects.get(self._key(resource, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def get(self, resource: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self.find(resource, namespace, name)
        if obj is None:
            raise not_found(resource.plural, name, resource.group)
        return obj

    def select(
        self, resource: ResourceType, namespace: str | None = None, selector: Selector = EVERYTHING
    ) -> list[Obj]:
        """The matching objects, sorted by namespace and name (copies)."""
        return [copy.deepcopy(o) for o in self._matching(resource, namespace, selector)]

    def _matching(self, resource: ResourceType, namespace: str | None, selector: Selector) -> list[Obj]:
        found = [
            obj
            for (res, ns, _), obj in self._objects.items()
            if res is resource and (namespace is None or ns == namespace) and selector.matches(obj)
        ]
        return sorted(found, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))

    def watch(
        self,
        resource: ResourceType,
        namespace: str | None = None,
        selector: Selector = EVERYTHING,
        resource_version: str | None = None,
    ) -> Watch:
        """Subscribe to changes: without a ``resource_version`` (or with ``"0"``) the current objects
        come first as ``ADDED``; with one, every change after it (410 Expired if it is older than the
        history)."""
        w = Watch(resource, namespace, selector, self._watches.discard)
        if resource_version in (None, "", "0"):
            for obj in self._matching(resource, namespace, selector):
                w.deliver(WatchEvent(ADDED, copy.deepcopy(obj)))
        else:
            try:
                since = int(str(resource_version))
            except ValueError:
                raise bad_request(f"invalid resourceVersion: {resource_version!r}") from None
            if since < self._compacted:
                raise expired(f"too old resource version: {since} ({self._compacted + 1})")
            for change in self._history:
                if change.resource_version > since:
                    w.offer(change)
        self._watches.add(w)
        return w

    @property
    def open_watches(self) -> int:
        return len(self._watches)

    def expire_history(self) -> None:
        """Forget every change so far: a watch from any older ``resourceVersion`` gets 410 Expired."""
        self._history.clear()
        self._compacted = self._rv

    def close_watches(self) -> None:
        for w in list(self._watches):
            w.close()

    def _commit(self, kind: str, key: Key, obj: Obj, old: Obj | None) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        if kind == DELETED:
            del self._objects[key]
            self._uids.pop(obj["metadata"]["uid"], None)
        else:
            self._objects[key] = obj
            self._uids[obj["metadata"]["uid"]] = key
        change = Change(self._rv, kind, key[0], obj, old)
        self._history.append(change)
        while len(self._history) > self._history_size:
            self._compacted = self._history.popleft().resource_version
        for w in list(self._watches):
            w.offer(change)

    def dependents(self, uid: str) -> list[tuple[Key, Obj]]:
        """The objects whose ``ownerReferences`` name ``uid``."""
        return [
            (key, obj)
            for key, obj in self._objects.items()
            if any(r.get("uid") == uid for r in obj["metadata"].get("ownerReferences") or [])
        ]
