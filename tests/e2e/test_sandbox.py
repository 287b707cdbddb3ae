"""The driver plugin's sandbox on a real driver: what a sandboxed session's plans may not do, and
that the session cannot turn its sandbox off."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pyspark.sql.connect.session import SparkSession

from sparkgate.runner.program import SANDBOX_READ, SANDBOX_REFUSED, SANDBOX_WRITE
from tests.e2e.conftest import NS_T1, GatewayHarness

pytestmark = pytest.mark.spark
JVM = "reflect('java.lang.System', 'getProperty', 'java.version')"


def refusal(action: Callable[[], object]) -> str:
    """The sandbox's reason for refusing ``action`` (which must fail with it)."""
    with pytest.raises(Exception) as caught:
        action()
    text = str(caught.value)
    assert SANDBOX_REFUSED in text, text
    return text.split(SANDBOX_REFUSED, 1)[1].splitlines()[0]


@pytest.fixture
def sandboxed(gateway: GatewayHarness, connect: Callable[..., SparkSession], tmp_path: Path) -> SparkSession:
    (tmp_path / "scratch").mkdir()
    (tmp_path / "inputs").mkdir()
    spark = connect(gateway.url(*NS_T1))
    spark.conf.set(SANDBOX_WRITE, str(tmp_path / "scratch"))
    spark.conf.set(SANDBOX_READ, str(tmp_path / "inputs"))
    assert refusal(lambda: spark.sql(f"SELECT {JVM}").schema) == "calls into the JVM (reflect)"
    return spark


def test_a_sandboxed_session_cannot_turn_itself_off(sandboxed: SparkSession) -> None:
    assert "SetCommand" in refusal(lambda: sandboxed.sql(f"SET {SANDBOX_WRITE}=/").collect())
    sandboxed.conf.unset(SANDBOX_WRITE)  # the Config RPC is no plan: allowed, and changes nothing
    sandboxed.conf.set(SANDBOX_READ, "/")
    assert "calls into the JVM" in refusal(lambda: sandboxed.sql(f"SELECT {JVM}").collect())
    assert "reads file:/etc/hostname" in refusal(lambda: sandboxed.read.text("/etc/hostname").collect())


def test_what_a_sandboxed_plan_may_not_do(sandboxed: SparkSession, tmp_path: Path) -> None:
    many = ", ".join(f"{i} AS c{i}" for i in range(40))  # past the 25 fields a plan's text shows
    assert "calls into the JVM" in refusal(
        lambda: (
            sandboxed.sql(f"SELECT {many}, `reflect`('java.lang.System', 'getProperty', 'java.version') AS v").schema
        )
    )
    sandboxed.conf.set("spark.sql.runSQLOnFiles", "true")
    assert "reads file:/etc/hostname" in refusal(lambda: sandboxed.sql("SELECT * FROM text.`/etc/hostname`").schema)
    sandboxed.range(3).createOrReplaceTempView("v")  # temporary views are how a job chains its steps
    assert "writes file:" in refusal(lambda: sandboxed.table("v").write.parquet(str(tmp_path / "scratch" / "..")))
    assert "command" in refusal(lambda: sandboxed.table("v").write.saveAsTable("stolen"))
    nested = "1"
    for _ in range(40):  # each nvl's replacement is also its child: a shared subtree walked once
        nested = f"nvl({nested}, 2)"
    assert sandboxed.sql(f"SELECT {nested} AS n").collect()[0].n == 1
    sandboxed.table("v").write.parquet(str(tmp_path / "scratch" / "out"))
    assert sandboxed.read.parquet(str(tmp_path / "scratch" / "out")).count() == 3


def test_other_sessions_are_not_sandboxed(
    sandboxed: SparkSession, gateway: GatewayHarness, connect: Callable[..., SparkSession]
) -> None:
    other = connect(gateway.url(*NS_T1))
    assert other.sql(f"SELECT {JVM} AS v").collect()[0].v.split(".")[0].isdigit()
