"""Local execution: each job is a process on this machine, in its own process group.

Two ways, chosen per job (``runner.local_driver``, ``options.driver``):

* ``own`` — ``spark-submit sparkgate/runner/program.py`` with the manifest's driver memory: a Spark
  driver of its own (a JVM start, ~10 s), gone when the job ends. Its Spark UI is linked.
* ``pool`` — ``python -m sparkgate.runner.program --remote <gateway>``: the same program as a Spark
  Connect client of a warm driver the gateway picks for the team (seconds). The job's session id
  is chosen by the runner, so Cancel can interrupt the session's operations on the driver, not
  only end the client process.

Each job has a directory ``{state_dir}/jobs/{id}/``: ``manifest.yaml``, ``driver.log`` and
``scratch/`` (its output, and ``result.json``). A restarted runner finds a job's process by pid
and command line (the job directory is in it) and watches it again; a job whose process is gone
ended COMPLETED if it left its result, else FAILED.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sparkgate.aio import Child, free_port, pid_alive, spawn, tail
from sparkgate.connect import wire
from sparkgate.connect.service import SERVICE_PATH
from sparkgate.errors import ConfigError
from sparkgate.runner import program
from sparkgate.runner.backends.base import Launch, OnDone, OnProgress, Outcome, read_log_file
from sparkgate.runner.jobs import COMPLETED, FAILED, Job
from sparkgate.runner.manifest import Manifest
from sparkgate.spark.conf import merge_conf
from sparkgate.spark.home import default_spark_home
from sparkgate.spark.plugin import plugin_conf

log = logging.getLogger(__name__)


class LocalBackend:
    name = "local"

    def __init__(
        self,
        jobs_dir: Path,
        *,
        gateway_url: str,
        default_driver: str = "pool",
        catalog_root: Path | None = None,
        plugin_dir: Path | None = None,
        spark_home: Path | None = None,
        ui_lookup: Callable[[str, str], str | None] | None = None,
        gateway_token: str | None = None,
        gateway_tls: bool = False,
        gateway_ca_file: Path | None = None,
    ) -> None:
        # Job programs run in directories of their own: every path they are given is absolute.
        self.jobs_dir = jobs_dir.absolute()
        self.gateway_url = gateway_url
        self.default_driver = default_driver
        self.catalog_root = catalog_root.absolute() if catalog_root is not None else None
        #: Where sparkgate's driver plugin is built for jobs on drivers of their own (the sandbox
        #: needs it); None: such jobs start without it, and sandboxed ones are refused.
        self.plugin_dir = plugin_dir.absolute() if plugin_dir is not None else None
        self._spark_home = spark_home
        #: ``(user, session_id) -> Spark UI URL`` of the driver a pool job's session landed on
        #: (the platform asks its gateway); None where the runner runs apart from the gateway.
        self.ui_lookup = ui_lookup
        #: How pool jobs authenticate to the gateway when its auth is on: a bearer token (given to
        #: the job program in its environment, never on a command line) over TLS when the gateway
        #: has it (``gateway_ca_file``: the CA to trust).
        self.gateway_token = gateway_token
        self.gateway_tls = gateway_tls
        self.gateway_ca_file = gateway_ca_file
        self._procs: dict[str, Child] = {}
        #: A job program already started and waiting for a pool job's arguments (saves ~1 s each).
        self._standby: Child | None = None
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._cancelled: set[str] = set()

    def _dir(self, job: Job) -> Path:
        return self.jobs_dir / job.id

    def _scratch(self, job: Job) -> Path:
        """The job's output directory: its results, its error, whether it reached a session."""
        return self._dir(job) / "scratch"

    # -- starting -----------------------------------------------------------------------------

    def _program_args(self, job: Job, scratch: Path, manifest_file: Path) -> list[str]:
        args = ["--manifest", str(manifest_file), "--scratch", str(scratch)]
        if job.options.get("sandbox") == "true":
            args += ["--sandbox", "--sample-limit", job.options["sample_limit"]]
        if self.catalog_root is not None:
            args += ["--catalog-root", str(self.catalog_root)]
        for k, v in job.options.items():
            if k.startswith("param."):
                args += ["--param", f"{k.removeprefix('param.')}={v}"]
        return args

    def _remote(self, job: Job, session_id: str) -> str:
        params = {
            "x-doordash-team": job.team,
            "x-doordash-environment": job.environment,
            "user_id": job.user,
            "session_id": session_id,
        }
        if self.gateway_tls:
            params["use_ssl"] = "true"
        base = self.gateway_url.rstrip("/")
        return base + "/;" + ";".join(f"{k}={urllib.parse.quote(v, safe='@.')}" for k, v in params.items())

    def _env(self) -> dict[str, str]:
        """The environment of job processes: nothing of ours. The gateway credential of pool jobs
        goes on stdin: an environment can be read by other processes of the user (and, for a
        job on a driver of its own, by the job's code through the JVM)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPARK_CONNECT_")}
        env["PYTHONUNBUFFERED"] = "1"
        if self.gateway_ca_file is not None:
            env["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(self.gateway_ca_file)
        return env

    async def _plugin_conf(self, spark_home: Path) -> dict[str, str]:
        """sparkgate's driver plugin with its sandbox, for a job on a driver of its own."""
        if self.plugin_dir is None:
            return {}
        try:
            return await asyncio.to_thread(plugin_conf, spark_home, self.plugin_dir)
        except ConfigError as exc:
            log.warning("jobs on drivers of their own start without sparkgate's driver plugin: %s", exc.message)
            return {}

    async def start(self, job: Job, manifest: Manifest, on_done: OnDone, on_progress: OnProgress) -> Launch:
        # (A process has no steps between its start and its end worth a history entry.)
        d = self._dir(job)
        scratch = self._scratch(job)
        await asyncio.to_thread(scratch.mkdir, parents=True, exist_ok=True)
        manifest_file = d / "manifest.yaml"
        await asyncio.to_thread(manifest_file.write_text, job.manifest)
        log_path = d / "driver.log"
        mode = job.options.get("driver", self.default_driver)
        env = self._env()
        ui = ""
        handle: dict[str, Any] = {"mode": mode, "dir": str(d)}
        if mode == "own":
            home = self._spark_home or default_spark_home()
            ui_port = free_port()
            r = manifest.spec.resources
            conf = {
                "spark.driver.bindAddress": "127.0.0.1",
                "spark.driver.host": "127.0.0.1",
                "spark.ui.port": str(ui_port),
                "spark.ui.showConsoleProgress": "false",
                "spark.sql.warehouse.dir": str(d / "warehouse"),
                "spark.sparkgate.job.id": job.id,
            }
            conf |= merge_conf(await self._plugin_conf(home), manifest.spec.spark_conf)
            cmd = [str(home / "bin" / "spark-submit"), "--master", f"local[{max(1, r.driver.cores)}]"]
            cmd += ["--driver-memory", r.driver.memory, "--name", f"sparkgate-job-{job.id}"]
            for k, v in conf.items():
                cmd += ["--conf", f"{k}={v}"]
            cmd += [str(Path(program.__file__)), *self._program_args(job, scratch, manifest_file)]
            env["PYSPARK_PYTHON"] = env["PYSPARK_DRIVER_PYTHON"] = sys.executable
            env.setdefault("SPARK_HOME", str(home))
            ui = f"http://127.0.0.1:{ui_port}"
        else:
            session_id = str(uuid.uuid4())
            remote = self._remote(job, session_id)
            handle.update(session_id=session_id, remote=remote)
            argv = ["--remote", remote, *self._program_args(job, scratch, manifest_file)]
            proc = await self._take_standby(d, log_path, argv)
            if proc is not None:
                return self._started(job, on_done, proc, handle, log_path, scratch, ui, mode)
            cmd = [sys.executable, "-m", "sparkgate.runner.program", *argv]
            if self.gateway_token:
                cmd.append("--token-from-stdin")
        secret = self.gateway_token if mode != "own" else None
        logf = await asyncio.to_thread(open, log_path, "ab")
        with logf:
            proc = await spawn(
                *cmd,
                cwd=d,
                env=env,
                stdin=subprocess.PIPE if secret else subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if secret and proc.popen.stdin is not None:
            with contextlib.suppress(OSError):
                proc.popen.stdin.write((secret + "\n").encode())
                proc.popen.stdin.close()
        return self._started(job, on_done, proc, handle, log_path, scratch, ui, mode)

    def _started(  # noqa: PLR0917
        self,
        job: Job,
        on_done: OnDone,
        proc: Child,
        handle: dict[str, Any],
        log_path: Path,
        scratch: Path,
        ui: str,
        mode: str,
    ) -> Launch:
        handle["pid"] = proc.pid
        job.handle = handle  # (what the watcher ends on Spark if the job fails: its session)
        self._procs[job.id] = proc
        self._watch(job, on_done, proc.wait)
        log.info("job %s started (%s driver, pid %d, log %s)", job.id, mode, proc.pid, log_path)
        return Launch(handle=handle, log_path=str(log_path), scratch_dir=str(scratch), spark_ui_url=ui)

    # -- the standby job program --------------------------------------------------------------

    async def _spawn_standby(self) -> None:
        await asyncio.to_thread(self.jobs_dir.mkdir, parents=True, exist_ok=True)
        env = self._env()
        self._standby = await spawn(
            sys.executable,
            "-m",
            "sparkgate.runner.program",
            "--standby",
            cwd=self.jobs_dir,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    async def _take_standby(self, cwd: Path, log_path: Path, argv: list[str]) -> Child | None:
        """Hand a pool job to the waiting program (and start the next one); None if there is none."""
        proc, self._standby = self._standby, None
        await self._spawn_standby()
        if proc is None or proc.returncode is not None or proc.popen.stdin is None:
            return None
        line = json.dumps({"cwd": str(cwd), "log": str(log_path), "argv": argv, "token": self.gateway_token}) + "\n"
        try:
            proc.popen.stdin.write(line.encode())
            proc.popen.stdin.close()
        except OSError:
            proc.kill()
            return None
        return proc

    def _watch(self, job: Job, on_done: OnDone, wait: Any) -> None:
        async def watch() -> None:
            code = await wait()
            self._procs.pop(job.id, None)
            if job.id in self._cancelled:
                return
            outcome = self._outcome(job, code)
            if outcome.state == FAILED:
                await self._end_on_spark(job)
            await on_done(outcome)

        task = asyncio.create_task(watch(), name=f"job:{job.id}")
        self._watchers[job.id] = task
        task.add_done_callback(lambda _t: self._watchers.pop(job.id, None))

    def _outcome(self, job: Job, code: int | None) -> Outcome:
        scratch = self._scratch(job)
        if code in (0, None) and (scratch / program.RESULT_FILE).is_file():
            return Outcome(COMPLETED, details=program.read_result(scratch) or {})
        return Outcome(FAILED, error=self._failure(job, code))

    def _failure(self, job: Job, code: int | None) -> str:
        recorded = program.read_error(self._scratch(job))
        if recorded:
            return recorded
        text = tail(self._dir(job) / "driver.log", 400)
        said = program.failure_in_log(text)
        if said:
            return said
        return f"the job's process exited with code {code}; last log lines:\n" + "\n".join(text.splitlines()[-15:])

    # -- stopping -----------------------------------------------------------------------------

    async def cancel(self, job: Job) -> None:
        self._cancelled.add(job.id)
        pid = job.handle.get("pid")
        proc = self._procs.pop(job.id, None)
        if isinstance(pid, int) and pid_alive(pid) and self._is_ours(pid, job):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
            for _ in range(100):
                if not pid_alive(pid):
                    break
                await asyncio.sleep(0.05)
            else:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
        if proc is not None:
            if proc.returncode is None and not isinstance(pid, int):  # (a handle not recorded yet)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)
        await self._end_on_spark(job)

    async def _end_on_spark(self, job: Job) -> None:
        """A pool job that did not end by itself (cancelled, past its TTL, its process killed or
        crashed, gone when the runner restarted): its query may still run on the driver, and its
        session still holds a place there. Interrupt the one and release the other."""
        if job.handle.get("mode") != "pool" or not job.handle.get("session_id"):
            return
        # A job refused before it connected has no session: asking the gateway to interrupt one
        # would create it (and maybe start a driver for it).
        if (self._scratch(job) / program.SESSION_FILE).exists():
            await self._interrupt(job)

    async def _interrupt(self, job: Job) -> None:
        """Interrupt the job's session on its driver (the client is gone; its query may not be)."""
        import grpc
        import grpc.aio

        remote = str(job.handle.get("remote", self.gateway_url))
        target = remote.removeprefix("sc://").split("/", 1)[0]
        md: tuple[tuple[str, str], ...] = (("x-doordash-team", job.team), ("x-doordash-environment", job.environment))
        if self.gateway_token:
            md += (("authorization", f"Bearer {self.gateway_token}"),)
        ids = wire.encode_string(1, str(job.handle["session_id"])) + wire.encode_string(
            2, wire.encode_string(1, job.user)
        )
        interrupt_all = ids + wire.encode_string(3, "sparkgate-runner") + wire.encode_varint_field(4, 1)
        release = ids + wire.encode_string(3, "sparkgate-runner")
        if self.gateway_tls:
            ca = self.gateway_ca_file.read_bytes() if self.gateway_ca_file is not None else None
            channel = grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=ca))
        else:
            channel = grpc.aio.insecure_channel(target)
        try:
            async with channel as ch:
                await ch.unary_unary(SERVICE_PATH + "Interrupt")(interrupt_all, metadata=md, timeout=10)
                await ch.unary_unary(SERVICE_PATH + "ReleaseSession")(release, metadata=md, timeout=10)
        except grpc.aio.AioRpcError as exc:
            log.warning("job %s: interrupting its Spark session failed: %s", job.id, exc.details())
        except Exception:  # (an unreadable CA file, say): the job still ends
            log.exception("job %s: interrupting its Spark session failed", job.id)

    def _is_ours(self, pid: int, job: Job) -> bool:
        """The process runs in the job's directory (every job process does, pool or own), or is the
        standby program it was handed to, still importing pyspark before it reads the job."""
        try:
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
            if cwd == self._dir(job).resolve():
                return True
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return cwd == self.jobs_dir.resolve() and b"sparkgate.runner.program\x00--standby" in cmdline

    # -- after a restart ----------------------------------------------------------------------

    async def adopt(self, job: Job, on_done: OnDone, on_progress: OnProgress) -> Outcome | None:
        pid = job.handle.get("pid")
        if isinstance(pid, int) and pid_alive(pid) and self._is_ours(pid, job):

            async def wait_gone() -> None:
                while pid_alive(pid):
                    await asyncio.sleep(0.5)

            self._watch(job, on_done, wait_gone)
            log.info("job %s: re-adopted its running process %d", job.id, pid)
            return None
        outcome = self._outcome(job, None)
        if outcome.state == FAILED:
            recorded = program.read_error(self._scratch(job))
            outcome.error = recorded or "the job's process was gone when the runner restarted (no result was written)"
            await self._end_on_spark(job)
        return outcome

    def ui_url(self, job: Job) -> str:
        """The Spark UI of the driver a pool job runs on, once its session reached one."""
        sid = job.handle.get("session_id")
        if self.ui_lookup is None or not sid:
            return ""
        return self.ui_lookup(job.user, str(sid)) or ""

    def logs(self, job: Job, lines: int) -> str:
        return tail(job.log_path or self._dir(job) / "driver.log", lines)

    def read_log(self, job: Job, offset: int, limit: int) -> tuple[bytes, int]:
        return read_log_file(job.log_path or self._dir(job) / "driver.log", offset, limit)

    async def close(self) -> None:
        for task in list(self._watchers.values()):
            task.cancel()
        self._watchers.clear()
        standby, self._standby = self._standby, None
        if standby is not None:
            standby.kill()
            await standby.wait()
