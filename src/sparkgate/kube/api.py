"""A small async client of the Kubernetes API: the calls sparkgate makes, on plain JSON objects.

Connection settings (a kubeconfig file, or the Pod's service account inside a cluster; TLS,
bearer tokens re-read as they rotate) come from lightkube; requests and responses are plain dicts,
as on the wire, so the objects sparkgate builds are the ones a reader finds in ``kubectl get -o
yaml``. Errors enter the platform's tree here: 404 :class:`~sparkgate.errors.NotFound`, 409
:class:`~sparkgate.errors.Conflict` (a precondition failed: someone else changed the object
first), 410 :class:`Expired` (a watch's resourceVersion is gone: list again), 400/422
:class:`~sparkgate.errors.BadRequest`, an unreachable or overloaded API server
:class:`~sparkgate.errors.Unavailable`.

Watches use ``allowWatchBookmarks`` and yield BOOKMARK events (a resourceVersion to resume from,
without an object); an ``ERROR`` event or an HTTP 410 raises :class:`Expired`, never restarts
silently from "now" (a deletion in the gap would be missed): :mod:`sparkgate.kube.informer`
lists again and compares.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
from lightkube.config.client_adapter import AsyncClient as _adapter_client
from lightkube.config.client_adapter import ConnectionParams
from lightkube.config.kubeconfig import KubeConfig, SingleConfig

from sparkgate.errors import BadRequest, Conflict, NotFound, SparkgateError, Unavailable

log = logging.getLogger(__name__)

Obj = dict[str, Any]

#: Seconds a request may take (a watch: without a read limit; the server ends it first).
REQUEST_TIMEOUT = 10.0
#: Seconds a watch asks the server to keep its stream open (it is then started again).
WATCH_SECONDS = 290
#: Seconds a watch may be silent (no event, no bookmark — servers send one about every minute)
#: before it counts as cut: a connection dropped without a word (a NAT or load balancer timeout).
WATCH_SILENCE_SECONDS = 150


@dataclass(frozen=True)
class Kind:
    """A resource type: where its objects live in the API."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        url = f"{base}/{self.plural}"
        if name:
            url += f"/{name}"
        if sub:
            url += f"/{sub}"
        return url


PODS = Kind("", "v1", "pods", "Pod")
SECRETS = Kind("", "v1", "secrets", "Secret")
NODES = Kind("", "v1", "nodes", "Node", namespaced=False)
LEASES = Kind("coordination.k8s.io", "v1", "leases", "Lease")
SPARK_APPLICATIONS = Kind("sparkoperator.k8s.io", "v1beta2", "sparkapplications", "SparkApplication")


class Expired(Conflict):
    """A watch's resourceVersion is older than the API server keeps (HTTP 410): list again."""


class KubeApi:
    """``async with KubeApi(config, namespace=...) as api:`` — calls on one namespace by default."""

    def __init__(self, config: KubeConfig | SingleConfig, *, namespace: str, field_manager: str = "sparkgate") -> None:
        single = config.get() if isinstance(config, KubeConfig) else config
        if single is None:
            raise SparkgateError("the kubeconfig names no context to use")
        self.namespace = namespace
        self.field_manager = field_manager
        self.server = single.cluster.server
        self._http: httpx.AsyncClient = _adapter_client(
            single, ConnectionParams(timeout=httpx.Timeout(REQUEST_TIMEOUT), trust_env=False)
        )

    @classmethod
    def connect(cls, *, namespace: str, kubeconfig: str | None = None, context: str = "") -> KubeApi:
        """From a kubeconfig file, or (none given) the Pod's service account in the cluster."""
        try:
            if kubeconfig:
                config = KubeConfig.from_file(kubeconfig).get(context or None)
                if config is None:
                    raise SparkgateError(f"kubeconfig {kubeconfig} has no context {context!r}")
            else:
                config = KubeConfig.from_service_account().get()
        except SparkgateError:
            raise
        except Exception as exc:
            where = kubeconfig or "the Pod's service account (/var/run/secrets/kubernetes.io/serviceaccount)"
            raise SparkgateError(
                f"cannot reach Kubernetes through {where}: {exc} (kubernetes.kubeconfig names a file)"
            ) from exc
        assert config is not None
        return cls(config, namespace=namespace)

    async def __aenter__(self) -> KubeApi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- calls --------------------------------------------------------------------------------

    async def get(self, kind: Kind, name: str, *, namespace: str | None = None) -> Obj:
        return await self._call("GET", kind.path(self._ns(kind, namespace), name), what=f"{kind.kind} {name}")

    async def list(
        self, kind: Kind, *, namespace: str | None = None, labels: str = "", fields: str = ""
    ) -> tuple[list[Obj], str]:
        """The objects (with their ``kind``/``apiVersion`` filled in) and the list's resourceVersion."""
        params = {k: v for k, v in (("labelSelector", labels), ("fieldSelector", fields)) if v}
        body = await self._call("GET", kind.path(self._ns(kind, namespace)), params=params, what=kind.plural)
        items = [{"kind": kind.kind, "apiVersion": kind.api_version, **item} for item in body.get("items") or []]
        return items, str((body.get("metadata") or {}).get("resourceVersion") or "")

    async def watch(
        self,
        kind: Kind,
        *,
        resource_version: str,
        namespace: str | None = None,
        labels: str = "",
        timeout_seconds: int = WATCH_SECONDS,
    ) -> AsyncIterator[tuple[str, Obj]]:
        """``(type, object)`` from ``resource_version`` on: ADDED, MODIFIED, DELETED, BOOKMARK. Ends
        when the server closes the stream (start again from the last resourceVersion seen)."""
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        if labels:
            params["labelSelector"] = labels
        url = kind.path(self._ns(kind, namespace))
        request = self._http.build_request(
            "GET", url, params=params, timeout=httpx.Timeout(REQUEST_TIMEOUT, read=WATCH_SILENCE_SECONDS)
        )
        try:
            response = await self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"the Kubernetes API ({self.server}) did not answer a watch of {kind.plural}: {exc}"
            ) from exc
        try:
            if response.status_code >= 400:
                await response.aread()
                raise _error(response.status_code, _status(response.content), f"a watch of {kind.plural}")
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                kind_of_event = str(event.get("type", ""))
                obj = event.get("object") or {}
                if kind_of_event == "ERROR":
                    raise _error(int(obj.get("code") or 500), obj, f"a watch of {kind.plural}")
                yield kind_of_event, obj
        except httpx.HTTPError as exc:
            raise Unavailable(f"a watch of {kind.plural} was cut: {exc}") from exc
        finally:
            await response.aclose()

    async def create(self, kind: Kind, obj: Mapping[str, Any], *, namespace: str | None = None) -> Obj:
        body = {"apiVersion": kind.api_version, "kind": kind.kind, **obj}
        name = (obj.get("metadata") or {}).get("name", "")
        return await self._call(
            "POST", kind.path(self._ns(kind, namespace)), body=body, what=f"new {kind.kind} {name}".rstrip()
        )

    async def replace(self, kind: Kind, obj: Mapping[str, Any], *, namespace: str | None = None) -> Obj:
        """PUT: refused (Conflict) unless ``metadata.resourceVersion`` is the object's current one."""
        name = obj["metadata"]["name"]
        body = {"apiVersion": kind.api_version, "kind": kind.kind, **obj}
        return await self._call(
            "PUT", kind.path(self._ns(kind, namespace), name), body=body, what=f"{kind.kind} {name}"
        )

    async def patch(
        self, kind: Kind, name: str, patch: Mapping[str, Any], *, namespace: str | None = None, sub: str | None = None
    ) -> Obj:
        """A JSON merge patch; a ``metadata.resourceVersion`` in it makes it conditional (Conflict
        if the object changed since that version)."""
        return await self._call(
            "PATCH",
            kind.path(self._ns(kind, namespace), name, sub),
            body=dict(patch),
            content_type="application/merge-patch+json",
            what=f"{kind.kind} {name}",
        )

    async def apply(self, kind: Kind, obj: Mapping[str, Any], *, namespace: str | None = None) -> Obj:
        """Server-side apply as ``sparkgate`` (creates or updates; fields of other managers kept)."""
        name = obj["metadata"]["name"]
        body = {"apiVersion": kind.api_version, "kind": kind.kind, **obj}
        return await self._call(
            "PATCH",
            kind.path(self._ns(kind, namespace), name),
            body=body,
            params={"fieldManager": self.field_manager, "force": "true"},
            content_type="application/apply-patch+yaml",
            what=f"{kind.kind} {name}",
        )

    async def delete(
        self,
        kind: Kind,
        name: str,
        *,
        namespace: str | None = None,
        uid: str | None = None,
        grace_seconds: int | None = None,
    ) -> None:
        """Delete (``uid``: only that object, not a new one of the same name). Gone already: fine."""
        options: Obj = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        if uid:
            options["preconditions"] = {"uid": uid}
        if grace_seconds is not None:
            options["gracePeriodSeconds"] = grace_seconds
        try:
            await self._call(
                "DELETE", kind.path(self._ns(kind, namespace), name), body=options, what=f"{kind.kind} {name}"
            )
        except NotFound:
            return

    async def log(self, pod: str, *, namespace: str | None = None, tail_lines: int = 200) -> str:
        url = PODS.path(self._ns(PODS, namespace), pod, "log")
        response = await self._send("GET", url, params={"tailLines": str(tail_lines)}, what=f"the log of Pod {pod}")
        return response.text

    async def follow_log(self, pod: str, *, namespace: str | None = None) -> AsyncIterator[bytes]:
        """The Pod's log from its start, as it is written (``follow``): ends when its container
        exits, or when the stream is closed first (read it again)."""
        url = PODS.path(self._ns(PODS, namespace), pod, "log")
        what = f"the log of Pod {pod}"
        timeout = httpx.Timeout(REQUEST_TIMEOUT, read=None)
        request = self._http.build_request("GET", url, params={"follow": "true"}, timeout=timeout)
        try:
            response = await self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise Unavailable(f"the Kubernetes API ({self.server}) did not answer ({what}): {exc}") from exc
        try:
            if response.status_code >= 400:
                await response.aread()
                raise _error(response.status_code, _status(response.content), what)
            async for chunk in response.aiter_bytes():
                yield chunk
        except httpx.HTTPError as exc:
            raise Unavailable(f"{what} was cut: {exc}") from exc
        finally:
            await response.aclose()

    # -- plumbing -----------------------------------------------------------------------------

    def _ns(self, kind: Kind, namespace: str | None) -> str | None:
        return (namespace or self.namespace) if kind.namespaced else None

    async def _call(self, method: str, url: str, *, what: str, **request: Any) -> Obj:
        """:meth:`_send`, and the object answered."""
        response = await self._send(method, url, what=what, **request)
        parsed: Obj = response.json() if response.content else {}
        return parsed

    async def _send(
        self,
        method: str,
        url: str,
        *,
        what: str,
        body: Obj | None = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> httpx.Response:
        content = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type} if content is not None else None
        try:
            response = await self._http.request(
                method, url, params=dict(params or {}), content=content, headers=headers
            )
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"the Kubernetes API ({self.server}) did not answer ({method} {what}): {exc or type(exc).__name__}",
                retry_after_seconds=1.0,
            ) from exc
        if response.status_code >= 400:
            raise _error(response.status_code, _status(response.content), what)
        return response


def _status(content: bytes) -> Obj:
    try:
        parsed = json.loads(content)
    except ValueError:
        return {"message": content[:500].decode(errors="replace")}
    return parsed if isinstance(parsed, dict) else {}


def _error(code: int, status: Mapping[str, Any], what: str) -> SparkgateError:
    """The platform's error for an API server's ``Status``."""
    message = f"Kubernetes refused {what}: {status.get('message') or status.get('reason') or code}"
    if code == 404:
        return NotFound(message)
    if code == 409:
        return Conflict(message)
    if code == 410:
        return Expired(message)
    if code in (400, 422):
        return BadRequest(message)
    if code == 429 or code >= 500:
        retry = (status.get("details") or {}).get("retryAfterSeconds") or 1.0
        return Unavailable(message, retry_after_seconds=float(retry))
    return SparkgateError(message)  # 401/403: this gateway's credentials or RBAC, not the user's request
