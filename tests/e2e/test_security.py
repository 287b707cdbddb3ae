"""Security end to end: real pyspark clients over TLS with OIDC tokens from a local issuer.

The gateway (TLS, ``auth.mode: oidc``) runs beside the e2e suite's gateways on the same
drivers, which — like every local driver — accept only their own token, which the gateway holds. The clients
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
            yield {
                "gateway": gw,
                "issuer": issuer,
                "ca": certs.ca,
                "audit": d / "audit.log",
                "harness": spark_stack,
                "root": d,
            }
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
    # A client that forgot use_ssl=true is told so at once (it would otherwise retry for ever).
    cases.append(
        {"name": "plaintext", "url": f"sc://localhost:{gw.port}/;x-doordash-team={TEAM};x-doordash-environment={ENV}"}
    )

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
        "plaintext": "add use_ssl=true to the connection string",
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
    sample = gw.telemetry.registry.get_sample_value
    unrouted = {"team": "-", "environment": "-"}
    refused = sum(
        sample("sparkgate_rpcs_total", {"method": m, **unrouted, "status": "UNAUTHENTICATED"}) or 0
        for m in ("Config", "ExecutePlan", "AnalyzePlan")
    )
    assert refused >= 6 and gw.guard.failures == len(failures)


def test_runner_pool_jobs_reach_a_gateway_with_auth_and_tls(secure: dict[str, Any]) -> None:
    """With auth on, the runner's jobs use the platform's own service credential (as `sparkgate up` wires it)."""
    import secrets

    from sparkgate.config import RunnerSettings
    from sparkgate.runner.backends.local import LocalBackend
    from sparkgate.runner.service import Runner
    from sparkgate.runner.store import JobStore
    from sparkgate.sampledata import write_sample_catalog
    from sparkgate.security.authz import PLATFORM_GROUP
    from sparkgate.security.identity import Identity

    gw: Gateway = secure["gateway"]
    harness: GatewayHarness = secure["harness"]
    root: Path = secure["root"] / "runner"
    write_sample_catalog(root / "catalog")
    token = secrets.token_urlsafe(24)
    gw.guard.add_service_token(token, Identity("sparkgate-runner", frozenset({PLATFORM_GROUP}), "token"))
    backend = LocalBackend(
        root / "jobs",
        gateway_url=f"sc://localhost:{gw.port}",
        catalog_root=root / "catalog",
        gateway_token=token,
        gateway_tls=True,
        gateway_ca_file=secure["ca"],
    )
    runner = Runner(RunnerSettings(port=0), JobStore(f"sqlite:///{root / 'runner.db'}"), backend, ["local"])
    harness.run(runner.start())
    try:
        text = (
            "apiVersion: dcp.pedregal.doordash.com/v1\nkind: SparkJob\nmetadata: {name: secure, team: t1}\n"
            'spec:\n  engine: {version: "4.1"}\n  coreEtl:\n    sources:\n'
            "      - {name: orders, table: samples.orders}\n"
        )
        job = harness.run(runner.submit(text, environment="local", user="dana@example.com"))
        done = harness.run(runner.wait(job.id, 180), timeout=200)
        assert done.state == "COMPLETED", done.error
    finally:
        harness.run(runner.close())
    events = [json.loads(line) for line in secure["audit"].read_text().splitlines()]
    assert any(e["event"] == "session.create" and e["who"] == "sparkgate-runner" for e in events)
