"""What the API server fills in and guards by itself: timestamps, a Pod's defaults, Secrets'
write-only ``stringData``, a Pod's immutable spec."""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
from typing import Any

from sparkgate.testing.kube.status import ApiStatusError, bad_request

Obj = dict[str, Any]

#: What a Pod update may change in ``spec`` (everything else is immutable).
MUTABLE_POD_SPEC = (
    "spec.containers[*].image, spec.initContainers[*].image, spec.activeDeadlineSeconds, spec.tolerations"
)


def now() -> str:
    """The current time as the API server writes timestamps (RFC 3339, seconds, UTC)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


def later(seconds: int) -> str:
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def default_pod(pod: Obj) -> None:
    """The defaults the API server fills into a Pod's spec (those clients are likely to read)."""
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        if isinstance(container, dict):
            image = str(container.get("image", ""))
            tagged = ":" in image.rpartition("/")[2] and not image.endswith(":latest")
            container.setdefault("imagePullPolicy", "IfNotPresent" if tagged or "@" in image else "Always")
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")


def default_secret(secret: Obj) -> None:
    """``stringData`` is write-only: merged into ``data`` (base64), never stored."""
    secret.setdefault("type", "Opaque")
    data = secret.get("data") or {}
    for key, value in data.items():
        try:
            base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            raise bad_request(
                f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data in data[{key}]'
            ) from None
    for key, value in (secret.pop("stringData", None) or {}).items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    if data:
        secret["data"] = data


def name_mismatch(sent: object, name: str) -> ApiStatusError:
    return bad_request(f"the name of the object ({sent}) does not match the name on the URL ({name})")


def spec_of(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def pod_spec_fixed(spec: Obj) -> Obj:
    """A Pod spec without the fields an update may change."""
    fixed = copy.deepcopy(spec)
    for field in ("activeDeadlineSeconds", "tolerations", "schedulingGates"):
        fixed.pop(field, None)
    for field in ("containers", "initContainers"):
        for container in fixed.get(field) or []:
            container.pop("image", None)
    return fixed
