"""One Pod on a fake kubelet: its containers as local processes, and the status a kubelet reports.

Lifecycle (:class:`PodWorker`): the Pod is bound to the node; its configuration is resolved
(:mod:`.containers`; while a Secret it needs is missing the Pod stays ``Pending`` with the waiting
reason a kubelet gives, and the kubelet retries); it gets an IP of its own; each container's
process starts (:mod:`.runners`) and the Pod is ``Running``. A container is Ready when it runs and
its ``readinessProbe`` passes (``tcpSocket`` only; by port number or name; ``initialDelaySeconds``
honoured, ``periodSeconds`` capped at the kubelet's ``probe_interval`` so tests stay fast; other
probe kinds count as passing). A process that exits is a terminated container; with
``restartPolicy: Never`` the Pod ends ``Succeeded`` (all exit 0) or ``Failed``; ``Always`` and
``OnFailure`` restart it (``restartCount`` + 1) after a short pause, without back-off.

Deletion: SIGTERM to each process group, SIGKILL after the grace period, then the Pod is removed
from the API. A container's stdout and stderr are its log (every restart appended to one file).

Not modelled: init and sidecar containers (not run), liveness and startup probes, resources and
QoS (no limits are enforced), image pulls, and ``lastState`` beyond the last termination.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparkgate.aio import Child, TaskSupervisor, spawn
from sparkgate.testing.kube.containers import (
    NotReady,
    Volume,
    expand,
    gather_volumes,
    mounts,
    resolve_env,
    write_volumes,
)
from sparkgate.testing.kube.defaults import now
from sparkgate.testing.kube.resources import PODS, ResourceType
from sparkgate.testing.kube.runners import PodRun, Runner
from sparkgate.testing.kube.status import ApiStatusError
from sparkgate.testing.kube.store import ObjectStore

log = logging.getLogger(__name__)

Obj = dict[str, Any]

#: Starts the real command with PR_SET_PDEATHSIG: it is killed if this process dies, however it dies
#: (exec keeps the setting). Run with ``python -S -c``; argv: our pid, then the command.
_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    os._exit(137)\n"
    "try:\n"
    "    os.execvp(sys.argv[2], sys.argv[2:])\n"
    "except OSError as exc:\n"
    "    print(f'exec {sys.argv[2]}: {exc}', file=sys.stderr, flush=True)\n"
    "    os._exit(128)\n"
)
#: Variables of the test process a container does not inherit.
_PRIVATE_ENV = ("SPARK_CONNECT_AUTHENTICATE_TOKEN", "KUBECONFIG")
_RESTART_PAUSE = 0.2


def _exit_code(returncode: int) -> int:
    """A runtime's exit code: 128 + N for a process killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass
class _Container:
    spec: Obj
    log: Path
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    restarts: int = 0
    child: Child | None = None

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def running(self) -> bool:
        return "running" in self.state

    def status(self) -> Obj:
        out: Obj = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restarts,
            "state": self.state,
        }
        if self.child is not None:
            out["containerID"] = f"fake://{self.child.pid}"
        if self.last_state:
            out["lastState"] = self.last_state
        return out


@dataclass(frozen=True)
class PodEnvironment:
    """What a Pod worker needs from its kubelet."""

    store: ObjectStore
    tasks: TaskSupervisor
    runner: Runner
    node_name: str
    root: Path
    allocate_ip: Callable[[], str]
    probe_interval: float
    retry_interval: float


class PodWorker:
    def __init__(self, pod: Obj, env: PodEnvironment) -> None:
        self.env = env
        meta = pod["metadata"]
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.pod = pod
        self.dir = env.root / f"{self.namespace}_{self.name}_{self.uid[:8]}"
        self.ip = ""
        self.containers = {
            c["name"]: _Container(c, self.dir / "logs" / f"{c['name']}.log") for c in pod["spec"]["containers"]
        }
        self.terminating = False
        self.gone = False
        self._conditions: dict[str, tuple[str, str]] = {}
        self._started_at = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    # -- status ----------------------------------------------------------------------------------

    def _phase(self) -> str:
        cs = list(self.containers.values())
        if not self._started_at or any("waiting" in c.state and not c.restarts for c in cs):
            return "Pending"
        if any("terminated" not in c.state for c in cs):
            return "Running"
        return "Succeeded" if all(c.state["terminated"]["exitCode"] == 0 for c in cs) else "Failed"

    def _condition(self, kind: str, ok: bool) -> Obj:
        status = "True" if ok else "False"
        previous = self._conditions.get(kind)
        if previous is None or previous[0] != status:
            self._conditions[kind] = (status, now())
        return {"type": kind, "status": status, "lastTransitionTime": self._conditions[kind][1]}

    def _status(self) -> Obj:
        ready = all(c.ready for c in self.containers.values())
        status: Obj = {
            "phase": self._phase(),
            "qosClass": "BestEffort",
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "conditions": [
                self._condition("PodScheduled", True),
                self._condition("Initialized", bool(self._started_at)),
                self._condition("ContainersReady", ready),
                self._condition("Ready", ready),
            ],
            "containerStatuses": [c.status() for c in self.containers.values()],
        }
        if self.ip:
            status.update(podIP=self.ip, podIPs=[{"ip": self.ip}])
        if self._started_at:
            status["startTime"] = self._started_at
        return status

    def sync(self) -> None:
        """Write this Pod's status to the API (if it is still this Pod)."""
        current = self.env.store.find(PODS, self.namespace, self.name)
        if current is None or current["metadata"]["uid"] != self.uid:
            return
        status = self._status()

        def write(pod: Obj) -> None:
            pod["status"] = status

        with contextlib.suppress(ApiStatusError):
            updated = self.env.store.modify(PODS, self.namespace, self.name, write, subresource="status")
            if updated is not None:
                self.pod = updated

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Bind, resolve the configuration (retrying), start every container."""
        store = self.env.store
        if not self.pod["spec"].get("nodeName"):
            try:
                self.pod = store.bind(self.namespace, self.name, self.env.node_name)
            except ApiStatusError:
                self.gone = True  # deleted, or bound by another kubelet meanwhile
                return
        while not (self.terminating or self.gone):
            try:
                volumes = self._resolve()
                break
            except NotReady as exc:
                for c in self.containers.values():
                    c.state = {"waiting": {"reason": exc.reason, "message": exc.message}}
                self.sync()
                await asyncio.sleep(self.env.retry_interval)
        else:
            return
        self.ip = self.env.allocate_ip()
        self.pod.setdefault("status", {})["podIP"] = self.ip  # for fieldRefs resolved at start
        volume_dirs = await asyncio.to_thread(self._prepare_dirs, volumes)
        self._started_at = now()
        for container in self.containers.values():
            self.env.tasks.spawn(f"container {self.key}/{container.name}", self._keep_running(container, volume_dirs))

    def _lookup(self, resource: ResourceType, name: str) -> Obj | None:
        return self.env.store.find(resource, self.namespace, name)

    def _resolve(self) -> list[Volume]:
        """Check every container's environment resolves; the volumes' content (NotReady if not yet)."""
        for c in self.containers.values():
            resolve_env(self.pod, c.spec, self._lookup)
        return gather_volumes(self.pod, self._lookup)

    def _prepare_dirs(self, volumes: list[Volume]) -> dict[str, Path]:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(mode=0o700, exist_ok=True)
        for container in self.containers.values():
            (self.dir / "work" / container.name).mkdir(mode=0o700, parents=True, exist_ok=True)
        return write_volumes(self.dir / "volumes", volumes)

    async def _start(self, container: _Container, volume_dirs: dict[str, Path]) -> None:
        env = resolve_env(self.pod, container.spec, self._lookup)  # again: a fieldRef may name the IP
        run = PodRun(
            pod=self.pod,
            container=container.spec,
            ip=self.ip,
            env=env,
            command=tuple(expand(a, env) for a in container.spec.get("command") or []),
            args=tuple(expand(a, env) for a in container.spec.get("args") or []),
            mounts=mounts(container.spec, volume_dirs),
            workdir=self.dir / "work" / container.name,
        )
        argv = await asyncio.to_thread(self.env.runner, run)
        container.started, container.state = True, {"running": {"startedAt": now()}}
        if argv is None:
            container.ready = True  # "runs" without a process
            return
        process_env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
        process_env.update(HOSTNAME=self.name, **env)
        logf = await asyncio.to_thread(open, container.log, "ab")
        with logf:
            if self.gone:  # stopped while the runner ran: start nothing (spawn below does not yield first)
                return
            container.child = await spawn(
                sys.executable,
                "-S",
                "-c",
                _LAUNCHER,
                str(os.getpid()),
                *argv,
                cwd=run.workdir,
                env=process_env,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        probe = container.spec.get("readinessProbe")
        if probe is None:
            container.ready = True
        else:
            self.env.tasks.spawn(f"probe {self.key}/{container.name}", self._probe(container, container.child, probe))

    async def _keep_running(self, container: _Container, volume_dirs: dict[str, Path]) -> None:
        """Start the container, wait for its process, restart it as the Pod's policy says."""
        policy = self.pod["spec"].get("restartPolicy", "Always")
        while not (self.terminating or self.gone):
            try:
                await self._start(container, volume_dirs)
            except Exception as exc:  # the runner refused, or the command could not start
                log.warning("pod %s: container %s did not start: %s", self.key, container.name, exc)
                container.state = {"terminated": {"exitCode": 128, "reason": "StartError", "message": str(exc)}}
                self.sync()
                return
            self.sync()
            child = container.child
            if child is None:
                return  # a container without a process runs until the Pod goes
            code = _exit_code(await child.wait())
            container.ready = False
            container.state = {
                "terminated": {
                    "exitCode": code,
                    "reason": "Completed" if code == 0 else "Error",
                    "startedAt": container.state.get("running", {}).get("startedAt", now()),
                    "finishedAt": now(),
                    "containerID": f"fake://{child.pid}",
                }
            }
            restart = policy == "Always" or (policy == "OnFailure" and code != 0)
            if self.terminating or self.gone or not restart:
                self.sync()
                return
            container.last_state, container.restarts = container.state, container.restarts + 1
            container.state = {"waiting": {"reason": "CrashLoopBackOff" if code else "Completed"}}
            self.sync()
            await asyncio.sleep(_RESTART_PAUSE)

    async def _probe(self, container: _Container, child: Child, probe: Obj) -> None:
        handler = probe.get("tcpSocket")
        if handler is None:
            log.warning("pod %s: only tcpSocket probes run; %s counts as ready", self.key, container.name)
            container.ready = True
            self.sync()
            return
        port = handler["port"]
        if isinstance(port, str):
            named = [p["containerPort"] for p in container.spec.get("ports", []) if p.get("name") == port]
            if not named:
                log.warning("pod %s: readiness probe of %s names no port %r", self.key, container.name, port)
                return
            port = named[0]
        host = handler.get("host") or self.ip
        period = min(float(probe.get("periodSeconds", 10)), self.env.probe_interval)
        failures_to_fail, successes_to_pass = probe.get("failureThreshold", 3), probe.get("successThreshold", 1)
        failures = successes = 0
        await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)))
        while child.returncode is None and container.child is child:
            try:
                connect = asyncio.open_connection(host, int(port))
                _, writer = await asyncio.wait_for(connect, probe.get("timeoutSeconds", 1))
                writer.close()
                successes, failures = successes + 1, 0
            except (OSError, TimeoutError):
                failures, successes = failures + 1, 0
            ready = container.ready
            if successes >= successes_to_pass:
                ready = True
            elif failures >= failures_to_fail:
                ready = False
            if ready != container.ready and child.returncode is None:
                container.ready = ready
                self.sync()
            await asyncio.sleep(period)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        for container in self.containers.values():
            if container.child is not None and container.child.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(container.child.pid, sig)

    async def terminate(self, grace: float) -> None:
        """SIGTERM, SIGKILL after ``grace`` seconds; then the Pod goes from the API."""
        self.terminating = True
        self.kill(signal.SIGTERM)
        children = [c.child for c in self.containers.values() if c.child is not None]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        for child in children:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.wait(), max(0.0, deadline - loop.time()))
        self.kill(signal.SIGKILL)  # what is left after the grace period
        for child in children:
            await child.wait()
        for container in self.containers.values():
            container.ready = False
            if "terminated" not in container.state:
                code = 0 if container.child is None else _exit_code(container.child.returncode or 0)
                reason = "Completed" if code == 0 else "Error"
                container.state = {"terminated": {"exitCode": code, "reason": reason, "finishedAt": now()}}
        self.sync()
        with contextlib.suppress(ApiStatusError):
            self.env.store.delete(PODS, self.namespace, self.name, grace_period=0, preconditions={"uid": self.uid})

    async def stop(self) -> None:
        """The Pod is gone (or the kubelet closes): kill what runs, remove its files."""
        self.gone = True
        self.kill(signal.SIGKILL)
        await asyncio.gather(*(c.child.wait() for c in self.containers.values() if c.child is not None))
        await asyncio.to_thread(shutil.rmtree, self.dir, True)
