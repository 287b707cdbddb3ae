""":class:`FakeKubeApi`: a Kubernetes API server on loopback, for tests of code that talks to one.

    async with FakeKubeApi() as api:
        async with lightkube.AsyncClient(config=api.kubeconfig()) as client:
            await client.create(Pod(...), namespace="drivers")

Real clients work against it (lightkube, or anything else speaking the REST API over HTTP/1.1):
URLs, verbs, ``Status`` errors, list envelopes and watch streams are the real server's. The state
and semantics are :mod:`.store`'s, validation :mod:`.validation`'s, patches :mod:`.patches`'.

For tests: :attr:`FakeKubeApi.seen` (every ``(api group, resource[/subresource], verb)`` served,
with RBAC's verb names, to check against a Role), :meth:`~FakeKubeApi.objects`,
:meth:`~FakeKubeApi.put_object` and :meth:`~FakeKubeApi.delete_object` (direct writes, with watch
events like any write), :meth:`~FakeKubeApi.wait_for`, and faults:
:meth:`~FakeKubeApi.expire_history` (the next watch from an older ``resourceVersion`` gets 410),
:meth:`~FakeKubeApi.break_watches` (every open watch stream cut mid-body),
:meth:`~FakeKubeApi.fail_next` (the next matching requests answered with an error).

What it does not prove: authentication and authorization (any request is allowed; compare
:attr:`seen` with the RBAC rules instead), TLS, API discovery, admission (defaults beyond a Pod's
basic ones, quotas, webhooks), priority and fairness, HTTP/2, and timing: the fake answers at once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from lightkube import KubeConfig
from lightkube.config.models import Cluster, User

from sparkgate.aio import TaskSupervisor
from sparkgate.testing.kube import patches
from sparkgate.testing.kube.http import HttpServer, Request, Response
from sparkgate.testing.kube.resources import PODS, ResourceType, find, resource_named
from sparkgate.testing.kube.selectors import Selector
from sparkgate.testing.kube.status import ApiStatusError, bad_request, generic
from sparkgate.testing.kube.store import ObjectStore
from sparkgate.testing.kube.streams import NodeAgent, error_event, follow_log, json_bytes, read_tail, watch_events
from sparkgate.testing.kube.validation import KUBERNETES_VERSION
from sparkgate.testing.kube.watch import DELETED

log = logging.getLogger(__name__)

Obj = dict[str, Any]


@dataclass(frozen=True)
class _Target:
    """What a request's URL and method name."""

    resource: ResourceType
    namespace: str | None
    name: str | None
    sub: str
    verb: str


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


def _int(query: dict[str, str], key: str) -> int | None:
    value = query.get(key)
    if value in (None, ""):
        return None
    try:
        return int(str(value))
    except ValueError:
        raise bad_request(f"{key}: invalid integer {value!r}") from None


class FakeKubeApi:
    """The fake API server; ``async with`` it in the test's event loop (it serves from that loop).

    ``port``: 0 picks a free one (:attr:`url`). ``history_size``: changes kept for watches to
    resume from (a watch from an older ``resourceVersion`` gets 410 Expired).
    ``bookmark_interval``: seconds between BOOKMARK events on a watch that asks for them (a real
    server sends one about every minute). ``kubernetes_version``: whose OpenAPI schemas built-in
    kinds are checked against.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        history_size: int = 1000,
        bookmark_interval: float = 1.0,
        kubernetes_version: str = KUBERNETES_VERSION,
    ) -> None:
        self.store = ObjectStore(history_size=history_size, kubernetes_version=kubernetes_version)
        #: Seconds between BOOKMARK events on a watch that asked for them (a real server: about 60).
        self.bookmark_interval = bookmark_interval
        #: Every ``(api group, resource or resource/subresource, RBAC verb)`` served so far.
        self.seen: set[tuple[str, str, str]] = set()
        self._failures: dict[tuple[str, str], deque[ApiStatusError]] = {}
        self._nodes: dict[str, NodeAgent] = {}
        self._http = HttpServer(self._handle, host, port, name="fake-kube-api")
        self._tasks = TaskSupervisor("fake-kube-api")

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> FakeKubeApi:
        await self._http.start()
        self._tasks.spawn("garbage-collector", self.store.collect_garbage())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.store.close_watches()
        await self._http.close()
        await self._tasks.close()

    @property
    def url(self) -> str:
        return f"http://{self._http.host}:{self._http.port}"

    def kubeconfig(self, namespace: str = "default") -> KubeConfig:
        """A lightkube configuration for this server (an empty user: no authentication).

        Not ``KubeConfig.from_server(url)``: it has no user, which lightkube 1.0's clients refuse
        ("Missing user")."""
        return KubeConfig.from_one(cluster=Cluster(server=self.url), user=User(), namespace=namespace)

    def write_kubeconfig(self, path: str | Path, namespace: str = "default") -> Path:
        """Write a kubeconfig file for this server (for ``KubeConfig.from_file`` or ``KUBECONFIG``)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
            "current-context": "fake",
        }
        target = Path(path)
        target.write_text(yaml.safe_dump(config, sort_keys=False))
        return target

    # -- for tests -------------------------------------------------------------------------------

    def objects(self, resource: str | ResourceType, namespace: str | None = None) -> list[Obj]:
        """Copies of the stored objects of a kind (``"pods"`` or ``"Pod"``), in one namespace or all."""
        return self.store.select(resource_named(resource), namespace)

    def get_object(self, resource: str | ResourceType, name: str, namespace: str = "default") -> Obj | None:
        return self.store.find(resource_named(resource), namespace, name)

    def put_object(self, obj: Obj) -> Obj:
        """Create or replace ``obj`` (status included), validated, with the watch event a write makes."""
        return self.store.put(obj)

    def delete_object(
        self,
        resource: str | ResourceType,
        name: str,
        namespace: str = "default",
        *,
        grace_period: int | None = None,
        propagation: str | None = None,
    ) -> Obj:
        """Delete as a client would (graceful for a Pod on an attached kubelet's node, finalizers kept)."""
        return self.store.delete(
            resource_named(resource), namespace, name, grace_period=grace_period, propagation=propagation
        )

    async def wait_for(
        self,
        resource: str | ResourceType,
        name: str,
        namespace: str = "default",
        condition: Callable[[Obj | None], bool] = lambda obj: obj is not None,
        *,
        timeout: float = 10.0,
    ) -> Obj | None:
        """The object once ``condition`` holds for it (None: it does not exist); TimeoutError if it
        does not within ``timeout`` seconds."""
        res = resource_named(resource)
        ns = namespace if res.namespaced else None
        selector = Selector.parse(res, fields=f"metadata.name={name}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with self.store.watch(res, ns, selector) as watch:
            current = self.store.find(res, ns, name)
            while not condition(current):
                event = await watch.next(max(0.0, deadline - loop.time()))
                if event is None:
                    raise TimeoutError(
                        f"{res} {name!r} did not reach the condition in {timeout}s; last seen: {current}"
                    )
                current = None if event.type == DELETED else event.object
            return current

    def expire_history(self) -> None:
        """Forget the change history: the next watch from any older ``resourceVersion`` gets 410 Expired."""
        self.store.expire_history()

    def break_watches(self) -> int:
        """Cut every open watch stream abruptly (the chunked body unfinished); how many were cut."""
        return self._http.abort_streams()

    @property
    def open_watches(self) -> int:
        """Watch streams being served over HTTP now."""
        return self._http.streams

    def fail_next(
        self, verb: str, resource: str, code: int = 500, *, times: int = 1, message: str | None = None
    ) -> None:
        """Answer the next ``times`` requests of ``verb`` on ``resource`` (``"pods"``, ``"pods/log"``)
        with a ``Status`` of ``code`` (its reason as the real server names it)."""
        error = generic(code, message)
        self._failures.setdefault((verb, resource), deque()).extend([error] * times)

    # -- kubelets --------------------------------------------------------------------------------

    def attach_node(self, name: str, agent: NodeAgent) -> None:
        """A kubelet runs the Pods bound to ``name``: their deletion waits for it, their logs come from it."""
        self._nodes[name] = agent
        self.store.graceful_nodes.add(name)

    def detach_node(self, name: str) -> None:
        self._nodes.pop(name, None)
        self.store.graceful_nodes.discard(name)

    # -- serving ---------------------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        try:
            return await self._route(request)
        except ApiStatusError as exc:
            return Response(exc.code, json_bytes(exc.status()))
        except Exception as exc:  # a bug of the fake: say so to the client, with the traceback in the log
            log.exception("fake API server failed on %s %s", request.method, request.path)
            return Response(500, json_bytes(generic(500, f"fake API server error: {exc!r}").status()))

    async def _route(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        if request.method == "GET" and parts in (["version"], ["healthz"], ["readyz"], ["livez"]):
            if parts == ["version"]:
                major, minor = self.store.kubernetes_version.split(".")[:2]
                return Response(
                    200, json_bytes({"major": major, "minor": minor, "gitVersion": f"v{major}.{minor}.0-fake"})
                )
            return Response(200, b"ok", content_type="text/plain")
        if parts[:1] == ["api"] and len(parts) >= 3:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiStatusError(404, "NotFound", "the server could not find the requested resource")
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        resource = find(group, version, rest[0])
        if resource is None or len(rest) > 3 or (namespace is not None and not resource.namespaced):
            raise ApiStatusError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else ""
        if sub and sub not in resource.subresources:
            raise ApiStatusError(404, "NotFound", "the server could not find the requested resource")
        verb = self._verb(request, name)
        self.seen.add((group, f"{resource.plural}/{sub}" if sub else resource.plural, verb))
        queued = self._failures.get((verb, f"{resource.plural}/{sub}" if sub else resource.plural))
        if queued:
            raise queued.popleft()
        if resource.namespaced and namespace is None and verb not in ("list", "watch"):
            raise ApiStatusError(405, "MethodNotAllowed", f"{verb} of {resource.plural} needs a namespace")
        return await self._serve(request, _Target(resource, namespace, name, sub, verb))

    @staticmethod
    def _verb(request: Request, name: str | None) -> str:
        method = request.method
        if method == "GET":
            if name is not None:
                return "get"
            return "watch" if _flag(request.query.get("watch")) else "list"
        verbs = {"POST": "create", "PUT": "update", "PATCH": "patch"}
        if method in verbs and (name is not None or method == "POST"):
            return verbs[method]
        if method == "DELETE":
            return "delete" if name is not None else "deletecollection"
        raise ApiStatusError(405, "MethodNotAllowed", f"{method} is not allowed here")

    def _body(self, request: Request) -> Any:
        try:
            if request.headers.get("content-type", "").split(";")[0].strip() == patches.APPLY:
                return yaml.safe_load(request.body)
            return json.loads(request.body) if request.body else None
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(f"couldn't decode the body: {exc}") from None

    async def _serve(self, request: Request, target: _Target) -> Response:
        resource, namespace, sub, verb = target.resource, target.namespace, target.sub, target.verb
        name = target.name
        q = request.query
        store = self.store
        dry_run = q.get("dryRun") == "All"
        if verb == "get":
            if sub == "log":
                return await self._log(namespace or "", str(name), q)
            return Response(200, json_bytes(store.get(resource, namespace, str(name))))
        if verb in ("list", "watch"):
            selector = Selector.parse(resource, q.get("labelSelector"), q.get("fieldSelector"))
            if verb == "watch":
                return self._watch(resource, namespace, selector, q)
            return self._list(resource, namespace, selector, q)
        if verb == "create":
            return Response(201, json_bytes(store.create(resource, namespace, self._body(request), dry_run=dry_run)))
        if verb == "update":
            obj = store.update(resource, namespace, str(name), self._body(request), subresource=sub, dry_run=dry_run)
            return Response(200, json_bytes(obj))
        if verb == "patch":
            patch_type = request.headers.get("content-type", "").split(";")[0].strip()
            if patch_type not in patches.PATCH_TYPES:
                raise ApiStatusError(
                    415, "UnsupportedMediaType", f"the body of the request was in an unknown format - {patch_type}"
                )
            existed = store.find(resource, namespace, str(name)) is not None
            if not existed and patch_type == patches.APPLY:
                # An apply that creates is authorized as a create too (the API server checks both).
                self.seen.add((resource.group, resource.plural, "create"))
            obj = store.patch(
                resource,
                namespace,
                str(name),
                patch_type,
                self._body(request),
                subresource=sub,
                field_manager=q.get("fieldManager"),
                dry_run=dry_run,
            )
            return Response(200 if existed else 201, json_bytes(obj))
        options = self._delete_options(request)
        if verb == "deletecollection":
            selector = Selector.parse(resource, q.get("labelSelector"), q.get("fieldSelector"))
            items = store.delete_collection(resource, namespace, selector, **options)
            return Response(200, json_bytes(self._envelope(resource, items)))
        obj = store.delete(resource, namespace, str(name), **options)
        if store.find(resource, namespace, str(name)) is not None:
            return Response(200, json_bytes(obj))
        details = {"name": name, "kind": resource.plural, "uid": obj["metadata"]["uid"]}
        if resource.group:
            details["group"] = resource.group
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
        return Response(200, json_bytes(body))

    def _delete_options(self, request: Request) -> dict[str, Any]:
        body = self._body(request) or {}
        if not isinstance(body, dict):
            raise bad_request("DeleteOptions must be an object")
        grace = body.get("gracePeriodSeconds", _int(request.query, "gracePeriodSeconds"))
        propagation = body.get("propagationPolicy", request.query.get("propagationPolicy"))
        if body.get("orphanDependents") is True or _flag(request.query.get("orphanDependents")):
            propagation = "Orphan"
        dry_run = "All" in (body.get("dryRun") or []) or request.query.get("dryRun") == "All"
        return {
            "grace_period": grace,
            "preconditions": body.get("preconditions"),
            "propagation": propagation,
            "dry_run": dry_run,
        }

    def _envelope(self, resource: ResourceType, items: list[Obj], **meta: Any) -> Obj:
        if not resource.custom:  # built-in lists carry no kind/apiVersion on their items
            for item in items:
                item.pop("kind", None)
                item.pop("apiVersion", None)
        return {
            "kind": resource.list_kind,
            "apiVersion": resource.api_version,
            "metadata": {"resourceVersion": self.store.resource_version, **meta},
            "items": items,
        }

    def _list(self, resource: ResourceType, namespace: str | None, selector: Selector, q: dict[str, str]) -> Response:
        items = self.store.select(resource, namespace, selector)
        token = q.get("continue")
        if token:
            try:
                after = tuple(json.loads(base64.urlsafe_b64decode(token)))
            except ValueError:
                raise ApiStatusError(410, "Expired", "the provided continue parameter is not valid") from None
            items = [o for o in items if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > after]
        meta: dict[str, Any] = {}
        limit = _int(q, "limit")
        if limit and len(items) > limit:
            last = items[limit - 1]["metadata"]
            position = json.dumps([last.get("namespace", ""), last["name"]]).encode()
            meta = {"continue": base64.urlsafe_b64encode(position).decode(), "remainingItemCount": len(items) - limit}
            items = items[:limit]
        return Response(200, json_bytes(self._envelope(resource, items, **meta)))

    def _watch(self, resource: ResourceType, namespace: str | None, selector: Selector, q: dict[str, str]) -> Response:
        try:
            watch = self.store.watch(resource, namespace, selector, q.get("resourceVersion"))
        except ApiStatusError as exc:
            if exc.code != 410:
                raise
            return Response(200, stream=error_event(exc))
        interval = self.bookmark_interval if _flag(q.get("allowWatchBookmarks")) else None
        events = watch_events(self.store, watch, timeout=_int(q, "timeoutSeconds"), bookmark_interval=interval)
        return Response(200, stream=events, on_disconnect=watch.close)

    async def _log(self, namespace: str, name: str, q: dict[str, str]) -> Response:
        pod = self.store.get(PODS, namespace, name)
        containers = [c["name"] for c in pod["spec"].get("containers", [])]
        container = q.get("container") or (containers[0] if len(containers) == 1 else "")
        if not container:
            raise bad_request(f"a container name must be specified for pod {name}, choose one of: {containers}")
        if container not in containers:
            raise bad_request(f"container {container} is not valid for pod {name}")
        agent = self._nodes.get(pod["spec"].get("nodeName", ""))
        uid = pod["metadata"]["uid"]
        path = agent.log_path(uid, container) if agent is not None else None
        if agent is None or path is None:
            raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating')
        text, offset = await asyncio.to_thread(read_tail, path, _int(q, "tailLines"))
        if not _flag(q.get("follow")):
            return Response(200, text, content_type="text/plain")
        follow = follow_log(text, path, offset, lambda: agent.running(uid, container))
        return Response(200, stream=follow, content_type="text/plain")
