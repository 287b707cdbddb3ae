"""Drivers as Kubernetes Pods (``environments.<env>.provider: kubernetes``).

The provider creates each driver's Pod and Secret (:mod:`sparkgate.clusters.driver_pod` says what
they hold), and keeps the registry from the API alone: driver Pods are discovered by an informer
(:mod:`sparkgate.kube.informer`: LIST, then WATCH; no polling), so a restarted gateway or another
replica sees every driver, its claim and its state.

Claiming a warm Pod is a patch guarded by the resourceVersion this gateway saw: of two gateways
racing for one Pod, the second gets 409 Conflict, reads the Pod again and finds it taken. A Pod
that ends without being asked to (a crash, an eviction, a ``kubectl delete``) is reported to the
cluster manager once, like a local driver's exit. Nodes are watched too: when a node is cordoned
for a drain, its busy drivers take no new session and, after ``kubernetes.drain_grace_seconds``,
leave the PodDisruptionBudget's protection so the drain goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sparkgate.aio import TaskSupervisor
from sparkgate.clusters.base import Driver, DriverSpec, DriverState, ProviderBase
from sparkgate.clusters.driver_pod import (
    BUSY,
    DRAINING_SINCE,
    FINGERPRINT,
    GRACE_SECONDS,
    NAMESPACE,
    POOL,
    PROFILE,
    DriverPods,
    address_of,
    annotation,
    exit_code,
    phase_text,
    selector,
    state_of,
    timestamp,
)
from sparkgate.clusters.leader import Lease
from sparkgate.config import KubernetesSettings, PoolProfile
from sparkgate.errors import Conflict, DriverStartError, NotFound, SparkgateError
from sparkgate.kube.api import NODES, PODS, SECRETS, KubeApi, Obj
from sparkgate.kube.informer import Informer
from sparkgate.kube.lease import KubeLease
from sparkgate.spark.home import version_matches

log = logging.getLogger(__name__)

#: Seconds a starting driver's Pod may go unheard of before it is read directly.
LOOK_AGAIN_SECONDS = 10.0

#: Tries at claiming a warm Pod that keeps changing under the claim (its status, say).
CLAIM_TRIES = 5


class KubernetesProvider(ProviderBase):
    """Starts, claims, lists and stops driver Pods in ``kubernetes.namespace``."""

    name = "kubernetes"

    def __init__(
        self,
        settings: KubernetesSettings,
        *,
        profiles: Mapping[str, PoolProfile] | None = None,
        max_message_bytes: int = 256 * 1024 * 1024,
        reattach_buffer_bytes: int = 96 * 1024 * 1024,
        api: KubeApi | None = None,
    ) -> None:
        self.settings = settings
        #: The Pods and Secrets of drivers, as this gateway's settings make them.
        self.build = DriverPods(
            settings,
            profiles or {},
            max_message_bytes=max_message_bytes,
            reattach_buffer_bytes=reattach_buffer_bytes,
        )
        self._api = api
        self._own_api = api is None
        self.pods: Informer | None = None
        self.adopted: Informer | None = None
        self.nodes: Informer | None = None
        #: Driver Pods on cordoned nodes, released from drain protection after the grace period.
        self._draining: dict[str, asyncio.Task[None]] = {}
        #: Driver Pods this gateway told the cluster manager take no new session (their node is
        #: cordoned), until the node is schedulable again.
        self._drain_told: set[str] = set()
        self._tasks = TaskSupervisor("kubernetes-provider")
        #: Pods this gateway is deleting (their end is not a crash), and starting (not listed yet).
        self._stopping: set[str] = set()
        self._starting: set[str] = set()
        self._exited: set[str] = set()

    @property
    def api(self) -> KubeApi:
        if self._api is None:
            raise SparkgateError("the kubernetes provider is not started")
        return self._api

    def fleet_lease(self, identity: str, on_elected: Callable[[], None]) -> Lease:
        return KubeLease(
            lambda: self.api,
            self.settings.lease_name or f"{self.settings.instance}-fleet",
            identity,
            on_elected=on_elected,
        )

    async def __aenter__(self) -> KubernetesProvider:
        s = self.settings
        if self._api is None:
            self._api = KubeApi.connect(namespace=s.namespace, kubeconfig=s.kubeconfig, context=s.context)
        try:
            self.pods = Informer(self._api, PODS, labels=selector(s.instance), listener=self._pod_event)
            await self.pods.start()
            nodes = Informer(self._api, NODES, listener=self._node_event)
            try:
                await nodes.start()
                self.nodes = nodes
            except SparkgateError as exc:  # (no ClusterRole to read nodes: drains go unseen)
                log.warning("node drains are not watched (drivers are evicted without a grace): %s", exc.message)
            if s.adopt_selector:
                self.adopted = Informer(self._api, PODS, labels=s.adopt_selector)
                await self.adopted.start()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._tasks.close()
        for informer in (self.pods, self.adopted, self.nodes):
            if informer is not None:
                await informer.close()
        if self._own_api and self._api is not None:
            await self._api.aclose()
            self._api = None

    # -- the provider -------------------------------------------------------------------------

    def fingerprint(self, spec: DriverSpec) -> str:
        return self.build.fingerprint(spec)

    def check_spec(self, spec: DriverSpec) -> None:
        """A profile that names a Spark version runs an image tagged with it."""
        image = self.build.pod_settings(spec.profile).image
        name, _, tag = image.rpartition(":")
        if not spec.spark_version or ("/" in tag or not name):
            return
        if not version_matches(spec.spark_version, tag):
            raise DriverStartError(
                f"profile {spec.profile!r} needs Spark {spec.spark_version}, but its driver image {image} is "
                f"tagged {tag}; set pool.profiles.{spec.profile}.pod.image to a Spark {spec.spark_version} image"
            )

    async def start_driver(self, spec: DriverSpec) -> Driver:
        self.check_spec(spec)
        name = f"sparkgate-driver-{secrets.token_hex(5)}"
        self._starting.add(name)  # (not adopted by a reconcile while it starts here)
        try:
            return await self._start(name, spec)
        finally:
            self._starting.discard(name)

    async def _start(self, name: str, spec: DriverSpec) -> Driver:
        pod = await self.api.create(PODS, self.build.pod(name, spec))
        uid = pod["metadata"]["uid"]
        try:
            await self.api.create(SECRETS, self.build.secret(pod, spec))
            return await self._wait_ready(name, uid)
        except BaseException:
            self._stopping.add(name)
            try:
                await asyncio.shield(self.api.delete(PODS, name, uid=uid, grace_seconds=0))
            except Exception as exc:
                log.warning("could not delete driver Pod %s after its start failed: %s", name, exc)
            raise

    async def _wait_ready(self, name: str, uid: str) -> Driver:
        assert self.pods is not None
        timeout = self.settings.startup_timeout_seconds

        seen = False

        def settled() -> bool:  # (the watch may show the new Pod a little after its create)
            nonlocal seen
            obj = self.pods.objects.get(uid) if self.pods else None
            seen = seen or obj is not None
            return (seen and obj is None) or (obj is not None and state_of(obj) is not DriverState.WARMING)

        deadline = time.monotonic() + timeout
        while not (ok := await self.pods.wait_for(settled, min(LOOK_AGAIN_SECONDS, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                break
            # Nothing heard for a while: read the Pod itself (a watch may stall without ending).
            with contextlib.suppress(SparkgateError):
                found = await self.api.get(PODS, name)
                if found["metadata"].get("uid") == uid:
                    await self.pods.observe(found)
        obj = self.pods.objects.get(uid)
        if obj is not None and state_of(obj) is DriverState.READY:
            log.info("driver Pod %s is ready at %s", name, address_of(obj))
            return self._driver(obj)
        why = (
            f"not ready after {timeout:g}s (kubernetes.startup_timeout_seconds)"
            if not ok
            else "deleted while starting"
            if obj is None
            else f"it ended ({phase_text(obj)})"
        )
        tail = ""
        try:
            tail = (await self.api.log(name, tail_lines=20)).strip()
        except SparkgateError:
            pass
        raise DriverStartError(
            f"driver Pod {name} in {self.api.namespace} did not start: {why}"
            + (
                f"; last lines of its log:\n{tail}"
                if tail
                else f"; see kubectl -n {self.api.namespace} describe pod {name}"
            )
        )

    async def discard(self, driver: Driver) -> None:
        """Delete a dead driver's Pod only once it has ended: one this gateway cannot reach may
        serve the others (their own probes judge it; the leader stops it when idle)."""
        obj = self.pods.objects.get(driver.labels.get("uid", "")) if self.pods is not None else None
        if obj is not None and state_of(obj) is DriverState.DEAD:
            await self.stop_driver(driver)

    async def stop_driver(self, driver: Driver) -> None:
        if self.pods is None or driver.external:
            return  # (a server run by others: used, never stopped)
        self._stopping.add(driver.id)
        uid = driver.labels.get("uid")
        await self.api.delete(PODS, driver.id, uid=uid, grace_seconds=GRACE_SECONDS)
        gone = await self.pods.wait_for(lambda: uid not in self.pods.objects if self.pods else True, GRACE_SECONDS + 15)
        if not gone:
            log.warning("driver Pod %s is still being deleted after %ds", driver.id, GRACE_SECONDS + 15)

    async def reap(self) -> list[str]:
        """Driver Pods no gateway is starting that are still not ready twice the start timeout
        after their creation (their start was cut: a gateway died between the Pod and its
        Secret), or that ended and are still there (created over a minute ago)."""
        if self.pods is None:
            return []
        now = time.time()
        stuck_after = 2 * self.settings.startup_timeout_seconds
        reaped = []
        for obj in list(self.pods.objects.values()):
            meta = obj["metadata"]
            age = now - timestamp(meta.get("creationTimestamp"))
            state = state_of(obj)
            stuck = state is DriverState.WARMING and age > stuck_after and meta["name"] not in self._starting
            ended = state is DriverState.DEAD and not meta.get("deletionTimestamp") and age > 60
            if stuck or ended:
                self._stopping.add(meta["name"])
                await self.api.delete(PODS, meta["name"], uid=meta["uid"], grace_seconds=0)
                reaped.append(meta["name"])
        return reaped

    async def list_drivers(self) -> list[Driver]:
        drivers = []
        for obj in list(self.pods.objects.values()) if self.pods is not None else []:
            if obj["metadata"]["name"] in self._starting:
                continue
            d = self._driver(obj)
            if d.state is DriverState.READY and self._cordoned(obj):
                d.state = DriverState.DRAINING  # (its node is being drained: no new session)
            drivers.append(d)
        if self.adopted is not None:
            drivers += [self._adopted(o) for o in self.adopted.objects.values() if annotation(o, NAMESPACE)]
        return drivers

    async def claim(self, driver: Driver, namespace: str) -> str:
        if driver.external:
            return driver.namespace  # (a server run by others serves the namespace it names)
        obj = self.pods.by_name(driver.id) if self.pods is not None else None
        for _ in range(CLAIM_TRIES):
            if obj is None:
                try:
                    obj = await self.api.get(PODS, driver.id)
                except NotFound:
                    return ""  # (gone: nobody holds it)
            holder = annotation(obj, NAMESPACE)
            if holder or state_of(obj) is DriverState.DEAD:
                return holder  # (claimed already; or going: nobody's)
            patch = {
                "metadata": {
                    "resourceVersion": obj["metadata"]["resourceVersion"],
                    "labels": {POOL: "false", BUSY: "true"},
                    "annotations": {NAMESPACE: namespace},
                }
            }
            try:
                await self.api.patch(PODS, driver.id, patch)
            except Conflict:
                obj = None  # changed since it was read: read it again
                continue
            except NotFound:
                return ""  # (gone: nobody holds it)
            return namespace
        raise Conflict(f"driver Pod {driver.id} kept changing while it was claimed for {namespace}")

    # -- from Pods to drivers -----------------------------------------------------------------

    def _cordoned(self, obj: Obj) -> bool:
        node = (obj.get("spec") or {}).get("nodeName")
        if not node or self.nodes is None:
            return False
        n = self.nodes.by_name(node)
        return bool(n is not None and (n.get("spec") or {}).get("unschedulable"))

    def _driver(self, obj: Obj) -> Driver:
        meta = obj["metadata"]
        labels = meta.get("labels") or {}
        name = meta["name"]
        return Driver(
            id=name,
            address=address_of(obj),
            provider=self.name,
            namespace=annotation(obj, NAMESPACE),
            state=state_of(obj),
            started_at=timestamp(meta.get("creationTimestamp")),
            profile=labels.get(PROFILE, "default"),
            log_path=f"kubectl -n {meta.get('namespace', self.settings.namespace)} logs {name}",
            labels={"uid": meta["uid"]},
            token=self.build.token(name),
            fingerprint=annotation(obj, FINGERPRINT),
        )

    def _adopted(self, obj: Obj) -> Driver:
        d = self._driver(obj)
        d.token = None  # (its own auth, if any, is its operator's)
        d.fingerprint = ""
        d.external = True
        return d

    def _pod_event(self, kind: str, obj: Obj) -> None:
        """A driver Pod that ended without being asked to (crash, eviction, deleted by hand) is
        reported once (``on_exit``); one this gateway is deleting is not."""
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            told = name in self._exited or name in self._stopping
            self._exited.discard(name)
            self._stopping.discard(name)
            self._drain_told.discard(name)
            if told:
                return
        elif state_of(obj) is not DriverState.DEAD or name in self._exited:
            return
        else:
            self._exited.add(name)
            if name in self._stopping:
                return
        if self.on_exit is not None:
            self.on_exit(name, exit_code(obj))

    # -- node drains ---------------------------------------------------------------------------

    def _node_event(self, kind: str, node: Obj) -> None:
        """A node cordoned (``kubectl drain`` begins so): its drivers take no new session (a warm
        one is stopped as outdated, and the pool refills elsewhere), and its busy ones leave the
        PodDisruptionBudget's protection after ``kubernetes.drain_grace_seconds``."""
        if kind == "DELETED" or self.pods is None:
            return
        name = node["metadata"]["name"]
        if not (node.get("spec") or {}).get("unschedulable"):
            self._undrained(name)
            return
        for pod in list(self.pods.objects.values()):
            meta = pod["metadata"]
            if (pod.get("spec") or {}).get("nodeName") != name:
                continue
            if meta["name"] not in self._drain_told:
                self._drain_told.add(meta["name"])
                if self.on_drain is not None:
                    self.on_drain(meta["name"], f"its node {name} is being drained")
            busy = (meta.get("labels") or {}).get(BUSY) == "true"
            if busy and meta["name"] not in self._draining:
                since = annotation(pod, DRAINING_SINCE)
                self._draining[meta["name"]] = self._tasks.spawn(
                    f"release-{meta['name']}", self._release(meta["name"], timestamp(since) if since else None)
                )

    def _undrained(self, node: str) -> None:
        """The node uncordoned: its drivers take new sessions again, their grace is no longer
        counting (a later drain gets one of its own), and those a team holds are protected again
        (busy), also when the grace had released them."""
        assert self.pods is not None
        for pod in list(self.pods.objects.values()):
            meta = pod["metadata"]
            if (pod.get("spec") or {}).get("nodeName") != node:
                continue
            task = self._draining.pop(meta["name"], None)
            if task is not None:
                task.cancel()
            if meta["name"] in self._drain_told or annotation(pod, DRAINING_SINCE):
                self._drain_told.discard(meta["name"])
                if self.on_undrain is not None:
                    self.on_undrain(meta["name"])
            claimed = bool(annotation(pod, NAMESPACE))
            unprotected = claimed and (meta.get("labels") or {}).get(BUSY) != "true"
            # (A release cancelled while its patch was in flight may land after this copy was
            # read: when one was under way, the label is written whatever the copy says.)
            if task is not None or annotation(pod, DRAINING_SINCE) or unprotected:
                self._tasks.spawn(f"undrain-{meta['name']}", self._forget_drain(meta["name"], protect=claimed))

    async def _forget_drain(self, pod: str, *, protect: bool) -> None:
        patch: dict[str, Any] = {"metadata": {"annotations": {DRAINING_SINCE: None}}}
        if protect:  # (a team holds it: busy, in the PodDisruptionBudget)
            patch["metadata"]["labels"] = {BUSY: "true"}
        with contextlib.suppress(SparkgateError):  # (gone, or the API server busy: the next node event sees it)
            await self.api.patch(PODS, pod, patch)

    async def _release(self, pod: str, since: float | None) -> None:
        """Let the drain take this driver once the grace period is over (its sessions had it).

        The grace runs from when a gateway first saw the drain, written on the Pod: a gateway that
        starts, or restarts, during the drain does not give the driver a grace of its own."""
        grace = self.settings.drain_grace_seconds
        try:
            if since is None:
                since = time.time()
                stamp = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                with contextlib.suppress(SparkgateError):  # (not written: this gateway's clock counts)
                    await self.api.patch(PODS, pod, {"metadata": {"annotations": {DRAINING_SINCE: stamp}}})
            await asyncio.sleep(max(0.0, since + grace - time.time()))
            while True:
                try:
                    await self.api.patch(PODS, pod, {"metadata": {"labels": {BUSY: "false"}}})
                except NotFound:
                    return  # (gone already)
                except SparkgateError as exc:  # (the API server busy or unreachable: the drain waits)
                    log.warning("driver Pod %s not released to the node drain yet: %s", pod, exc.message)
                    await asyncio.sleep(1.0)
                    continue
                log.warning(
                    "driver Pod %s released to the node drain after %gs (kubernetes.drain_grace_seconds)", pod, grace
                )
                return
        finally:
            self._draining.pop(pod, None)
