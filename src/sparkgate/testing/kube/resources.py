"""The resources the fake API server serves, named as the real one names them.

Each :class:`ResourceType` is one REST resource: its group and version (the URL), its plural (the
URL and RBAC's ``resources``), its kind (the body) and whether it lives in a namespace. The set is
what sparkgate uses, plus what Spark's own drivers create for their executors (services,
configmaps): a request for anything else is a 404, as on a cluster without that API.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparkgate.testing.kube.status import bad_request


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    #: Subresources served besides the object itself (``status``, ``log``).
    subresources: frozenset[str] = frozenset()
    #: A custom resource: no strategic merge patch, ``resourceVersion`` required on update.
    custom: bool = False
    #: Keeps ``metadata.generation`` (bumped when anything but metadata and status changes).
    generation: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


PODS = ResourceType("", "v1", "pods", "Pod", subresources=frozenset({"status", "log"}))
SECRETS = ResourceType("", "v1", "secrets", "Secret")
CONFIGMAPS = ResourceType("", "v1", "configmaps", "ConfigMap")
SERVICES = ResourceType("", "v1", "services", "Service", subresources=frozenset({"status"}))
NODES = ResourceType("", "v1", "nodes", "Node", namespaced=False, subresources=frozenset({"status"}))
PDBS = ResourceType(
    "policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", subresources=frozenset({"status"}), generation=True
)
LEASES = ResourceType("coordination.k8s.io", "v1", "leases", "Lease")
SPARK_APPLICATIONS = ResourceType(
    "sparkoperator.k8s.io",
    "v1beta2",
    "sparkapplications",
    "SparkApplication",
    subresources=frozenset({"status"}),
    custom=True,
    generation=True,
)

RESOURCES: tuple[ResourceType, ...] = (PODS, SECRETS, CONFIGMAPS, SERVICES, NODES, PDBS, LEASES, SPARK_APPLICATIONS)

_BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
_BY_NAME = {name: r for r in RESOURCES for name in (r.plural, r.kind, r.kind.lower(), str(r))}


def find(group: str, version: str, plural: str) -> ResourceType | None:
    """The resource a URL names (``""``, ``"v1"``, ``"pods"``), or None."""
    return _BY_PATH.get((group, version, plural))


def resource_named(name: str | ResourceType) -> ResourceType:
    """A resource by plural (``pods``), kind (``Pod``) or ``plural.group`` (``leases.coordination.k8s.io``)."""
    if isinstance(name, ResourceType):
        return name
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"the fake API server serves no resource {name!r}") from None


def resource_of(obj: dict[str, object]) -> ResourceType:
    """The resource an object belongs to, from its ``apiVersion`` and ``kind``."""
    for r in RESOURCES:
        if r.api_version == obj.get("apiVersion") and r.kind == obj.get("kind"):
            return r
    raise bad_request(f"no resource serves apiVersion {obj.get('apiVersion')!r} kind {obj.get('kind')!r}")
