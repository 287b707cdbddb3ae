"""How sparkgate's Pods run: within the Kubernetes ``restricted`` Pod Security Standard, so that a
namespace enforcing it (``pod-security.kubernetes.io/enforce: restricted``) admits every Pod
sparkgate makes or has made: driver Pods, their executors, and batch jobs' drivers and executors.

The images run as a non-root user of their own (Spark's 185 in the driver image), so no user ID
is fixed here: a cluster that assigns UIDs (OpenShift) keeps doing so.
"""

from __future__ import annotations

import copy
from typing import Any

#: A container's ``securityContext``: no root, no privilege escalation, no capabilities, the
#: runtime's default seccomp profile.
RESTRICTED_CONTAINER: dict[str, Any] = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def restricted_container() -> dict[str, Any]:
    """A copy of :data:`RESTRICTED_CONTAINER`, for an object of its own."""
    return copy.deepcopy(RESTRICTED_CONTAINER)


def executor_pod_template() -> dict[str, Any]:
    """The Pod template a driver gives Spark for its executors
    (``spark.kubernetes.executor.podTemplateFile``): Spark builds the rest of each executor Pod
    over it, in the template's first container (named as Spark names it)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "spec": {"containers": [{"name": "spark-kubernetes-executor", "securityContext": restricted_container()}]},
    }
