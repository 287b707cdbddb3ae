"""What sparkgate may do in a Kubernetes cluster: the one list the Helm chart's roles are checked
against, and that the tests check the code's own requests against (nothing more is asked for than
the code uses, nothing the code uses is missing).

The gateway (drivers as Pods, the fleet Lease) and the runner (SparkApplications, their driver's
log) act in one namespace (``kubernetes.namespace``): a ``Role``. Nodes are cluster-scoped: the
gateway watches them to see a driver's node cordoned for a drain (a ``ClusterRole``, read-only).
Driver Pods run Spark's own Kubernetes scheduler: their service account creates and deletes their
executors' Pods, Services and ConfigMaps (Spark's documented needs for client-mode drivers).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Rule:
    """One RBAC rule: verbs on a resource (``pods``, or a subresource: ``pods/log``) of an API group
    (``""``: the core group)."""

    api_group: str
    resource: str
    verbs: frozenset[str]

    def pairs(self) -> set[tuple[str, str, str]]:
        return {(self.api_group, self.resource, verb) for verb in self.verbs}


def _rule(api_group: str, resource: str, *verbs: str) -> Rule:
    return Rule(api_group, resource, frozenset(verbs))


#: The gateway and the runner, in the drivers' namespace.
GATEWAY_RULES: tuple[Rule, ...] = (
    _rule("", "pods", "get", "list", "watch", "create", "patch", "delete"),
    _rule("", "pods/log", "get"),
    _rule("", "secrets", "create"),
    _rule("coordination.k8s.io", "leases", "get", "create", "update"),
    # (server-side apply: patch, and create when it makes the object)
    _rule("sparkoperator.k8s.io", "sparkapplications", "list", "watch", "create", "patch", "delete"),
)
#: The gateway, cluster-wide (read-only).
GATEWAY_CLUSTER_RULES: tuple[Rule, ...] = (_rule("", "nodes", "list", "watch"),)
#: A driver Pod (and a SparkApplication's driver): its executors.
DRIVER_RULES: tuple[Rule, ...] = (
    _rule("", "pods", "get", "list", "watch", "create", "delete", "deletecollection"),
    _rule("", "services", "get", "list", "watch", "create", "delete", "deletecollection"),
    _rule("", "configmaps", "get", "list", "watch", "create", "delete", "deletecollection"),
    _rule("", "persistentvolumeclaims", "get", "list", "watch", "create", "delete", "deletecollection"),
)


def pairs(rules: tuple[Rule, ...]) -> set[tuple[str, str, str]]:
    """Every ``(api group, resource, verb)`` the rules allow."""
    out: set[tuple[str, str, str]] = set()
    for rule in rules:
        out |= rule.pairs()
    return out
