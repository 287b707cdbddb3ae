""":class:`FakeKubelet`: runs the Pods of a :class:`~.apiserver.FakeKubeApi` as local processes.

    async with FakeKubeApi() as api, FakeKubelet(api, fake_connect_runner) as kubelet:
        ...  # a Pod created through the API runs; its IP answers on its container's port

A kubelet is a node: it registers a ``Node`` object, takes the Pods bound to its node and, acting
as the scheduler too, binds to itself the unbound ones that match its ``selector`` (a label
selector, and optionally one namespace) while its node is schedulable. Each Pod is a
:class:`~.pods.PodWorker`: see :mod:`.pods` for what a Pod's lifecycle models and does not.

Each Pod gets its own IP from ``127.0.0.0/8`` (127.0.0.2, 127.0.0.3, ...: Linux routes all of it to
loopback), so every Pod can listen on the same port, as in a cluster. Addresses are never reused
within a process, so a connection to a dead Pod never reaches a newer one.

Nothing outlives the kubelet: closing it kills every process it started; each process is also
started with ``PR_SET_PDEATHSIG`` (killed when the test process dies, even by SIGKILL) in a
process group of its own (signals reach its children too).

For tests: :meth:`~FakeKubelet.kill` (a container crashing), :meth:`~FakeKubelet.cordon`
(``spec.unschedulable``, as ``kubectl drain`` starts), :meth:`~FakeKubelet.ip_of`.

What it does not prove: scheduling (resources, affinity, taints: the first kubelet whose selector
matches binds the Pod), networking between nodes (every Pod is on this machine's loopback;
Services have no endpoints and no cluster IPs), container isolation (the process runs as the
test's user, with the test's environment under the container's), eviction, and node pressure.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

from sparkgate.aio import TaskSupervisor
from sparkgate.testing.kube.apiserver import FakeKubeApi
from sparkgate.testing.kube.defaults import now
from sparkgate.testing.kube.pods import PodEnvironment, PodWorker
from sparkgate.testing.kube.resources import NODES, PODS
from sparkgate.testing.kube.runners import Runner, fake_connect_runner
from sparkgate.testing.kube.selectors import EVERYTHING, Selector
from sparkgate.testing.kube.status import ApiStatusError
from sparkgate.testing.kube.watch import DELETED, Watch

log = logging.getLogger(__name__)

Obj = dict[str, Any]

_LOOPBACK = int(ipaddress.IPv4Address("127.0.0.0"))
_pod_ips = itertools.count(2)


def allocate_pod_ip() -> str:
    """The next unused loopback address of this process (127.0.0.2 first)."""
    n = next(_pod_ips)
    if n >= 2**24 - 1:
        raise RuntimeError("no loopback address left for another Pod")
    return str(ipaddress.IPv4Address(_LOOPBACK + n))


class FakeKubelet:
    """A node running the Pods of ``api`` as local processes; ``async with`` it after the API server.

    ``runner``: what runs for each container (:mod:`.runners`). ``node_name``: its Node; Pods bound
    to it run here (give each kubelet of one API server its own). ``selector`` (a label selector)
    and ``namespace``: the unbound Pods it binds to itself (None: any). ``probe_interval``: seconds
    between readiness probes at most (a Pod's ``periodSeconds`` when shorter; 0.2 s keeps tests
    fast where the real default, 10 s, would not). ``retry_interval``: seconds between attempts to
    start a Pod whose Secret or ConfigMap is missing.
    """

    def __init__(
        self,
        api: FakeKubeApi,
        runner: Runner = fake_connect_runner,
        *,
        node_name: str = "fake-node-1",
        selector: str | None = None,
        namespace: str | None = None,
        node_labels: dict[str, str] | None = None,
        probe_interval: float = 0.2,
        retry_interval: float = 0.2,
    ) -> None:
        self.api = api
        self.node_name = node_name
        #: Unbound Pods this kubelet takes (a label selector; all when None), in ``namespace`` if set.
        self.selector = Selector.parse(PODS, labels=selector) if selector else EVERYTHING
        self.namespace = namespace
        self.node_labels = node_labels or {}
        self._tasks = TaskSupervisor(f"kubelet {node_name}")
        self._workers: dict[str, PodWorker] = {}
        #: Workers of Pods gone from the API, still stopping.
        self._stopping: set[PodWorker] = set()
        self._watch: Watch | None = None
        self._root: Path | None = None
        self._runner = runner
        self._probe_interval = probe_interval
        self._retry_interval = retry_interval

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> FakeKubelet:
        self._root = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=f"sparkgate-kubelet-{self.node_name}-"))
        self._register_node()
        self.api.attach_node(self.node_name, self)
        self._watch = self.api.store.watch(PODS)  # registered now: no Pod created from here on is missed
        self._tasks.spawn("pods", self._follow(self._watch))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.api.detach_node(self.node_name)
        if self._watch is not None:
            self._watch.close()
        await self._tasks.close()
        workers = {*self._workers.values(), *self._stopping}
        self._workers, self._stopping = {}, set()
        await asyncio.gather(*(w.stop() for w in workers))
        if self._root is not None:
            await asyncio.to_thread(shutil.rmtree, self._root, True)

    def _register_node(self) -> None:
        store = self.api.store
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {"kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux", **self.node_labels},
            },
            "spec": {},
        }
        with contextlib.suppress(ApiStatusError):  # already registered (a kubelet restarted)
            store.create(NODES, None, node)
        stamp = now()
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "fake kubelet is posting ready status",
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp,
        }
        addresses = [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": self.node_name}]

        def post(obj: Obj) -> None:
            obj["status"] = {"conditions": [ready], "addresses": addresses}

        store.modify(NODES, None, self.node_name, post, subresource="status")

    # -- for tests -------------------------------------------------------------------------------

    def _worker(self, name: str, namespace: str) -> PodWorker | None:
        return next((w for w in self._workers.values() if (w.name, w.namespace) == (name, namespace)), None)

    def ip_of(self, name: str, namespace: str = "default") -> str | None:
        worker = self._worker(name, namespace)
        return worker.ip or None if worker is not None else None

    def kill(self, name: str, namespace: str = "default", sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the Pod's processes (by default: a crash; the Pod stays, its container terminated)."""
        worker = self._worker(name, namespace)
        if worker is None:
            raise KeyError(f"pod {namespace}/{name} does not run on {self.node_name}")
        worker.kill(sig)

    def cordon(self, unschedulable: bool = True) -> Obj | None:
        """Mark this node unschedulable (``kubectl cordon``): it takes no new Pod; those running stay."""

        def mark(node: Obj) -> None:
            if unschedulable:
                node.setdefault("spec", {})["unschedulable"] = True
            else:
                node.get("spec", {}).pop("unschedulable", None)

        return self.api.store.modify(NODES, None, self.node_name, mark)

    def uncordon(self) -> Obj | None:
        """Schedulable again: the Pods waiting for a node are looked at again, as a scheduler retries."""
        node = self.cordon(False)
        for pod in self.api.store.select(PODS):
            self._consider(pod)
        return node

    # -- NodeAgent (what the API server asks) ---------------------------------------------------

    def log_path(self, pod_uid: str, container: str) -> Path | None:
        worker = self._workers.get(pod_uid)
        if worker is None or container not in worker.containers or not worker.containers[container].started:
            return None
        return worker.containers[container].log

    def running(self, pod_uid: str, container: str) -> bool:
        worker = self._workers.get(pod_uid)
        if worker is None or container not in worker.containers:
            return False
        c = worker.containers[container]
        return c.running and (c.child is None or c.child.returncode is None)

    # -- the Pods --------------------------------------------------------------------------------

    def _takes(self, pod: Obj) -> bool:
        bound = pod.get("spec", {}).get("nodeName")
        if bound:
            return bool(bound == self.node_name)
        if self.namespace is not None and pod["metadata"]["namespace"] != self.namespace:
            return False
        node = self.api.store.find(NODES, None, self.node_name) or {}
        return not node.get("spec", {}).get("unschedulable") and self.selector.matches(pod)

    def _environment(self) -> PodEnvironment:
        assert self._root is not None
        return PodEnvironment(
            store=self.api.store,
            tasks=self._tasks,
            runner=self._runner,
            node_name=self.node_name,
            root=self._root,
            allocate_ip=allocate_pod_ip,
            probe_interval=self._probe_interval,
            retry_interval=self._retry_interval,
        )

    async def _follow(self, watch: Watch) -> None:
        with watch:
            async for event in watch:
                if event.type == DELETED:
                    worker = self._workers.pop(event.object["metadata"]["uid"], None)
                    if worker is not None:
                        self._stopping.add(worker)
                        self._tasks.spawn(f"stop {worker.key}", self._stop(worker))
                else:
                    self._consider(event.object)

    def _consider(self, pod: Obj) -> None:
        """Start a Pod this kubelet takes; terminate one being deleted."""
        worker = self._workers.get(pod["metadata"]["uid"])
        deleting = pod["metadata"].get("deletionTimestamp")
        if worker is None:
            if not self._takes(pod):
                return
            worker = self._workers[pod["metadata"]["uid"]] = PodWorker(pod, self._environment())
            if deleting:  # deleted before it ever ran here
                self._tasks.spawn(f"terminate {worker.key}", worker.terminate(0))
            else:
                self._tasks.spawn(f"pod {worker.key}", self._run(worker))
        elif deleting and not worker.terminating:
            grace = float(pod["metadata"].get("deletionGracePeriodSeconds") or 0)
            self._tasks.spawn(f"terminate {worker.key}", worker.terminate(grace))

    async def _stop(self, worker: PodWorker) -> None:
        await worker.stop()
        self._stopping.discard(worker)

    async def _run(self, worker: PodWorker) -> None:
        await worker.run()
        if worker.gone and self._workers.get(worker.uid) is worker:  # bound elsewhere: not ours
            del self._workers[worker.uid]
