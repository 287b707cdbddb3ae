"""Manifest → SparkApplication (no API server here: the translation is plain data)."""

from __future__ import annotations

import re

import pytest

from sparkgate.config import CatalogSettings, KubernetesJobSettings
from sparkgate.runner.jobs import Job, job_id, namespace_for_job
from sparkgate.runner.kubernetes import build_spark_application, label_value, map_state
from sparkgate.runner.manifest import parse_manifest
from tests.runner.test_manifest import GOOD

SETTINGS = KubernetesJobSettings(images={"prod": "registry/spark:4.1-prod", "default": "registry/spark:4.1"})
#: A production catalog (Unity Catalog), as ``environments.prod.catalog`` says it.
UNITY = CatalogSettings.model_validate(
    {"class": "io.unitycatalog.spark.UCSingleCatalog", "options": {"uri": "https://uc.prod/api", "token": "t"}}
)


def _job(env: str = "prod", **options: str) -> Job:
    return Job(
        id=job_id("feature-engineering", "daily-orders", 1700000000000000000),
        name="daily-orders",
        team="feature-engineering",
        environment=env,
        user="Jane.Doe@example.com",
        namespace=namespace_for_job("feature-engineering", env, "Jane.Doe@example.com"),
        manifest=GOOD,
        options={"ttl_seconds": "600", **options},
    )


def test_spark_application_from_a_manifest() -> None:
    job = _job(sandbox="true", sample_limit="500", **{"param.ds": "2024-06-09"})
    app = build_spark_application(job, parse_manifest(GOOD), SETTINGS, UNITY)
    assert app["apiVersion"] == "sparkoperator.k8s.io/v1beta2" and app["kind"] == "SparkApplication"
    meta, spec = app["metadata"], app["spec"]
    assert meta["name"] == job.id and meta["namespace"] == "sjns-feature-engineering-prod"
    assert meta["labels"]["user"] == "Jane.Doe_at_example.com" and meta["labels"]["team"] == "feature-engineering"
    assert spec["image"] == "registry/spark:4.1-prod" and spec["sparkVersion"] == "4.1" and spec["mode"] == "cluster"
    args = spec["arguments"]
    assert (
        args[:2] == ["--manifest-yaml", GOOD]
        and "--sandbox" in args
        and args[args.index("--sample-limit") + 1] == "500"
    )
    assert args[args.index("--param") + 1] == "ds=2024-06-09"
    assert args[args.index("--scratch") + 1] == f"s3a://sparkgate-scratch/prod/{job.id}"
    conf = spec["sparkConf"]
    assert conf["spark.plugins"] == "org.apache.spark.sql.connect.SparkConnectPlugin"
    assert conf["spark.dynamicAllocation.maxExecutors"] == "10"
    assert conf["spark.sql.catalog.pedregal"] == "io.unitycatalog.spark.UCSingleCatalog"
    assert conf["spark.sql.catalog.pedregal.uri"] == "https://uc.prod/api"
    assert conf["spark.sql.catalog.pedregal.token"] == "t"
    assert "spark.sql.readOnly" not in conf  # not a Spark setting: the job program enforces the sandbox
    assert spec["driver"]["memory"] == "2g" and spec["driver"]["labels"]["spark-connect"] == "enabled"
    assert spec["executor"]["instances"] == 1 and spec["restartPolicy"] == {"type": "Never"}


def test_an_application_made_in_another_namespace_names_the_job_s() -> None:
    job = _job()
    app = build_spark_application(job, parse_manifest(GOOD), SETTINGS, namespace="sparkgate")
    assert app["metadata"]["namespace"] == "sparkgate"
    assert app["metadata"]["annotations"]["sparkgate.io/namespace"] == job.namespace == "sjns-feature-engineering-prod"


def test_environment_defaults_and_protected_conf() -> None:
    manifest = parse_manifest(GOOD.replace("spec:\n", "spec:\n  sparkConf: {spark.plugins: evil, spark.x: '1'}\n", 1))
    # staging keeps the default catalog: the path catalog exists only on local drivers.
    app = build_spark_application(_job("staging"), manifest, SETTINGS, CatalogSettings())
    assert app["spec"]["image"] == "registry/spark:4.1"
    assert app["spec"]["sparkConf"]["spark.plugins"].endswith("SparkConnectPlugin")
    assert app["spec"]["sparkConf"]["spark.x"] == "1" and "spark.sql.catalog.pedregal" not in app["spec"]["sparkConf"]


@pytest.mark.parametrize(
    ("operator", "ours"),
    [
        ("", "PENDING"),
        ("SUBMITTED", "PENDING"),
        ("PENDING_RERUN", "PENDING"),
        ("RUNNING", "RUNNING"),
        ("SUCCEEDING", "RUNNING"),
        ("COMPLETED", "COMPLETED"),
        ("FAILED", "FAILED"),
        ("SUBMISSION_FAILED", "FAILED"),
        ("FAILING", "RUNNING"),
        ("SUSPENDING", "SUSPENDING"),
        ("SUSPENDED", "SUSPENDED"),
        ("RESUMING", "RESUMING"),
        ("INVALIDATING", "INVALIDATING"),
        ("SOMETHING_NEW", "UNKNOWN"),
    ],
)
def test_operator_states(operator: str, ours: str) -> None:
    assert map_state(operator) == ours


def test_label_values_are_always_valid() -> None:
    for raw in ("a@b.c", "-weird-", "x" * 100, "", "Ünïcode name"):
        v = label_value(raw)
        assert len(v) <= 63 and re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?", v), (raw, v)
