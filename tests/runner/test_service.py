"""The runner's gRPC service with a fake execution backend, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest

from sparkgate.config import RunnerSettings
from sparkgate.errors import BadRequest, ResourceExhausted
from sparkgate.runner.backends.base import Outcome
from sparkgate.runner.jobs import FAILED
from sparkgate.runner.proto import spark_runner_pb2 as pb
from sparkgate.runner.proto import spark_runner_pb2_grpc as pb_grpc
from sparkgate.runner.server import RunnerServer
from sparkgate.runner.service import Runner
from sparkgate.runner.store import JobStore
from sparkgate.testing.fake_execution import FakeExecution
from tests.runner.test_manifest import GOOD

ENVS = ["local", "test", "staging", "prod"]


@contextlib.asynccontextmanager
async def serve(db_url: str, backend: FakeExecution, **settings: Any) -> AsyncIterator[tuple[Runner, Any]]:
    runner = Runner(RunnerSettings(port=0, **settings), JobStore(db_url), backend, ENVS)
    await runner.start()
    try:
        async with (
            RunnerServer(runner, "127.0.0.1", 0) as server,
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch,
        ):
            yield runner, pb_grpc.SparkRunnerServiceStub(ch)
    finally:
        await runner.close()


async def wait_state(stub: Any, job_id: str, state: str, timeout: float = 5) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        resp = await stub.Check(pb.CheckRequest(job_id=job_id))
        if resp.state == state:
            return resp
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{job_id} is {resp.state}, not {state}")
        await asyncio.sleep(0.02)


def submit(**kw: Any) -> pb.SubmitRequest:
    base: dict[str, Any] = {"manifest": GOOD, "team": "feature-engineering", "environment": "local", "user": "a@x"}
    return pb.SubmitRequest(**{**base, **kw})


async def test_submit_check_complete(db_url: str) -> None:
    fake = FakeExecution()
    async with serve(db_url, fake) as (_, stub):
        resp = await stub.Submit(submit(options={"sandbox_mode": "true"}))
        assert resp.job_id.startswith("feature-engineering-daily-orders-") and resp.state == "PENDING"
        assert resp.namespace.startswith("sjns-playground-local-") and resp.backend == "fake"
        running = await wait_state(stub, resp.job_id, "RUNNING")
        assert running.spark_ui_url == "http://ui" and running.attempts == 1 and running.user == "a@x"
        await fake.finish(resp.job_id, output_path="/out")
        done = await wait_state(stub, resp.job_id, "COMPLETED")
        assert [h.state for h in done.history] == ["PENDING", "RUNNING", "COMPLETED"]
        assert done.output_path == "/out" and done.created_at.endswith("Z")
        logs = await stub.Check(pb.CheckRequest(job_id=resp.job_id, include_logs=True))
        assert logs.logs == f"log of {resp.job_id}"
        listed = await stub.List(pb.ListRequest(team="feature-engineering"))
        assert [j.job_id for j in listed.jobs] == [resp.job_id]


@pytest.mark.parametrize(
    ("request_kw", "code", "text"),
    [
        (
            {"manifest": GOOD.replace("mode: overwrite", "mode: replace")},
            "INVALID_ARGUMENT",
            "sinks[0].mode: must be one of",
        ),
        ({"manifest": "a: ["}, "INVALID_ARGUMENT", "not valid YAML"),
        ({"manifest": ""}, "INVALID_ARGUMENT", "manifest is empty"),
        ({"environment": "moon"}, "INVALID_ARGUMENT", "unknown environment 'moon'"),
        ({"team": "other-team"}, "INVALID_ARGUMENT", "does not match the manifest's metadata.team"),
        ({"options": {"colour": "blue"}}, "INVALID_ARGUMENT", "unknown option 'colour'"),
        ({"options": {"ttl_seconds": "soon"}}, "INVALID_ARGUMENT", "ttl_seconds must be a positive number"),
        ({"manifest": GOOD.replace("${ds}", "${day}")}, "INVALID_ARGUMENT", "${day} is used but not defined"),
    ],
)
async def test_bad_submissions_are_refused_clearly(
    db_url: str, request_kw: dict[str, Any], code: str, text: str
) -> None:
    async with serve(db_url, FakeExecution()) as (_, stub):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.Submit(submit(**request_kw))
        assert e.value.code().name == code and text in (e.value.details() or "")
        assert not (await stub.List(pb.ListRequest())).jobs


async def test_cancel_is_idempotent_and_unknown_jobs_are_not_found(db_url: str) -> None:
    fake = FakeExecution()
    async with serve(db_url, fake) as (_, stub):
        job = (await stub.Submit(submit())).job_id
        await wait_state(stub, job, "RUNNING")
        assert (await stub.Cancel(pb.CancelRequest(job_id=job))).state == "CANCELLED"
        assert (await stub.Cancel(pb.CancelRequest(job_id=job))).state == "CANCELLED"
        assert fake.cancelled == [job]
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.Check(pb.CheckRequest(job_id="nope"))
        assert e.value.code() is grpc.StatusCode.NOT_FOUND


async def test_ttl_stops_long_jobs(db_url: str) -> None:
    fake = FakeExecution()
    async with serve(db_url, fake) as (_, stub):
        job = (await stub.Submit(submit(options={"ttl_seconds": "0.3"}))).job_id
        done = await wait_state(stub, job, "FAILED", timeout=5)
        assert "longer than its TTL" in done.error and fake.cancelled == [job]


async def test_jobs_wait_for_a_free_slot(db_url: str) -> None:
    fake = FakeExecution()
    async with serve(db_url, fake, max_running=1) as (_, stub):
        first = (await stub.Submit(submit())).job_id
        second = (await stub.Submit(submit())).job_id
        await wait_state(stub, first, "RUNNING")
        await asyncio.sleep(0.2)
        assert (await stub.Check(pb.CheckRequest(job_id=second))).state == "PENDING"
        await fake.finish(first, "FAILED", "boom")
        await wait_state(stub, second, "RUNNING")
        failed = await stub.Check(pb.CheckRequest(job_id=first))
        assert failed.state == "FAILED" and failed.error == "boom"


async def test_a_start_failure_fails_the_job(db_url: str) -> None:
    fake = FakeExecution()
    fake.fail_start = "no spark-submit here"
    async with serve(db_url, fake) as (_, stub):
        job = (await stub.Submit(submit())).job_id
        done = await wait_state(stub, job, "FAILED")
        assert "could not start the job: no spark-submit here" in done.error


async def test_a_restarted_runner_loses_nothing(db_url: str) -> None:
    first = FakeExecution()
    async with serve(db_url, first) as (_, stub):
        keeps = (await stub.Submit(submit())).job_id
        lost = (await stub.Submit(submit())).job_id
        queued = None
        await wait_state(stub, keeps, "RUNNING")
        await wait_state(stub, lost, "RUNNING")
    second = FakeExecution()
    second.after_restart[lost] = Outcome(FAILED, "the job's process was gone when the runner restarted")
    async with serve(db_url, second, max_running=2) as (_, stub):
        assert (await stub.Check(pb.CheckRequest(job_id=keeps))).state == "RUNNING"  # re-adopted
        gone = await stub.Check(pb.CheckRequest(job_id=lost))
        assert gone.state == "FAILED" and "gone when the runner restarted" in gone.error
        queued = (await stub.Submit(submit())).job_id
        await second.finish(keeps)
        await wait_state(stub, keeps, "COMPLETED")
        await wait_state(stub, queued, "RUNNING")


async def test_paths_outside_the_job_s_output_and_the_data_roots_are_refused_at_submit(db_url: str) -> None:
    fake = FakeExecution()
    runner = Runner(RunnerSettings(port=0), JobStore(db_url), fake, ENVS, data_roots={"prod": ["/data/lake"]})
    await runner.start()
    try:
        sink = "{from: daily, path: out, format: parquet, mode: overwrite, partitionBy: [ds]}"
        for path, environment in (("../../etc/x", "local"), ("/etc/x", "local"), ("/etc/x", "prod")):
            with pytest.raises(BadRequest, match=r"spec\.coreEtl\.sinks\[0\]\.path: "):
                await runner.submit(
                    GOOD.replace(sink, f"{{from: daily, path: '{path}'}}"), environment=environment, user="a@x"
                )
        # ${param} in a path is resolved before the check.
        text = GOOD.replace(sink, "{from: daily, path: '/data/lake/${ds}'}")
        assert (await runner.submit(text, environment="prod", user="a@x")).state == "PENDING"
        with pytest.raises(BadRequest, match="outside the data roots"):
            await runner.submit(text, environment="prod", user="a@x", options={"param.ds": "../../etc"})
    finally:
        await runner.close()


async def test_a_sandboxed_submit_may_not_load_code_through_its_spark_conf(db_url: str) -> None:
    runner = Runner(RunnerSettings(port=0), JobStore(db_url), FakeExecution(), ENVS)
    await runner.start()
    try:
        text = GOOD.replace("spec:\n", "spec:\n  sparkConf: {spark.jars: 'https://x/evil.jar'}\n", 1)
        with pytest.raises(BadRequest, match=r"spec\.sparkConf\.spark\.jars: a sandboxed job may set only"):
            await runner.submit(text, environment="local", user="a@x", options={"sandbox": "true"})
        assert (await runner.submit(text, environment="local", user="a@x")).state == "PENDING"  # its own driver
    finally:
        await runner.close()


async def test_submits_past_the_limits_are_refused_saying_which(db_url: str) -> None:
    fake = FakeExecution()  # jobs run until finished: with one slot, the rest wait as PENDING
    limits = {"max_running": 1, "max_pending_jobs_per_user": 2, "max_pending_jobs": 3, "max_manifest_bytes": 4096}
    async with serve(db_url, fake, **limits) as (_, stub):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.Submit(submit(manifest=GOOD + "#" * 5000))
        assert e.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "runner.max_manifest_bytes (4096)" in (e.value.details() or "")
        first = await stub.Submit(submit())
        await wait_state(stub, first.job_id, "RUNNING")
        for _ in range(2):
            await stub.Submit(submit())
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.Submit(submit())
        assert e.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "runner.max_pending_jobs_per_user: 2" in (e.value.details() or "")
        await stub.Submit(submit(user="b@x"))  # another user still may, up to the total
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.Submit(submit(user="c@x"))
        assert "runner.max_pending_jobs: 3" in (e.value.details() or "")


async def test_a_runner_closed_with_stop_jobs_ends_what_runs_and_says_so(db_url: str) -> None:
    fake = FakeExecution()
    runner = Runner(RunnerSettings(port=0), JobStore(db_url), fake, ENVS)
    await runner.start()
    job = await runner.submit(GOOD, environment="local", user="a@x")
    for _ in range(100):
        if runner.store.get(job.id).state == "RUNNING":
            break
        await asyncio.sleep(0.02)
    await runner.close(stop_jobs=True)
    ended = JobStore(db_url).get(job.id)
    assert ended.state == FAILED and "sparkgate was stopped while the job ran" in ended.error
    assert job.id in fake.cancelled


async def test_the_queue_s_bounds_hold_for_submits_arriving_together(db_url: str) -> None:
    fake = FakeExecution()
    limits = RunnerSettings(port=0, max_running=1, max_pending_jobs_per_user=2, submits_per_minute_per_user=100)
    runner = Runner(limits, JobStore(db_url), fake, ENVS)
    await runner.start()
    try:
        first = await runner.submit(GOOD, environment="local", user="a@x")
        for _ in range(100):
            if runner.store.get(first.id).state == "RUNNING":
                break
            await asyncio.sleep(0.02)
        results = await asyncio.gather(
            *(runner.submit(GOOD, environment="local", user="a@x") for _ in range(20)), return_exceptions=True
        )
        accepted = [r for r in results if not isinstance(r, BaseException)]
        assert len(accepted) == 2 and all(isinstance(r, ResourceExhausted) for r in results if r not in accepted)
        # Closing with stop_jobs ends the running job; none of those waiting is started meanwhile.
        await runner.close(stop_jobs=True)
        store = JobStore(db_url)
        assert store.get(first.id).state == FAILED
        assert [store.get(j.id).state for j in accepted] == ["PENDING", "PENDING"]  # type: ignore[union-attr]
        assert fake.started == [first.id]
    finally:
        with contextlib.suppress(Exception):
            await runner.close()


async def test_a_cancel_arriving_while_the_job_starts_waits_for_it_and_stops_it(db_url: str) -> None:
    fake = FakeExecution()
    fake.start_delay = 0.3
    runner = Runner(RunnerSettings(port=0), JobStore(db_url), fake, ENVS)
    await runner.start()
    try:
        job = await runner.submit(GOOD, environment="local", user="a@x")
        for _ in range(100):
            if fake.started:
                break
            await asyncio.sleep(0.01)
        assert fake.started == [job.id] and runner.store.get(job.id).state == "PENDING"  # starting
        ended = await runner.cancel(job.id)
        assert ended.state == "CANCELLED" and fake.cancelled == [job.id]
        await asyncio.sleep(0.4)
        assert runner.store.get(job.id).state == "CANCELLED"
        assert job.id not in fake.running  # what the start began was stopped, not left running
    finally:
        await runner.close()


async def test_watch_pushes_state_changes_and_new_log_lines(db_url: str) -> None:
    fake = FakeExecution()
    async with serve(db_url, fake, max_watches=1) as (_, stub):
        job = (await stub.Submit(submit())).job_id
        await wait_state(stub, job, "RUNNING")
        events = stub.Watch(pb.WatchRequest(job_id=job, log_filter="[job]"))
        first = await events.read()
        assert first.state.state == "RUNNING" and not first.log_lines
        with pytest.raises(grpc.aio.AioRpcError) as err:  # one watch at a time here
            await stub.Watch(pb.WatchRequest(job_id=job)).read()
        assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "runner.max_watches" in (err.value.details() or "")
        fake.write_log(job, "[job] step 1")
        fake.write_log(job, "spark: INFO noise")
        logs = await events.read()
        assert list(logs.log_lines) == ["[job] step 1"] and not logs.HasField("state")
        fake.write_log(job, "[job] step 2")
        await fake.finish(job)
        rest = []
        while (e := await events.read()) is not grpc.aio.EOF:
            rest.append(e)
        assert [line for e in rest for line in e.log_lines] == ["[job] step 2"]
        assert rest[-1].state.state == "COMPLETED" and [h.state for h in rest[-1].state.history][-1] == "COMPLETED"
        again = [e async for e in stub.Watch(pb.WatchRequest(job_id=job))]  # the watch ended: room again
        assert again[0].state.state == "COMPLETED" and again[-1].log_lines[-1] == "[job] step 2"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Watch(pb.WatchRequest(job_id="no-such-job")).read()
        assert err.value.code() is grpc.StatusCode.NOT_FOUND


async def test_a_backend_s_steps_are_recorded_as_they_come_and_watches_see_each(db_url: str) -> None:
    fake = FakeExecution()
    async with serve(db_url, fake) as (_, stub):
        job = (await stub.Submit(submit())).job_id
        await wait_state(stub, job, "RUNNING")
        events = stub.Watch(pb.WatchRequest(job_id=job))
        assert (await events.read()).state.state == "RUNNING"
        await fake.step(job, "RUNNING", "SUBMITTED: the driver is starting", handle={"app": "a", "step": 1})
        submitted = await events.read()
        assert submitted.state.history[-1].message == "SUBMITTED: the driver is starting"
        await fake.step(job, "SUSPENDED", "SUSPENDED: the application is suspended")
        suspended = await events.read()
        assert suspended.state.state == "SUSPENDED" and suspended.state.history[-1].state == "SUSPENDED"
        await fake.finish(job)
        done = (await events.read()).state
        assert await events.read() is grpc.aio.EOF
        assert [(h.state, h.message) for h in done.history][1:] == [
            ("RUNNING", "started on fake"),
            ("RUNNING", "SUBMITTED: the driver is starting"),
            ("SUSPENDED", "SUSPENDED: the application is suspended"),
            ("COMPLETED", "finished"),
        ]
    assert JobStore(db_url).get(job).handle == {"app": "a", "step": 1}  # a step may say where the work is now


async def test_an_end_reported_at_once_is_recorded_after_the_start(db_url: str) -> None:
    """A backend may see the work end while the runner still records its start: the history stays
    in order, and no TTL is left to time out a finished job."""
    fake = FakeExecution(auto_complete=0)
    async with serve(db_url, fake) as (runner, stub):
        job = (await stub.Submit(submit())).job_id
        done = await wait_state(stub, job, "COMPLETED")
        assert [h.state for h in done.history] == ["PENDING", "RUNNING", "COMPLETED"]
        assert not runner._deadlines and not runner._running


def test_a_followed_log_is_cut_into_bounded_lines() -> None:
    from sparkgate.runner.service import MAX_LOG_LINE, _LogFollower

    follow = _LogFollower("")
    follow.offset = 100  # the first read began 90 bytes into the log: its first line is cut
    assert follow.lines(b"tail of a line\nfirst\nsec", final=False) == ["first"]
    follow.offset = 200
    huge = b"x" * (MAX_LOG_LINE + 10)
    assert follow.lines(b"ond\n" + huge, final=False) == ["second", "x" * MAX_LOG_LINE]  # cut at the limit
    follow.offset = 300
    assert follow.lines(b"xxxx\nthird\nlast, no newline", final=True) == ["third", "last, no newline"]
