"""Client helpers without Spark: where the gateway is, the URL, and a fast, clear 'not reachable'."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sparkgate.client import GatewayError, connection_url, gateway_for, get_spark


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("SPARK_CONNECT_GATEWAY", "SPARKGATE_TOKEN", "SPARKGATE_TOKEN_FILE", "JUPYTERHUB_USER", "LOGNAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SPARKGATE_CLIENT_CONFIG", str(tmp_path / "none.yaml"))
    monkeypatch.setenv("SPARKGATE_TOKEN_FILE", str(tmp_path / "no-token"))
    monkeypatch.setenv("USER", "jovyan")


def test_the_user_is_the_login_even_without_user_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import getpass
    import pwd

    assert "user_id=jovyan" in connection_url("t", "local")
    monkeypatch.delenv("USER")
    assert f"user_id={pwd.getpwuid(os.getuid()).pw_name}" in connection_url("t", "local")
    monkeypatch.setenv("JUPYTERHUB_USER", "hub-user")
    assert "user_id=hub-user" in connection_url("t", "local")
    assert getpass.getuser() != "hub-user"


def test_gateway_per_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert gateway_for("staging") == "localhost:15002"
    cfg = tmp_path / "client.yaml"
    cfg.write_text("gateways: {staging: gw-staging.example.com:15002, default: gw.example.com:15002}\n")
    monkeypatch.setenv("SPARKGATE_CLIENT_CONFIG", str(cfg))
    assert gateway_for("staging") == "gw-staging.example.com:15002" and gateway_for("prod") == "gw.example.com:15002"
    monkeypatch.setenv("SPARK_CONNECT_GATEWAY", "sc://ci-gateway:15002")
    assert gateway_for("staging") == "ci-gateway:15002"


def test_routing_travels_as_url_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    url = connection_url("data-science", "staging")
    assert url == (
        "sc://localhost:15002/;x-doordash-team=data-science;x-doordash-environment=staging;"
        "x-doordash-user=jovyan;user_id=jovyan"
    )
    monkeypatch.setenv("JUPYTERHUB_USER", "ana@example.com")
    monkeypatch.setenv("SPARKGATE_TOKEN", "tok")
    remote = connection_url("ds", "prod", gateway="gw.example.com:15002")
    assert "x-doordash-user=ana@example.com" in remote and ";token=tok" in remote and remote.endswith(";use_ssl=true")
    assert "use_ssl" not in connection_url("ds", "local")  # pyspark sends a token in clear to localhost only


def test_no_gateway_is_a_fast_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pyspark")
    from sparkgate.aio import free_port

    monkeypatch.setenv("SPARK_CONNECT_GATEWAY", f"127.0.0.1:{free_port()}")
    t0 = time.monotonic()
    with pytest.raises(GatewayError, match=r"cannot reach the Spark Gateway at 127\.0\.0\.1:\d+ .*sparkgate up"):
        get_spark("data-science", "staging")
    assert time.monotonic() - t0 < 10
