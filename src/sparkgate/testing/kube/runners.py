"""What a fake kubelet runs for a container: a :data:`Runner` turns a :class:`PodRun` into a command.

A runner is called (in a worker thread: it may read and write files) with what a container
would see in its Pod — its IP, its resolved environment, where each mount path is on this machine
— and returns the argv of a local process standing for the container, or None for a container
that "runs" without a process (it is Ready at once and runs until its Pod is deleted).

Shipped runners:

* :func:`fake_connect_runner` — a fake Spark Connect server (:mod:`sparkgate.testing.fake_backend`)
  on the Pod's IP and the container's ``spark-connect`` port (else 15002), requiring the bearer
  token in ``SPARK_CONNECT_AUTHENTICATE_TOKEN`` when the container sets it, as Spark does.
* :data:`spark_connect_runner` — the container's own ``spark-submit`` command translated to run a
  real Spark Connect server from the ``pyspark`` wheel on this machine (:class:`SparkSubmitRunner`).
* :class:`ImageRunner` — the container run in its image's file system with buildah, with its own
  command or one that a runner above translates (``SparkSubmitRunner(spark_submit=...)``).
* :func:`python_runner` — a Python snippet, for containers whose only job is to exit (or not).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparkgate.spark.home import default_spark_home

Obj = dict[str, Any]

#: The port a Spark Connect container listens on when it names none ``spark-connect``.
SPARK_CONNECT_PORT = 15002


@dataclass(frozen=True)
class PodRun:
    """One container of one Pod, about to start."""

    pod: Obj
    container: Obj
    #: The Pod's IP (a loopback address of its own).
    ip: str
    #: The container's environment (``env`` and ``envFrom`` resolved, in order).
    env: Mapping[str, str]
    #: The container's ``command`` and ``args``, with ``$(VAR)`` expanded.
    command: tuple[str, ...]
    args: tuple[str, ...]
    #: Mount path in the container -> the host path standing for it.
    mounts: Mapping[str, Path]
    #: A private directory for the process (its working directory).
    workdir: Path

    @property
    def name(self) -> str:
        return str(self.pod["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.pod["metadata"]["namespace"])

    def port(self, name: str, default: int) -> int:
        """The container port called ``name``, else ``default``."""
        for port in self.container.get("ports") or []:
            if port.get("name") == name:
                return int(port["containerPort"])
        return default

    def host_path(self, path: str) -> str:
        """``path`` as seen in the container, mapped to this machine if it is under a mount."""
        for mount in sorted(self.mounts, key=len, reverse=True):
            root = mount.rstrip("/")
            if path == root or path.startswith(root + "/"):
                return str(self.mounts[mount]) + path[len(root) :]
        return path


Runner = Callable[[PodRun], Sequence[str] | None]


def fake_connect_runner(run: PodRun) -> list[str]:
    """A fake Spark Connect server on the Pod's IP; small ``ExecutePlan`` streams (2 x 1 KiB)."""
    port = run.port("spark-connect", SPARK_CONNECT_PORT)
    server = [sys.executable, "-m", "sparkgate.testing.fake_backend", "--host", run.ip, "--port", str(port)]
    return [*server, "--chunks", "2", "--chunk-bytes", "1024"]


def python_runner(source: str) -> Runner:
    """A runner that runs ``source`` with this Python, whatever the container says."""

    def run(_: PodRun) -> list[str]:
        return [sys.executable, "-c", source]

    return run


#: Spark confs that only mean something on Kubernetes, or that the translation sets itself.
_DROPPED_CONF_PREFIXES = ("spark.kubernetes.",)
_DROPPED_CONFS = frozenset(
    {
        "spark.master",
        "spark.submit.deployMode",
        "spark.driver.memory",
        "spark.driver.bindAddress",
        "spark.connect.grpc.binding.address",
        "spark.ui.enabled",
    }
)


def _kept(key: str) -> bool:
    return key not in _DROPPED_CONFS and not key.startswith(_DROPPED_CONF_PREFIXES)


@dataclass(frozen=True)
class SparkSubmitRunner:
    """Runs a container's ``spark-submit`` command in local mode.

    The translation: ``--master`` set to :attr:`master` and ``--driver-memory`` to
    :attr:`driver_memory`; ``--deploy-mode`` and every ``spark.kubernetes.*`` conf dropped; and the
    server bound to the Pod's IP with the UI off. With no :attr:`spark_submit`, it runs on this
    machine: the wheel's ``bin/spark-submit`` instead of the image's (and of what runs it, an
    entrypoint before it in the command), and paths under a mount mapped to this machine (in
    arguments, confs, and a ``--properties-file``, which is copied with the same changes). With
    one, the command is for the container's own file system (:class:`ImageRunner`): that
    ``spark-submit`` after what runs it, paths and the properties file as they are. What is not translated is
    passed as it is.
    """

    master: str = "local[1]"
    driver_memory: str = "512m"
    #: The ``spark-submit`` to run, in the container's file system; empty: the pyspark wheel's here.
    spark_submit: str = ""

    def __call__(self, run: PodRun) -> list[str]:
        full = [*run.command, *run.args]
        start = next((i for i, arg in enumerate(full[:2]) if Path(arg).name == "spark-submit"), None)
        if start is None:
            raise ValueError(f"spark_connect_runner runs spark-submit, not {full[:2]} ({run.container['name']})")
        # What runs spark-submit (the image's entrypoint): kept in the image, not here.
        launcher, argv = full[:start], full[start:]
        here = not self.spark_submit
        path = run.host_path if here else str
        out: list[str] = []
        args = argv[1:]
        i = 0
        while i < len(args):
            arg = args[i]
            value = args[i + 1] if i + 1 < len(args) else ""
            if arg in ("--master", "--deploy-mode", "--driver-memory"):
                i += 2
                continue
            if arg == "--conf":
                key, _, conf_value = value.partition("=")
                if _kept(key):
                    out += ["--conf", f"{key}={path(conf_value)}"]
                i += 2
                continue
            if arg == "--properties-file" and here:
                out += [arg, str(self._properties(run, Path(run.host_path(value))))]
                i += 2
                continue
            out.append(path(arg))
            i += 1
        own = ["--master", self.master, "--driver-memory", self.driver_memory]
        for key, conf_value in (
            ("spark.connect.grpc.binding.address", run.ip),
            ("spark.driver.bindAddress", run.ip),
            ("spark.ui.enabled", "false"),
        ):
            own += ["--conf", f"{key}={conf_value}"]
        # Options go before the primary resource (and --class, which precedes it).
        at = out.index("--class") if "--class" in out else max(0, len(out) - 1)
        if here:
            return [str(default_spark_home() / "bin" / "spark-submit"), *out[:at], *own, *out[at:]]
        return [*launcher, self.spark_submit, *out[:at], *own, *out[at:]]

    @staticmethod
    def _properties(run: PodRun, source: Path) -> Path:
        """A copy of the properties file without Kubernetes' confs, its paths mapped (mode 0600)."""
        lines = []
        for line in source.read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            key, sep, value = stripped.partition("=")
            if not stripped or stripped.startswith(("#", "!")) or not sep:
                lines.append(line)
            elif _kept(key.strip()):
                lines.append(f"{key}{sep}{run.host_path(value.strip())}")
        target = run.workdir / "spark.properties"
        target.touch(mode=0o600)
        target.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return target


#: A real Spark Connect server (JVM) for a container whose command is ``spark-submit``.
spark_connect_runner = SparkSubmitRunner()


@dataclass(frozen=True)
class ImageRunner:
    """Runs a container in its image's file system with buildah (``buildah run``, chroot
    isolation): the Pod's volumes bound in at their mount paths, its environment set, the image's
    user, and the host's network, so that it listens on the Pod's loopback IP.

    :attr:`containers` maps each image a Pod may name to a buildah working container made from it
    (``buildah from IMAGE``); Pods of one image share its file system. :attr:`command` gives the
    command run there (default: the container's own ``command`` and ``args``), e.g.
    ``SparkSubmitRunner(spark_submit="/opt/spark/bin/spark-submit")`` for a driver Pod, whose own
    ``--master k8s://...`` needs a cluster. Needs root, ``buildah`` and ``unshare``.

    What it does not prove: the container runtime's isolation (no user or network namespace, no
    cgroup limits, a writable root file system), the image's pull, or that its entrypoint is what
    the Pod runs (a Pod that sets ``command`` bypasses it, as on Kubernetes).
    """

    containers: Mapping[str, str]
    command: Runner | None = None
    #: The buildah command, with its global options (``--root``, ``--storage-driver``).
    buildah: tuple[str, ...] = ("buildah",)

    def __call__(self, run: PodRun) -> list[str]:
        image = str(run.container.get("image") or "")
        if image not in self.containers:
            raise ValueError(f"no working container for image {image!r} ({run.container['name']})")
        argv = self.command(run) if self.command is not None else (*run.command, *run.args)
        if not argv:
            raise ValueError(f"container {run.container['name']} has no command: the image's is not run here")
        # As a kubelet does: the Pod's name as host name, in an /etc/hosts at the Pod's IP.
        hosts = run.workdir / "hosts"
        hosts.parent.mkdir(parents=True, exist_ok=True)
        hosts.write_text(f"127.0.0.1\tlocalhost\n{run.ip}\t{run.name}\n")
        # In a PID namespace of its own, as a container is: when the kubelet kills it, every
        # process it started goes too (an entrypoint's tini puts the JVM in a group of its own).
        unshare = ["unshare", "--pid", "--fork", "--kill-child"]
        out = [*unshare, *self.buildah, "run", "--isolation", "chroot", "--network", "host", "--hostname", run.name]
        out += ["--no-hosts", "--volume", f"{hosts}:/etc/hosts:ro"]
        for path, host in sorted(run.mounts.items()):
            _readable(host)
            out += ["--volume", f"{host}:{path}"]
        for key, value in run.env.items():
            out += ["--env", f"{key}={value}"]
        if run.container.get("workingDir"):
            out += ["--workingdir", str(run.container["workingDir"])]
        return [*out, self.containers[image], "--", *argv]


def _readable(host: Path) -> None:
    """A volume readable by the image's user, as a kubelet's default mode (0644) makes it; the
    fake kubelet's private directories above it keep it from the rest of this machine."""
    paths = [host, *host.rglob("*")] if host.is_dir() else [host]
    for path in paths:
        path.chmod(0o755 if path.is_dir() else 0o644)
