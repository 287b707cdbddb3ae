"""The assembled platform: status/health endpoints and ``sparkgate status`` (fake backend, no Spark)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from pathlib import Path

import grpc.aio
import pytest

from sparkgate.cli import main
from sparkgate.config import load_settings
from sparkgate.connect import wire
from sparkgate.errors import ConfigError
from sparkgate.platform import Platform
from sparkgate.runner.backends.local import LocalBackend
from sparkgate.testing.fake_backend import FakeSparkConnectServer
from sparkgate.testing.fake_provider import FakeProvider


def _text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


async def test_status_health_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with FakeSparkConnectServer() as fake:
        settings = load_settings(
            None,
            {},
            gateway={"host": "127.0.0.1", "port": 0},
            admin={"port": 0},
            runner={"port": 0},
            playground={"port": 0},
            pool={"size": 1},
            state_dir=tmp_path,
        )
        async with Platform(settings, provider=FakeProvider(address=fake.address)) as p:
            await p.clusters.wait_pool_ready(timeout=5)
            assert p.admin is not None
            base = f"http://127.0.0.1:{p.admin.port}"
            sid = str(uuid.uuid4())
            async with grpc.aio.insecure_channel(f"127.0.0.1:{p.gateway.port}") as ch:
                req = wire.encode_string(1, sid) + wire.encode_string(2, wire.encode_string(1, "alice"))
                md = (("x-doordash-team", "fe"), ("x-doordash-environment", "prod"))
                await ch.unary_unary("/spark.connect.SparkConnectService/Config")(req, metadata=md)

            code, status = await asyncio.to_thread(_get, base + "/status")
            assert code == 200
            assert [s["session_id"] for s in status["sessions"]] == [sid]  # type: ignore[index]
            assert {d["namespace"] for d in status["drivers"]} >= {"sjns-fe-prod"}  # type: ignore[index]
            assert (await asyncio.to_thread(_get, base + "/healthz"))[0] == 200
            assert (await asyncio.to_thread(_get, base + "/readyz"))[1]["ready"] is True

            async def out_of_reach() -> bool:
                return False

            p.gateway.store.reachable = out_of_reach  # type: ignore[method-assign]
            # Shared state out of reach is out of reach for every replica: this one stays in its
            # Service, where its placed sessions go on.
            code, ready = await asyncio.to_thread(_get, base + "/readyz")
            assert (code, ready) == (200, {"ready": True, "drivers_ready": True, "state_reachable": False})
            assert (await asyncio.to_thread(_get, base + "/nope"))[0] == 404
            metrics = await asyncio.to_thread(_text, base + "/metrics")
            assert 'sparkgate_rpcs_total{environment="prod",method="Config",status="OK",team="fe"} 1.0' in metrics
            assert 'sparkgate_sessions{environment="prod",team="fe"} 1.0' in metrics
            assert 'sparkgate_pool_target{profile="default"} 1.0' in metrics
            assert "sparkgate_rpc_duration_seconds_bucket" in metrics and "sparkgate_auth_failures_total 0.0" in metrics
            kept = next(ln for ln in metrics.splitlines() if ln.startswith("sparkgate_relay_buffer_bytes "))
            assert float(kept.split()[1]) >= 1024 * 1024  # at least the slab being read into
            assert "sparkgate_relay_buffers_allocated_total" in metrics

            assert await asyncio.to_thread(main, ["status", "--url", base]) == 0
            out = capsys.readouterr().out
            assert sid in out and "sjns-fe-prod" in out and "alice" in out
            assert "placement least-sessions" in out and "profile default: 1/1 warm" in out


def test_status_without_a_gateway_says_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--url", "http://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err
    assert "sparkgate up" in err and "Traceback" not in err


async def test_a_profile_the_provider_cannot_run_fails_at_start(tmp_path: Path) -> None:
    (tmp_path / "RELEASE").write_text("Spark 4.1.4 built for Hadoop 3.4.1\n")
    settings = load_settings(
        None,
        {},
        state_dir=tmp_path,
        local={"spark_home": str(tmp_path)},
        pool={"size": 0, "profiles": {"legacy": {"spark_version": "3.5"}}},
        gateway={"port": 0, "host": "127.0.0.1"},
        admin={"enabled": False},
        runner={"enabled": False},
    )
    with pytest.raises(ConfigError, match=r"profile 'legacy' needs Spark 3\.5"):
        async with Platform(settings):
            pass


async def test_state_lands_where_the_settings_were_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default, relative state dir, with the platform's parts started from another working
    directory: everything they write is under the state dir the settings named."""
    pytest.importorskip("pyarrow", reason="the runner writes the sample catalog with pyarrow")
    loaded_in, elsewhere = tmp_path / "clone", tmp_path / "elsewhere"
    loaded_in.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(loaded_in)
    ports = {"gateway": {"host": "127.0.0.1", "port": 0}, "admin": {"port": 0}, "runner": {"port": 0}}
    settings = load_settings(None, {}, **ports, playground={"port": 0}, pool={"size": 0})
    state = loaded_in / ".sparkgate"
    assert settings.state_dir == state
    monkeypatch.chdir(elsewhere)
    async with FakeSparkConnectServer() as fake, Platform(settings, provider=FakeProvider(address=fake.address)) as p:
        assert p.runner is not None
        backend = p.runner.backend
        assert isinstance(backend, LocalBackend)
        assert backend.jobs_dir == state / "jobs" and backend.catalog_root == state / "catalog"
    written = {str(f.relative_to(state)) for f in state.iterdir()}
    assert {"affinity.db", "audit.log", "runner.db", "catalog"} <= written, written
    assert (state / "catalog" / "samples" / "orders").is_dir()
    assert list(elsewhere.iterdir()) == []
