"""What a driver Pod is: the Pod and Secret sparkgate creates for a driver, and what it reads back
from a Pod (its state, address, claim).

A driver Pod runs ``spark-submit --class org.apache.spark.sql.connect.service.SparkConnectServer``
in client mode against the cluster itself (``--master k8s://https://kubernetes.default.svc``), so
Spark's own Kubernetes scheduler starts its executors as Pods owned by the driver's Pod (they go
when it goes). ``restartPolicy: Never``: a restarted JVM would have lost its sessions, so a driver
that exits is dead.

What the registry needs lives on the Pod, so a restarted gateway (or another replica) rebuilds it
from the API alone: labels ``app.kubernetes.io/managed-by: sparkgate``,
``app.kubernetes.io/component: driver``, ``sparkgate.io/profile``, ``sparkgate.io/pool`` (``"true"``
while warm and unclaimed) and ``sparkgate.io/busy`` (serving a team: the chart's
PodDisruptionBudget keeps node drains off it); annotations ``sparkgate.io/namespace`` (the team
namespace that claimed it) and ``sparkgate.io/fingerprint``.

Each driver requires its own token, never on a command line or in a ConfigMap: it is derived from
the Pod's name with a key only the gateways hold (``kubernetes.token_key_file``), and handed to the
driver in a Secret of the Pod's name (owned by the Pod: deleted with it) as the
``SPARK_CONNECT_AUTHENTICATE_TOKEN`` variable, beside the driver's ``spark.properties`` (catalog
options may hold credentials). The gateways never read Secrets back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from sparkgate.clusters.base import POOL_NAMESPACE, DriverSpec, DriverState
from sparkgate.config import KubernetesPodSettings, KubernetesSettings, PoolProfile
from sparkgate.errors import SparkgateError
from sparkgate.kube.api import Obj
from sparkgate.kube.security import executor_pod_template, restricted_container
from sparkgate.spark.conf import merge_conf, properties_text
from sparkgate.spark.plugin import EXTENSIONS

log = logging.getLogger(__name__)

CONNECT_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
#: Spark Connect's port in every driver Pod (each Pod has its own IP).
CONNECT_PORT = 15002
#: Fixed driver ports, so the NetworkPolicy can name them (executors connect back to these).
DRIVER_PORT = 7078
BLOCK_MANAGER_PORT = 7079
UI_PORT = 4040

MANAGED_BY = "app.kubernetes.io/managed-by"
COMPONENT = "app.kubernetes.io/component"
INSTANCE = "app.kubernetes.io/instance"
PROFILE = "sparkgate.io/profile"
POOL = "sparkgate.io/pool"
BUSY = "sparkgate.io/busy"
NAMESPACE = "sparkgate.io/namespace"
FINGERPRINT = "sparkgate.io/fingerprint"
#: When a gateway first saw the driver's node cordoned (the drain grace runs from then).
DRAINING_SINCE = "sparkgate.io/draining-since"


def selector(instance: str) -> str:
    """The driver Pods of one sparkgate installation (``kubernetes.instance``)."""
    return f"{MANAGED_BY}=sparkgate,{COMPONENT}=driver,{INSTANCE}={instance}"


#: Where the driver's Secret is mounted (its ``spark.properties`` and its executors' Pod template).
CONF_DIR = "/etc/sparkgate"
EXECUTOR_TEMPLATE = "executor-pod.yaml"
#: JVM options a driver starts with ahead of ``spark.driver.extraJavaOptions`` (the class archive's).
DEFAULT_JAVA_OPTIONS = "spark.driver.defaultJavaOptions"
#: Seconds a driver Pod gets to stop (SIGTERM, then SIGKILL).
GRACE_SECONDS = 30


def heap_for(memory: str) -> str:
    """The JVM heap for a container of ``memory`` (a Kubernetes quantity): 75 %, in MiB."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for suffix in sorted(units, key=len, reverse=True):
        if memory.endswith(suffix):
            size = float(memory[: -len(suffix)]) * units[suffix]
            break
    else:
        size = float(memory)
    return f"{max(256, int(size * 0.75 / 2**20))}m"


class DriverPods:
    """Builds the Pods and Secrets of drivers: ``kubernetes.pod`` and each profile's ``pod``."""

    def __init__(
        self,
        settings: KubernetesSettings,
        profiles: Mapping[str, PoolProfile],
        *,
        max_message_bytes: int,
        reattach_buffer_bytes: int,
    ) -> None:
        self.settings = settings
        self.profiles = dict(profiles)
        self._max_message_bytes = max_message_bytes
        self._reattach_buffer_bytes = reattach_buffer_bytes
        self._key = self._token_key(settings)

    @staticmethod
    def _token_key(settings: KubernetesSettings) -> bytes:
        path = settings.token_key_file
        if not path:
            log.warning(
                "kubernetes.token_key_file is not set: driver tokens use a key of this process only, so "
                "its drivers are not adopted after a restart or by other replicas"
            )
            return secrets.token_bytes(32)
        key = Path(path).read_bytes().strip()
        if len(key) < 16:
            raise SparkgateError(f"kubernetes.token_key_file {path} holds {len(key)} bytes; use 32 random bytes")
        return key

    def token(self, pod_name: str) -> str:
        """The driver's pre-shared token: what only gateways holding the key can compute."""
        return hmac.new(self._key, pod_name.encode(), hashlib.sha256).hexdigest()

    def pod_settings(self, profile: str) -> KubernetesPodSettings:
        """``kubernetes.pod``, with the profile's ``pod`` fields over it."""
        extra = self.profiles[profile].pod if profile in self.profiles else {}
        if not extra:
            return self.settings.pod
        return KubernetesPodSettings.model_validate({**self.settings.pod.model_dump(), **extra})

    def fingerprint(self, spec: DriverSpec) -> str:
        """Includes which token key made the driver's token: a driver made with another key (the
        key changed; a gateway without ``token_key_file`` started it) is not adopted as ready."""
        key_id = hmac.new(self._key, b"key-id", hashlib.sha256).hexdigest()[:8]
        pod = self.pod_settings(spec.profile).model_dump_json()
        return spec.fingerprint(pod, self.settings.plugin_jar, self.settings.class_archive, key_id)

    def pod(self, name: str, spec: DriverSpec) -> Obj:
        """The Pod of a new driver (as created; the API server fills in the rest)."""
        p = self.pod_settings(spec.profile)
        own = {
            "spark.kubernetes.driver.pod.name": "$(POD_NAME)",
            "spark.kubernetes.namespace": "$(POD_NAMESPACE)",
            "spark.kubernetes.container.image": p.image,
            "spark.kubernetes.executor.podNamePrefix": name,
            "spark.kubernetes.executor.podTemplateFile": f"{CONF_DIR}/{EXECUTOR_TEMPLATE}",
            "spark.driver.host": "$(POD_IP)",
            "spark.driver.bindAddress": "0.0.0.0",
            "spark.driver.port": str(DRIVER_PORT),
            "spark.driver.blockManager.port": str(BLOCK_MANAGER_PORT),
            "spark.connect.grpc.binding.port": str(CONNECT_PORT),
            "spark.connect.grpc.maxInboundMessageSize": str(self._max_message_bytes),
            "spark.connect.execute.reattachable.observerRetryBufferSize": str(self._reattach_buffer_bytes),
            "spark.ui.port": str(UI_PORT),
            "spark.ui.showConsoleProgress": "false",
        }
        args = [
            "--master",
            "k8s://https://kubernetes.default.svc",
            "--deploy-mode",
            "client",
            "--name",
            name,
            "--driver-memory",
            heap_for(p.memory),
            "--properties-file",
            f"{CONF_DIR}/spark.properties",
            "--load-spark-defaults",
        ]
        for k, v in own.items():
            args += ["--conf", f"{k}={v}"]
        args += ["--class", CONNECT_SERVER_CLASS, "spark-internal"]

        def field(path: str) -> dict[str, Any]:
            return {"fieldRef": {"fieldPath": path}}

        tcp = {"tcpSocket": {"port": "spark-connect"}}
        container: dict[str, Any] = {
            "name": "driver",
            "image": p.image,
            "imagePullPolicy": p.image_pull_policy,
            # Through the image's entrypoint: tini as PID 1 (signals, Python workers reaped) and a
            # user name for a UID the cluster assigns.
            "command": ["/opt/entrypoint.sh", "/opt/spark/bin/spark-submit"],
            "args": args,
            "env": [
                {"name": "POD_NAME", "valueFrom": field("metadata.name")},
                {"name": "POD_NAMESPACE", "valueFrom": field("metadata.namespace")},
                {"name": "POD_IP", "valueFrom": field("status.podIP")},
                {
                    "name": "SPARK_CONNECT_AUTHENTICATE_TOKEN",
                    "valueFrom": {"secretKeyRef": {"name": name, "key": "token"}},
                },
            ],
            "ports": [
                {"name": "spark-connect", "containerPort": CONNECT_PORT, "protocol": "TCP"},
                {"name": "driver", "containerPort": DRIVER_PORT, "protocol": "TCP"},
                {"name": "blockmanager", "containerPort": BLOCK_MANAGER_PORT, "protocol": "TCP"},
                {"name": "ui", "containerPort": UI_PORT, "protocol": "TCP"},
            ],
            "startupProbe": {
                **tcp,
                "periodSeconds": 2,
                "failureThreshold": max(1, int(self.settings.startup_timeout_seconds / 2)),
            },
            "readinessProbe": {**tcp, "periodSeconds": 5, "failureThreshold": 2},
            "resources": {
                "requests": {"cpu": p.cpu, "memory": p.memory},
                "limits": {"cpu": p.cpu, "memory": p.memory},
            },
            "securityContext": restricted_container(),
            "volumeMounts": [{"name": "conf", "mountPath": CONF_DIR, "readOnly": True}],
        }
        pod_spec: dict[str, Any] = {
            "restartPolicy": "Never",
            "serviceAccountName": p.service_account,
            "terminationGracePeriodSeconds": GRACE_SECONDS,
            "containers": [container],
            "volumes": [
                {
                    "name": "conf",
                    "secret": {
                        "secretName": name,
                        "items": [{"key": k, "path": k} for k in ("spark.properties", EXECUTOR_TEMPLATE)],
                    },
                }
            ],
        }
        if p.node_selector:
            pod_spec["nodeSelector"] = dict(p.node_selector)
        if p.tolerations:
            pod_spec["tolerations"] = [dict(t) for t in p.tolerations]
        pool = spec.namespace == POOL_NAMESPACE
        return {
            "metadata": {
                "name": name,
                "labels": {
                    MANAGED_BY: "sparkgate",
                    COMPONENT: "driver",
                    INSTANCE: self.settings.instance,
                    PROFILE: spec.profile,
                    POOL: "true" if pool else "false",
                    BUSY: "false" if pool else "true",
                },
                "annotations": {NAMESPACE: spec.namespace, FINGERPRINT: self.fingerprint(spec)},
            },
            "spec": pod_spec,
        }

    def conf(self, spec: DriverSpec) -> dict[str, str]:
        """What goes in the driver's ``spark.properties``: the plugin, the catalog, the profile's conf."""
        plugin = (
            {"spark.jars": self.settings.plugin_jar, "spark.sql.extensions": EXTENSIONS}
            if self.settings.plugin_jar
            else {}
        )
        catalog: dict[str, str] = {}
        c = spec.catalog
        if c.enabled and (plugin or not c.is_path_catalog):
            root = c.root or f"/opt/sparkgate/catalog/{c.name}"
            catalog = c.spark_conf(Path(root)) if c.is_path_catalog else c.spark_conf()
        conf = merge_conf(catalog, plugin, spec.spark_conf)
        if self.settings.class_archive:  # (before a profile's own options, which win where they differ)
            theirs = conf.get(DEFAULT_JAVA_OPTIONS, "")
            conf[DEFAULT_JAVA_OPTIONS] = f"-XX:SharedArchiveFile={self.settings.class_archive} {theirs}".strip()
        return conf

    def secret(self, pod: Obj, spec: DriverSpec) -> Obj:
        """The driver's Secret: its token, its ``spark.properties`` and its executors' Pod template,
        deleted with its Pod."""
        name = pod["metadata"]["name"]
        data = {
            "token": self.token(name),
            "spark.properties": properties_text(self.conf(spec)),
            EXECUTOR_TEMPLATE: yaml.safe_dump(executor_pod_template(), sort_keys=False),
        }
        return {
            "metadata": {
                "name": name,
                "labels": {MANAGED_BY: "sparkgate", COMPONENT: "driver", INSTANCE: self.settings.instance},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": name, "uid": pod["metadata"]["uid"]}],
            },
            "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }


def annotation(obj: Obj, key: str) -> str:
    return str((obj["metadata"].get("annotations") or {}).get(key) or "")


def address_of(obj: Obj) -> str:
    ip = (obj.get("status") or {}).get("podIP") or ""
    return f"{ip}:{CONNECT_PORT}" if ip else ""


def state_of(obj: Obj) -> DriverState:
    status = obj.get("status") or {}
    if obj["metadata"].get("deletionTimestamp") or status.get("phase") in ("Failed", "Succeeded"):
        return DriverState.DEAD
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return DriverState.READY if ready and status.get("podIP") else DriverState.WARMING


def exit_code(obj: Obj) -> int | None:
    for c in (obj.get("status") or {}).get("containerStatuses") or []:
        terminated = (c.get("state") or {}).get("terminated")
        if terminated:
            return int(terminated.get("exitCode", 0))
    return None


def phase_text(obj: Obj) -> str:
    code = exit_code(obj)
    phase = (obj.get("status") or {}).get("phase") or "?"
    return f"phase {phase}" + (f", exit code {code}" if code is not None else "")


def timestamp(value: str | None) -> float:
    if not value:
        return time.time()
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()
