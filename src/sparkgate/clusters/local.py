"""Local provider: Spark Connect servers started from the ``pyspark`` wheel on this machine.

Each driver is ``spark-submit --class org.apache.spark.sql.connect.service.SparkConnectServer`` on a
free loopback port, in its own process group, with its own directory under
``{state_dir}/drivers/{id}/`` holding ``driver.json`` (what it is), ``driver.log`` (its stdout and
stderr) and Spark's scratch files. The record lets a restarted gateway find drivers it started
before (:meth:`LocalProvider.list_drivers`) instead of leaking them.

Each driver mounts the catalog its spec names (:mod:`sparkgate.clusters.catalog`: the plugin jar
and the sample tables are prepared once per catalog, at the first driver that needs it).

Readiness is "the server answers *and* has run a warm-up query": a fresh JVM takes several seconds
for its first query, which a user should not pay.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from sparkgate.aio import Child, free_port, pid_alive, spawn, tail
from sparkgate.clusters.base import POOL_NAMESPACE, Driver, DriverSpec, DriverState, ProviderBase
from sparkgate.clusters.catalog import driver_conf
from sparkgate.config import DEFAULT_PROFILE, CatalogSettings, LocalProviderSettings
from sparkgate.connect.probe import run_sql
from sparkgate.errors import DriverStartError
from sparkgate.spark.cds import ClassDataArchive, cds_problem
from sparkgate.spark.conf import merge_conf, properties_text, spark_defaults
from sparkgate.spark.home import default_spark_home, spark_version_of, user_cache_dir, version_matches

log = logging.getLogger(__name__)

CONNECT_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
#: In a warm driver's directory: the namespace it was given to (see :meth:`LocalProvider.claim`).
CLAIM_FILE = "claim"
#: In a driver's directory: it is a class-data training run, never a driver to hand out.
TRAINING_FILE = "class-archive-training"
#: Training runs a gateway process tries before it gives up (drivers then start without an archive).
TRAINING_ATTEMPTS = 2
WARMUP_QUERY = "SELECT id, id * 2 AS x FROM range(1000) ORDER BY x DESC LIMIT 10"


#: The Spark conf that holds a driver's token (Spark Connect's pre-shared bearer token).
TOKEN_CONF = "spark.connect.authenticate.token"
#: JVM options a driver starts with ahead of ``spark.driver.extraJavaOptions`` (the archive's).
DEFAULT_JAVA_OPTIONS = "spark.driver.defaultJavaOptions"


class DriverTokens:
    """Each driver's own ``spark.connect.authenticate.token``, kept by the gateway.

    A token is made when its driver starts and written to ``{state_dir}/driver-tokens/<id>`` (mode
    0600, in a 0700 directory) so that a restarted gateway can still reach the drivers it adopts;
    it is removed when the driver stops. The driver gets it in its ``spark.properties`` (never on
    a command line, never in an environment, which other processes of the user can read), and the
    token is scrubbed from that file once the driver is up. A token read on one driver (a session
    may run any JVM code there) opens that driver only.
    """

    def __init__(self, state_dir: Path) -> None:
        self._dir = state_dir / "driver-tokens"
        #: Drivers started before tokens were per driver all shared this one.
        self._shared = state_dir / "driver-token"

    def new(self, driver_id: str) -> str:
        token = secrets.token_urlsafe(32)
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self._dir, 0o700)
        fd = os.open(self._dir / driver_id, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token

    def get(self, driver_id: str) -> str | None:
        for path in (self._dir / driver_id, self._shared):
            try:
                token = path.read_text().strip()
            except OSError:
                continue
            if token:
                return token
        return None

    def forget(self, driver_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self._dir / driver_id).unlink()


def scrub_token(properties: Path) -> None:
    """Remove the driver's token from its properties file (the driver has read it by now)."""
    try:
        lines = properties.read_text(encoding="utf-8").splitlines(keepends=True)
    except FileNotFoundError:
        return
    kept = [line for line in lines if not line.startswith(TOKEN_CONF + "=")]
    if len(kept) != len(lines):
        fd = os.open(properties, os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(kept))


def _pid_is_our_driver(pid: int, driver_id: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return CONNECT_SERVER_CLASS.encode() in cmdline and driver_id.encode() in cmdline


def write_properties(path: Path, conf: dict[str, str]) -> None:
    """Write ``conf`` as a Java properties file (UTF-8, as spark-submit reads it), mode 0600."""
    text = properties_text(conf)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("# written by sparkgate for this driver (from configuration; may hold secrets)\n")
        f.write(text)
    os.chmod(path, 0o600)  # also when the file already existed


class LocalProvider(ProviderBase):
    """Starts Spark Connect servers as child processes of this machine."""

    #: Drivers start quickly: readiness is looked for every 50 ms, and a driver started for a
    #: waiting team is not warmed up first. False: the slower start (every driver warmed up, found
    #: ready by a gRPC channel's reconnects), the baseline ``bench/pool_bench.py`` measures against.
    quick_start = True

    name = "local"

    def __init__(
        self,
        settings: LocalProviderSettings,
        state_dir: Path,
        *,
        max_message_bytes: int = 256 * 1024 * 1024,
        reattach_buffer_bytes: int = 96 * 1024 * 1024,
    ) -> None:
        self._settings = settings
        # Absolute: a driver runs in its own directory, and the paths it is given (its properties
        # file, the catalog's jar and root) must not depend on the gateway's working directory.
        self._state_dir = state_dir.expanduser().resolve()
        self._dir = self._state_dir / "drivers"
        #: Spark conf mounting each catalog drivers were started with (by ``mount_key``).
        self._catalog_conf: dict[str, dict[str, str]] = {}
        self._catalog_lock = asyncio.Lock()
        #: What each driver requires as ``authorization: Bearer`` (``local.require_token``), its own.
        self.tokens = DriverTokens(self._state_dir)
        #: Every driver is a JVM on this machine: starts at once slow each other down.
        self.starts_share_cpu = True
        self._max_message_bytes = max_message_bytes
        self._reattach_buffer_bytes = reattach_buffer_bytes
        self._procs: dict[str, Child] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        #: Called with ``(driver_id, returncode)`` when a driver process exits on its own
        #: (a crash, ``kill -9``, OOM); the cluster manager sets it.
        self.on_exit: Callable[[str, int | None], None] | None = None
        self._version: str | None = None
        #: The class-data archive drivers start from (``local.class_archive``), found at first start.
        self._archive: ClassDataArchive | None = None
        #: The training run building it, while one runs, and how many this process started.
        self._training: asyncio.Task[None] | None = None
        self._training_attempts = 0

    @property
    def spark_home(self) -> Path:
        return Path(self._settings.spark_home) if self._settings.spark_home else default_spark_home()

    @property
    def spark_version(self) -> str:
        """The Spark version every local driver runs (one distribution: ``local.spark_home``)."""
        if self._version is None:
            self._version = spark_version_of(self.spark_home)
        return self._version

    def fingerprint(self, spec: DriverSpec) -> str:
        """:meth:`DriverSpec.fingerprint` with what this provider adds to every driver it starts."""
        s = self._settings
        return spec.fingerprint(sorted(s.spark_conf.items()), s.driver_memory, s.master)

    def check_spec(self, spec: DriverSpec) -> None:
        """Raise DriverStartError if this provider cannot run what ``spec`` asks for."""
        if spec.spark_version and not version_matches(spec.spark_version, self.spark_version):
            raise DriverStartError(
                f"profile {spec.profile!r} needs Spark {spec.spark_version}, but the local provider runs "
                f"Spark {self.spark_version} ({self.spark_home}); point local.spark_home at a Spark "
                f"{spec.spark_version} distribution or change pool.profiles.{spec.profile}.spark_version"
            )

    async def __aenter__(self) -> LocalProvider:
        self._dir.mkdir(parents=True, exist_ok=True)
        return self

    async def _mount(self, catalog: CatalogSettings) -> dict[str, str]:
        """The conf mounting ``catalog``, prepared once (plugin jar, sample tables) on first use."""
        key = catalog.mount_key()
        async with self._catalog_lock:
            if key not in self._catalog_conf:
                self._catalog_conf[key] = await asyncio.to_thread(
                    driver_conf, catalog, self.spark_home, self._state_dir
                )
            return self._catalog_conf[key]

    async def __aexit__(self, *exc: object) -> None:
        if self._training is not None:
            self._training.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._training
        for w in list(self._watchers):
            w.cancel()

    # -- starting -----------------------------------------------------------------------------

    def _command(
        self,
        driver_id: str,
        port: int,
        ui_port: int,
        spec: DriverSpec,
        catalog_conf: dict[str, str],
        *,
        workdir: Path,
        token: str | None = None,
        java_options: list[str] | None = None,
    ) -> list[str]:
        """The driver's ``spark-submit`` command line.

        What sparkgate itself sets (ports, addresses, the tags that let a restarted gateway adopt
        the driver) is passed as ``--conf``; everything from configuration (the catalog's options,
        ``local.spark_conf``, the profile's) goes to ``spark.properties`` in the driver's directory,
        readable by its owner only: catalog tokens and storage keys are not on a command line
        that ``ps`` shows to every user of the machine. ``conf/spark-defaults.conf`` of the Spark
        distribution is still read (``--load-spark-defaults``), below both.
        """
        s = self._settings
        home = self.spark_home
        own: dict[str, str] = {
            "spark.connect.grpc.binding.address": s.bind_host,
            "spark.connect.grpc.binding.port": str(port),
            # Whatever the gateway relays (gateway.max_message_bytes); clients send up to 128 MiB.
            "spark.connect.grpc.maxInboundMessageSize": str(self._max_message_bytes),
            # Results a driver keeps after sending them, for a client that reattaches: what a gateway
            # relaying them may hold when it dies, and more (Spark's default, 10 MiB, is less).
            "spark.connect.execute.reattachable.observerRetryBufferSize": str(self._reattach_buffer_bytes),
            "spark.driver.bindAddress": s.bind_host,
            "spark.driver.host": s.bind_host,
            "spark.ui.port": str(ui_port),
            "spark.ui.showConsoleProgress": "false",
            # Tag the process so a restarted gateway can tell our drivers from anything else.
            "spark.sparkgate.driver.id": driver_id,
            "spark.sparkgate.namespace": spec.namespace or "pool",
            "spark.sparkgate.profile": spec.profile,
        }
        configured = merge_conf(catalog_conf, s.spark_conf, spec.spark_conf)
        for k in own.keys() & configured.keys():  # an operator's override of what sparkgate sets: stays a --conf
            own[k] = configured.pop(k)
        if java_options:  # (before an operator's own defaults, which then win where they differ)
            theirs = configured.pop(DEFAULT_JAVA_OPTIONS, None)
            if theirs is None:  # (a --conf hides spark-defaults.conf's: they are kept)
                theirs = spark_defaults(home).get(DEFAULT_JAVA_OPTIONS, "")
            own[DEFAULT_JAVA_OPTIONS] = " ".join([*java_options, theirs]).strip()
        if token:
            configured[TOKEN_CONF] = token  # scrubbed from the file once the driver is up
        properties = workdir / "spark.properties"
        write_properties(properties, configured)
        cmd = [
            str(home / "bin" / "spark-submit"),
            "--master",
            s.master,
            "--driver-memory",
            s.driver_memory,
            "--name",
            f"sparkgate-{driver_id}",
            "--properties-file",
            str(properties),
            "--load-spark-defaults",
        ]
        for k, v in own.items():
            cmd += ["--conf", f"{k}={v}"]
        cmd += ["--class", CONNECT_SERVER_CLASS, "spark-internal"]
        return cmd

    async def start_driver(self, spec: DriverSpec) -> Driver:
        archive = await self._class_archive()
        options = await asyncio.to_thread(archive.java_options) if archive is not None else []
        driver = await self._start(spec, options)
        used = bool(options) and await asyncio.to_thread(_maps, driver.pid, options[0].rpartition("=")[2])
        driver.labels = {**driver.labels, "class_archive": "yes" if used else "no"}
        if options and not used and archive is not None:  # (the JVM started without it: built again)
            problem = cds_problem(await asyncio.to_thread(_read_text, Path(driver.log_path or "")))
            log.warning(
                "driver %s did not map the class-data archive (%s); it is built again",
                driver.id,
                problem or "the JVM did not say why",
            )
            await asyncio.to_thread(archive.discard)
        if (
            archive is not None
            and self._training is None
            and self._training_attempts < TRAINING_ATTEMPTS
            and not used  # (a driver that mapped the archive found it whole)
            and not await asyncio.to_thread(archive.ready)
        ):
            self._training_attempts += 1
            self._training = asyncio.create_task(self._train(archive, spec), name="class-data training")
        return driver

    async def _class_archive(self) -> ClassDataArchive | None:
        if not self._settings.class_archive:
            return None
        if self._archive is None:
            configured = self._settings.class_archive_dir
            directory = Path(configured) if configured else user_cache_dir("class-archives")
            archive = await asyncio.to_thread(
                ClassDataArchive.for_drivers, directory, self.spark_home, [self._settings.driver_memory]
            )
            await asyncio.to_thread(archive.sweep)  # (what earlier Sparks' drivers left, unused for long)
            self._archive = archive
        return self._archive

    async def class_archive_built(self) -> bool:
        """Wait for a training run under way, if any; whether the archive is ready."""
        if self._training is not None:
            await asyncio.shield(self._training)
        return self._archive is not None and await asyncio.to_thread(self._archive.ready)

    def class_archive_status(self) -> dict[str, str] | None:
        """Whether drivers start from a class-data archive (``sparkgate status``)."""
        if self._archive is None:
            return None if not self._settings.class_archive else {"state": "not yet looked for"}
        if self._training is not None:
            state = "building"
        else:
            state = "ready" if self._archive.checksum_path.exists() else "none"
        return {"state": state, "path": str(self._archive.path)}

    async def _train(self, archive: ClassDataArchive, spec: DriverSpec) -> None:
        """Build the archive: a driver started to write the classes it loads when it exits, warmed
        up as every driver is (its warm-up loads what sessions load), then stopped. Runs in the
        background once a driver is ready, never before; one at a time per archive directory (a
        lock beside the archive)."""
        lock_path = archive.path.with_name(archive.path.name + ".lock")
        try:
            lock = await asyncio.to_thread(_try_lock, lock_path)
            if lock is None:
                return  # (another gateway on this machine is building it)
            try:
                await asyncio.to_thread(archive.sweep)
                if await asyncio.to_thread(archive.ready):
                    return
                target = await asyncio.to_thread(archive.training_target)
                log.info("building a class-data archive for faster driver starts, in the background (once)")
                t0 = time.monotonic()
                pool_spec = DriverSpec(profile=spec.profile, catalog=spec.catalog, spark_conf=spec.spark_conf)
                trainee = await self._start(pool_spec, [f"-XX:ArchiveClassesAtExit={target}"], training=True)
                try:
                    # The JVM writes the archive as it exits: give it the time to.
                    await asyncio.shield(self.stop_driver(trainee, grace_seconds=120.0))
                except asyncio.CancelledError:  # (shutting down: the archive is not worth waiting for)
                    await self.stop_driver(trainee, grace_seconds=0.5)
                    raise
                if await asyncio.to_thread(archive.adopt, target):
                    log.info("class-data archive ready in %.0fs: %s", time.monotonic() - t0, archive.path)
            finally:
                lock.close()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # (best effort: drivers start without it)
            log.warning("class-data archive not built: %s", exc)
        finally:
            self._training = None

    async def _start(self, spec: DriverSpec, java_options: list[str], *, training: bool = False) -> Driver:
        self.check_spec(spec)
        driver_id = f"local-{uuid.uuid4().hex[:10]}"
        workdir = self._dir / driver_id
        port, ui_port = free_port(self._settings.bind_host), free_port(self._settings.bind_host)
        log_path = workdir / "driver.log"
        catalog_conf = await self._mount(spec.catalog)

        def prepare() -> tuple[list[str], str | None]:  # file system work, off the event loop
            workdir.mkdir(parents=True, exist_ok=True)
            if training:
                (workdir / TRAINING_FILE).touch()
            token = self.tokens.new(driver_id) if self._settings.require_token else None
            cmd = self._command(
                driver_id, port, ui_port, spec, catalog_conf, workdir=workdir, token=token, java_options=java_options
            )
            return cmd, token

        cmd, token = await asyncio.to_thread(prepare)
        env = dict(os.environ)
        # The distribution the command runs, whatever the environment names: its scripts, jars and
        # conf/spark-defaults.conf (read by _command too) must be the same one's.
        env["SPARK_HOME"] = str(Path(cmd[0]).parent.parent)
        if training:  # (behind drivers that teams wait for, on this machine's CPUs)
            cmd = ["nice", "-n", "10", *cmd]
        env.pop("PYSPARK_PYTHON", None)
        # Never in the environment: other processes of this user can read it (/proc/PID/environ).
        env.pop("SPARK_CONNECT_AUTHENTICATE_TOKEN", None)
        try:
            logf = await asyncio.to_thread(open, log_path, "ab")
            with logf:
                proc = await spawn(
                    *cmd,
                    cwd=workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    # Own process group: a Ctrl-C in the terminal reaches `sparkgate up`, which then
                    # stops drivers in order, instead of every JVM dying mid-query at once.
                    start_new_session=True,
                )
        except BaseException:  # no process: its token goes too
            self.tokens.forget(driver_id)
            raise
        self._procs[driver_id] = proc
        driver = Driver(
            id=driver_id,
            address=f"{self._settings.bind_host}:{port}",
            provider=self.name,
            namespace=spec.namespace,
            profile=spec.profile,
            ui_url=f"http://{self._settings.bind_host}:{ui_port}",
            log_path=str(log_path),
            pid=proc.pid,
            token=token,
            fingerprint=self.fingerprint(spec),
        )
        self._write_record(driver)
        log.info("starting driver %s on %s (log %s)", driver_id, driver.address, log_path)
        try:
            await self._wait_ready(driver, proc)
        except BaseException:
            await self.stop_driver(driver)
            raise
        driver.state = DriverState.READY
        await asyncio.to_thread(scrub_token, workdir / "spark.properties")
        self._write_record(driver)
        log.info("driver %s ready in %.1fs", driver_id, time.time() - driver.started_at)
        watcher = asyncio.create_task(self._watch(driver_id, proc), name=f"watch:{driver_id}")
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return driver

    async def _watch(self, driver_id: str, proc: Child) -> None:
        returncode = await proc.wait()
        if self._procs.get(driver_id) is proc:  # not stopped by us: it died
            self._procs.pop(driver_id, None)
            log.error("driver %s exited unexpectedly with code %s", driver_id, returncode)
            if self.on_exit is not None:
                self.on_exit(driver_id, returncode)

    @staticmethod
    def _start_failed(driver: Driver, what: str) -> DriverStartError:
        """The error for a driver that did not start. Its log (a path on this machine, and lines
        that may show other teams' configuration) goes to the gateway's log, not to the client."""
        log.error("driver %s %s; log %s:\n%s", driver.id, what, driver.log_path, tail(driver.log_path))
        return DriverStartError(f"driver {driver.id} {what}; the gateway's log has the end of its log")

    async def _wait_ready(self, driver: Driver, proc: Child) -> None:
        deadline = time.monotonic() + self._settings.startup_timeout_seconds
        # The client warm-up starts with the JVM (its Python and pyspark load meanwhile) and
        # connects once the server listens.
        early = self.quick_start and self._warms_up(driver)
        warmup = asyncio.create_task(self._client_warmup(driver, deadline)) if early else None
        try:
            if self.quick_start:
                await self._listening(driver, proc, deadline)
            await self._answers(driver, proc, deadline)
            if warmup is not None:
                await warmup
        finally:
            if warmup is not None and not warmup.done():
                warmup.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await warmup
        if not early and self._warms_up(driver):
            await self._client_warmup(driver, deadline)

    async def _answers(self, driver: Driver, proc: Child, deadline: float) -> None:
        """Wait until the driver runs a query (its first takes a while: the JIT, the catalog)."""
        async with grpc.aio.insecure_channel(driver.address) as channel:
            while True:
                if proc.returncode is not None:
                    raise self._start_failed(driver, f"exited with code {proc.returncode} while starting")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._start_failed(
                        driver, f"was not ready after {self._settings.startup_timeout_seconds:.0f}s"
                    )
                try:
                    await asyncio.wait_for(channel.channel_ready(), timeout=min(1.0, remaining))
                    await run_sql(channel, WARMUP_QUERY, timeout=remaining, metadata=driver.auth_metadata)
                    return
                except (TimeoutError, grpc.aio.AioRpcError):
                    # The JVM and its gRPC server take a while to come up; poll (waiting on the
                    # process too, so a crash is reported at once).
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(proc.wait(), timeout=0.25)

    def _warms_up(self, driver: Driver) -> bool:
        """A warm pool's driver is warmed up by a client before it is ready. A driver started for
        a team that is waiting for it goes to the team at once: its first queries cost what the
        warm-up would have, and the warm-up itself takes seconds."""
        return self._settings.client_warmup and (driver.namespace == POOL_NAMESPACE or not self.quick_start)

    async def _listening(self, driver: Driver, proc: Child, deadline: float) -> None:
        """Wait until the driver accepts connections, looking every 50 ms. (A gRPC channel would
        find it late: between its attempts to connect it backs off for up to seconds.)"""
        host, _, port = driver.address.rpartition(":")
        while time.monotonic() < deadline and proc.returncode is None:
            try:
                _, writer = await asyncio.open_connection(host, int(port))
            except OSError:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(proc.wait(), timeout=0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return

    async def _client_warmup(self, driver: Driver, deadline: float) -> None:
        """Run :mod:`sparkgate.clusters.warmup` against the driver (best effort); it waits for the
        driver to listen."""
        env = dict(os.environ)
        env.pop("SPARK_CONNECT_AUTHENTICATE_TOKEN", None)
        url = f"sc://{driver.address}"
        args = [url]
        if driver.token:
            # pyspark sends a token over plaintext only to the literal host "localhost"; the token
            # goes through stdin, not the environment or the command line.
            url = f"sc://localhost:{driver.address.rpartition(':')[2]}"
            args = [url, "--token-from-stdin"]
        proc = await spawn(
            sys.executable,
            "-m",
            "sparkgate.clusters.warmup",
            *args,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        secret = (driver.token + "\n").encode() if driver.token else b""
        try:
            _, err = await asyncio.wait_for(proc.communicate(secret), timeout=max(5.0, deadline - time.monotonic()))
        except TimeoutError:
            proc.kill()
            await proc.wait()
            log.warning("driver %s: client warm-up timed out; serving it anyway", driver.id)
            return
        except asyncio.CancelledError:  # (the driver did not start)
            proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0:
            log.warning(
                "driver %s: client warm-up failed (code %s); serving it anyway: %s",
                driver.id,
                proc.returncode,
                err.decode("utf-8", "replace")[-500:],
            )

    # -- stopping -----------------------------------------------------------------------------

    async def stop_driver(self, driver: Driver, grace_seconds: float = 10.0) -> None:
        driver.state = DriverState.DEAD
        proc = self._procs.pop(driver.id, None)
        pid = driver.pid
        if proc is not None and proc.returncode is None:
            await _terminate_group(proc.pid, proc.wait, grace_seconds)
        elif pid is not None and pid_alive(pid) and _pid_is_our_driver(pid, driver.id):
            await _terminate_group(pid, lambda: _wait_pid_gone(pid), grace_seconds)
        record = self._dir / driver.id / "driver.json"
        with contextlib.suppress(FileNotFoundError):
            record.unlink()
        self.tokens.forget(driver.id)
        scrub_token(self._dir / driver.id / "spark.properties")  # (if it stopped before it was up)
        log.info("stopped driver %s", driver.id)
        # Keep the log for post-mortems; remove Spark's scratch files.
        for junk in ("metastore_db", "spark-warehouse"):
            shutil.rmtree(self._dir / driver.id / junk, ignore_errors=True)

    # -- discovery ----------------------------------------------------------------------------

    def _write_record(self, driver: Driver) -> None:
        path = self._dir / driver.id / "driver.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(driver.to_dict()))
        tmp.replace(path)

    async def list_drivers(self) -> list[Driver]:
        """Drivers whose process is still ours and alive (records of dead ones are removed)."""
        return await asyncio.to_thread(self._scan_records)

    def _scan_records(self) -> list[Driver]:
        found: list[Driver] = []
        if not self._dir.is_dir():
            return found
        for record in sorted(self._dir.glob("*/driver.json")):
            try:
                data: dict[str, Any] = json.loads(record.read_text())
            except (OSError, ValueError):
                continue
            pid = data.get("pid")
            if not isinstance(pid, int) or not pid_alive(pid) or not _pid_is_our_driver(pid, data["id"]):
                record.unlink(missing_ok=True)
                continue
            if (record.parent / TRAINING_FILE).exists():  # a class-data training run: never a driver
                if data["id"] not in self._procs:  # (left by a gateway that is gone: stopped)
                    with contextlib.suppress(OSError):
                        os.killpg(pid, signal.SIGKILL)
                    record.unlink(missing_ok=True)
                continue
            try:  # a warm driver's claim, possibly by another gateway since the record was written
                namespace = (record.parent / CLAIM_FILE).read_text()
            except OSError:
                namespace = data.get("namespace", "")
            found.append(
                Driver(
                    id=data["id"],
                    address=data["address"],
                    provider=self.name,
                    namespace=namespace,
                    profile=data.get("profile", DEFAULT_PROFILE),
                    state=DriverState(data.get("state", "warming")),
                    started_at=data.get("started_at", time.time()),
                    ui_url=data.get("ui_url"),
                    log_path=data.get("log_path"),
                    pid=pid,
                    token=self.tokens.get(data["id"]) if self._settings.require_token else None,
                    fingerprint=data.get("fingerprint", ""),
                )
            )
        return found

    async def claim(self, driver: Driver, namespace: str) -> str:
        return await asyncio.to_thread(self._claim, driver, namespace)

    def _claim(self, driver: Driver, namespace: str) -> str:
        """Link a file naming ``namespace`` into place as ``{driver dir}/claim``: ``link`` fails if
        the name exists, so of gateways sharing this state directory exactly one claim wins, and
        the file is whole when anyone sees it."""
        path = self._dir / driver.id / CLAIM_FILE
        tmp = path.with_name(f".{CLAIM_FILE}.{uuid.uuid4().hex}")
        tmp.write_text(namespace)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return path.read_text()
        finally:
            tmp.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # (the claim file is what counts; the record follows it)
            self._write_record(dataclasses.replace(driver, namespace=namespace))
        return namespace


async def _wait_pid_gone(pid: int) -> None:
    while pid_alive(pid):
        await asyncio.sleep(0.05)


async def _terminate_group(pid: int, wait: Any, grace_seconds: float) -> None:
    """SIGTERM the driver's process group, then SIGKILL what is left after ``grace_seconds``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(wait(), timeout=grace_seconds)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(wait(), timeout=5)


def _try_lock(path: Path) -> Any:
    """An exclusive lock on ``path`` held by the returned file (None: another process holds it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a")  # (held until the caller closes it)
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    return f


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _maps(pid: int | None, path: str) -> bool:
    """Whether process ``pid`` has ``path`` mapped (a JVM that uses its class-data archive does)."""
    if pid is None:
        return False
    try:
        return path in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False
