"""Label and field selectors, parsed and matched as the API server does.

Label selectors take the full grammar of ``labels.Parse``: ``key``, ``!key``, ``key=value``,
``key==value``, ``key!=value``, ``key in (a,b)``, ``key notin (a,b)``, joined by commas.
``!=`` and ``notin`` also match objects without the label.

Field selectors take ``=``, ``==`` and ``!=`` on the fields each resource indexes
(``metadata.name`` and ``metadata.namespace`` everywhere; for Pods also ``spec.nodeName``,
``status.phase`` and a few more); any other field is a 400, as on a real server.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sparkgate.testing.kube.resources import NODES, PODS, SECRETS, ResourceType
from sparkgate.testing.kube.status import bad_request

Obj = dict[str, Any]

_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?)$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # exists, !, =, !=, in, notin
    values: frozenset[str] = frozenset()

    def matches(self, labels: dict[str, str]) -> bool:
        has = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if self.op in ("=", "in"):
            return has and value in self.values
        return not has or value not in self.values  # != and notin


def _split(text: str) -> list[str]:
    """Split on the commas that are not inside ``( )``."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


_SET = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_EQ = re.compile(r"^(?P<key>[^=!\s]+)\s*(?P<op>==|=|!=)\s*(?P<value>\S*)$")


def _check_key(key: str, selector: str) -> str:
    if not _NAME.match(key):
        raise bad_request(f"unable to parse requirement: invalid label key {key!r} in selector {selector!r}")
    return key


def parse_labels(selector: str | None) -> tuple[Requirement, ...]:
    """Parse a ``labelSelector`` (400 BadRequest if it is not one)."""
    out: list[Requirement] = []
    for part in _split(selector or ""):
        if m := _SET.match(part):
            values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
            out.append(Requirement(_check_key(m["key"], selector or ""), m["op"], values))
        elif m := _EQ.match(part):
            op = "!=" if m["op"] == "!=" else "="
            out.append(Requirement(_check_key(m["key"], selector or ""), op, frozenset({m["value"]})))
        elif part.startswith("!"):
            out.append(Requirement(_check_key(part[1:].strip(), selector or ""), "!"))
        else:
            out.append(Requirement(_check_key(part, selector or ""), "exists"))
    return tuple(out)


def match_labels(requirements: tuple[Requirement, ...], obj: Obj) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return all(r.matches(labels) for r in requirements)


def _pod_field(path: str) -> Callable[[Obj], str]:
    first, _, second = path.partition(".")
    return lambda pod: str((pod.get(first) or {}).get(second) or "")


_COMMON_FIELDS: dict[str, Callable[[Obj], str]] = {
    "metadata.name": lambda o: str(o["metadata"].get("name", "")),
    "metadata.namespace": lambda o: str(o["metadata"].get("namespace", "")),
}
_FIELDS: dict[ResourceType, dict[str, Callable[[Obj], str]]] = {
    PODS: {
        path: _pod_field(path)
        for path in (
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        )
    },
    NODES: {"spec.unschedulable": lambda o: "true" if (o.get("spec") or {}).get("unschedulable") else "false"},
    SECRETS: {"type": lambda o: str(o.get("type", ""))},
}


@dataclass(frozen=True)
class FieldRequirement:
    path: str
    value: str
    equal: bool
    read: Callable[[Obj], str]

    def matches(self, obj: Obj) -> bool:
        return (self.read(obj) == self.value) == self.equal


def parse_fields(resource: ResourceType, selector: str | None) -> tuple[FieldRequirement, ...]:
    """Parse a ``fieldSelector`` for ``resource`` (400 BadRequest for a field it does not index)."""
    known = {**_COMMON_FIELDS, **_FIELDS.get(resource, {})}
    out: list[FieldRequirement] = []
    for part in _split(selector or ""):
        m = _EQ.match(part)
        if m is None:
            raise bad_request(f"invalid selector: {selector!r}; can't understand {part!r}")
        read = known.get(m["key"])
        if read is None:
            raise bad_request(f"field label not supported: {m['key']}")
        out.append(FieldRequirement(m["key"], m["value"], m["op"] != "!=", read))
    return tuple(out)


def match_fields(requirements: tuple[FieldRequirement, ...], obj: Obj) -> bool:
    return all(r.matches(obj) for r in requirements)


@dataclass(frozen=True)
class Selector:
    """A list or watch's ``labelSelector`` and ``fieldSelector`` together."""

    labels: tuple[Requirement, ...] = ()
    fields: tuple[FieldRequirement, ...] = ()

    @classmethod
    def parse(cls, resource: ResourceType, labels: str | None = None, fields: str | None = None) -> Selector:
        return cls(parse_labels(labels), parse_fields(resource, fields))

    def matches(self, obj: Obj) -> bool:
        return match_labels(self.labels, obj) and match_fields(self.fields, obj)


EVERYTHING = Selector()
