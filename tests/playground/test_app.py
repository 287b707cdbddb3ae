"""Every Playground endpoint and error code, against a real runner over gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from sparkgate.config import load_settings
from sparkgate.playground.app import create_app
from tests.playground.conftest import RESULT, Rig, playground
from tests.runner.test_manifest import GOOD

API = "/api/v1/playground"
ALICE = {"x-user-email": "alice@example.com"}
BOB = {"x-user-email": "bob@example.com"}


async def wait_state(rig: Rig, job_id: str, state: str) -> dict[str, object]:
    for _ in range(200):
        r = await rig.client.get(f"{API}/status/{job_id}", headers=ALICE)
        if r.json()["state"] == state:
            return dict(r.json())
        await asyncio.sleep(0.02)
    raise AssertionError(f"{job_id} never reached {state}")


async def test_run_status_results_and_history(rig: Rig) -> None:
    job = await rig.run(environment="local", sandbox=True)
    running = await wait_state(rig, job, "RUNNING")
    assert running["user"] == "alice@example.com" and running["spark_ui_url"] == "http://ui"
    early = await rig.client.get(f"{API}/results/{job}", headers=ALICE)
    assert early.status_code == 409 and "COMPLETED" in early.json()["error"]
    await rig.fake.finish(job, result=RESULT)
    done = await wait_state(rig, job, "COMPLETED")
    assert [h["state"] for h in done["history"]] == ["PENDING", "RUNNING", "COMPLETED"]  # type: ignore[union-attr]
    res = (await rig.client.get(f"{API}/results/{job}", headers=ALICE)).json()
    assert res["count"] == 2 and res["preview"][0] == {"store_id": 3, "revenue": 99.5}
    assert res["columns"] == [{"name": "store_id", "type": "integer"}, {"name": "revenue", "type": "double"}]
    assert res["output_path"] == "/out/daily"
    mine = (await rig.client.get(f"{API}/jobs", headers=ALICE)).json()
    assert [j["job_id"] for j in mine] == [job]
    assert (await rig.client.get(f"{API}/jobs", headers=BOB)).json() == []
    logs = (await rig.client.get(f"{API}/status/{job}?logs=true", headers=ALICE)).json()
    assert logs["logs"] == f"log of {job}"
    submit = await rig.client.post(f"{API}/submit", json={"manifest": GOOD}, headers=ALICE)
    assert submit.status_code == 200 and submit.json()["state"] == "PENDING"


async def test_cancel_and_the_error_codes(rig: Rig) -> None:
    job = await rig.run()
    await wait_state(rig, job, "RUNNING")
    assert (await rig.client.post(f"{API}/cancel/{job}", headers=BOB)).status_code == 403
    assert (await rig.client.get(f"{API}/status/{job}", headers=BOB)).json()["error"].endswith("another user")
    for _ in range(2):  # idempotent
        r = await rig.client.post(f"{API}/cancel/{job}", headers=ALICE)
        assert r.status_code == 200 and r.json()["state"] == "CANCELLED"
    assert (await rig.client.get(f"{API}/results/{job}", headers=ALICE)).status_code == 409
    missing = await rig.client.get(f"{API}/status/nope", headers=ALICE)
    assert missing.status_code == 404 and "no job 'nope'" in missing.json()["error"]


async def test_bad_manifests_and_bodies_are_400_with_paths_and_lines(rig: Rig) -> None:
    bad = GOOD.replace("mode: overwrite", "mode: replace")
    r = await rig.client.post(f"{API}/run", json={"manifest": bad}, headers=ALICE)
    assert r.status_code == 400
    (p,) = r.json()["problems"]
    assert p["path"] == "spec.coreEtl.sinks[0].mode" and p["line"] == 15 and "must be one of" in p["message"]
    r = await rig.client.post(f"{API}/run", json={"manifest": GOOD, "environment": "moon"}, headers=ALICE)
    assert r.status_code == 400 and "unknown environment 'moon'" in r.json()["error"]
    r = await rig.client.post(f"{API}/run", json={"nope": 1}, headers=ALICE)
    assert r.status_code == 400 and r.json()["problems"][0]["path"] == "manifest"
    assert not rig.fake.started


async def test_validate(rig: Rig) -> None:
    ok = (await rig.client.post(f"{API}/validate", json={"manifest": GOOD}, headers=ALICE)).json()
    assert ok == {"valid": True, "problems": [], "job_name": "daily-orders", "team": "feature-engineering"}
    bad = (await rig.client.post(f"{API}/validate", json={"manifest": "a: [", "environment": "moon"})).json()
    assert (
        bad["valid"] is False and bad["problems"][0]["path"] == "(yaml)" and bad["problems"][1]["path"] == "environment"
    )
    escaping = GOOD.replace("path: out,", "path: ../../etc/x,")
    out = (await rig.client.post(f"{API}/validate", json={"manifest": escaping}, headers=ALICE)).json()
    assert out["valid"] is False and out["problems"][0]["path"] == "spec.coreEtl.sinks[0].path"


async def test_live_events(rig: Rig) -> None:
    job = await rig.run()
    await wait_state(rig, job, "RUNNING")
    await rig.fake.finish(job, result=RESULT)
    r = await rig.client.get(f"{API}/jobs/{job}/events", headers=ALICE)
    assert r.headers["content-type"].startswith("text/event-stream")
    assert "event: state" in r.text and '"state":"COMPLETED"' in r.text and r.text.rstrip().endswith("data: {}")


async def test_live_events_follow_a_running_job(rig: Rig) -> None:
    job = await rig.run()
    await wait_state(rig, job, "RUNNING")
    watching = asyncio.ensure_future(rig.client.get(f"{API}/jobs/{job}/events", headers=ALICE))
    for _ in range(100):  # until the stream is open: the runner has a watch
        if rig.runner._watches.get(job):
            break
        await asyncio.sleep(0.02)
    rig.fake.write_log(job, "[sparkgate-job] reading orders")
    rig.fake.write_log(job, "INFO SparkContext: noise")
    await asyncio.sleep(0.5)  # (the line is followed within a quarter second)
    await rig.fake.finish(job, result=RESULT)
    text = (await watching).text
    running, log, done = (text.index(s) for s in ('"state":"RUNNING"', "reading orders", '"state":"COMPLETED"'))
    assert running < log < done and "noise" not in text and text.rstrip().endswith("data: {}")


async def test_samples_environments_ui_and_docs(rig: Rig) -> None:
    samples = (await rig.client.get(f"{API}/samples")).json()
    assert {s["name"] for s in samples} >= {"daily_orders", "city_revenue"} and all(s["manifest"] for s in samples)
    assert (await rig.client.get(f"{API}/environments")).json() == ["local", "prod", "staging", "test"]
    page = await rig.client.get("/")
    assert page.status_code == 200 and "DCP Playground" in page.text
    assert (await rig.client.get("/static/app.js")).status_code == 200
    spec = (await rig.client.get("/openapi.json")).json()
    assert f"{API}/run" in spec["paths"]
    docs = await rig.client.get("/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text and "/docs/assets/swagger-ui-bundle.js" in docs.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png", "redoc.standalone.js"):
        assert (await rig.client.get(f"/docs/assets/{asset}")).status_code == 200


async def test_runner_unreachable_is_503(tmp_path: Path) -> None:
    from sparkgate.aio import free_port

    app = create_app(load_settings(None, {}, state_dir=tmp_path, audit={"enabled": False}), f"127.0.0.1:{free_port()}")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://p") as c,
    ):
        r = await c.post(f"{API}/run", json={"manifest": GOOD})
        assert r.status_code == 503 and "not reachable" in r.json()["error"]


async def test_with_auth_on_the_token_is_the_user(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("tokens:\n  - {token: t-carol, subject: carol@example.com, groups: [fe]}\n")
    settings = load_settings(
        None, {}, state_dir=tmp_path, audit={"enabled": False}, auth={"mode": "static", "tokens_file": str(tokens)}
    )
    app = create_app(settings, "127.0.0.1:9")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://p") as c,
    ):
        assert (await c.get(f"{API}/whoami", headers={"x-user-email": "mallory@x"})).status_code == 401
        assert (await c.get(f"{API}/whoami", headers={"authorization": "Bearer nope"})).status_code == 401
        who = await c.get(f"{API}/whoami", headers={"authorization": "Bearer t-carol", "x-user-email": "mallory@x"})
        assert who.json() == {"user": "carol@example.com", "auth": "static"}


async def test_what_a_broken_or_hostile_client_sends_gets_a_4xx_in_json(rig: Rig) -> None:
    """Too large (said or not), not UTF-8, not JSON, bad header bytes: each a JSON error, never a 500."""
    huge = "x" * (2 * 1024 * 1024 + 1)
    r = await rig.client.post(f"{API}/run", json={"manifest": huge}, headers=ALICE)
    assert r.status_code == 413 and "playground.max_body_bytes" in r.json()["error"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"manifest": "'
        for _ in range(40):
            yield b"y" * 65536
        yield b'"}'

    r = await rig.client.post(f"{API}/run", content=chunks(), headers={**ALICE, "content-type": "application/json"})
    assert r.status_code == 413 and r.json()["problems"] == []
    big_manifest = GOOD + "#" * (1024 * 1024)
    r = await rig.client.post(f"{API}/validate", json={"manifest": big_manifest}, headers=ALICE)
    assert r.status_code == 413 and "runner.max_manifest_bytes" in r.json()["error"]
    for body in (b'{"manifest": "\xff\xfe"}', b"not json", b'["a list"]'):
        r = await rig.client.post(f"{API}/run", content=body, headers={**ALICE, "content-type": "application/json"})
        assert r.status_code == 400 and "error" in r.json(), body
    r = await rig.client.post(f"{API}/run", json={"manifest": GOOD}, headers={"x-user-email": "eve\x01@example.com"})
    assert r.status_code == 400 and "X-User-Email" in r.json()["error"]
    r = await rig.client.get(f"{API}/no/such/endpoint", headers=ALICE)
    assert r.status_code == 404 and r.json() == {"error": "Not Found", "problems": []}
    assert not rig.fake.started


async def test_a_user_past_the_submit_rate_gets_429_and_when_to_retry(tmp_path: Path) -> None:
    async with playground(tmp_path, submits_per_minute_per_user=2) as rig:
        for _ in range(2):
            await rig.run()
        r = await rig.client.post(f"{API}/run", json={"manifest": GOOD}, headers=ALICE)
        assert r.status_code == 429 and "runner.submits_per_minute_per_user" in r.json()["error"]
        assert 1 <= int(r.headers["retry-after"]) <= 30
        await rig.run(user="bob@example.com")  # others are not held back
