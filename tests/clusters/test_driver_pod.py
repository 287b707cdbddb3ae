"""What a driver Pod and its Secret look like (schema-valid, nothing secret in the Pod)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from sparkgate.clusters.base import DriverSpec
from sparkgate.clusters.driver_pod import BUSY, NAMESPACE, POOL, heap_for
from sparkgate.clusters.kubernetes import KubernetesProvider
from sparkgate.config import CatalogSettings, KubernetesSettings, PoolProfile

#: The oldest Kubernetes the chart supports, and the newest the schemas know.
VERSIONS = ("1.30", kubernetes_validate.latest_version())


def provider(tmp_path: Path, **kw: object) -> KubernetesProvider:
    key = tmp_path / "key"
    key.write_bytes(b"k" * 32)
    return KubernetesProvider(KubernetesSettings(token_key_file=str(key), **kw), **_profiles())  # type: ignore[arg-type]


def _profiles() -> dict[str, object]:
    return {"profiles": {"big": PoolProfile(pod={"memory": "16Gi", "node_selector": {"pool": "highmem"}})}}


def uid_pod(p: KubernetesProvider, spec: DriverSpec) -> dict[str, Any]:
    pod = p.build.pod("sparkgate-driver-abc", spec)
    pod["metadata"] |= {"uid": "u-1", "namespace": "sparkgate"}
    return pod


@pytest.mark.parametrize("version", VERSIONS)
def test_a_driver_pod_and_its_secret_are_valid_kubernetes_objects(tmp_path: Path, version: str) -> None:
    p = provider(tmp_path)
    spec = DriverSpec(catalog=CatalogSettings(options={"token": "s3cr3t"}))
    pod = {"apiVersion": "v1", "kind": "Pod", **uid_pod(p, spec)}
    secret = {"apiVersion": "v1", "kind": "Secret", **p.build.secret(pod, spec)}
    kubernetes_validate.validate(pod, version, strict=True)
    kubernetes_validate.validate(secret, version, strict=True)


def test_nothing_secret_is_in_the_pod_and_the_secret_holds_what_the_driver_needs(tmp_path: Path) -> None:
    p = provider(tmp_path)
    spec = DriverSpec(catalog=CatalogSettings(options={"token": "s3cr3t"}))
    pod = uid_pod(p, spec)
    text = json.dumps(pod)
    assert "s3cr3t" not in text and p.build.token("sparkgate-driver-abc") not in text
    (c,) = pod["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert env["SPARK_CONNECT_AUTHENTICATE_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "sparkgate-driver-abc",
        "key": "token",
    }
    assert "--properties-file" in c["args"] and pod["spec"]["restartPolicy"] == "Never"
    secret = p.build.secret(pod, spec)
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["token"] == p.build.token("sparkgate-driver-abc")
    assert "spark.sql.catalog.pedregal.token=s3cr3t" in data["spark.properties"]
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "u-1"  # deleted with its Pod


def test_each_driver_has_its_own_token_from_a_key_the_gateways_share(tmp_path: Path) -> None:
    a, b = provider(tmp_path), provider(tmp_path)
    assert a.build.token("sparkgate-driver-1") == b.build.token("sparkgate-driver-1")  # another replica, same key
    assert a.build.token("sparkgate-driver-1") != a.build.token("sparkgate-driver-2")
    alone = KubernetesProvider(KubernetesSettings())  # no key file: one of this process only
    assert alone.build.token("sparkgate-driver-1") != a.build.token("sparkgate-driver-1")


def test_the_pool_and_a_profile_shape_the_pod(tmp_path: Path) -> None:
    p = provider(tmp_path)
    warm = p.build.pod("d1", DriverSpec())
    assert warm["metadata"]["labels"][POOL] == "true" and warm["metadata"]["labels"][BUSY] == "false"
    assert warm["metadata"]["annotations"][NAMESPACE] == ""
    big = p.build.pod("d2", DriverSpec(namespace="sjns-ml-prod", profile="big"))
    assert big["metadata"]["labels"][BUSY] == "true" and big["metadata"]["annotations"][NAMESPACE] == "sjns-ml-prod"
    assert big["spec"]["nodeSelector"] == {"pool": "highmem"}
    assert big["spec"]["containers"][0]["resources"]["limits"]["memory"] == "16Gi"
    assert "12288m" in big["spec"]["containers"][0]["args"]  # the heap: 75 % of the container
    assert p.fingerprint(DriverSpec(profile="big")) != p.fingerprint(DriverSpec())


def test_heap_for_a_container() -> None:
    assert heap_for("4Gi") == "3072m"
    assert heap_for("512Mi") == "384m"
    assert heap_for("2G") == "1430m"
    assert heap_for("100Mi") == "256m"  # (a floor)
