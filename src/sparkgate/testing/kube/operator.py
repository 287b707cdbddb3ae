""":class:`FakeSparkOperator`: the Kubeflow Spark Operator's SparkApplication controller, in a test.

    async with FakeKubeApi() as api, FakeSparkOperator(api, runner=python_runner("...")) as operator:
        ...  # a SparkApplication created through the API gets a driver Pod, which runs `runner`

It follows ``sparkoperator.k8s.io/v1beta2`` SparkApplications as the operator's reconciler does
(``internal/controller/sparkapplication``): a new application (state ``""``) is submitted — its
driver Pod created (named ``spec.driver.podName``, else the ``spark.kubernetes.driver.pod.name``
conf, else ``<app>-driver``; owned by the application; labelled ``spark-role=driver``,
``spark-app-selector``, ``sparkoperator.k8s.io/app-name``, ``.../launched-by-spark-operator`` and
``.../submission-id``), ``status.submissionAttempts`` and ``lastSubmissionAttemptTime`` set, state
``SUBMITTED``. The driver Pod's phase then moves the application, as ``DriverStateToApplicationState``
does: ``RUNNING``, then ``SUCCEEDING`` -> ``COMPLETED`` or ``FAILING`` -> ``FAILED`` (with
``terminationTime`` and, for a failed driver, the error message the operator writes). A driver
Pod that disappears fails the application (``driver pod not found``). A submission that fails
(:meth:`FakeSparkOperator.fail_next_submission`, or a driver Pod the API refuses) is
``SUBMISSION_FAILED``, then ``FAILED``. A terminated application with ``spec.timeToLiveSeconds``
is deleted that long after its ``terminationTime``; its driver Pod goes with it (garbage
collection). Deleting a running application stops its driver the same way.

The driver Pods are bound to the operator's own node, where a :class:`~.kubelet.FakeKubelet` of
its own runs them with ``runner`` (default: a few log lines, then exit 0); a test's kubelet never
sees them.

Not modelled: ``spark-submit`` itself (the driver is whatever ``runner`` runs, and it creates no
executors: ``status.executorState`` stays absent), ``restartPolicy`` (always ``Never``: no retries,
no ``PENDING_RERUN``), spec changes of a submitted application (``INVALIDATING``), suspension,
the web UI Service and Ingress, the mutating webhook, batch schedulers, and driver resources.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from typing import Any

from sparkgate.aio import TaskSupervisor
from sparkgate.testing.kube.apiserver import FakeKubeApi
from sparkgate.testing.kube.defaults import now, parse_time
from sparkgate.testing.kube.kubelet import FakeKubelet
from sparkgate.testing.kube.resources import PODS, SPARK_APPLICATIONS
from sparkgate.testing.kube.runners import Runner, python_runner
from sparkgate.testing.kube.selectors import Selector
from sparkgate.testing.kube.status import ApiStatusError
from sparkgate.testing.kube.watch import DELETED, Watch

log = logging.getLogger(__name__)

Obj = dict[str, Any]

LABEL_APP_NAME = "sparkoperator.k8s.io/app-name"
LABEL_LAUNCHED = "sparkoperator.k8s.io/launched-by-spark-operator"
LABEL_SUBMISSION = "sparkoperator.k8s.io/submission-id"
LABEL_APP_SELECTOR = "spark-app-selector"
DRIVER_CONTAINER = "spark-kubernetes-driver"

NEW, SUBMITTED, RUNNING, SUCCEEDING, COMPLETED = "", "SUBMITTED", "RUNNING", "SUCCEEDING", "COMPLETED"
FAILING, FAILED, SUBMISSION_FAILED, UNKNOWN = "FAILING", "FAILED", "SUBMISSION_FAILED", "UNKNOWN"

#: What a driver Pod's phase makes of its application (the operator's ``GetDriverState`` and
#: ``DriverStateToApplicationState``).
_BY_PHASE = {"Pending": SUBMITTED, "Running": RUNNING, "Succeeded": SUCCEEDING, "Failed": FAILING}

#: The default driver: a few log lines, then success.
default_driver_runner: Runner = python_runner(
    "import time\n"
    "print('fake driver: starting', flush=True)\n"
    "time.sleep(0.3)\n"
    "print('fake driver: Pi is roughly 3.14', flush=True)\n"
    "print('fake driver: done', flush=True)\n"
)


def driver_pod_name(app: Obj) -> str:
    spec = app["spec"]
    return str(
        (spec.get("driver") or {}).get("podName")
        or (spec.get("sparkConf") or {}).get("spark.kubernetes.driver.pod.name")
        or f"{app['metadata']['name']}-driver"
    )


def _driver_state(pod: Obj) -> tuple[str, Obj | None]:
    """The application state a driver Pod means, and its driver container's termination (if any)."""
    status = pod.get("status") or {}
    terminated = next(
        (c["state"].get("terminated") for c in status.get("containerStatuses") or [] if c["name"] == DRIVER_CONTAINER),
        None,
    )
    phase = status.get("phase", "")
    if phase in ("Running", "Failed") and terminated is not None:
        return (SUCCEEDING if terminated.get("exitCode") == 0 else FAILING), terminated
    return _BY_PHASE.get(phase, UNKNOWN), terminated


class FakeSparkOperator:
    """The operator's controller for SparkApplications of ``api`` (any namespace); ``async with`` it.

    ``runner``: what each driver Pod runs (:mod:`.runners`). ``node_name``: the node of its own
    kubelet, where its driver Pods are bound.
    """

    def __init__(
        self,
        api: FakeKubeApi,
        runner: Runner = default_driver_runner,
        *,
        node_name: str = "fake-spark-operator-node",
    ) -> None:
        self.api = api
        self.node_name = node_name
        #: Runs the driver Pods (only those: they are bound to its node).
        self.kubelet = FakeKubelet(api, runner, node_name=node_name, selector=f"{LABEL_LAUNCHED}=true")
        self._tasks = TaskSupervisor("fake-spark-operator")
        self._queue: asyncio.Queue[tuple[str, str, Obj | None, bool]] = asyncio.Queue()
        self._submission_failures: deque[str] = deque()
        self._timers: dict[str, asyncio.Task[Any]] = {}
        self._watches: list[Watch] = []

    async def __aenter__(self) -> FakeSparkOperator:
        await self.kubelet.__aenter__()
        store = self.api.store
        apps = store.watch(SPARK_APPLICATIONS)
        drivers = store.watch(PODS, selector=Selector.parse(PODS, labels=f"{LABEL_LAUNCHED}=true"))
        self._watches = [apps, drivers]
        self._tasks.spawn("applications", self._follow_apps(apps))
        self._tasks.spawn("drivers", self._follow_drivers(drivers))
        self._tasks.spawn("reconciler", self._reconcile_forever())
        return self

    async def __aexit__(self, *exc: object) -> None:
        for watch in self._watches:
            watch.close()
        await self._tasks.close()
        await self.kubelet.__aexit__(*exc)

    def fail_next_submission(self, message: str = "failed to run spark-submit: injected failure") -> None:
        """The next submission fails (``SUBMISSION_FAILED`` with ``message``) without a driver Pod."""
        self._submission_failures.append(message)

    # -- events ----------------------------------------------------------------------------------

    async def _follow_apps(self, watch: Watch) -> None:
        with watch:
            async for event in watch:
                meta = event.object["metadata"]
                if event.type != DELETED:
                    self._queue.put_nowait((meta["namespace"], meta["name"], None, False))

    async def _follow_drivers(self, watch: Watch) -> None:
        with watch:
            async for event in watch:
                meta = event.object["metadata"]
                app = (meta.get("labels") or {}).get(LABEL_APP_NAME)
                if app:
                    pod = None if event.type == DELETED else event.object
                    self._queue.put_nowait((meta["namespace"], app, pod, True))

    async def _reconcile_forever(self) -> None:
        while True:
            namespace, name, pod, from_pod = await self._queue.get()
            try:
                self._reconcile(namespace, name, pod, from_pod=from_pod)
            except ApiStatusError as exc:
                log.warning("fake spark operator: %s/%s: %s", namespace, name, exc.message)

    # -- the state machine -----------------------------------------------------------------------

    def _set_status(self, app: Obj, **changes: Any) -> None:
        def write(obj: Obj) -> None:
            status = obj.setdefault("status", {})
            status.setdefault("driverInfo", {})
            for key, value in changes.items():
                if value is None:
                    status.pop(key, None)
                else:
                    status[key] = value

        meta = app["metadata"]
        self.api.store.modify(SPARK_APPLICATIONS, meta["namespace"], meta["name"], write, subresource="status")

    def _reconcile(self, namespace: str, name: str, pod: Obj | None, *, from_pod: bool) -> None:
        app = self.api.store.find(SPARK_APPLICATIONS, namespace, name)
        if app is None or app["metadata"].get("deletionTimestamp"):
            return
        status = app.get("status") or {}
        state = (status.get("applicationState") or {}).get("state", NEW)
        if state == NEW:
            self._submit(app)
        elif state in (SUBMITTED, RUNNING, UNKNOWN):
            # Driver Pods' events move the state, one by one and in order (so a quick driver still
            # shows RUNNING); the application's own events do not look at the Pod.
            if from_pod and (pod is None or pod["metadata"]["name"] == status.get("driverInfo", {}).get("podName")):
                self._follow_driver(app, state, pod)
        elif state == SUCCEEDING:
            self._set_status(app, applicationState={"state": COMPLETED})
        elif state in (FAILING, SUBMISSION_FAILED):
            message = (status.get("applicationState") or {}).get("errorMessage")
            failed = {"state": FAILED, **({"errorMessage": message} if message else {})}
            self._set_status(app, applicationState=failed, terminationTime=status.get("terminationTime") or now())
        elif state in (COMPLETED, FAILED):
            self._expire(app)

    def _submit(self, app: Obj) -> None:
        meta, status = app["metadata"], app.get("status") or {}
        submission = str(uuid.uuid4())
        pod_name = driver_pod_name(app)
        attempt = {
            "submissionID": submission,
            "driverInfo": {"podName": pod_name},
            "lastSubmissionAttemptTime": now(),
            "submissionAttempts": int(status.get("submissionAttempts", 0)) + 1,
        }
        try:
            if self._submission_failures:
                raise RuntimeError(self._submission_failures.popleft())
            self.api.store.create(PODS, meta["namespace"], self._driver_pod(app, pod_name, submission))
        except (ApiStatusError, RuntimeError) as exc:
            message = exc.message if isinstance(exc, ApiStatusError) else str(exc)
            self._set_status(app, **attempt, applicationState={"state": SUBMISSION_FAILED, "errorMessage": message})
            return
        executions = int(status.get("executionAttempts", 0)) + 1
        self._set_status(app, **attempt, applicationState={"state": SUBMITTED}, executionAttempts=executions)

    def _driver_pod(self, app: Obj, pod_name: str, submission: str) -> Obj:
        meta, spec = app["metadata"], app["spec"]
        driver = spec.get("driver") or {}
        labels = {
            **(driver.get("labels") or {}),
            LABEL_APP_SELECTOR: f"spark-{uuid.uuid4().hex}",
            "spark-role": "driver",
            "spark-version": spec["sparkVersion"],
            LABEL_APP_NAME: meta["name"],
            LABEL_LAUNCHED: "true",
            LABEL_SUBMISSION: submission,
        }
        args = ["driver", "--properties-file", "/opt/spark/conf/spark.properties"]
        if spec.get("mainClass"):
            args += ["--class", spec["mainClass"]]
        args += [spec["mainApplicationFile"], *(spec.get("arguments") or [])]
        container: Obj = {
            "name": DRIVER_CONTAINER,
            "image": driver.get("image") or spec.get("image") or "spark:fake",
            "args": args,
        }
        for field in ("env", "envFrom", "volumeMounts"):
            if driver.get(field):
                container[field] = driver[field]
        owner = {
            "apiVersion": SPARK_APPLICATIONS.api_version,
            "kind": SPARK_APPLICATIONS.kind,
            "name": meta["name"],
            "uid": meta["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
        pod_spec: Obj = {"restartPolicy": "Never", "nodeName": self.node_name, "containers": [container]}
        if spec.get("volumes"):
            pod_spec["volumes"] = spec["volumes"]
        if driver.get("serviceAccount"):
            pod_spec["serviceAccountName"] = driver["serviceAccount"]
        pod_meta: Obj = {"name": pod_name, "labels": labels, "ownerReferences": [owner]}
        if driver.get("annotations"):
            pod_meta["annotations"] = driver["annotations"]
        return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": pod_spec}

    def _follow_driver(self, app: Obj, state: str, pod: Obj | None) -> None:
        status = app.get("status") or {}
        if pod is None:
            failed = {"state": FAILING, "errorMessage": "driver pod not found"}
            self._set_status(app, applicationState=failed, terminationTime=now())
            return
        new_state, terminated = _driver_state(pod)
        changes: dict[str, Any] = {"sparkApplicationId": pod["metadata"].get("labels", {}).get(LABEL_APP_SELECTOR)}
        app_state: Obj = {"state": new_state}
        if new_state in (SUCCEEDING, FAILING):
            changes["terminationTime"] = status.get("terminationTime") or now()
            if new_state == FAILING and terminated is not None:
                code, reason = terminated.get("exitCode"), terminated.get("reason", "")
                app_state["errorMessage"] = f"driver container failed with ExitCode: {code}, Reason: {reason}"
        if new_state != state or changes["sparkApplicationId"] != status.get("sparkApplicationId"):
            self._set_status(app, applicationState=app_state, **changes)

    def _expire(self, app: Obj) -> None:
        meta, spec, status = app["metadata"], app["spec"], app.get("status") or {}
        ttl, terminated = spec.get("timeToLiveSeconds"), status.get("terminationTime")
        if ttl is None or not terminated:
            return
        left = parse_time(terminated).timestamp() + ttl - time.time()
        if left <= 0:
            with contextlib.suppress(ApiStatusError):
                self.api.store.delete(SPARK_APPLICATIONS, meta["namespace"], meta["name"])
            return
        if meta["uid"] not in self._timers:
            key = (meta["namespace"], meta["name"], None, False)
            self._timers[meta["uid"]] = self._tasks.spawn(f"ttl {meta['name']}", self._requeue(left, key, meta["uid"]))

    async def _requeue(self, delay: float, key: tuple[str, str, Obj | None, bool], uid: str) -> None:
        await asyncio.sleep(delay)
        del self._timers[uid]
        self._queue.put_nowait(key)
