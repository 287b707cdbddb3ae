"""The SparkJob manifest (``apiVersion: dcp.pedregal.doordash.com/v1``, ``kind: SparkJob``).

A manifest names sources, ordered SQL transforms over them and sinks — the CoreETL spec — plus
the engine version, resources, Spark conf and parameters. It is validated strictly: unknown fields,
bad names, bad values and bad YAML are refused with the path of the problem and the reason, e.g.
``spec.coreEtl.sinks[0].mode: must be one of overwrite, append, error, ignore``.
:func:`json_schema` is the same rules as JSON Schema, for editors (``sparkgate manifest-schema``).

Example (``sparkgate/runner/samples/``)::

    apiVersion: dcp.pedregal.doordash.com/v1
    kind: SparkJob
    metadata: {name: daily-orders, team: feature-engineering}
    spec:
      engine: {version: "4.1"}
      parameters: {ds: "2024-06-01"}
      coreEtl:
        sources:
          - {name: orders, table: samples.orders}
        transforms:
          - name: daily
            sql: SELECT store_id, count(*) AS n FROM orders WHERE ds = '${ds}' GROUP BY store_id
        sinks:
          - {from: daily, path: daily_orders, format: parquet, mode: overwrite}
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sparkgate.errors import BadRequest, PayloadTooLarge

API_VERSION = "dcp.pedregal.doordash.com/v1"
_VIEW = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?$")
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$")
_MEMORY = re.compile(r"^[1-9][0-9]*[kmgt]$")
_PARAM = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


ViewName = Annotated[str, Field(pattern=_VIEW.pattern, description="a view name: lower-case letters, digits, _")]
TableName = Annotated[str, Field(pattern=_TABLE.pattern, description="[catalog.][schema.]table")]
Memory = Annotated[str, Field(pattern=_MEMORY.pattern, description="JVM memory, e.g. 2g or 512m")]


class Metadata(_Strict):
    #: Job name: a Kubernetes-style name (lower-case letters, digits, '-'), part of the job id.
    name: str = Field(pattern=_K8S_NAME.pattern, max_length=53)
    team: str = Field(pattern=_K8S_NAME.pattern, max_length=48)
    labels: dict[str, str] = {}


class Engine(_Strict):
    #: Spark version the job needs, e.g. "4.1" or "3.5".
    version: str = Field(pattern=r"^[0-9]+(\.[0-9]+){0,2}$")


class Source(_Strict):
    """One input, registered as a temporary view ``name``: exactly one of table, path or sql."""

    name: ViewName
    table: TableName | None = None
    path: str | None = None
    format: Literal["parquet", "csv", "json", "orc", "text", "delta", "avro"] | None = None
    options: dict[str, str] = {}
    sql: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Source:
        kinds = [k for k in ("table", "path", "sql") if getattr(self, k)]
        if len(kinds) != 1:
            raise ValueError(f"give exactly one of table, path or sql (got {', '.join(kinds) or 'none'})")
        if self.format and not self.path:
            raise ValueError("format applies to path sources only")
        return self


class Transform(_Strict):
    """A SQL query over the views so far, registered as view ``name`` (queries only: no DDL/DML)."""

    name: ViewName
    sql: str = Field(min_length=1)


class Sink(_Strict):
    """Where a view goes: exactly one of table or path."""

    from_: ViewName = Field(alias="from")
    table: TableName | None = None
    path: str | None = None
    format: Literal["parquet", "csv", "json", "orc", "delta", "avro"] = "parquet"
    mode: Literal["overwrite", "append", "error", "ignore"] = "error"
    partition_by: list[str] = Field(default=[], alias="partitionBy")
    options: dict[str, str] = {}

    @model_validator(mode="after")
    def _one_target(self) -> Sink:
        if bool(self.table) == bool(self.path):
            raise ValueError("give exactly one of table or path")
        return self


class CoreEtl(_Strict):
    sources: list[Source] = Field(min_length=1)
    transforms: list[Transform] = []
    sinks: list[Sink] = []

    @model_validator(mode="after")
    def _views_defined_before_use(self) -> CoreEtl:
        seen: set[str] = set()
        for i, s in enumerate(self.sources):
            if s.name in seen:
                raise ValueError(f"sources[{i}].name: view {s.name!r} is defined twice")
            seen.add(s.name)
        for i, t in enumerate(self.transforms):
            if t.name in seen:
                raise ValueError(f"transforms[{i}].name: view {t.name!r} is defined twice")
            seen.add(t.name)
        for i, k in enumerate(self.sinks):
            if k.from_ not in seen:
                raise ValueError(f"sinks[{i}].from: no source or transform named {k.from_!r}")
        return self


class DriverResources(_Strict):
    cores: int = Field(default=1, ge=1, le=64)
    memory: Memory = "2g"


class ExecutorResources(_Strict):
    cores: int = Field(default=1, ge=1, le=64)
    memory: Memory = "2g"
    instances: int = Field(default=1, ge=0, le=1000)


class Resources(_Strict):
    driver: DriverResources = DriverResources()
    executor: ExecutorResources = ExecutorResources()
    #: Upper bound on executors under dynamic allocation on Kubernetes.
    max_executors: int = Field(default=10, ge=1, le=1000, alias="maxExecutors")


class Spec(_Strict):
    engine: Engine
    core_etl: CoreEtl = Field(alias="coreEtl")
    resources: Resources = Resources()
    spark_conf: dict[str, str] = Field(default={}, alias="sparkConf")
    #: ``${name}`` in SQL, paths and options is replaced by the value (e.g. ``ds``).
    parameters: dict[str, str] = {}

    @field_validator("parameters")
    @classmethod
    def _param_names(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
                raise ValueError(f"parameter name {k!r} must be letters, digits and _")
        return v


class Manifest(_Strict):
    api_version: Literal["dcp.pedregal.doordash.com/v1"] = Field(alias="apiVersion")
    kind: Literal["SparkJob"]
    metadata: Metadata
    spec: Spec

    def with_parameters(self, overrides: dict[str, str] | None = None) -> Manifest:
        """The manifest with ``${param}`` references replaced (``overrides`` win over spec.parameters)."""
        params = {**self.spec.parameters, **(overrides or {})}

        def sub(text: str) -> str:
            def one(m: re.Match[str]) -> str:
                if m.group(1) not in params:
                    raise BadRequest(f"${{{m.group(1)}}} is used but not defined in spec.parameters")
                return params[m.group(1)]

            return _PARAM.sub(one, text)

        data = self.model_dump(by_alias=True)
        return Manifest.model_validate(_walk(data, sub))


def _walk(node: Any, fn: Any) -> Any:
    if isinstance(node, str):
        return fn(node)
    if isinstance(node, dict):
        return {k: _walk(v, fn) for k, v in node.items()}
    if isinstance(node, list):
        return [_walk(v, fn) for v in node]
    return node


_PATTERN_HELP = {
    _VIEW.pattern: "must be a view name: lower-case letters, digits and _ (at most 64)",
    _K8S_NAME.pattern: "must be lower-case letters, digits and '-', starting and ending with a letter or digit",
    _TABLE.pattern: "must be a table name: [catalog.][schema.]table",
    _MEMORY.pattern: "must be a JVM memory size such as 512m or 2g",
    r"^[0-9]+(\.[0-9]+){0,2}$": "must be a version such as 4.1 or 3.5.3",
}


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or part.startswith(("literal[", "function-")):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top)"


def _reason(err: Any) -> str:
    kind, ctx, msg = str(err["type"]), err.get("ctx") or {}, str(err["msg"])
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '').replace(chr(39), '')}".replace(" or ", ", ")
    if kind == "string_pattern_mismatch":
        return _PATTERN_HELP.get(str(ctx.get("pattern", "")), msg[0].lower() + msg[1:])
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    return msg[0].lower() + msg[1:]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest: where (path, and line when known) and why."""

    path: str
    message: str
    #: 1-based line of the offending node in the YAML, when it can be found.
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ManifestError(BadRequest):
    """An invalid manifest; ``problems`` lists each problem (the message joins them)."""

    def __init__(self, problems: list[Problem], prefix: str = "invalid manifest: ") -> None:
        super().__init__(prefix + "; ".join(str(p) for p in problems))
        self.problems = problems


def _line(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The line of the deepest node ``loc`` reaches in the composed YAML."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key, value in node.value:
                if key.value == part:
                    node, line = value, key.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def check_size(text: str, limit: int) -> None:
    """Refuse a manifest larger than ``limit`` bytes (``runner.max_manifest_bytes``) before parsing it."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise PayloadTooLarge(f"manifest of {size} bytes is larger than runner.max_manifest_bytes ({limit})")


def check_manifest(text: str) -> tuple[Manifest | None, list[Problem]]:
    """Validate manifest YAML: the manifest, or every problem with its path and line."""
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except RecursionError:
        return None, [Problem("(yaml)", "not valid YAML: nested too deeply")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [Problem("(yaml)", f"not valid YAML{where}: {problem}", mark.line + 1 if mark else None)]
    if not isinstance(data, dict):
        return None, [Problem("(top)", "must be a YAML mapping with apiVersion, kind, metadata and spec", 1)]
    try:
        return Manifest.model_validate(data), []
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
            reason = _reason(err)
            # A model-level check names its own sub-path ("sinks[0].from: ..."): join them.
            sub = re.match(r"^([a-z]+)\[(\d+)\]\.([A-Za-z]+): (.*)$", reason) if err["type"] == "value_error" else None
            if sub:
                loc = (*loc, sub.group(1), int(sub.group(2)), sub.group(3))
                reason = sub.group(4)
            problems.append(Problem(_path(loc), reason, _line(root, loc)))
        return None, problems


def parse_manifest(text: str) -> Manifest:
    """Parse and validate manifest YAML; :class:`ManifestError` names every problem with its path."""
    manifest, problems = check_manifest(text)
    if manifest is None:
        if problems and problems[0].path == "(yaml)":
            raise ManifestError(problems, prefix="manifest is ")
        raise ManifestError(problems)
    return manifest


#: Spark's ``SELECT * FROM parquet.`/any/path``` (on by default): off in every job's session.
RUN_SQL_ON_FILES = "spark.sql.runSQLOnFiles"
#: sparkgate's own conf (the sandbox's paths, a driver's tags): never a manifest's.
SPARKGATE_CONF = "spark.sparkgate."
#: What a sandboxed job's ``sparkConf`` may set (a key, or a prefix ending in ``.``): tuning, never
#: what loads code (``spark.jars``, ``spark.plugins``, extensions, class paths, JVM options),
#: mounts a catalog or names files.
SANDBOX_CONF = (
    "spark.sql.shuffle.partitions",
    "spark.sql.adaptive.",
    "spark.sql.session.timeZone",
    "spark.sql.ansi.enabled",
    "spark.sql.caseSensitive",
    "spark.sql.autoBroadcastJoinThreshold",
    "spark.sql.files.maxPartitionBytes",
    "spark.sql.parquet.compression.codec",
    "spark.sql.sources.partitionOverwriteMode",
    "spark.sql.legacy.timeParserPolicy",
    "spark.executor.memory",
    "spark.executor.cores",
    "spark.executor.instances",
    "spark.dynamicAllocation.",
)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _split(location: str) -> tuple[str, str]:
    """``(scheme://authority, path)`` of a URI, or ``("", path)`` of a file path (``file:`` too)."""
    m = _SCHEME.match(location)
    if m is None:
        return "", location
    if m.group(0).lower() == "file:":  # file:/x, file:///x
        return "", "/" + location[m.end() :].lstrip("/")
    rest = location[m.end() :]
    if rest.startswith("//"):
        authority, _, path = rest[2:].partition("/")
        return f"{m.group(0).lower()}//{authority}", "/" + path
    return m.group(0).lower(), rest


def _under(location: str, root: str) -> bool:
    """``location`` (absolute path or URI) is ``root`` or inside it, ``..`` resolved."""
    (base, path), (root_base, root_path) = _split(location), _split(root)
    if base != root_base:
        return False
    path, root_path = posixpath.normpath(path or "/"), posixpath.normpath(root_path or "/")
    return path == root_path or path.startswith(root_path.rstrip("/") + "/")


def unsafe_path(location: str) -> str | None:
    """Why Spark would read ``location`` as something other than what it looks like, if it would."""
    if any(ord(c) < 32 or c == "\x7f" for c in location):
        return "control characters (newlines, tabs, NUL) are not allowed in paths"
    if any(c in location for c in "{}\\"):
        # Hadoop expands {a,b} (and escapes with \) before it resolves "..": {../..,x} climbs out.
        return "braces and backslashes are not allowed in paths (Hadoop expands them before '..')"
    m = _SCHEME.match(location)
    if m is not None and m.group(0).lower() == "file:":
        rest = location[m.end() :]
        if not rest.startswith("/") or (rest.startswith("//") and not rest.startswith("///")):
            return "a file: URI must be file:/path or file:///path"
    return None


def sandbox_problems(manifest: Manifest) -> list[Problem]:
    """What a sandboxed job may not ask for: ``sparkConf`` beyond :data:`SANDBOX_CONF`."""
    allowed = ", ".join(k + ("*" if k.endswith(".") else "") for k in SANDBOX_CONF)
    return [
        Problem(f"spec.sparkConf.{key}", f"a sandboxed job may set only {allowed}")
        for key in manifest.spec.spark_conf
        if not any(key == k or (k.endswith(".") and key.startswith(k)) for k in SANDBOX_CONF)
    ]


def is_absolute(location: str) -> bool:
    return location.startswith("/") or _SCHEME.match(location) is not None


def path_problems(manifest: Manifest, environment: str, roots: Sequence[str] = ()) -> list[Problem]:
    """Where the job's sources and sinks point outside what it may use: a relative path must stay
    under the job's output directory (no ``..`` out of it); an absolute path or URI must be under
    one of the environment's ``data_roots``. Spark's ``path`` option is refused too (it would
    name a path behind the manifest's back)."""
    etl = manifest.spec.core_etl
    problems = []
    for key in manifest.spec.spark_conf:
        if key.lower() == RUN_SQL_ON_FILES.lower():
            problems.append(
                Problem(f"spec.sparkConf.{key}", "may not be set: jobs read files through their sources' paths only")
            )
        elif key.lower().startswith(SPARKGATE_CONF):
            problems.append(Problem(f"spec.sparkConf.{key}", "may not be set: sparkgate sets its own conf"))
    places = [(f"spec.coreEtl.sources[{i}]", s.path, s.options) for i, s in enumerate(etl.sources)]
    places += [(f"spec.coreEtl.sinks[{i}]", k.path, k.options) for i, k in enumerate(etl.sinks)]
    for where, path, options in places:
        if any(key.lower() == "path" for key in options):
            problems.append(Problem(f"{where}.options.path", "give the location as path, not as an option"))
        if path is None:
            continue
        odd = unsafe_path(path)
        if odd:
            problems.append(Problem(f"{where}.path", f"{path}: {odd}"))
        elif not is_absolute(path):
            normal = posixpath.normpath(path)
            if normal == ".." or normal.startswith("../"):
                problems.append(Problem(f"{where}.path", f"{path} leaves the job's output directory"))
        elif not any(_under(path, root) for root in roots):
            allowed = ", ".join(roots) if roots else "none are set"
            problems.append(
                Problem(
                    f"{where}.path",
                    f"{path} is outside the data roots of environment {environment} "
                    f"(environments.{environment}.data_roots: {allowed}); a relative path goes under the "
                    "job's output directory",
                )
            )
    return problems


def json_schema() -> dict[str, Any]:
    schema = Manifest.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "SparkJob manifest (dcp.pedregal.doordash.com/v1)"
    return schema
