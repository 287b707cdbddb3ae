"""Every Pod sparkgate makes, or has Spark or the Spark Operator make, passes the Kubernetes
``restricted`` Pod Security Standard, checked here as the API server's Pod Security admission
checks it (https://kubernetes.io/docs/concepts/security/pod-security-standards/)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from sparkgate.clusters.base import DriverSpec
from sparkgate.clusters.driver_pod import CONF_DIR, EXECUTOR_TEMPLATE, DriverPods
from sparkgate.config import KubernetesJobSettings, KubernetesSettings
from sparkgate.kube.security import executor_pod_template
from sparkgate.runner.kubernetes import build_spark_application
from sparkgate.runner.manifest import parse_manifest
from tests.runner.test_kubernetes import _job
from tests.runner.test_manifest import GOOD

Obj = dict[str, Any]

ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_problems(pod_spec: Obj) -> list[str]:
    """What keeps ``pod_spec`` out of a namespace enforcing ``restricted`` (empty: nothing)."""
    problems = []
    pod_sc = pod_spec.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(key):
            problems.append(f"{key}")
    for volume in pod_spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            problems.append(f"volume {volume['name']}: {kinds - ALLOWED_VOLUMES}")
    for c in [*pod_spec.get("initContainers", []), *pod_spec["containers"]]:
        sc = c.get("securityContext") or {}
        name = c.get("name", "?")
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot is not true")
        if 0 in (sc.get("runAsUser"), pod_sc.get("runAsUser")):
            problems.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile {seccomp}")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []) or set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: capabilities not dropped")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            problems.append(f"{name}: hostPort")
    return problems


def test_the_check_finds_what_restricted_refuses() -> None:
    assert restricted_problems({"containers": [{"name": "c"}]}) == [
        "c: allowPrivilegeEscalation is not false",
        "c: runAsNonRoot is not true",
        "c: seccompProfile None",
        "c: capabilities not dropped",
    ]
    assert restricted_problems({"hostNetwork": True, "volumes": [{"name": "h", "hostPath": {}}], "containers": []})


def test_driver_pods_and_their_executors_are_restricted(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_bytes(b"k" * 32)
    pods = DriverPods(KubernetesSettings(token_key_file=str(key)), {}, max_message_bytes=1, reattach_buffer_bytes=1)
    pod = pods.pod("sparkgate-driver-1", DriverSpec())
    assert restricted_problems(pod["spec"]) == []
    # Spark builds each executor Pod over the template the driver's Secret gives it.
    (container,) = pod["spec"]["containers"]
    assert f"spark.kubernetes.executor.podTemplateFile={CONF_DIR}/{EXECUTOR_TEMPLATE}" in container["args"]
    pod["metadata"]["uid"] = "u-1"
    secret = pods.secret(pod, DriverSpec())
    template = yaml.safe_load(base64.b64decode(secret["data"][EXECUTOR_TEMPLATE]))
    assert template == executor_pod_template()
    assert restricted_problems(template["spec"]) == []


def test_batch_jobs_drivers_and_executors_are_restricted() -> None:
    spec = build_spark_application(_job(), parse_manifest(GOOD), KubernetesJobSettings())["spec"]
    # The operator puts each role's securityContext on its container.
    for role in ("driver", "executor"):
        container = {"name": role, "securityContext": spec[role]["securityContext"]}
        assert restricted_problems({"containers": [container]}) == []
