"""Authentication, authorization, session ownership, rate limits, audit and TLS at the gateway.

Real gRPC (and real TLS) on loopback, fake Spark Connect backends that — like Spark
with ``spark.connect.authenticate.token`` — refuse calls without the driver's token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2, status_pb2

from sparkgate.clusters.manager import ClusterManager
from sparkgate.config import load_settings
from sparkgate.gateway.server import Gateway
from sparkgate.security.certs import make_dev_certs
from sparkgate.testing.fake_backend import FakeSparkConnectServer
from sparkgate.testing.fake_provider import FakeProvider
from tests.gateway.test_relay import ROUTE, SVC, request

DRIVER_TOKEN = "driver-secret"
TOKENS = """tokens:
  - {token: t-alice, subject: alice@example.com, groups: [fe]}
  - {token: t-bob, subject: bob@example.com, groups: [fe]}
  - {token: t-carol, subject: carol@example.com, groups: [ds]}
"""


@pytest.fixture
async def backend() -> AsyncIterator[FakeSparkConnectServer]:
    async with FakeSparkConnectServer(chunks=2, chunk_bytes=1024, token=DRIVER_TOKEN) as fake:
        yield fake


@contextlib.asynccontextmanager
async def secured_gateway(backend: FakeSparkConnectServer, tmp_path: Path, **settings: Any) -> AsyncIterator[Gateway]:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(TOKENS)
    gw = {"host": "127.0.0.1", "port": 0, "affinity": {"backend": "memory"}}
    auth = {"mode": "static", "tokens_file": str(tokens), **settings.pop("auth", {})}
    s = load_settings(None, {}, gateway=gw, state_dir=tmp_path, auth=auth, **settings)
    provider = FakeProvider(address=backend.address)
    provider.token = DRIVER_TOKEN
    cm = ClusterManager(provider, pool_size=0)
    await cm.start()
    try:
        async with Gateway(s, cm) as gateway:
            yield gateway
    finally:
        await cm.close()


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (*ROUTE, ("authorization", f"Bearer {token}"))


def audit(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def call(ch: grpc.aio.Channel, md: Any, sid: str, user: str = "jovyan", method: str = "Config") -> bytes:
    result: bytes = await ch.unary_unary(SVC + method)(request(sid, user), metadata=md)
    return result


async def test_tokens_identity_and_session_ownership(backend: FakeSparkConnectServer, tmp_path: Path) -> None:
    async with (
        secured_gateway(backend, tmp_path) as gw,
        grpc.aio.insecure_channel(f"127.0.0.1:{gw.port}") as ch,
    ):
        sid = str(uuid.uuid4())
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call(ch, ROUTE, sid)
        assert e.value.code() is grpc.StatusCode.UNAUTHENTICATED and "requires credentials" in (e.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call(ch, bearer("t-forged"), sid)
        assert e.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert not backend.calls

        # A valid token: the driver sees the identity as user id, and its own token, never the client's.
        await call(ch, bearer("t-alice"), sid, user="jovyan")
        (seen,) = backend.calls
        assert seen.user_id == "alice@example.com" and seen.header("authorization") == f"Bearer {DRIVER_TOKEN}"
        out = [
            m async for m in ch.unary_stream(SVC + "ExecutePlan")(request(sid, "jovyan"), metadata=bearer("t-alice"))
        ]
        assert len(out) == 3 and backend.calls[-1].user_id == "alice@example.com"

        # Another identity naming alice's session id never reaches the driver.
        n = len(backend.calls)
        for method in ("Config", "Interrupt", "ReleaseSession"):
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await call(ch, bearer("t-bob"), sid, user="alice@example.com", method=method)
            assert e.value.code() is grpc.StatusCode.PERMISSION_DENIED
            assert "belongs to another user" in (e.value.details() or "")
        assert len(backend.calls) == n

        # Teams are limited to their groups.
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call(
                ch,
                (
                    ("x-doordash-team", "fe"),
                    ("x-doordash-environment", "prod"),
                    ROUTE[0],
                    ("authorization", "Bearer t-carol"),
                ),
                str(uuid.uuid4()),
            )
        assert e.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "carol@example.com may not use team 'fe'" in (e.value.details() or "")

        backend.fail("AnalyzePlan", grpc.StatusCode.INTERNAL, "[DIVIDE_BY_ZERO] boom")
        with pytest.raises(grpc.aio.AioRpcError):
            await call(ch, bearer("t-alice"), sid, method="AnalyzePlan")
        await call(ch, bearer("t-alice"), sid, method="ReleaseSession")
        await asyncio.sleep(0.1)  # a call is reported once its stream is closed

        sample = gw.telemetry.registry.get_sample_value
        unrouted = {"method": "Config", "team": "-", "environment": "-"}
        assert sample("sparkgate_rpcs_total", {**unrouted, "status": "UNAUTHENTICATED"}) == 2
        assert sample("sparkgate_rpcs_total", {**unrouted, "status": "PERMISSION_DENIED"}) == 2
        routed = {"team": "fe", "environment": "prod"}
        assert sample("sparkgate_rpcs_total", {"method": "Config", **routed, "status": "OK"}) == 1
        assert sample("sparkgate_rpcs_total", {"method": "AnalyzePlan", **routed, "status": "INTERNAL"}) == 1
        assert sample("sparkgate_rpc_duration_seconds_count", {"method": "ExecutePlan", **routed}) == 1
    events = audit(tmp_path)
    kinds = [x["event"] for x in events]
    assert kinds.count("auth.failure") == 2 and kinds.count("permission.denied") == 4
    created = next(x for x in events if x["event"] == "session.create")
    assert created["who"] == "alice@example.com" and created["team"] == "fe" and created["session"] == sid
    error = next(x for x in events if x["event"] == "rpc.error" and x.get("method") == "AnalyzePlan")
    assert error["status"] == "INTERNAL" and error["who"] == "alice@example.com" and "DIVIDE_BY_ZERO" in error["reason"]
    released = next(x for x in events if x["event"] == "session.release")
    assert released["who"] == "alice@example.com" and released["driver"] == created["driver"]


async def test_rate_limit_gives_retry_info(backend: FakeSparkConnectServer, tmp_path: Path) -> None:
    limits = {"per_user_rps": 1, "per_user_burst": 3}
    async with (
        secured_gateway(backend, tmp_path, rate_limits=limits) as gw,
        grpc.aio.insecure_channel(f"127.0.0.1:{gw.port}") as ch,
    ):
        sid = str(uuid.uuid4())
        for _ in range(3):
            await call(ch, bearer("t-alice"), sid)
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call(ch, bearer("t-alice"), sid)
        assert e.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED and "rate limit" in (e.value.details() or "")
        details = dict(e.value.trailing_metadata() or ())["grpc-status-details-bin"]
        st = status_pb2.Status.FromString(details)
        retry = error_details_pb2.RetryInfo()
        assert st.details[0].Unpack(retry) and 0 < retry.retry_delay.ToTimedelta().total_seconds() <= 1
        await call(ch, bearer("t-bob"), str(uuid.uuid4()))  # others are not held back


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = tmp_path_factory.mktemp("certs")
    made = make_dev_certs(d, clients=["sparkgate-runner"])
    other = make_dev_certs(d / "other-ca", clients=["sparkgate-runner"])  # same name, untrusted CA
    return made, other


def tls_channel(port: int, ca: Path, client: tuple[Path, Path] | None = None) -> grpc.aio.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=client[1].read_bytes() if client else None,
        certificate_chain=client[0].read_bytes() if client else None,
    )
    return grpc.aio.secure_channel(f"localhost:{port}", creds)


async def test_tls_token_and_mtls_service_identity(backend: FakeSparkConnectServer, tmp_path: Path, certs: Any) -> None:
    made, other = certs
    tls = {"cert_file": str(made.server_cert), "key_file": str(made.server_key), "client_ca_file": str(made.ca)}
    auth = {"service_identities": {"sparkgate-runner": ["fe"]}}
    async with secured_gateway(backend, tmp_path, tls=tls, auth=auth) as gw:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.port}") as plain:
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await call(plain, bearer("t-alice"), str(uuid.uuid4()))
            # No plaintext on a TLS port: a clear answer at once, not a dropped connection retried for ever.
            assert e.value.code() is grpc.StatusCode.FAILED_PRECONDITION
            assert "use_ssl=true" in (e.value.details() or "")
        async with tls_channel(gw.port, made.ca) as ch:
            await call(ch, bearer("t-alice"), str(uuid.uuid4()))
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await call(ch, ROUTE, str(uuid.uuid4()))  # TLS alone is not an identity
            assert e.value.code() is grpc.StatusCode.UNAUTHENTICATED
        async with tls_channel(gw.port, made.ca, made.clients["sparkgate-runner"]) as ch:
            await call(ch, ROUTE, str(uuid.uuid4()), user="runner-job")
            assert backend.calls[-1].user_id == "sparkgate-runner"
        async with tls_channel(gw.port, made.ca, other.clients["sparkgate-runner"]) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await call(ch, ROUTE, str(uuid.uuid4()))
            assert e.value.code() is grpc.StatusCode.UNAVAILABLE  # OpenSSL refuses the handshake


async def test_certificate_is_reloaded_for_new_connections(backend: FakeSparkConnectServer, tmp_path: Path) -> None:
    d = tmp_path / "certs"
    first = make_dev_certs(d)
    tls = {"cert_file": str(first.server_cert), "key_file": str(first.server_key), "reload_interval_seconds": 0.1}
    async with secured_gateway(backend, tmp_path, tls=tls) as gw:
        before = await asyncio.to_thread(ssl.get_server_certificate, ("127.0.0.1", gw.port))
        renewed = make_dev_certs(tmp_path / "renewed")
        shutil.copy(renewed.ca, d / "ca.pem")
        shutil.copy(renewed.server_cert, first.server_cert)
        shutil.copy(renewed.server_key, first.server_key)
        await asyncio.sleep(0.5)
        after = await asyncio.to_thread(ssl.get_server_certificate, ("127.0.0.1", gw.port))
        assert after != before and after.strip() == renewed.server_cert.read_text().strip()
        async with tls_channel(gw.port, d / "ca.pem") as ch:
            await call(ch, bearer("t-alice"), str(uuid.uuid4()))
