"""The client entry points against the local platform: get_spark, the pytest plugin, the JVM client."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests import java_client
from tests.e2e.conftest import NS_T1, GatewayHarness

pytestmark = pytest.mark.spark
TEAM, ENV = NS_T1
ROOT = Path(__file__).parents[2]


def test_get_spark_and_its_errors(gateway: GatewayHarness) -> None:
    script = textwrap.dedent(
        f"""
        from sparkgate.client import GatewayError, get_spark
        spark = get_spark("{TEAM}", "{ENV}", app_name="helper-test")
        print("ROW", spark.sql("SELECT 41 + 1 AS answer").first().answer)
        spark.stop()
        for team, env in (("{TEAM}", "moon"), ("Bad_Team", "{ENV}")):
            try:
                get_spark(team, env, quiet=True)
            except GatewayError as e:
                print("ERROR", e)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=gateway.client_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"through {gateway.target} (team {TEAM}, environment {ENV}" in out.stdout and "ROW 42" in out.stdout
    errors = [ln for ln in out.stdout.splitlines() if ln.startswith("ERROR")]
    assert "unknown environment 'moon'" in errors[0] and "pick one of the environments" in errors[0]
    assert "'Bad_Team'" in errors[1] and "is not a valid name" in errors[1]


def test_pytest_plugin_fixture(gateway: GatewayHarness, tmp_path: Path) -> None:
    (tmp_path / "test_with_spark.py").write_text(
        "def test_query(spark):\n    assert spark.sql('SELECT 7 AS n').first().n == 7\n"
    )
    env = gateway.client_env() | {"SPARK_CONNECT_TEAM": TEAM, "SPARK_CONNECT_ENV": ENV, "SPARK_CONNECT_USER": "ci-bot"}
    run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)]
    ok = subprocess.run(run, env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path, check=False)
    assert ok.returncode == 0 and "1 passed" in ok.stdout, ok.stdout[-2000:]
    env.pop("SPARK_CONNECT_GATEWAY")
    skipped = subprocess.run(
        [*run, "-rs"], env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path, check=False
    )
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout and "SPARK_CONNECT_GATEWAY" in skipped.stdout


@pytest.mark.skipif(shutil.which("javac") is None, reason="needs a JDK (javac) to build the Java example")
def test_the_java_client_example(gateway: GatewayHarness, tmp_path: Path) -> None:
    java = java_client.build(ROOT / "examples" / "java" / "SparkConnectApiClient.java", tmp_path)
    url = f"sc://{gateway.target}/;x-doordash-team={TEAM};x-doordash-environment={ENV}"
    params = subprocess.run(
        [*java, url, "SELECT * FROM pedregal.raw.events LIMIT 10"],  # the example's default query
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert params.returncode == 0, params.stderr[-3000:]
    assert "|user_id|event_type|" in params.stdout and params.stdout.count("\n|") >= 11
    # Routing headers as builder options, which the JVM client sends as one Config(Set) per key.
    config_style = subprocess.run(
        [*java, f"sc://{gateway.target}", "SELECT 'config' AS way", "--builder-options", TEAM, ENV],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert config_style.returncode == 0, config_style.stderr[-3000:]
    assert "config" in config_style.stdout


def test_the_metaflow_example_flow(gateway: GatewayHarness, tmp_path: Path) -> None:
    pytest.importorskip("metaflow")
    import datetime as dt

    day = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    env = gateway.client_env() | {
        "METAFLOW_DEFAULT_DATASTORE": "local",
        "METAFLOW_DEFAULT_METADATA": "local",
        "USERNAME": "ci",
    }
    flow = ROOT / "examples" / "metaflow" / "feature_flow.py"
    out = subprocess.run(
        [sys.executable, str(flow), "--no-pylint", "run", "--team", TEAM, "--environment", ENV, "--date", day],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    extracted = [ln for ln in out.stdout.splitlines() + out.stderr.splitlines() if "Extracted" in ln]
    assert extracted and int(extracted[0].split("Extracted ")[1].split()[0]) > 0
    assert "Feature engineering pipeline complete!" in out.stdout + out.stderr


def test_the_example_notebook(gateway: GatewayHarness) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from tests.e2e.conftest import NS_NOTEBOOK

    nb = nbformat.read(ROOT / "examples" / "notebooks" / "explore_catalog.ipynb", as_version=4)
    assert 'get_spark(team="{}", environment="{}")'.format(*NS_NOTEBOOK) in nb.cells[1].source
    saved = dict(os.environ)
    os.environ.update(gateway.client_env() | {"MPLBACKEND": "Agg"})
    try:
        nbclient.NotebookClient(nb, timeout=240, kernel_name="python3").execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "Connected to Spark" in text and "feature_store" in text and "events" in text
    rows = [ln for ln in text.splitlines() if ln.startswith("|20")]
    assert len(rows) >= 7  # one line per recent day
