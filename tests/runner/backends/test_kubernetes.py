"""The Kubernetes execution backend: jobs as SparkApplications, on a fake API server where a fake
Spark Operator runs each application's driver Pod as a local process (no JVM: the driver below
speaks as the job program does)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from sparkgate.config import CatalogSettings, KubernetesJobSettings, KubernetesSettings, RunnerSettings, load_settings
from sparkgate.kube.rbac import GATEWAY_CLUSTER_RULES, GATEWAY_RULES, pairs
from sparkgate.runner.backends import kubernetes_backend
from sparkgate.runner.backends.kubernetes import KubernetesBackend
from sparkgate.runner.proto import spark_runner_pb2 as pb
from sparkgate.runner.proto import spark_runner_pb2_grpc as pb_grpc
from sparkgate.runner.server import RunnerServer
from sparkgate.runner.service import Runner
from sparkgate.runner.store import JobStore
from sparkgate.testing.kube import ApiStatusError, FakeKubeApi, FakeSparkOperator
from sparkgate.testing.kube.resources import SPARK_APPLICATIONS
from sparkgate.testing.kube.runners import PodRun
from sparkgate.testing.kube.validation import validate
from tests.runner.test_manifest import GOOD

NAMESPACE = "sparkgate"
APPS = "sparkapplications"
ENVS = ["local", "test", "staging", "prod"]

#: The driver: what the job program prints, then it ends as the job's ``param.*`` say: after
#: ``seconds``, or once the file ``until`` names exists; well, or as ``end`` says.
DRIVER = """
import json, os, sys, time
scratch, seconds, end, until = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
print("[sparkgate-job 10:00:00] source orders: samples.orders", flush=True)
time.sleep(seconds)
while until and not os.path.exists(until):
    time.sleep(0.02)
if end == "fail":
    print("[sparkgate-job 10:00:01] failed: AnalysisException: [TABLE_OR_VIEW_NOT_FOUND] samples.orderz", flush=True)
    sys.exit(1)
if end == "crash":
    print("Exception in thread main: java.lang.OutOfMemoryError: Java heap space", flush=True)
    sys.exit(52)
os.makedirs(scratch, exist_ok=True)
with open(os.path.join(scratch, "result.json"), "w") as f:
    json.dump({"preview": [{"n": 1}], "count": 1, "schema": {}, "output_path": scratch}, f)
print("[sparkgate-job 10:00:01] done: 1 row(s) in daily", flush=True)
"""


def driver(run: PodRun) -> list[str]:
    args = list(run.args)
    params = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--param")
    scratch = args[args.index("--scratch") + 1]
    seconds, end, until = params.get("seconds", "0.2"), params.get("end", "ok"), params.get("until", "")
    return [sys.executable, "-c", DRIVER, scratch, seconds, end, until]


@pytest.fixture(autouse=True)
async def no_task_left_behind() -> AsyncIterator[None]:
    """Closing the runner ends everything the backend started: informer, job and log tasks."""
    yield
    left = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith(("runner-kubernetes:", "informer:"))]
    assert not left, left


@dataclass
class Cluster:
    fake: FakeKubeApi
    operator: FakeSparkOperator
    kubeconfig: Path
    root: Path

    def app(self, name: str) -> dict[str, Any] | None:
        return self.fake.get_object(APPS, name, NAMESPACE)


@contextlib.asynccontextmanager
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """A fake API server and Spark Operator; after the test, every request the backend made is
    one the chart's Role allows (``sparkgate.kube.rbac.GATEWAY_RULES``)."""
    async with FakeKubeApi() as fake, FakeSparkOperator(fake, runner=driver) as operator:
        yield Cluster(fake, operator, fake.write_kubeconfig(tmp_path / "kubeconfig", NAMESPACE), tmp_path)
    allowed = pairs(GATEWAY_RULES + GATEWAY_CLUSTER_RULES)
    assert fake.seen <= allowed, fake.seen - allowed


@dataclass
class Serving:
    runner: Runner
    backend: KubernetesBackend
    stub: Any


@contextlib.asynccontextmanager
async def runner_on(c: Cluster, catalogs: dict[str, CatalogSettings] | None = None) -> AsyncIterator[Serving]:
    """A runner on the kubernetes backend (reaching the fake through a kubeconfig file), and its
    gRPC service."""
    backend = KubernetesBackend(
        KubernetesSettings(namespace=NAMESPACE, kubeconfig=str(c.kubeconfig)),
        KubernetesJobSettings(output_uris={"default": str(c.root / "out" / "{job_id}")}, keep_finished_seconds=60),
        c.root / "jobs",
        catalogs=catalogs,
    )
    runner = Runner(
        RunnerSettings(port=0, max_running=10), JobStore(f"sqlite:///{c.root / 'runner.db'}"), backend, ENVS
    )
    await runner.start()
    try:
        async with (
            RunnerServer(runner, "127.0.0.1", 0) as server,
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
        ):
            yield Serving(runner, backend, pb_grpc.SparkRunnerServiceStub(channel))
    finally:
        await runner.close()


async def submit(stub: Any, environment: str = "local", sandbox: bool = False, **params: str) -> str:
    options = {f"param.{k}": v for k, v in params.items()} | ({"sandbox": "true"} if sandbox else {})
    request = pb.SubmitRequest(manifest=GOOD, environment=environment, user="jane@example.com", options=options)
    resp = await stub.Submit(request)
    assert resp.backend == "kubernetes"
    return str(resp.job_id)


async def wait_for(stub: Any, job_id: str, what: Any, timeout: float = 10) -> Any:
    """The job's Check once ``what(check)`` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        resp = await stub.Check(pb.CheckRequest(job_id=job_id, include_logs=True, include_results=True))
        if what(resp):
            return resp
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{job_id}: not there in {timeout}s: {resp}")
        await asyncio.sleep(0.05)


def steps(resp: Any) -> list[str]:
    """The job's history: each entry's state, and while RUNNING the first word of its message (the
    operator's state, or the start's "SparkApplication")."""
    return [
        f"{h.state} {h.message.split(':')[0].split()[0]}" if h.state == "RUNNING" else h.state for h in resp.history
    ]


def state_of(app: dict[str, Any] | None) -> str:
    return str(((app or {}).get("status") or {}).get("applicationState", {}).get("state", ""))


async def settled(backend: KubernetesBackend) -> None:
    """Wait until the backend follows nothing (what follows a job ends just after it is recorded)."""
    for _ in range(100):
        if not backend._tasks.running:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{backend._tasks.running} task(s) still follow jobs")


def running(resp: Any) -> bool:
    return any(h.message.startswith("RUNNING:") for h in resp.history)


def at(resp: Any, prefix: str) -> dt.datetime:
    return next(dt.datetime.fromisoformat(h.at) for h in resp.history if h.message.startswith(prefix))


async def test_a_job_s_states_are_recorded_as_they_come_and_its_driver_log_is_read(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c, runner_on(c) as s:
        go = tmp_path / "go"
        job = await submit(s.stub, until=str(go))
        updates = s.stub.Watch(pb.WatchRequest(job_id=job))
        lines: list[str] = []
        driver_runs = False
        while not (driver_runs and lines):  # the driver runs until told: the watch sees it run, and its log
            event = await asyncio.wait_for(updates.read(), 10)
            lines += event.log_lines
            driver_runs = driver_runs or (event.HasField("state") and steps(event.state)[-1] == "RUNNING RUNNING")
        assert lines == ["[sparkgate-job 10:00:00] source orders: samples.orders"]
        go.touch()
        while (event := await updates.read()) is not grpc.aio.EOF:
            lines += event.log_lines
        assert event is grpc.aio.EOF and lines[-1] == "[sparkgate-job 10:00:01] done: 1 row(s) in daily"

        done = await s.stub.Check(pb.CheckRequest(job_id=job, include_logs=True, include_results=True))
        assert steps(done) == [
            "PENDING",
            "RUNNING SparkApplication",
            "RUNNING SUBMITTED",
            "RUNNING RUNNING",
            "RUNNING SUCCEEDING",
            "COMPLETED",
        ]
        assert at(done, "SUBMITTED") <= at(done, "RUNNING:") <= at(done, "SUCCEEDING")
        assert "source orders: samples.orders" in done.logs and done.logs.endswith("done: 1 row(s) in daily")
        assert done.output_path == str(tmp_path / "out" / job) and done.result_count == 1

        app = c.app(job)
        assert app is not None and app["metadata"]["labels"]["sparkgate.io/job-id"] == job
        assert app["metadata"]["annotations"]["sparkgate.io/namespace"] == done.namespace != NAMESPACE
        assert app["spec"]["timeToLiveSeconds"] == 60 and app["spec"]["driver"]["serviceAccount"] == "sparkgate-driver"
        await settled(s.backend)
    asked = {(group, resource, verb) for group, resource, verb in c.fake.seen}
    assert asked == {
        ("sparkoperator.k8s.io", APPS, "list"),
        ("sparkoperator.k8s.io", APPS, "watch"),
        ("sparkoperator.k8s.io", APPS, "patch"),  # server-side apply: patch, and create for a new object
        ("sparkoperator.k8s.io", APPS, "create"),
        ("", "pods/log", "get"),
    }


async def test_the_applications_written_pass_the_spark_operator_s_schema(tmp_path: Path) -> None:
    """(The fake API server checks every write as the operator's CRD does: an apply it refuses
    would fail the job at its start.)"""
    unity = CatalogSettings.model_validate(
        {"class": "io.unitycatalog.spark.UCSingleCatalog", "options": {"uri": "https://uc.staging/api"}}
    )
    async with cluster(tmp_path) as c, runner_on(c, catalogs={"staging": unity}) as s:
        job = await submit(s.stub, "staging", sandbox=True, seconds="0.1", ds="2024-06-09")
        await wait_for(s.stub, job, lambda r: r.state == "COMPLETED")
        app = c.app(job)
        assert app is not None
        validate(SPARK_APPLICATIONS, app)  # (as stored: status included)
        spec = app["spec"]
        assert "--sandbox" in spec["arguments"] and "ds=2024-06-09" in spec["arguments"]
        assert spec["sparkConf"]["spark.sql.catalog.pedregal.uri"] == "https://uc.staging/api"
        spec["driver"]["cores"] = "two"
        with pytest.raises(ApiStatusError):  # (and the check does refuse what the CRD refuses)
            validate(SPARK_APPLICATIONS, app)


@pytest.mark.parametrize(
    ("end", "error"),
    [
        ("fail", "AnalysisException: [TABLE_OR_VIEW_NOT_FOUND] samples.orderz"),
        ("crash", "failed: driver container failed with ExitCode: 52"),
    ],
)
async def test_a_failing_driver_fails_the_job_saying_why(tmp_path: Path, end: str, error: str) -> None:
    async with cluster(tmp_path) as c, runner_on(c) as s:
        job = await submit(s.stub, seconds="0.1", end=end)
        failed = await wait_for(s.stub, job, lambda r: r.state == "FAILED")
        assert error in failed.error
        if end == "crash":  # the job program said nothing: the operator's reason and the log's last lines
            assert failed.error.endswith("java.lang.OutOfMemoryError: Java heap space")
        else:
            assert failed.error == error
        assert steps(failed)[-2:] == ["RUNNING FAILING", "FAILED"]


async def test_an_application_the_operator_could_not_submit_fails_the_job(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c, runner_on(c) as s:
        c.operator.fail_next_submission("failed to run spark-submit: no such image")
        job = await submit(s.stub)
        failed = await wait_for(s.stub, job, lambda r: r.state == "FAILED")
        assert "the Spark Operator could not submit the SparkApplication" in failed.error
        assert "no such image" in failed.error


async def test_cancel_deletes_the_application_and_the_job_ends_cancelled(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c, runner_on(c) as s:
        job = await submit(s.stub, seconds="30")
        await wait_for(s.stub, job, running)
        app = c.app(job)
        assert app is not None
        app["status"]["driverInfo"]["webUIAddress"] = "10.0.0.7:4040"  # (as the operator publishes it)
        c.fake.put_object(app)
        await wait_for(s.stub, job, lambda r: r.spark_ui_url == "http://10.0.0.7:4040")
        assert (await s.stub.Cancel(pb.CancelRequest(job_id=job))).state == "CANCELLED"
        await c.fake.wait_for(APPS, job, NAMESPACE, lambda obj: obj is None)
        await c.fake.wait_for("pods", f"{job}-driver", NAMESPACE, lambda obj: obj is None)
        assert (await s.stub.Cancel(pb.CancelRequest(job_id=job))).state == "CANCELLED"  # idempotent
        await s.backend.cancel(await asyncio.to_thread(s.runner.store.get, job))  # (gone already: fine)
        await settled(s.backend)
        ended = await s.stub.Check(pb.CheckRequest(job_id=job))
        assert ended.state == "CANCELLED" and steps(ended)[-1] == "CANCELLED" and ended.error == "cancelled by request"
    assert ("sparkoperator.k8s.io", APPS, "delete") in c.fake.seen


async def test_an_application_deleted_before_its_end_fails_the_job(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c, runner_on(c) as s:
        job = await submit(s.stub, seconds="30")
        await wait_for(s.stub, job, running)
        c.fake.delete_object(APPS, job, NAMESPACE)  # (the operator past its TTL, or someone)
        failed = await wait_for(s.stub, job, lambda r: r.state == "FAILED")
        assert f"the SparkApplication {job} was deleted before its end was seen (last state: RUNNING)" in failed.error


async def test_a_deletion_while_the_watch_was_broken_is_noticed_by_listing_again(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c, runner_on(c) as s:
        job = await submit(s.stub, seconds="30")
        await wait_for(s.stub, job, running)
        assert s.backend._apps is not None
        relists = s.backend._apps.relists
        c.fake.expire_history()  # the watch cannot resume: 410
        assert c.fake.break_watches() >= 1
        c.fake.delete_object(APPS, job, NAMESPACE)  # in the gap
        failed = await wait_for(s.stub, job, lambda r: r.state == "FAILED")
        assert "was deleted before its end was seen" in failed.error
        assert s.backend._apps.relists > relists


async def test_a_restarted_runner_follows_its_applications_again(tmp_path: Path) -> None:
    go, go_meanwhile = tmp_path / "go", tmp_path / "go-meanwhile"
    async with cluster(tmp_path) as c:
        async with runner_on(c) as s:
            runs_on = await submit(s.stub, until=str(go))
            ends_meanwhile = await submit(s.stub, until=str(go_meanwhile))
            deleted_meanwhile = await submit(s.stub, until=str(tmp_path / "never"))
            for job in (runs_on, ends_meanwhile, deleted_meanwhile):
                await wait_for(s.stub, job, running)
            await wait_for(s.stub, runs_on, lambda r: "source orders" in r.logs)
        # The runner is gone; its jobs are not.
        c.fake.delete_object(APPS, deleted_meanwhile, NAMESPACE)
        go_meanwhile.touch()
        await c.fake.wait_for(APPS, ends_meanwhile, NAMESPACE, lambda a: state_of(a) == "COMPLETED")
        async with runner_on(c) as s:
            assert (await s.stub.Check(pb.CheckRequest(job_id=runs_on))).state == "RUNNING"
            gone = await wait_for(s.stub, deleted_meanwhile, lambda r: r.state == "FAILED")
            assert "was gone when the runner restarted" in gone.error and "last state: RUNNING" in gone.error
            ended = await wait_for(s.stub, ends_meanwhile, lambda r: r.state == "COMPLETED")
            assert steps(ended)[-2:] == ["RUNNING RUNNING", "COMPLETED"]  # (SUCCEEDING came and went unseen)
            assert ended.logs.endswith("done: 1 row(s) in daily") and ended.result_count == 1
            go.touch()
            done = await wait_for(s.stub, runs_on, lambda r: r.state == "COMPLETED")
            assert steps(done)[-3:] == ["RUNNING RUNNING", "RUNNING SUCCEEDING", "COMPLETED"]  # nothing twice
            # Its log, copied on from where the first runner's copy ended: each line once.
            assert done.logs.splitlines() == [
                "[sparkgate-job 10:00:00] source orders: samples.orders",
                "[sparkgate-job 10:00:01] done: 1 row(s) in daily",
            ]


async def test_without_the_spark_operator_jobs_fail_saying_what_is_missing(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c, runner_on(c) as s:
        # (The backend connects for its first job.)
        c.fake.fail_next("list", APPS, 404, message="the server could not find the requested resource")
        job = await submit(s.stub)
        failed = await wait_for(s.stub, job, lambda r: r.state == "FAILED")
        assert "install the Spark Operator" in failed.error


def test_the_backend_is_chosen_by_configuration(tmp_path: Path) -> None:
    settings = load_settings(
        None,
        {},
        state_dir=str(tmp_path / "state"),
        runner={"backend": "kubernetes", "kubernetes": {"keep_finished_seconds": 600}},
        kubernetes={"namespace": "spark-jobs"},
    )
    backend = kubernetes_backend(settings)
    assert isinstance(backend, KubernetesBackend) and backend.name == "kubernetes"
    assert backend.namespace == "spark-jobs" and backend.jobs.keep_finished_seconds == 600
    assert backend.jobs_dir == tmp_path / "state" / "jobs" and set(backend.catalogs) == set(ENVS)
    assert load_settings(None, {}).runner.backend == "local"
