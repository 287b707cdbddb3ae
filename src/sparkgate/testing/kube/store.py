"""The API server's verbs and their rules: what its generic registry and the garbage collector do.

Every write — over HTTP, from the fake kubelet or operator, or a test's direct write — goes
through :meth:`ObjectStore._write`: it is validated (:mod:`.validation`), then committed to
:mod:`.storage` (the next ``resourceVersion``, the history, the watches). A write that changes
nothing is not a write: no new ``resourceVersion``, no event.

Modelled: optimistic concurrency (a stale ``metadata.resourceVersion`` in an update or a patch is
a 409), ``generateName``, ``metadata.generation`` (where the real server keeps one: custom
resources and PodDisruptionBudgets), the ``status`` subresource (a write to the object keeps its status, a write to
``/status`` changes nothing else), a Pod's immutable spec, Secrets' ``stringData``, the defaults
of a Pod's spec that clients read back, graceful deletion of Pods bound to a node whose kubelet is
attached (``deletionTimestamp``, then removal once the kubelet reports the containers gone),
finalizers, delete preconditions, and the garbage collector (background cascade over
``ownerReferences``; ``Orphan`` drops the references instead).

Not modelled: server-side apply's field ownership (apply merges the applied object into the live
one and never removes a field; ``force`` is accepted and ignored; no ``managedFields``), the
``Foreground`` cascade (it behaves as ``Background``), ``blockOwnerDeletion``, admission (quotas,
policies, service-account tokens), list at an old ``resourceVersion`` (lists are always current),
and the watch cache's ``resourceVersionMatch``.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import secrets
import uuid
from collections.abc import Callable
from typing import Any

from sparkgate.testing.kube import patches
from sparkgate.testing.kube.defaults import (
    MUTABLE_POD_SPEC,
    default_pod,
    default_secret,
    later,
    name_mismatch,
    now,
    pod_spec_fixed,
    spec_of,
)
from sparkgate.testing.kube.resources import PODS, SECRETS, ResourceType, resource_of
from sparkgate.testing.kube.selectors import Selector
from sparkgate.testing.kube.status import (
    STALE,
    ApiStatusError,
    already_exists,
    bad_request,
    conflict,
    invalid,
    not_found,
)
from sparkgate.testing.kube.storage import Key, Storage
from sparkgate.testing.kube.validation import KUBERNETES_VERSION, validate
from sparkgate.testing.kube.watch import ADDED, DELETED, MODIFIED

log = logging.getLogger(__name__)

Obj = dict[str, Any]

_SERVER_METADATA = ("uid", "creationTimestamp", "generation", "deletionTimestamp", "deletionGracePeriodSeconds")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what the real server draws generated names from
_TERMINAL_PHASES = ("Succeeded", "Failed")


class ObjectStore(Storage):
    """The verbs on the stored objects, with the API server's rules (see the module docstring)."""

    def __init__(self, *, history_size: int = 1000, kubernetes_version: str = KUBERNETES_VERSION) -> None:
        super().__init__(history_size=history_size)
        self.kubernetes_version = kubernetes_version
        #: Nodes whose kubelet stops a deleted Pod's containers before the Pod goes.
        self.graceful_nodes: set[str] = set()
        self._gc: asyncio.Queue[str] = asyncio.Queue()

    # -- writes ----------------------------------------------------------------------------------

    def _check_body(self, resource: ResourceType, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise bad_request(f"the body is not a {resource.kind} object")
        obj = copy.deepcopy(body)
        for field, expected in (("apiVersion", resource.api_version), ("kind", resource.kind)):
            if obj.setdefault(field, expected) != expected:
                raise bad_request(f"{field} {obj[field]!r} does not match the endpoint ({expected!r})")
        if not isinstance(obj.setdefault("metadata", {}), dict):
            raise bad_request("metadata must be an object")
        return obj

    def _normalize(self, resource: ResourceType, obj: Obj) -> None:
        if resource is PODS:
            default_pod(obj)
        elif resource is SECRETS:
            default_secret(obj)

    def create(self, resource: ResourceType, namespace: str | None, body: Any, *, dry_run: bool = False) -> Obj:
        obj = self._check_body(resource, body)
        meta = obj["metadata"]
        if resource.namespaced:
            if not namespace:
                raise bad_request("a namespace is required")
            if meta.get("namespace") not in (None, "", namespace):
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            while True:
                meta["name"] = meta["generateName"] + "".join(secrets.choice(_GENERATE_ALPHABET) for _ in range(5))
                if self._key(resource, namespace, meta["name"]) not in self._objects:
                    break
        for field in (*_SERVER_METADATA, "resourceVersion", "managedFields", "selfLink"):
            meta.pop(field, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now())
        if resource.generation:
            meta["generation"] = 1
        if resource.has_status:
            obj.pop("status", None)
            if resource is PODS:
                obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        self._normalize(resource, obj)
        key = self._key(resource, namespace, str(meta.get("name", "")))
        if meta.get("name") and key in self._objects:
            raise already_exists(resource.plural, meta["name"], resource.group)
        validate(resource, obj, version=self.kubernetes_version)
        if dry_run:
            return obj
        self._commit(ADDED, key, obj, None)
        for ref in meta.get("ownerReferences") or []:
            if ref.get("uid") not in self._uids:  # owner already gone: the collector removes this one
                self._gc.put_nowait(ref.get("uid"))
        return copy.deepcopy(obj)

    def update(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str = "",
        dry_run: bool = False,
    ) -> Obj:
        key = self._key(resource, namespace, name)
        current = self._objects.get(key)
        if current is None:
            raise not_found(resource.plural, name, resource.group)
        obj = self._check_body(resource, body)
        meta = obj["metadata"]
        if meta.get("name", name) != name:
            raise name_mismatch(meta.get("name"), name)
        if resource.namespaced and meta.get("namespace") not in (None, "", namespace):
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        cur_meta = current["metadata"]
        if meta.get("uid") not in (None, "", cur_meta["uid"]):
            why = f"Precondition failed: UID in precondition: {meta['uid']}, UID in object meta: {cur_meta['uid']}"
            raise conflict(resource.plural, name, why, resource.group)
        sent_rv = meta.get("resourceVersion")
        if sent_rv not in (None, "") and sent_rv != cur_meta["resourceVersion"]:
            raise conflict(resource.plural, name, STALE, resource.group)
        if sent_rv in (None, "") and resource.custom:
            causes = [
                ("metadata.resourceVersion", "FieldValueInvalid", "Invalid value: 0x0: must be specified for an update")
            ]
            raise invalid(resource.kind, name, causes, resource.group)
        return self._write(resource, key, current, self._merge_update(resource, current, obj, subresource), dry_run)

    def _merge_update(self, resource: ResourceType, current: Obj, obj: Obj, subresource: str) -> Obj:
        """What an update of ``current`` with ``obj`` stores (server fields kept, subresource rules)."""
        if subresource == "status":
            new = copy.deepcopy(current)
            if obj.get("status") is None:
                new.pop("status", None)
            else:
                new["status"] = obj["status"]
            return new
        if subresource:
            raise ApiStatusError(405, "MethodNotAllowed", f"{resource.plural}/{subresource} cannot be updated")
        new, meta, cur_meta = obj, obj["metadata"], current["metadata"]
        meta["name"] = cur_meta["name"]
        if "namespace" in cur_meta:
            meta["namespace"] = cur_meta["namespace"]
        for field in _SERVER_METADATA:
            if field in cur_meta:
                meta[field] = cur_meta[field]
            else:
                meta.pop(field, None)
        meta.pop("managedFields", None)
        if resource.has_status:
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
            else:
                new.pop("status", None)
        self._normalize(resource, new)
        if resource is PODS and pod_spec_fixed(new.get("spec", {})) != pod_spec_fixed(current.get("spec", {})):
            message = f"Forbidden: pod updates may not change fields other than {MUTABLE_POD_SPEC}"
            raise invalid(resource.kind, cur_meta["name"], [("spec", "FieldValueForbidden", message)])
        if cur_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(cur_meta.get("finalizers") or [])
            if added:
                message = "Forbidden: no new finalizers can be added if the object is being deleted"
                raise invalid(
                    resource.kind, cur_meta["name"], [("metadata.finalizers", "FieldValueForbidden", message)]
                )
        if resource.generation and spec_of(new) != spec_of(current):
            meta["generation"] = int(cur_meta.get("generation", 1)) + 1
        return new

    def patch(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        patch_type: str,
        patch: Any,
        *,
        subresource: str = "",
        field_manager: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """Apply a patch of ``patch_type`` (see :mod:`.patches`); server-side apply creates a missing object."""
        if patch_type == patches.STRATEGIC and resource.custom:
            raise ApiStatusError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: "
                f"{patches.JSON_PATCH}, {patches.MERGE}, {patches.APPLY}",
            )
        current = self._objects.get(self._key(resource, namespace, name))
        if patch_type == patches.APPLY:
            if not field_manager:
                raise bad_request("fieldManager is required for apply requests")
            applied = self._check_body(resource, patch)
            if applied["metadata"].get("name") != name:
                raise name_mismatch(applied["metadata"].get("name"), name)
            if current is None:
                if subresource:
                    raise not_found(resource.plural, name, resource.group)
                return self.create(resource, namespace, applied, dry_run=dry_run)
            merge = patches.merge_patch if resource.custom else patches.strategic_merge_patch
            patched = merge(current, applied)
        elif current is None:
            raise not_found(resource.plural, name, resource.group)
        elif patch_type == patches.MERGE:
            if not isinstance(patch, dict):
                raise bad_request("a merge patch must be a JSON object")
            patched = patches.merge_patch(current, patch)
        elif patch_type == patches.STRATEGIC:
            if not isinstance(patch, dict):
                raise bad_request("a strategic merge patch must be a JSON object")
            patched = patches.strategic_merge_patch(current, patch)
        elif patch_type == patches.JSON_PATCH:
            patched = patches.json_patch(current, patch)
        else:
            raise ApiStatusError(415, "UnsupportedMediaType", f"unsupported patch type {patch_type!r}")
        if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
            raise bad_request("the patched object is not an object with metadata")
        # A resourceVersion the patch carries is a precondition, as in an update.
        return self.update(resource, namespace, name, patched, subresource=subresource, dry_run=dry_run)

    def modify(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        change: Callable[[Obj], None],
        *,
        subresource: str = "",
    ) -> Obj | None:
        """Read, ``change`` in place, write (no precondition): for the fake kubelet and operator.
        None if the object is gone."""
        key = self._key(resource, namespace, name)
        current = self._objects.get(key)
        if current is None:
            return None
        obj = copy.deepcopy(current)
        change(obj)
        return self._write(resource, key, current, self._merge_update(resource, current, obj, subresource), False)

    def bind(self, namespace: str, name: str, node: str) -> Obj:
        """Assign a Pod to ``node`` (what the scheduler's ``pods/binding`` does): 409 if it is bound."""
        key = self._key(PODS, namespace, name)
        current = self._objects.get(key)
        if current is None:
            raise not_found(PODS.plural, name)
        bound = current.get("spec", {}).get("nodeName")
        if bound:
            raise conflict(PODS.plural, name, f"pod {name} is already assigned to node {bound!r}")
        new = copy.deepcopy(current)
        new["spec"]["nodeName"] = node
        return self._write(PODS, key, current, new, False)

    def put(self, obj: Any) -> Obj:
        """Store ``obj`` whole, status included (create or replace, no precondition): a test's direct write."""
        resource = resource_of(obj)
        meta = obj.get("metadata") or {}
        key = self._key(resource, meta.get("namespace"), meta.get("name", ""))
        current = self._objects.get(key)
        if current is None:
            created = self.create(resource, meta.get("namespace"), obj)
            if resource.has_status and "status" in obj:
                return self.update(
                    resource,
                    meta.get("namespace"),
                    created["metadata"]["name"],
                    obj | {"metadata": created["metadata"]},
                    subresource="status",
                )
            return created
        new = self._merge_update(resource, current, self._check_body(resource, obj), "")
        if resource.has_status and "status" in obj:
            new["status"] = copy.deepcopy(obj["status"])
        return self._write(resource, key, current, new, False)

    def _write(self, resource: ResourceType, key: Key, current: Obj, new: Obj, dry_run: bool) -> Obj:
        new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        if new == current:
            return copy.deepcopy(current)
        validate(resource, new, version=self.kubernetes_version)
        if dry_run:
            return new
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and not meta.get("deletionGracePeriodSeconds"):
            return self._remove(key, new)
        self._commit(MODIFIED, key, new, current)
        return copy.deepcopy(new)

    def _remove(self, key: Key, final: Obj) -> Obj:
        self._commit(DELETED, key, final, self._objects[key])
        self._gc.put_nowait(final["metadata"]["uid"])
        return copy.deepcopy(final)

    # -- deletion --------------------------------------------------------------------------------

    def delete(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        *,
        grace_period: int | None = None,
        preconditions: Obj | None = None,
        propagation: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """Delete an object; returns it as it is after the call (gone, or waiting for its kubelet or
        its finalizers, with ``deletionTimestamp`` set)."""
        key = self._key(resource, namespace, name)
        current = self._objects.get(key)
        if current is None:
            raise not_found(resource.plural, name, resource.group)
        meta = current["metadata"]
        for field, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
            wanted = (preconditions or {}).get(field)
            if wanted not in (None, "") and wanted != meta[field]:
                why = f"Precondition failed: {label} in precondition: {wanted}, {label} in object meta: {meta[field]}"
                raise conflict(resource.plural, name, why, resource.group)
        if dry_run:
            return copy.deepcopy(current)
        if propagation == "Orphan":
            self._orphan(meta["uid"])
        grace = 0
        if resource is PODS and current.get("spec", {}).get("nodeName") in self.graceful_nodes:
            if current.get("status", {}).get("phase") not in _TERMINAL_PHASES:
                default = current["spec"].get("terminationGracePeriodSeconds", 30)
                grace = max(0, int(grace_period if grace_period is not None else default))
        new = copy.deepcopy(current)
        new_meta = new["metadata"]
        if meta.get("deletionTimestamp"):
            # Deleting again may only shorten a grace period still running.
            if grace >= int(meta.get("deletionGracePeriodSeconds") or 0):
                return copy.deepcopy(current)
        new_meta["deletionTimestamp"] = later(grace)
        new_meta["deletionGracePeriodSeconds"] = grace
        if grace == 0 and not meta.get("finalizers"):
            return self._remove(key, new)
        self._commit(MODIFIED, key, new, current)
        return copy.deepcopy(new)

    def delete_collection(
        self, resource: ResourceType, namespace: str | None, selector: Selector, **options: Any
    ) -> list[Obj]:
        out = []
        for obj in self._matching(resource, namespace, selector):
            meta = obj["metadata"]
            out.append(self.delete(resource, meta.get("namespace"), meta["name"], **options))
        return out

    # -- garbage collection ----------------------------------------------------------------------

    def _orphan(self, uid: str) -> None:
        for key, _ in self.dependents(uid):
            self._drop_owner(key, uid)

    def _drop_owner(self, key: Key, uid: str) -> None:
        def drop(o: Obj) -> None:
            refs = [r for r in o["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
            if refs:
                o["metadata"]["ownerReferences"] = refs
            else:
                o["metadata"].pop("ownerReferences", None)

        self.modify(key[0], key[1] or None, key[2], drop)

    async def collect_garbage(self) -> None:
        """Forever: delete the dependents of every removed object (the API server runs it as a task).

        As the real collector, asynchronously: the owner's DELETED event comes first. A dependent
        with another owner still present only loses its reference to the removed one.
        """
        while True:
            uid = await self._gc.get()
            for key, obj in self.dependents(uid):
                meta = obj["metadata"]
                alive = [r for r in meta.get("ownerReferences") or [] if r.get("uid") in self._uids]
                try:
                    if alive:
                        self._drop_owner(key, uid)
                    elif not meta.get("deletionTimestamp"):
                        self.delete(key[0], key[1] or None, key[2])
                except ApiStatusError as exc:
                    log.warning("garbage collector: %s %s: %s", key[0], key[2], exc.message)
