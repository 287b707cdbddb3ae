"""The local pedregal catalog on real drivers, and a team's CI integration tests run as written."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from pyspark.sql.connect.session import SparkSession

from tests.e2e.conftest import NS_LAKE, NS_T1, GatewayHarness

pytestmark = pytest.mark.spark
TEAM, ENV = NS_T1

# A team's tests/integration/test_features.py, the integration tests its CI runs against the
# gateway, unchanged: its own module-scoped ``spark`` fixture, configured by SPARK_CONNECT_*.
TEAM_CI_TESTS = '''
import os
import pytest
from pyspark.sql import SparkSession


@pytest.fixture(scope="module")
def spark():
    """
    Create Spark session for test module.
    Connects through Spark Gateway to test cluster.
    """
    gateway = os.environ.get("SPARK_CONNECT_GATEWAY", "spark-gateway-test.doordash.team:15002")
    team = os.environ.get("SPARK_CONNECT_TEAM", "test")
    env = os.environ.get("SPARK_CONNECT_ENV", "test")
    user = os.environ.get("SPARK_CONNECT_USER", "pytest")

    session = SparkSession.builder \\
        .remote(f"sc://{gateway}") \\
        .config("spark.connect.grpc.header.x-doordash-team", team) \\
        .config("spark.connect.grpc.header.x-doordash-environment", env) \\
        .config("spark.connect.grpc.header.x-doordash-user", user) \\
        .appName(f"integration-test-{user}") \\
        .getOrCreate()

    yield session
    session.stop()


class TestDataAvailability:
    """Test that required tables exist and are accessible."""

    def test_events_table_exists(self, spark):
        """Verify events table is accessible."""
        result = spark.sql("DESCRIBE TABLE pedregal.raw.events").collect()
        assert len(result) > 0

    def test_can_query_events(self, spark):
        """Verify we can query events."""
        result = spark.sql("""
            SELECT COUNT(*) as cnt
            FROM pedregal.raw.events
            WHERE ds >= date_sub(current_date(), 7)
        """).collect()

        assert result[0]['cnt'] >= 0


class TestFeatureSchema:
    """Test feature table schemas."""

    def test_user_features_schema(self, spark):
        """Verify user features has expected columns."""
        result = spark.sql("DESCRIBE TABLE pedregal.feature_store.user_features").collect()
        columns = [row['col_name'] for row in result]

        expected = ['user_id', 'total_events', 'ds']
        for col in expected:
            assert col in columns, f"Missing column: {col}"

    def test_user_features_not_empty(self, spark):
        """Verify user features has recent data."""
        result = spark.sql("""
            SELECT COUNT(*) as cnt
            FROM pedregal.feature_store.user_features
            WHERE ds >= date_sub(current_date(), 7)
        """).collect()

        assert result[0]['cnt'] > 0, "No recent user features found"
'''


def _catalogs(spark: SparkSession) -> list[str]:
    return [r[0] for r in spark.sql("SHOW CATALOGS").collect()]


def test_show_catalogs_is_complete_in_a_brand_new_session(gateway: GatewayHarness) -> None:
    """Spark loads catalogs on first use and lists only loaded ones; the drivers' session extension
    loads them with each session's first statement. Two new sessions: each is a SparkSession of its
    own on the driver."""
    for _ in range(2):
        spark = SparkSession.builder.remote(gateway.url(TEAM, ENV)).create()
        try:
            assert _catalogs(spark) == ["pedregal", "spark_catalog"]  # the session's first statement
        finally:
            spark.stop()


def test_an_environment_sees_the_catalog_it_names(gateway: GatewayHarness) -> None:
    """``lake`` names its catalog ``lakehouse`` (a path catalog of its own, with the sample tables),
    so its sessions go to drivers of the ``lake`` profile, which mount that and nothing else."""
    spark = SparkSession.builder.remote(gateway.url(*NS_LAKE)).create()
    try:
        assert _catalogs(spark) == ["lakehouse", "spark_catalog"]
        assert {r[1] for r in spark.sql("SHOW TABLES IN lakehouse.raw").collect()} >= {"events", "orders"}
        recent = spark.sql("SELECT count(*) AS n FROM lakehouse.raw.events WHERE ds >= date_sub(current_date(), 6)")
        assert recent.first().n > 0  # type: ignore[union-attr]
        with pytest.raises(Exception, match="pedregal"):
            spark.sql("SELECT * FROM pedregal.raw.events").collect()
        route = gateway.route(spark.client._session_id)
        assert route is not None and gateway.namespace_of(route.driver_id) == "sjns-t1-lake"
    finally:
        spark.stop()


def test_catalog_statements(gateway: GatewayHarness) -> None:
    spark = SparkSession.builder.remote(gateway.url(TEAM, ENV)).create()
    try:
        assert {r[0] for r in spark.sql("SHOW DATABASES IN pedregal").collect()} >= {"raw", "feature_store"}
        assert {r[1] for r in spark.sql("SHOW TABLES IN pedregal.raw").collect()} >= {"events", "orders"}
        cols = [r[0] for r in spark.sql("DESCRIBE TABLE pedregal.feature_store.user_features").collect()]
        assert cols[:7] == ["user_id", "total_events", "views", "clicks", "purchases", "click_through_rate", "ds"]
        recent = spark.sql(
            "SELECT count(DISTINCT ds) AS days FROM pedregal.raw.events WHERE ds >= date_sub(current_date(), 6)"
        ).first()
        assert recent is not None and recent.days == 7
        # Writes: a table created, filled, read back and dropped through three-part names.
        name = f"pedregal.scratch.t_{os.getpid()}"
        spark.sql("CREATE NAMESPACE IF NOT EXISTS pedregal.scratch")
        spark.sql(f"DROP TABLE IF EXISTS {name}")
        source = "pedregal.feature_store.user_features"
        spark.sql(f"CREATE TABLE {name} AS SELECT user_id, sum(purchases) AS p FROM {source} GROUP BY user_id")
        spark.sql(f"INSERT INTO {name} VALUES (-1, 0)")
        assert spark.sql(f"SELECT count(*) AS n FROM {name} WHERE user_id = -1").first().n == 1  # type: ignore[union-attr]
        spark.sql(f"DROP TABLE {name}")
    finally:
        spark.stop()


def test_a_teams_ci_integration_tests_run_as_written(gateway: GatewayHarness, tmp_path: Path) -> None:
    (tmp_path / "test_features.py").write_text(TEAM_CI_TESTS)
    env = gateway.client_env() | {"SPARK_CONNECT_TEAM": TEAM, "SPARK_CONNECT_ENV": ENV}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0 and "4 passed" in out.stdout, textwrap.shorten(out.stdout + out.stderr, 3000)


def test_catalog_names_cannot_leave_its_root(connect: Callable[..., SparkSession], gateway: GatewayHarness) -> None:
    spark = connect(gateway.url(*NS_T1))
    for name in ("pedregal.`..`.`x`", "pedregal.`/etc`.`hostname`", "pedregal.raw.`../raw/events`"):
        with pytest.raises(Exception, match="one path segment"):
            spark.sql(f"SELECT * FROM {name}").collect()
