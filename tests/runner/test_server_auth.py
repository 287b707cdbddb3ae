"""The runner's gRPC port with auth on: tokens, acting as someone else, team rights, owners only.

The same guard and settings as the gateway (static tokens here); the Playground forwards its
user's token and ``sparkgate submit`` sends ``SPARKGATE_TOKEN``, so the runner checks every caller
itself instead of believing the request's ``user``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest

from sparkgate.config import RunnerSettings, load_settings
from sparkgate.playground.app import create_app
from sparkgate.runner.proto import spark_runner_pb2 as pb
from sparkgate.runner.proto import spark_runner_pb2_grpc as pb_grpc
from sparkgate.runner.server import RunnerServer
from sparkgate.runner.service import Runner
from sparkgate.runner.store import JobStore
from sparkgate.security.guard import build_guard
from sparkgate.testing.fake_execution import FakeExecution
from tests.runner.test_manifest import GOOD

TOKENS = """tokens:
  - {token: t-alice, subject: alice@x, groups: [feature-engineering]}
  - {token: t-bob, subject: bob@x, groups: [growth]}
  - {token: t-root, subject: root@x, groups: [platform-admins]}
"""


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@contextlib.asynccontextmanager
async def secured(tmp_path: Path) -> AsyncIterator[tuple[Any, int, Any]]:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(TOKENS)
    settings = load_settings(
        None,
        {},
        state_dir=tmp_path,
        audit={"enabled": False},
        auth={"mode": "static", "tokens_file": str(tokens), "admin_groups": ["platform-admins"]},
    )
    runner = Runner(RunnerSettings(port=0), JobStore(f"sqlite:///{tmp_path / 'r.db'}"), FakeExecution(), ["local"])
    await runner.start()
    try:
        async with (
            build_guard(settings) as guard,
            RunnerServer(runner, "127.0.0.1", 0, guard=guard) as server,
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch,
        ):
            yield pb_grpc.SparkRunnerServiceStub(ch), server.port, settings
    finally:
        await runner.close()


def submit(user: str = "") -> pb.SubmitRequest:
    return pb.SubmitRequest(manifest=GOOD, environment="local", user=user)


async def code_of(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code(), err.value.details() or ""


async def test_no_token_or_a_bad_one_is_unauthenticated(tmp_path: Path) -> None:
    async with secured(tmp_path) as (stub, _, _):
        code, text = await code_of(stub.Submit(submit("alice@x")))
        assert code is grpc.StatusCode.UNAUTHENTICATED and "SPARKGATE_TOKEN" in text
        code, _ = await code_of(stub.List(pb.ListRequest(), metadata=bearer("forged")))
        assert code is grpc.StatusCode.UNAUTHENTICATED


async def test_the_token_is_the_user_and_cannot_claim_another(tmp_path: Path) -> None:
    async with secured(tmp_path) as (stub, _, _):
        job = await stub.Submit(submit(), metadata=bearer("t-alice"))
        assert (await stub.Check(pb.CheckRequest(job_id=job.job_id), metadata=bearer("t-alice"))).user == "alice@x"
        code, text = await code_of(stub.Submit(submit("bob@x"), metadata=bearer("t-alice")))
        assert code is grpc.StatusCode.PERMISSION_DENIED and "cannot act as 'bob@x'" in text


async def test_submitting_needs_the_team(tmp_path: Path) -> None:
    async with secured(tmp_path) as (stub, _, _):
        code, text = await code_of(stub.Submit(submit(), metadata=bearer("t-bob")))
        assert code is grpc.StatusCode.PERMISSION_DENIED
        assert "bob@x may not use team 'feature-engineering'" in text
        assert (await stub.Submit(submit(), metadata=bearer("t-root"))).job_id  # an admin may


async def test_jobs_are_seen_and_cancelled_by_their_owner_or_an_admin(tmp_path: Path) -> None:
    async with secured(tmp_path) as (stub, _, _):
        job = (await stub.Submit(submit(), metadata=bearer("t-alice"))).job_id
        for call in (
            stub.Check(pb.CheckRequest(job_id=job), metadata=bearer("t-bob")),
            stub.Cancel(pb.CancelRequest(job_id=job), metadata=bearer("t-bob")),
        ):
            code, text = await code_of(call)
            assert code is grpc.StatusCode.PERMISSION_DENIED and "belongs to another user" in text
        assert [j.job_id for j in (await stub.List(pb.ListRequest(), metadata=bearer("t-bob"))).jobs] == []
        assert [j.job_id for j in (await stub.List(pb.ListRequest(), metadata=bearer("t-alice"))).jobs] == [job]
        assert [j.job_id for j in (await stub.List(pb.ListRequest(), metadata=bearer("t-root"))).jobs] == [job]
        assert (await stub.Check(pb.CheckRequest(job_id=job), metadata=bearer("t-root"))).user == "alice@x"
        assert (await stub.Cancel(pb.CancelRequest(job_id=job), metadata=bearer("t-alice"))).success


async def test_the_playground_forwards_its_users_token(tmp_path: Path) -> None:
    async with secured(tmp_path) as (_, port, settings):
        app = create_app(settings, f"127.0.0.1:{port}")
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://p") as c,
        ):
            api = "/api/v1/playground"
            ok = await c.post(f"{api}/run", json={"manifest": GOOD}, headers={"authorization": "Bearer t-alice"})
            assert ok.status_code == 200, ok.text
            status = await c.get(f"{api}/status/{ok.json()['job_id']}", headers={"authorization": "Bearer t-alice"})
            assert status.json()["user"] == "alice@x"
            refused = await c.post(f"{api}/run", json={"manifest": GOOD}, headers={"authorization": "Bearer t-bob"})
            assert refused.status_code == 403 and "may not use team" in refused.json()["error"]
