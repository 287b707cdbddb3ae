"""A container's configuration as a kubelet resolves it: environment, ``$(VAR)`` expansion, volumes.

Environment: ``value`` (itself expanded), ``valueFrom.fieldRef`` (``metadata.name``,
``metadata.namespace``, ``metadata.uid``, ``metadata.labels['k']``, ``metadata.annotations['k']``,
``spec.nodeName``, ``spec.serviceAccountName``, ``status.podIP``, ``status.hostIP``),
``valueFrom.secretKeyRef`` and ``valueFrom.configMapKeyRef`` (``optional`` honoured), and
``envFrom`` (Secrets and ConfigMaps, with ``prefix``). ``resourceFieldRef`` is not modelled: a
container using it does not start (``CreateContainerConfigError``).

Volumes: ``secret`` and ``configMap`` (all keys, or ``items`` with their ``path``: a missing key
keeps the Pod waiting unless ``optional``), ``emptyDir``;
files are written mode 0600 in a 0700 directory (a real kubelet's default is 0644: these hold
tokens on a shared machine). A volume of another type keeps the Pod from starting. Mounts with
``subPath`` map to a file or directory inside the volume. The content is written once, when the
container starts: updates of the Secret are not propagated as a kubelet does after a minute.

A missing Secret or ConfigMap (or key) raises :class:`NotReady`, which the kubelet reports as a
waiting container and retries, as a real one does.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparkgate.testing.kube.resources import CONFIGMAPS, SECRETS, ResourceType

Obj = dict[str, Any]
Lookup = Callable[[ResourceType, str], Obj | None]
Data = dict[str, bytes]

_FIELD_INDEX = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class NotReady(Exception):
    """The container cannot start yet: ``reason`` and ``message`` as its waiting state shows them."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def field_ref(pod: Obj, path: str) -> str:
    meta, spec, status = pod["metadata"], pod.get("spec", {}), pod.get("status", {})
    if m := _FIELD_INDEX.match(path):
        return str((meta.get(m[1]) or {}).get(m[2], ""))
    values = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
    }
    if path not in values:
        raise NotReady("CreateContainerConfigError", f"fieldRef {path!r} is not supported by the fake kubelet")
    return str(values[path] or "")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: a defined VAR is replaced, ``$$`` escapes, anything else stays."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("$(", i) and (end := text.find(")", i + 2)) != -1:
            name = text[i + 2 : end]
            out.append(env[name] if name in env else text[i : end + 1])
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _data(obj: Obj, resource: ResourceType) -> dict[str, bytes]:
    """A Secret's or ConfigMap's keys, decoded."""
    if resource is SECRETS:
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    out = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
    out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return out


_CONFIG_ERROR = "CreateContainerConfigError"
_UNSUPPORTED = "is not supported by the fake kubelet"


def _source(lookup: Lookup, resource: ResourceType, ref: Obj, reason: str, name_field: str = "name") -> Data:
    """The keys of the Secret or ConfigMap ``ref`` names (empty if it is missing and optional)."""
    name = str(ref.get(name_field, ""))
    obj = lookup(resource, name)
    if obj is None:
        if ref.get("optional"):
            return {}
        raise NotReady(reason, f'{resource.kind.lower()} "{name}" not found')
    return _data(obj, resource)


def _key_ref(lookup: Lookup, ref: Obj, resource: ResourceType, pod: Obj) -> str | None:
    data = _source(lookup, resource, ref, _CONFIG_ERROR)
    if not data and ref.get("optional"):
        return None
    if ref["key"] not in data:
        if ref.get("optional"):
            return None
        namespace = pod["metadata"]["namespace"]
        message = f"couldn't find key {ref['key']} in {resource.kind} {namespace}/{ref['name']}"
        raise NotReady("CreateContainerConfigError", message)
    return data[ref["key"]].decode("utf-8", "replace")


def resolve_env(pod: Obj, container: Obj, lookup: Lookup) -> dict[str, str]:
    """The container's environment, in order (a value may refer to the variables before it)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for field, resource in (("secretRef", SECRETS), ("configMapRef", CONFIGMAPS)):
            if field in source:
                data = _source(lookup, resource, source[field], _CONFIG_ERROR)
                env.update({prefix + k: v.decode("utf-8", "replace") for k, v in data.items()})
    for var in container.get("env") or []:
        value_from = var.get("valueFrom")
        if value_from is None:
            env[var["name"]] = expand(var.get("value", ""), env)
            continue
        value: str | None
        if "fieldRef" in value_from:
            value = field_ref(pod, value_from["fieldRef"]["fieldPath"])
        elif "secretKeyRef" in value_from:
            value = _key_ref(lookup, value_from["secretKeyRef"], SECRETS, pod)
        elif "configMapKeyRef" in value_from:
            value = _key_ref(lookup, value_from["configMapKeyRef"], CONFIGMAPS, pod)
        else:
            raise NotReady(_CONFIG_ERROR, f"env {var['name']}: this valueFrom {_UNSUPPORTED}")
        if value is not None:
            env[var["name"]] = value
    return env


@dataclass(frozen=True)
class Volume:
    """A volume's files (relative path -> content); None for an empty directory."""

    name: str
    files: dict[str, bytes] | None


def gather_volumes(pod: Obj, lookup: Lookup) -> list[Volume]:
    """The content of every volume of ``pod`` (NotReady while a Secret or ConfigMap is missing)."""
    out = []
    for vol in pod.get("spec", {}).get("volumes") or []:
        name = vol["name"]
        if "emptyDir" in vol:
            out.append(Volume(name, None))
            continue
        for field, resource, ref_field in (("secret", SECRETS, "secretName"), ("configMap", CONFIGMAPS, "name")):
            if field in vol:
                data = _source(lookup, resource, vol[field], "ContainerCreating", ref_field)
                items = vol[field].get("items")
                missing = [i["key"] for i in items or [] if i["key"] not in data]
                if missing and not vol[field].get("optional"):  # (a kubelet does not mount it: the Pod waits)
                    raise NotReady("ContainerCreating", f"volume {name!r}: no key {missing[0]!r} in its {field}")
                files = {i["path"]: data[i["key"]] for i in items if i["key"] in data} if items else data
                out.append(Volume(name, files))
                break
        else:
            raise NotReady("ContainerCreating", f"volume {name!r}: its type {_UNSUPPORTED}")
    return out


def write_volumes(root: Path, volumes: list[Volume]) -> dict[str, Path]:
    """Write ``volumes`` under ``root`` (private: 0700 directories, 0600 files); volume name -> directory.

    Blocking file I/O: run it in a thread."""
    dirs = {}
    for vol in volumes:
        target = root / vol.name
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        for rel, content in (vol.files or {}).items():
            path = target / rel
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(content)
        dirs[vol.name] = target
    return dirs


def mounts(container: Obj, volume_dirs: Mapping[str, Path]) -> dict[str, Path]:
    """The container's mounts: mount path -> the host path standing for it."""
    out = {}
    for mount in container.get("volumeMounts") or []:
        host = volume_dirs[mount["name"]]
        out[mount["mountPath"]] = host / mount["subPath"] if mount.get("subPath") else host
    return out
