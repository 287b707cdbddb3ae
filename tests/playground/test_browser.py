"""The Playground in a real browser: Debian's chromium, headless, driven by Playwright.

The page talks to a real Playground server (uvicorn) and a real runner over gRPC; the jobs'
execution is a fake backend the test finishes by hand (real Spark runs are tests/e2e/test_runner.py).
A screenshot of each scenario is kept in ``.artifacts/playground/``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sparkgate.config import RunnerSettings, load_settings
from sparkgate.playground.app import create_app
from sparkgate.playground.server import PlaygroundServer
from sparkgate.runner.server import RunnerServer
from sparkgate.runner.service import Runner
from sparkgate.runner.store import JobStore
from sparkgate.testing.fake_execution import FakeExecution
from tests.playground.conftest import RESULT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("SPARKGATE_ARTIFACTS", Path(__file__).parents[2] / ".artifacts")) / "playground"
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (scripts/test installs it)"
)


class Stack:
    def __init__(self, root: Path) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True, name="browser-stack").start()
        self.fake = FakeExecution(scratch_root=root / "scratch")

        async def start() -> tuple[Runner, RunnerServer, PlaygroundServer]:
            runner = Runner(
                RunnerSettings(port=0), JobStore(f"sqlite:///{root / 'runner.db'}"), self.fake, ["local", "prod"]
            )
            await runner.start()
            rs = RunnerServer(runner, "127.0.0.1", 0)
            await rs.start()
            settings = load_settings(None, {}, state_dir=root, audit={"enabled": False})
            pg = PlaygroundServer(create_app(settings, f"127.0.0.1:{rs.port}"), "127.0.0.1", 0)
            await pg.start()
            return runner, rs, pg

        self.runner, self.runner_server, self.playground = self.run(start())
        self.url = f"http://127.0.0.1:{self.playground.port}/"

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def finish(self, job_id: str, **kw: Any) -> None:
        self.run(self.fake.finish(job_id, **kw))

    def close(self) -> None:
        async def stop() -> None:
            await self.playground.stop()
            await self.runner_server.stop()
            await self.runner.close()

        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    s = Stack(Path(tempfile.mkdtemp(prefix="playground-browser-")))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, stack: Stack) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.goto(stack.url)
    pg.get_by_test_id("user").fill("ui-tester@example.com")
    pg.get_by_test_id("user").dispatch_event("change")
    try:
        yield pg
    finally:
        context.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def load_sample(page: Any) -> None:
    page.get_by_test_id("samples").select_option("daily_orders")
    page.get_by_test_id("problems").get_by_text("✓ valid").wait_for()


def test_run_a_sample_to_completed_and_see_the_preview(page: Any, stack: Stack) -> None:
    load_sample(page)
    assert "apiVersion: dcp.pedregal.doordash.com/v1" in page.get_by_test_id("manifest").input_value()
    page.get_by_test_id("manifest").press("Control+Enter")  # the keyboard way to Run
    page.get_by_test_id("state").get_by_text("RUNNING").wait_for()
    job_id = page.get_by_test_id("job-id").inner_text()
    assert job_id.startswith("feature-engineering-daily-orders-")
    stack.finish(job_id, result=RESULT)
    page.get_by_test_id("state").get_by_text("COMPLETED").wait_for()
    table = page.get_by_test_id("result-table")
    table.locator("td").first.wait_for()
    assert table.locator("th").all_inner_texts() == ["store_id", "revenue"]
    assert table.locator("tbody tr").count() == 2 and "99.5" in table.inner_text()
    assert page.get_by_test_id("result-count").inner_text() == "2 rows"
    assert "integer" in page.get_by_test_id("result-schema").inner_text()
    assert page.get_by_test_id("spark-ui").get_attribute("href") == "http://ui"
    page.get_by_test_id("history").get_by_text(job_id).wait_for()
    shot(page, "run-completed")


def test_stop_a_running_job(page: Any, stack: Stack) -> None:
    load_sample(page)
    page.get_by_test_id("run").click()
    page.get_by_test_id("state").get_by_text("RUNNING").wait_for()
    assert page.get_by_test_id("stop").is_enabled()
    page.get_by_test_id("stop").click()
    page.get_by_test_id("state").get_by_text("CANCELLED").wait_for()
    assert page.get_by_test_id("stop").is_disabled()
    job_id = page.get_by_test_id("job-id").inner_text()
    assert stack.fake.cancelled[-1] == job_id
    page.get_by_test_id("history").locator("li", has_text=job_id).get_by_text("CANCELLED").wait_for()
    shot(page, "stopped")


def test_a_broken_manifest_shows_where(page: Any) -> None:
    load_sample(page)
    editor = page.get_by_test_id("manifest")
    editor.fill(editor.input_value().replace("mode: overwrite", "mode: replace"))
    problem = page.get_by_test_id("problems").locator("li").first
    problem.get_by_text("must be one of overwrite, append, error, ignore").wait_for()
    assert "spec.coreEtl.sinks[0].mode" in problem.inner_text() and problem.inner_text().startswith("line ")
    assert page.locator(".gutter .bad").count() == 1
    page.get_by_test_id("run").click()
    page.locator("#toast").get_by_text("invalid manifest").wait_for()
    assert page.get_by_test_id("state").inner_text() in ("—", "")
    shot(page, "validation-error")


def test_the_api_docs_render_without_internet(page: Any, stack: Stack) -> None:
    """Swagger UI comes from the installed package: every request stays on the Playground's host."""
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(stack.url.rstrip("/")) else None)
    page.goto(stack.url.rstrip("/") + "/docs")
    page.locator(".swagger-ui .info .title").get_by_text("sparkgate DCP Playground").wait_for()
    page.locator(".opblock-summary-path", has_text="/api/v1/playground/run").first.wait_for()
    assert outside == []
    shot(page, "api-docs")
