"""Kubernetes execution: each job is a Spark Operator ``SparkApplication`` (``runner.backend: kubernetes``).

It relies on the Kubeflow Spark Operator (``sparkoperator.k8s.io/v1beta2``) running in the cluster
and watching ``kubernetes.namespace``, where the applications are made; on the job image
(``runner.kubernetes.images``: Spark, Python and sparkgate, whose job program is the main file and
enforces sandbox mode); and on the runner's RBAC (:data:`sparkgate.kube.rbac.GATEWAY_RULES`):
SparkApplications listed, watched, applied and deleted, and their driver Pods' logs read.

* **Start**: server-side apply of the application :func:`~sparkgate.runner.kubernetes.build_spark_application`
  builds, named after the job and labelled with its id (``sparkgate.io/job-id``). A job started
  again (its runner stopped before it recorded the start) finds its application, not a second one.
* **Watch**: one informer over sparkgate's applications in the namespace serves every job. Each
  change of an application's ``status.applicationState.state`` is reported as it arrives, in order:
  SUBMITTED, RUNNING, SUCCEEDING, ... as steps in the job's history, COMPLETED or FAILED as its end.
  An application deleted before its end was seen (past its ``timeToLiveSeconds``, or by someone)
  ended the job FAILED, saying so; a watch that lost its place lists again and notices such a
  deletion too.
* **Logs**: the driver Pod's log (``status.driverInfo.podName``) is copied as it is written to
  ``{jobs_dir}/{job}/driver.log``; Check and Watch read the copy, which outlives the Pod (the
  operator deletes it with the application, ``runner.kubernetes.keep_finished_seconds`` after the
  end). A job's end is reported once its log is copied whole, so its error can quote it.
* **Cancel** deletes the application (the operator deletes its Pods); gone already is fine.
* **After a restart** each running job's application is found again by its label and watched on:
  a change since the last state recorded is reported, an end too; an application gone meanwhile
  ended the job FAILED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparkgate.aio import TaskSupervisor, tail
from sparkgate.config import CatalogSettings, KubernetesJobSettings, KubernetesSettings
from sparkgate.errors import BadRequest, ConfigError, Conflict, NotFound, SparkgateError
from sparkgate.kube.api import SPARK_APPLICATIONS, KubeApi, Obj
from sparkgate.kube.informer import Informer
from sparkgate.runner import program
from sparkgate.runner.backends.base import Launch, OnDone, OnProgress, Outcome, Progress, read_log_file
from sparkgate.runner.jobs import COMPLETED, FAILED, PENDING, RUNNING, Job
from sparkgate.runner.kubernetes import (
    JOB_ID,
    SELECTOR,
    build_spark_application,
    label_value,
    map_state,
    output_uri,
)
from sparkgate.runner.manifest import Manifest

log = logging.getLogger(__name__)

#: Seconds between tries at reading a driver's log that is not there yet (its Pod is being
#: scheduled, its image pulled) or whose stream was cut; doubled while nothing new comes, up to
#: the second. A change of the application's state (its driver running, say) tries at once.
LOG_RETRY_SECONDS = (0.5, 8.0)
#: Seconds a job's end waits for the rest of its driver's log to be copied.
LOG_DRAIN_SECONDS = 10.0
#: Lines of the driver's log a failure quotes when the job program said nothing itself.
ERROR_LOG_LINES = 15

#: What each of the operator's states means, for the job's history (``{pod}``: the driver Pod).
_STEPS = {
    "SUBMITTED": "the Spark Operator submitted the application; its driver {pod} is starting",
    "PENDING_RERUN": "the Spark Operator will submit the application again",
    "RUNNING": "its driver {pod} is running",
    "SUCCEEDING": "its driver {pod} ended well; the Spark Operator is completing the application",
    "FAILING": "its driver {pod} failed; the Spark Operator is ending the application",
    "SUSPENDING": "the Spark Operator is suspending the application",
    "SUSPENDED": "the application is suspended",
    "RESUMING": "the Spark Operator is resuming the application",
    "INVALIDATING": "its spec changed; the Spark Operator is submitting it again",
}


def app_state(app: Obj) -> str:
    """The operator's state of an application ("": the operator has not taken it up yet)."""
    return str(((app.get("status") or {}).get("applicationState") or {}).get("state") or "").upper()


def driver_pod(app: Obj) -> str:
    return str(((app.get("status") or {}).get("driverInfo") or {}).get("podName") or "")


def _error_message(app: Obj) -> str:
    return str(((app.get("status") or {}).get("applicationState") or {}).get("errorMessage") or "")


def _step_state(operator_state: str) -> str:
    """The job's state for an operator state before the end: the operator's waiting states are
    RUNNING to the runner (the job has left its queue), and so are states it does not know."""
    state = map_state(operator_state)
    return RUNNING if state in (PENDING, "UNKNOWN") else state


@dataclass
class _Watched:
    """A job whose application this runner follows."""

    job_id: str
    name: str
    on_done: OnDone
    on_progress: OnProgress
    log_file: Path
    handle: dict[str, Any]
    #: The informer's events about the application, handled in order by the job's task.
    events: asyncio.Queue[tuple[str, Obj]] = field(default_factory=asyncio.Queue)
    #: The operator's state last reported.
    state: str = ""
    pod: str = ""
    #: Cancel is deleting the application: its deletion is no failure, and nothing more is reported.
    cancelling: bool = False
    #: The driver has ended: the log copy reads what is left and stops.
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    #: The application changed state: a log copy waiting to try again tries now.
    nudge: asyncio.Event = field(default_factory=asyncio.Event)
    log_task: asyncio.Task[None] | None = None


class KubernetesBackend:
    """Jobs as SparkApplications in ``kubernetes.namespace``; connects on first use."""

    name = "kubernetes"

    def __init__(
        self,
        settings: KubernetesSettings,
        jobs: KubernetesJobSettings,
        jobs_dir: Path,
        *,
        catalogs: Mapping[str, CatalogSettings] | None = None,
        api: KubeApi | None = None,
    ) -> None:
        self.settings = settings
        self.jobs = jobs
        #: Where each job's copy of its driver's log is kept (``{jobs_dir}/{job}/driver.log``).
        self.jobs_dir = jobs_dir.absolute()
        #: The catalog of each environment (``environments.<env>.catalog``), set in the job's Spark conf.
        self.catalogs = dict(catalogs or {})
        self.namespace = settings.namespace
        self._api = api
        self._own_api = api is None
        self._apps: Informer | None = None
        self._listing = asyncio.Lock()
        #: The jobs followed now, by job id.
        self._watched: dict[str, _Watched] = {}
        self._tasks = TaskSupervisor("runner-kubernetes")

    # -- the API and the informer ---------------------------------------------------------------

    async def _connected(self) -> KubeApi:
        """The API client (from ``kubernetes.kubeconfig``, else the Pod's service account)."""
        if self._api is None:
            s = self.settings
            api = await asyncio.to_thread(
                KubeApi.connect, namespace=s.namespace, kubeconfig=s.kubeconfig, context=s.context
            )
            if self._api is None:
                self._api = api
            else:  # (another call connected meanwhile)
                await api.aclose()
        return self._api

    async def _informer(self) -> Informer:
        """The informer over sparkgate's applications, listed (connecting first, once)."""
        async with self._listing:
            if self._apps is not None:
                return self._apps
            api = await self._connected()
            apps = Informer(api, SPARK_APPLICATIONS, labels=SELECTOR, namespace=self.namespace, listener=self._heard)
            try:
                await apps.start()
            except NotFound as exc:
                raise ConfigError(
                    f"the cluster has no SparkApplication kind in namespace {self.namespace}: install the "
                    f"Spark Operator (sparkoperator.k8s.io/v1beta2) for runner.backend kubernetes ({exc.message})"
                ) from None
            self._apps = apps
            return apps

    @property
    def api(self) -> KubeApi:
        if self._api is None:
            raise SparkgateError("the kubernetes backend is not connected yet")
        return self._api

    def _find(self, job: Job) -> Obj | None:
        """The job's application as last seen, found by its job-id label."""
        want = label_value(job.id)
        objects = self._apps.objects.values() if self._apps is not None else ()
        return next((o for o in objects if (o["metadata"].get("labels") or {}).get(JOB_ID) == want), None)

    def _heard(self, kind: str, app: Obj) -> None:
        """The informer's listener: an application's event goes to its job's queue, if followed."""
        watched = self._watched.get((app["metadata"].get("labels") or {}).get(JOB_ID, ""))
        if watched is not None:
            watched.events.put_nowait((kind, app))

    # -- starting and following -----------------------------------------------------------------

    async def start(self, job: Job, manifest: Manifest, on_done: OnDone, on_progress: OnProgress) -> Launch:
        await self._informer()
        app = build_spark_application(
            job, manifest, self.jobs, self.catalogs.get(job.environment), namespace=self.namespace
        )
        name = app["metadata"]["name"]
        log_file = self.jobs_dir / job.id / "driver.log"
        await asyncio.to_thread(log_file.parent.mkdir, parents=True, exist_ok=True)
        output = output_uri(job, self.jobs)
        handle: dict[str, Any] = {"name": name, "namespace": self.namespace, "output_path": output}
        # Followed before it exists: the operator may take it up before the apply returns.
        watched = self._watch(job, on_done, on_progress, log_file, handle)
        try:
            applied = await self.api.apply(SPARK_APPLICATIONS, app, namespace=self.namespace)
        except BaseException:
            self._unwatch(watched)
            raise
        handle["uid"] = applied["metadata"]["uid"]
        self._follow(watched)
        log.info("job %s: SparkApplication %s applied in namespace %s", job.id, name, self.namespace)
        return Launch(
            handle=dict(handle),
            log_path=str(log_file),
            # An output on a file system the runner shares with the drivers: Check shows its results.
            scratch_dir=output if output.startswith("/") else "",
            message=f"SparkApplication {name} applied in namespace {self.namespace}",
        )

    def _watch(
        self, job: Job, on_done: OnDone, on_progress: OnProgress, log_file: Path, handle: dict[str, Any]
    ) -> _Watched:
        """Follow the job's application from now on; what the informer knows of it comes first."""
        watched = _Watched(job.id, str(handle["name"]), on_done, on_progress, log_file, handle)
        watched.state = str(handle.get("app_state", ""))
        watched.pod = str(handle.get("driver_pod", ""))
        self._watched[label_value(job.id)] = watched
        known = self._find(job)  # (no await since the line above: no event falls between the two)
        if known is not None:
            watched.events.put_nowait(("MODIFIED", known))
        return watched

    def _unwatch(self, watched: _Watched) -> None:
        key = label_value(watched.job_id)
        if self._watched.get(key) is watched:
            del self._watched[key]
        if watched.log_task is not None:
            watched.log_task.cancel()

    def _follow(self, watched: _Watched) -> None:
        self._tasks.spawn(f"job:{watched.job_id}", self._report(watched))
        if watched.pod:
            self._copy_log_of(watched)

    async def _report(self, watched: _Watched) -> None:
        """Report the application's changes of state, in order, until its end."""
        try:
            while True:
                kind, app = await watched.events.get()
                if watched.cancelling:
                    return
                outcome = await self._on_event(watched, kind, app)
                if outcome is not None and not watched.cancelling:
                    await self._drain_log(watched)
                    if outcome.state == FAILED and not outcome.error:
                        outcome.error = await self._failure(watched, app)
                    log.info("job %s: SparkApplication %s %s", watched.job_id, watched.name, outcome.state)
                    await watched.on_done(outcome)
                    return
        finally:
            self._unwatch(watched)

    async def _on_event(self, watched: _Watched, kind: str, app: Obj) -> Outcome | None:
        """Report a step of the application; its outcome if it ended."""
        pod = driver_pod(app)
        if pod and pod != watched.pod:
            watched.pod = watched.handle["driver_pod"] = pod
            self._copy_log_of(watched)
        state = app_state(app)
        ended = map_state(state) in (COMPLETED, FAILED)
        if kind == "DELETED" and not ended:
            return Outcome(FAILED, error=self._deleted(watched, state))
        if not state or state == watched.state:
            return None  # (not taken up yet; or the operator changed something else: executors, ...)
        watched.state = watched.handle["app_state"] = state
        watched.nudge.set()
        if ended:
            if map_state(state) == COMPLETED:
                return Outcome(COMPLETED, details={"output_path": watched.handle.get("output_path", "")})
            return Outcome(FAILED)  # (the error quotes the driver's log, once it is all copied)
        text = _STEPS.get(state, "the Spark Operator reports a state sparkgate does not know").format(
            pod=f"Pod {watched.pod}" if watched.pod else "Pod"
        )
        await watched.on_progress(Progress(_step_state(state), f"{state}: {text}", handle=dict(watched.handle)))
        return None

    def _deleted(self, watched: _Watched, state: str) -> str:
        return (
            f"the SparkApplication {watched.name} was deleted before its end was seen "
            f"(last state: {state or 'not yet taken up by the Spark Operator'}): by the Spark Operator "
            "after runner.kubernetes.keep_finished_seconds, or by someone else; its output, if any, is at "
            f"{watched.handle.get('output_path') or 'its output URI'}"
        )

    async def _failure(self, watched: _Watched, app: Obj) -> str:
        """Why the job failed: what the job program said in its log, else what the operator says
        and the log's last lines."""
        text = await asyncio.to_thread(tail, watched.log_file, 400)
        said = program.failure_in_log(text)
        if said:
            return said
        reason = _error_message(app) or "no reason given"
        if app_state(app) == "SUBMISSION_FAILED":
            why = f"the Spark Operator could not submit the SparkApplication {watched.name}: {reason}"
        else:
            why = f"the driver of SparkApplication {watched.name} failed: {reason}"
        last = "\n".join(text.splitlines()[-ERROR_LOG_LINES:])
        return why + (f"; last log lines:\n{last}" if last else "")

    # -- the driver's log -----------------------------------------------------------------------

    def _copy_log_of(self, watched: _Watched) -> None:
        if watched.log_task is None and self._watched.get(label_value(watched.job_id)) is watched:
            watched.log_task = self._tasks.spawn(f"log:{watched.job_id}", self._copy_log(watched))

    async def _drain_log(self, watched: _Watched) -> None:
        """The driver ended: let the copy of its log read what is left (for a while)."""
        watched.ended.set()
        watched.nudge.set()
        if watched.log_task is not None:
            await asyncio.wait({watched.log_task}, timeout=LOG_DRAIN_SECONDS)  # (then cancelled, if still on)

    async def _copy_log(self, watched: _Watched) -> None:
        """Copy the driver Pod's log to the job's log file as it is written, until the driver has
        ended and all of it is copied."""
        first, most = LOG_RETRY_SECONDS
        delay = first
        while True:
            final = watched.ended.is_set()
            watched.nudge.clear()
            copied = 0
            try:
                copied = await self._append_log(watched)
            except (NotFound, BadRequest):
                pass  # (no such Pod yet or any more; its container not started yet)
            except SparkgateError as exc:
                log.info("job %s: reading the log of Pod %s: %s", watched.job_id, watched.pod, exc.message)
            if final:
                return
            delay = first if copied else min(delay * 2, most)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watched.nudge.wait(), delay)

    async def _append_log(self, watched: _Watched) -> int:
        """Read the Pod's log from its start; append what the file does not have yet (its size)."""
        have = await asyncio.to_thread(_size, watched.log_file)
        out = await asyncio.to_thread(open, watched.log_file, "ab", buffering=0)
        copied = 0
        try:
            seen = 0
            async for chunk in self.api.follow_log(watched.pod, namespace=self.namespace):
                new = chunk[max(0, have - seen) :]
                seen += len(chunk)
                if new:
                    await asyncio.to_thread(out.write, new)
                    copied += len(new)
        finally:
            await asyncio.to_thread(out.close)
        return copied

    def logs(self, job: Job, lines: int) -> str:
        return tail(job.log_path or self.jobs_dir / job.id / "driver.log", lines)

    def read_log(self, job: Job, offset: int, limit: int) -> tuple[bytes, int]:
        return read_log_file(job.log_path or self.jobs_dir / job.id / "driver.log", offset, limit)

    def ui_url(self, job: Job) -> str:
        """The driver's Spark UI, as the operator publishes it (an ingress, else its Service)."""
        app = self._find(job)
        info = ((app or {}).get("status") or {}).get("driverInfo") or {}
        url = str(info.get("webUIIngressAddress") or info.get("webUIAddress") or "")
        return url if not url or "://" in url else f"http://{url}"

    # -- stopping and adopting ------------------------------------------------------------------

    async def cancel(self, job: Job) -> None:
        api = await self._connected()
        name = str(job.handle.get("name") or job.id)  # (none yet: a job not started, or not recorded so)
        watched = self._watched.get(label_value(job.id))
        if watched is not None:
            watched.cancelling = True
        try:
            await api.delete(SPARK_APPLICATIONS, name, namespace=self.namespace, uid=job.handle.get("uid"))
        except Conflict:
            pass  # (an application of that name that is not the job's: the job's is gone)
        except BaseException:
            if watched is not None:
                watched.cancelling = False
            raise
        if watched is not None:
            watched.events.put_nowait(("CANCELLED", {}))  # (its task ends at once)
        log.info("job %s: SparkApplication %s deleted", job.id, name)

    async def adopt(self, job: Job, on_done: OnDone, on_progress: OnProgress) -> Outcome | None:
        await self._informer()
        handle = dict(job.handle) or {"name": job.id, "namespace": self.namespace}
        log_file = Path(job.log_path) if job.log_path else self.jobs_dir / job.id / "driver.log"
        if self._find(job) is None:
            state = handle.get("app_state") or "unknown"
            return Outcome(
                FAILED,
                error=f"the SparkApplication {handle.get('name', job.id)} was gone when the runner restarted, "
                f"and its end was not recorded (last state: {state}): deleted by the Spark Operator after "
                "runner.kubernetes.keep_finished_seconds, or by someone else",
            )
        await asyncio.to_thread(log_file.parent.mkdir, parents=True, exist_ok=True)
        watched = self._watch(job, on_done, on_progress, log_file, handle)
        self._follow(watched)
        log.info("job %s: following SparkApplication %s again", job.id, watched.name)
        return None

    async def close(self) -> None:
        """Stop following (the applications run on; a restarted runner adopts them)."""
        if self._apps is not None:
            await self._apps.close()
        await self._tasks.close()
        self._watched.clear()
        if self._own_api and self._api is not None:
            await self._api.aclose()
            self._api = None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
