"""Jobs as Spark Operator ``SparkApplication`` objects, and the operator's states as the runner's.

:func:`build_spark_application` translates a job and its manifest into the custom resource the
Spark Operator (``sparkoperator.k8s.io/v1beta2``) runs; :func:`map_state` turns the operator's
application states into the runner's. Everything here is plain data, unit-tested; the execution
backend that applies, watches and deletes these objects is :mod:`sparkgate.runner.backends.kubernetes`.

Sandbox mode is enforced by the job program (``--sandbox``: sinks only under the job's output,
sampled sources), not by Spark conf (``spark.sql.readOnly`` is not a Spark setting); resources
come from the manifest, not fixed sizes; the job's TTL and labels are valid Kubernetes values
whatever the user's name looks like.
"""

from __future__ import annotations

import re
from typing import Any

from sparkgate.config import CatalogSettings, KubernetesJobSettings
from sparkgate.kube.security import restricted_container
from sparkgate.runner.jobs import (
    COMPLETED,
    FAILED,
    INVALIDATING,
    PENDING,
    RESUMING,
    RUNNING,
    SUSPENDED,
    SUSPENDING,
    Job,
)
from sparkgate.runner.manifest import Manifest

API_VERSION = "sparkoperator.k8s.io/v1beta2"
#: Labels of every SparkApplication sparkgate makes: who made it, and which job it runs.
MANAGED_BY = "app.kubernetes.io/managed-by"
JOB_ID = "sparkgate.io/job-id"
#: Selects sparkgate's SparkApplications (and only those) in a namespace.
SELECTOR = f"{MANAGED_BY}=sparkgate,{JOB_ID}"
#: Annotation naming the job's team namespace (``sjns-{team}-{env}``) where the application
#: itself lives in another (the runner's ``kubernetes.namespace``).
TEAM_NAMESPACE = "sparkgate.io/namespace"
#: Spark conf sparkgate sets that a manifest's sparkConf may not change.
PROTECTED_CONF = frozenset({"spark.plugins", "spark.connect.grpc.binding.port", "spark.kubernetes.namespace"})

_STATES = {
    "": PENDING,  # New: not yet submitted
    "SUBMITTED": PENDING,
    "PENDING_RERUN": PENDING,
    "RUNNING": RUNNING,
    "SUCCEEDING": RUNNING,
    "FAILING": RUNNING,  # still cleaning up; FAILED follows
    "COMPLETED": COMPLETED,
    "FAILED": FAILED,
    "SUBMISSION_FAILED": FAILED,
    "SUSPENDING": SUSPENDING,
    "SUSPENDED": SUSPENDED,
    "RESUMING": RESUMING,
    "INVALIDATING": INVALIDATING,
}


def map_state(operator_state: str) -> str:
    """The runner's state for a SparkApplication's ``status.applicationState.state``."""
    return _STATES.get(operator_state.upper(), "UNKNOWN")


def label_value(value: str) -> str:
    """A valid label value: at most 63 of [A-Za-z0-9._-], starting and ending alphanumeric."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", value.replace("@", "_at_"))[:63]
    return cleaned.strip("._-") or "unknown"


def _per_env(table: dict[str, str], environment: str) -> str:
    return table.get(environment) or table.get("default", "")


def output_uri(job: Job, settings: KubernetesJobSettings) -> str:
    """Where the job writes its output (``runner.kubernetes.output_uris``, for its environment)."""
    return _per_env(settings.output_uris, job.environment).format(job_id=job.id, environment=job.environment)


def build_spark_application(
    job: Job,
    manifest: Manifest,
    settings: KubernetesJobSettings,
    catalog: CatalogSettings | None = None,
    *,
    namespace: str | None = None,
) -> dict[str, Any]:
    """The SparkApplication for ``job``; ``catalog`` is its environment's (``environments.<env>.catalog``),
    ``namespace`` the Kubernetes namespace it is made in (None: the job's team namespace).

    The built-in path catalog exists only on local drivers, so it adds nothing here; any other
    catalog class (production: Unity Catalog) becomes ``spark.sql.catalog.<name>`` and its options.
    """
    spec = manifest.spec
    res = spec.resources
    output = output_uri(job, settings)
    args = ["--manifest-yaml", job.manifest, "--scratch", output]
    if job.options.get("sandbox") == "true":
        args += ["--sandbox", "--sample-limit", job.options.get("sample_limit", "10000")]
    for k, v in sorted(job.options.items()):
        if k.startswith("param."):
            args += ["--param", f"{k.removeprefix('param.')}={v}"]
    conf = {k: v for k, v in spec.spark_conf.items() if k not in PROTECTED_CONF}
    conf.update(
        {
            # Spark Connect on the driver, as on the gateway's drivers (the gateway can reach it).
            "spark.plugins": "org.apache.spark.sql.connect.SparkConnectPlugin",
            "spark.connect.grpc.binding.port": "15002",
            "spark.dynamicAllocation.enabled": "true",
            "spark.dynamicAllocation.shuffleTracking.enabled": "true",
            "spark.dynamicAllocation.minExecutors": "1",
            "spark.dynamicAllocation.maxExecutors": str(res.max_executors),
        }
    )
    if catalog is not None and not catalog.is_path_catalog:
        conf.update(catalog.spark_conf())
    labels = {
        "team": label_value(job.team),
        "environment": label_value(job.environment),
        "user": label_value(job.user),
        "job-type": "playground" if job.environment in ("local", "test") else "batch",
        MANAGED_BY: "sparkgate",
        JOB_ID: label_value(job.id),
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "SparkApplication",
        "metadata": {
            "name": job.id,
            "namespace": namespace or job.namespace,
            "labels": labels,
            "annotations": {TEAM_NAMESPACE: job.namespace},
        },
        "spec": {
            "type": "Python",
            "pythonVersion": "3",
            "mode": "cluster",
            "image": _per_env(settings.images, job.environment),
            "imagePullPolicy": "IfNotPresent",
            "sparkVersion": spec.engine.version,
            "mainApplicationFile": settings.main_file,
            "arguments": args,
            "sparkConf": conf,
            "restartPolicy": {"type": "Never"},
            "timeToLiveSeconds": settings.keep_finished_seconds,
            "driver": {
                "cores": res.driver.cores,
                "memory": res.driver.memory,
                "serviceAccount": settings.service_account,
                "labels": {"spark-role": "driver", "spark-connect": "enabled", **labels},
                "securityContext": restricted_container(),
            },
            "executor": {
                "cores": res.executor.cores,
                "memory": res.executor.memory,
                "instances": res.executor.instances,
                "labels": {"spark-role": "executor", **labels},
                "securityContext": restricted_container(),
            },
        },
    }
