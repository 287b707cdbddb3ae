"""The Spark Runner end to end: manifests run on real Spark drivers, on SQLite and PostgreSQL.

Pool jobs run as Spark Connect clients of the e2e suite's warm drivers through a gateway of their
own; one job per database runs on a driver of its own (spark-submit). Namespaces are the suite's:
``feature-engineering``/``prod``, ``data-science``/``staging``, ``t1``/``local``.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from sparkgate.aio import pid_alive
from sparkgate.config import RunnerSettings
from sparkgate.errors import BadRequest
from sparkgate.gateway.server import Gateway
from sparkgate.runner.backends.local import LocalBackend
from sparkgate.runner.jobs import Job
from sparkgate.runner.service import Runner
from sparkgate.runner.store import JobStore
from sparkgate.sampledata import write_sample_catalog
from sparkgate.testing.postgres import TempPostgres
from tests.e2e.conftest import GatewayHarness

pytestmark = pytest.mark.spark

SAMPLES = Path(__file__).parents[2] / "src" / "sparkgate" / "runner" / "samples"
ENVS = ["local", "test", "staging", "prod"]


def manifest(
    sql: str,
    *,
    name: str = "job",
    team: str = "t1",
    sinks: str = "",
    source: str = "{name: orders, table: samples.orders}",
) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: dcp.pedregal.doordash.com/v1
        kind: SparkJob
        metadata: {{name: {name}, team: {team}}}
        spec:
          engine: {{version: "4.1"}}
          coreEtl:
            sources:
              - {source}
            transforms:
              - name: result
                sql: "{sql}"
        """
    ) + (f"    sinks:\n      - {sinks}\n" if sinks else "")


class RunnerRig:
    """A gateway (h2) on the suite's drivers, and runners over one job store."""

    def __init__(self, harness: GatewayHarness, root: Path, db_url: str) -> None:
        self.harness = harness
        self.root = root
        self.db_url = db_url
        self.catalog = root / "catalog"
        write_sample_catalog(self.catalog)
        settings = harness.settings.model_copy(
            update={"gateway": harness.settings.gateway.model_copy(update={"port": 0})}
        )

        async def start() -> Gateway:
            assert harness.clusters is not None
            gw = Gateway(settings, harness.clusters)
            await gw.start()
            return gw

        self.gateway = harness.run(start())
        self.runner: Runner | None = None

    def start_runner(self) -> Runner:
        backend = LocalBackend(
            self.root / "jobs",
            gateway_url=f"sc://127.0.0.1:{self.gateway.port}",
            catalog_root=self.catalog,
            plugin_dir=self.root / "plugin",
        )
        # /tmp is a data root of "test" only: there absolute paths under it pass Submit, and the
        # sandbox's own check in the job is what stops them.
        runner = Runner(
            RunnerSettings(port=0, max_running=2), JobStore(self.db_url), backend, ENVS, data_roots={"test": ["/tmp"]}
        )
        self.harness.run(runner.start())
        self.runner = runner
        return runner

    def session_placed(self, job_id: str) -> bool:
        """The job's Spark session still has a route to a driver on the gateway."""
        sid = self.check(job_id).job.handle.get("session_id")

        def placed() -> bool:
            return any(r.session_id == sid for r in self.gateway.store.all())

        return bool(sid) and self.harness._call(placed)

    def stop_runner(self) -> None:
        if self.runner is not None:
            self.harness.run(self.runner.close())
            self.runner = None

    def submit(self, text: str, env: str = "local", **options: str) -> str:
        assert self.runner is not None
        job: Job = self.harness.run(
            self.runner.submit(text, environment=env, user="tester@example.com", options=options)
        )
        return job.id

    def wait(self, job_id: str, timeout: float = 240) -> Job:
        assert self.runner is not None
        job: Job = self.harness.run(self.runner.wait(job_id, timeout), timeout=timeout + 10)
        return job

    def check(self, job_id: str, **kw: bool) -> Any:
        assert self.runner is not None
        return self.harness.run(self.runner.check(job_id, **kw))

    def close(self) -> None:
        self.stop_runner()
        self.harness.run(self.gateway.stop(0))


#: Tests of what the job store keeps (states, history, restarts) run on both stores; tests of what a
#: job does on its driver (the sandbox, SQL, own drivers) on SQLite only: the store plays no part.
SQLITE_ONLY = pytest.mark.parametrize("rig", ["sqlite"], indirect=True)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def rig(
    request: pytest.FixtureRequest, spark_stack: GatewayHarness, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunnerRig]:
    root = tmp_path_factory.mktemp(f"runner-{request.param}")
    with TempPostgres() if request.param == "postgresql" else _nothing() as pg_url:
        url = pg_url or f"sqlite:///{root / 'runner.db'}"
        r = RunnerRig(spark_stack, root, url)
        r.start_runner()
        try:
            yield r
        finally:
            r.close()


class _nothing:
    def __enter__(self) -> str:
        return ""

    def __exit__(self, *exc: object) -> None:
        return None


@SQLITE_ONLY
@pytest.mark.parametrize(("sample", "env"), [("daily_orders", "prod"), ("city_revenue", "staging")])
def test_every_shipped_sample_runs_in_the_sandbox(rig: RunnerRig, sample: str, env: str) -> None:
    job = rig.wait(rig.submit((SAMPLES / f"{sample}.yaml").read_text(), env=env, sandbox="true"))
    assert job.state == "COMPLETED", job.error
    assert Path(job.scratch_dir) in Path(rig.check(job.id, include_results=True).result["output_path"]).parents


def test_the_samples_above_are_all_the_samples() -> None:
    assert sorted(p.stem for p in SAMPLES.glob("*.yaml")) == ["city_revenue", "daily_orders"]


def test_sample_manifest_completes_with_a_correct_preview(rig: RunnerRig) -> None:
    job = rig.wait(rig.submit((SAMPLES / "daily_orders.yaml").read_text(), env="prod"))
    assert job.state == "COMPLETED", job.error
    view = rig.check(job.id, include_results=True, include_logs=True)
    result = view.result
    orders = pq.read_table(rig.catalog / "samples" / "orders").to_pylist()
    day = [o for o in orders if o["ds"] == "2024-06-03"]
    assert result["count"] == len({o["store_id"] for o in day})
    best = max({o["store_id"] for o in day}, key=lambda s: sum(o["amount"] for o in day if o["store_id"] == s))
    assert result["preview"][0]["store_id"] == best
    assert [f["name"] for f in result["schema"]["fields"]] == ["store_id", "name", "city", "orders", "revenue"]
    assert sum(r["orders"] for r in result["preview"]) == len(day)
    out = Path(result["output_path"])
    assert out.is_relative_to(Path(job.scratch_dir)) and pq.read_table(out).num_rows == result["count"]
    assert "[sparkgate-job" in view.logs and [e.state for e in view.history] == ["PENDING", "RUNNING", "COMPLETED"]


@SQLITE_ONLY
def test_sql_ending_in_a_comment_or_a_semicolon_runs(rig: RunnerRig) -> None:
    job = rig.wait(rig.submit(manifest("SELECT count(*) AS n FROM orders; -- every order")))
    assert job.state == "COMPLETED", job.error


@SQLITE_ONLY
def test_a_sql_error_fails_with_sparks_message(rig: RunnerRig) -> None:
    job = rig.wait(rig.submit(manifest("SELECT no_such_column FROM orders")))
    assert job.state == "FAILED" and "no_such_column" in job.error and "UNRESOLVED_COLUMN" in job.error


@SQLITE_ONLY
def test_sandbox_refuses_writes_outside_scratch(rig: RunnerRig) -> None:
    outside = manifest("SELECT * FROM orders", sinks="{from: result, path: /tmp/escape, mode: overwrite}")
    with pytest.raises(BadRequest, match=r"spec\.coreEtl\.sinks\[0\]\.path: /tmp/escape is outside the data roots"):
        rig.submit(outside)  # refused at Submit, sandbox or not
    job = rig.wait(rig.submit(outside, env="test", sandbox="true"))
    assert job.state == "FAILED" and "sandbox" in job.error and "outside the job's scratch output" in job.error
    table = manifest("SELECT * FROM orders", sinks="{from: result, table: default.stolen}")
    job = rig.wait(rig.submit(table, sandbox="true"))
    assert job.state == "FAILED" and "sandbox" in job.error and "writes table default.stolen" in job.error
    assert not Path("/tmp/escape").exists()
    sampled = rig.wait(rig.submit(manifest("SELECT * FROM orders"), sandbox="true", sample_limit="7"))
    assert sampled.state == "COMPLETED" and rig.check(sampled.id, include_results=True).result["count"] == 7


#: 40 columns: more than the 25 fields a plan's text shows, so a call after them is not in the text.
MANY = ", ".join(f"{i} AS c{i}" for i in range(40))


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("sql", "refused"),
    [
        ("SELECT `reflect`('java.lang.System', 'getProperty', 'java.version') AS v", "calls into the JVM (reflect)"),
        ("SELECT reflect/**/('java.lang.System', 'getProperty', 'java.version') AS v", "calls into the JVM"),
        ("SELECT TRY_REFLECT('java.lang.System', 'getProperty', 'java.version') AS v", "calls into the JVM"),
        (f"SELECT {MANY}, `java_method`('java.lang.System', 'getProperty', 'java.version') AS v", "calls into the JVM"),
        ("SELECT TRANSFORM(id) USING 'cat' AS (x) FROM range(1)", "runs a script"),
    ],
    ids=["backticks", "comment", "try_reflect", "past-the-plan-text", "script"],
)
def test_the_sandbox_checks_the_plan_not_the_text(rig: RunnerRig, sql: str, refused: str) -> None:
    job = rig.wait(rig.submit(manifest(sql, name="sneaky"), sandbox="true"))
    assert job.state == "FAILED" and f"sandbox: spec.coreEtl.transforms[0] {refused}" in job.error, job.error


@SQLITE_ONLY
def test_a_sandboxed_job_reads_its_inputs_and_nothing_else(rig: RunnerRig, tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("a\n1\n")
    own = f"{{name: orders, path: {tmp_path}/in.csv, format: csv, options: {{header: 'true'}}}}"
    job = rig.wait(rig.submit(manifest("SELECT * FROM orders", source=own), env="test", sandbox="true"))
    assert job.state == "COMPLETED", job.error
    assert rig.check(job.id, include_results=True).result["preview"] == [{"a": "1"}]
    peek = manifest("SELECT * FROM orders", source="{name: orders, path: /etc/hostname, format: text}")
    with pytest.raises(BadRequest, match="outside the data roots"):
        rig.submit(peek, env="test", sandbox="true")


@SQLITE_ONLY
def test_sql_cannot_read_files_by_path(rig: RunnerRig) -> None:
    job = rig.wait(rig.submit(manifest("SELECT * FROM text.`/etc/hostname`", name="peek")))
    assert job.state == "FAILED" and "hostname" not in json.dumps(rig.check(job.id, include_results=True).result or {})


def test_cancel_mid_run_leaves_no_process(rig: RunnerRig) -> None:
    slow = manifest("SELECT count(*) AS n FROM range(0, 50000000000)", name="slow")
    jid = rig.submit(slow)
    rig.harness.wait_for(lambda: rig.check(jid).job.state == "RUNNING" and bool(rig.check(jid).job.handle), 60)
    pid = rig.check(jid).job.handle["pid"]
    assert pid_alive(pid)
    rig.harness.wait_for(lambda: rig.session_placed(jid), 60, what="the job's session to reach a driver")
    job = rig.harness.run(rig.runner.cancel(jid))  # type: ignore[union-attr]
    assert job.state == "CANCELLED" and not pid_alive(pid)
    assert not rig.session_placed(jid)  # interrupted and released on its driver too
    assert rig.harness.run(rig.runner.cancel(jid)).state == "CANCELLED"  # type: ignore[union-attr]


def test_a_job_whose_program_dies_is_ended_on_its_driver_too(rig: RunnerRig) -> None:
    slow = manifest("SELECT count(*) AS n FROM range(0, 50000000000)", name="crash")
    jid = rig.submit(slow)
    rig.harness.wait_for(lambda: rig.session_placed(jid), 60, what="the job's session to reach a driver")
    os.killpg(rig.check(jid).job.handle["pid"], 9)  # the program dies; its query would go on
    assert rig.wait(jid, timeout=60).state == "FAILED"
    rig.harness.wait_for(lambda: not rig.session_placed(jid), 30, what="the job's session to be released")


def test_a_runner_restarted_mid_job_loses_nothing(rig: RunnerRig) -> None:
    slowish = manifest("SELECT count(*) AS n FROM range(0, 1500000000)", name="slowish")
    keeps = rig.submit(slowish)
    killed = rig.submit(slowish)
    rig.harness.wait_for(lambda: all(rig.check(j).job.state == "RUNNING" for j in (keeps, killed)), 60)
    pid = rig.check(killed).job.handle["pid"]
    rig.harness.wait_for(lambda: rig.session_placed(killed), 60, what="the job's session to reach a driver")
    rig.stop_runner()  # the runner goes away; its jobs' processes do not
    os.killpg(pid, 9)  # one job dies while no runner watches it
    rig.harness.wait_for(lambda: not pid_alive(pid), 10)
    rig.start_runner()
    lost = rig.wait(killed)
    assert lost.state == "FAILED" and "gone when the runner restarted" in lost.error
    assert not rig.session_placed(killed)  # its query interrupted and its session released on the driver
    done = rig.wait(keeps)
    assert done.state == "COMPLETED", done.error
    assert rig.check(keeps, include_results=True).result["preview"] == [{"n": 1500000000}]


@SQLITE_ONLY
def test_own_driver(rig: RunnerRig) -> None:
    """A job on a driver of its own, sandboxed there too (the driver loads the plugin)."""
    job = rig.wait(rig.submit((SAMPLES / "city_revenue.yaml").read_text(), env="staging", driver="own", sandbox="true"))
    assert job.state == "COMPLETED", job.error
    assert job.spark_ui_url.startswith("http://127.0.0.1:") and job.backend == "local-own"
    result = rig.check(job.id, include_results=True).result
    assert result["count"] == 56 and json.dumps(result["schema"]).count('"name"') == 4
    assert not pid_alive(job.handle["pid"])
