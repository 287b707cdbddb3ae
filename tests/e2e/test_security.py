"""Security end to end: real pyspark clients over TLS with OIDC tokens from a local issuer.

The gateway (h2 engine, TLS, ``auth.mode: oidc``) runs beside the e2e suite's gateways on the same
drivers, which — like every local driver — accept only the gateway's pre-shared token. The clients
run in their own process, trusting the dev CA through ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sparkgate.clusters.base import namespace_for
from sparkgate.gateway.server import Gateway
from sparkgate.security.certs import make_dev_certs
from sparkgate.testing.oidc_issuer import OidcIssuer
from tests.e2e.conftest import NS_T1, GatewayHarness

pytestmark = pytest.mark.spark

TEAM, ENV = NS_T1


@pytest.fixture(scope="module")
def secure(spark_stack: GatewayHarness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    d = tmp_path_factory.mktemp("secure")
    certs = make_dev_certs(d / "certs")
    with OidcIssuer() as issuer:
        settings = spark_stack.settings.model_copy(deep=True)
        overrides = {
            "gateway": settings.gateway.model_copy(
                update={
                    "port": 0,
                    "engine": "h2",
                    "affinity": settings.gateway.affinity.model_copy(update={"backend": "memory"}),
                }
            ),
            "auth": settings.auth.model_copy(
                update={
                    "mode": "oidc",
                    "oidc": settings.auth.oidc.model_copy(
                        update={"issuer": issuer.url, "audience": "sparkgate", "jwks_min_refresh_seconds": 0}
                    ),
                }
            ),
            "tls": settings.tls.model_copy(
                update={"cert_file": str(certs.server_cert), "key_file": str(certs.server_key)}
            ),
            "audit": settings.audit.model_copy(update={"path": str(d / "audit.log")}),
        }
        gw_settings = settings.model_copy(update=overrides)

        async def start() -> Gateway:
            assert spark_stack.clusters is not None
            gw = Gateway(gw_settings, spark_stack.clusters)
            await gw.start()
            return gw

        gw = spark_stack.run(start())
        try:
            yield {"gateway": gw, "issuer": issuer, "ca": certs.ca, "audit": d / "audit.log", "harness": spark_stack}
        finally:
            spark_stack.run(gw.stop(0))


async def _routes(gw: Gateway) -> list[Any]:
    return gw.store.all()


def run_clients(ca: Path, cases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    env = {**os.environ, "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(ca)}
    env.pop("SPARK_CONNECT_AUTHENTICATE_TOKEN", None)
    out = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("secure_client.py"))],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_oidc_over_tls_with_real_clients(secure: dict[str, Any]) -> None:
    gw: Gateway = secure["gateway"]
    issuer: OidcIssuer = secure["issuer"]
    harness: GatewayHarness = secure["harness"]
    base = f"sc://localhost:{gw.port}/;use_ssl=true;x-doordash-team={TEAM};x-doordash-environment={ENV}"

    def url(token: str | None, **params: str) -> str:
        return base + (f";token={token}" if token else "") + "".join(f";{k}={v}" for k, v in params.items())

    from cryptography.hazmat.primitives.asymmetric import rsa

    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    alice = issuer.token("alice@example.com", groups=[TEAM])
    bob = issuer.token("bob@example.com", groups=[TEAM])
    shared = str(uuid.uuid4())
    cases = [
        {"name": "valid", "url": url(alice, user_id="jovyan"), "sql": "SELECT 1 + 1 AS two"},
        {"name": "no_token", "url": url(None)},
        {"name": "forged", "url": url(issuer.token("alice@example.com", groups=[TEAM], key=other_key))},
        {"name": "expired", "url": url(issuer.token("alice@example.com", groups=[TEAM], lifetime=-300))},
        {"name": "audience", "url": url(issuer.token("alice@example.com", groups=[TEAM], audience="other"))},
        {"name": "issuer", "url": url(issuer.token("alice@example.com", groups=[TEAM], issuer="https://evil"))},
        {"name": "unknown_kid", "url": url(issuer.token("alice@example.com", groups=[TEAM], kid="retired-key"))},
        {"name": "other_team", "url": url(issuer.token("carol@example.com", groups=["ds"]))},
        {"name": "owner", "url": url(alice, session_id=shared), "keep": True},
        {"name": "hijack", "url": url(bob, session_id=shared, user_id="alice@example.com")},
    ]
    issuer.rotate(keep_old=True)  # a new signing key: the gateway learns it on first sight
    cases.append({"name": "rotated", "url": url(issuer.token("dave@example.com", groups=[TEAM]))})
    driver = next(d for d in harness.clusters.drivers() if d.namespace == namespace_for(TEAM, ENV))  # type: ignore[union-attr]
    port = driver.address.rpartition(":")[2]
    cases.append({"name": "direct_no_token", "url": f"sc://127.0.0.1:{port}"})
    cases.append({"name": "direct_wrong_token", "url": f"sc://localhost:{port}/;token=guess"})

    results = run_clients(secure["ca"], cases)

    assert results["valid"] == {"rows": [{"two": 2}]}
    # The session is keyed (and the driver's session created) under the identity, not "jovyan":
    # tests/gateway/test_security.py checks the rewritten user_context on the wire.
    users = {r.user_id for r in harness.run(_routes(gw))}
    assert "jovyan" not in users
    assert results["owner"] == {"rows": [{"one": 1}]} and results["rotated"] == {"rows": [{"one": 1}]}
    expect = {
        "no_token": "requires credentials",
        "forged": "signature does not verify",
        "expired": "expired",
        "audience": "not for this gateway",
        "issuer": "another issuer",
        "unknown_kid": "does not publish",
        "other_team": "carol@example.com may not use team 't1'",
        "hijack": "belongs to another user",
        "direct_no_token": "No authentication token provided",
        "direct_wrong_token": "Invalid authentication token",
    }
    for name, text in expect.items():
        assert text in results[name].get("error", ""), (name, results[name])

    events = [json.loads(line) for line in secure["audit"].read_text().splitlines()]
    failures = [e["reason"] for e in events if e["event"] == "auth.failure"]
    # Each refused client makes a few calls (the query, then ReleaseSession on stop): all refused.
    for text in ("requires credentials", "signature", "expired", "not for this gateway", "another issuer", "publish"):
        assert any(text in r for r in failures), text
    denied = [e for e in events if e["event"] == "permission.denied"]
    assert {e["who"] for e in denied} == {"carol@example.com", "bob@example.com"}
    created = {e["who"] for e in events if e["event"] == "session.create"}
    assert created >= {"alice@example.com", "dave@example.com"}
    sample = gw.router.telemetry.registry.get_sample_value
    unrouted = {"team": "-", "environment": "-"}
    refused = sum(
        sample("sparkgate_rpcs_total", {"method": m, **unrouted, "status": "UNAUTHENTICATED"}) or 0
        for m in ("Config", "ExecutePlan", "AnalyzePlan")
    )
    assert refused >= 6 and gw.guard.failures == len(failures)
