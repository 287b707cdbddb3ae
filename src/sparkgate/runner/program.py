"""The job program: run a SparkJob manifest on a SparkSession.

The same code runs a job wherever it runs:

* as its own driver — ``spark-submit .../sparkgate/runner/program.py --manifest m.yaml ...``
  locally, or as a Kubernetes ``SparkApplication``'s main file (a classic SparkSession);
* on a warm pooled driver — ``python -m sparkgate.runner.program --remote sc://gateway/... ``
  (a Spark Connect session through the gateway; the fast path for local/test).

Steps: each source becomes a temporary view; each transform is a SQL *query* over the views so far
(run as ``SELECT * FROM (<sql>)``, so DDL/DML is a syntax error, never executed), registered as a
view; each sink writes a view. The result — first 100 rows, row count, schema, output path — of the
first sink's view (or the last view) goes to ``result.json`` in the scratch directory.

Sandbox mode (``--sandbox``): sinks may only write under the job's scratch directory (tables and
other paths are refused before anything runs), and sources are limited to ``--sample-limit`` rows.
The driver enforces the rest on every plan the job's session analyzes (sparkgate's driver plugin,
``spark/driver_plugin/Sandbox.java``): no JVM calls (``reflect``, ``java_method``,
``try_reflect``, however the SQL spells them), scripts or non-SQL functions; reads only of the
job's inputs, its scratch and catalog tables; writes only under its scratch; no commands. The
program checks that the driver enforces it before it runs anything. In every job, paths stay in
the job's output or the environment's data roots, and SQL cannot read files by path.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import decimal
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sparkgate.errors import BadRequest, PermissionDenied
from sparkgate.runner.jobs import PROGRESS_MARK
from sparkgate.runner.manifest import (
    RUN_SQL_ON_FILES,
    Manifest,
    Sink,
    is_absolute,
    parse_manifest,
    sandbox_problems,
    unsafe_path,
)

PREVIEW_ROWS = 100
RESULT_FILE = "result.json"
#: Why the job failed or was refused, whole (its log may hold more than anyone reads back).
ERROR_FILE = "error.txt"
#: Written once the job has a Spark Connect session: only then is there anything to end on Spark.
SESSION_FILE = "session-started"
#: A statement's closing ``;``, and a ``-- comment`` after it on the last line.
_TRAILING_SEMICOLON = re.compile(r";[ \t]*(--[^\n]*)?$")
#: The sandbox's conf, read by the driver plugin's ``Sandbox`` extension: the paths a sandboxed
#: session may write, and those it may read besides (one per line). Set once, it stays in force.
SANDBOX_WRITE = "spark.sparkgate.sandbox.write"
SANDBOX_READ = "spark.sparkgate.sandbox.read"
#: How the driver's refusals begin.
SANDBOX_REFUSED = "sparkgate sandbox: "
#: A path's first part with a glob in it (``/data/2026-*/x.csv`` reads under ``/data``).
_GLOB = re.compile(r"[*?\[{]")


def log(message: str) -> None:
    print(f"{PROGRESS_MARK} {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Plan:
    """What a manifest will do, checked before Spark runs anything."""

    def __init__(
        self,
        manifest: Manifest,
        scratch: Path,
        *,
        sandbox: bool,
        sample_limit: int | None,
        catalog_root: Path | None,
    ) -> None:
        self.manifest = manifest
        self.scratch = scratch.resolve()
        self.sandbox = sandbox
        self.sample_limit = sample_limit
        self.catalog_root = catalog_root.resolve() if catalog_root else None
        etl = manifest.spec.core_etl
        if sandbox and (problems := sandbox_problems(manifest)):
            raise PermissionDenied("sandbox: " + "; ".join(f"{p.path}: {p.message}" for p in problems))
        self.sink_paths = [self._sink_path(i, s) for i, s in enumerate(etl.sinks)]

    def _sink_path(self, i: int, sink: Sink) -> Path | str | None:
        where = f"spec.coreEtl.sinks[{i}]"
        if sink.table is not None:
            if self.sandbox:
                raise PermissionDenied(
                    f"sandbox: {where} writes table {sink.table}; sandboxed jobs may only write paths under "
                    f"their scratch output ({self.scratch})"
                )
            return self.table_path(sink.table)
        assert sink.path is not None
        if self.sandbox and is_absolute(sink.path):
            raise PermissionDenied(
                f"sandbox: {where} writes {sink.path}, outside the job's scratch output ({self.scratch})"
            )
        return self.location(f"{where}.path", sink.path)

    def location(self, where: str, path: str) -> str:
        """Where a manifest's path points: a relative one under the job's output directory (never
        out of it, through ``..`` or a link); an absolute one or a URI as it is (Submit checked it
        against the environment's data roots)."""
        odd = unsafe_path(path)
        if odd:
            raise PermissionDenied(f"{where}: {path}: {odd}")
        if is_absolute(path):
            return path
        resolved = (self.scratch / path).resolve()
        if not resolved.is_relative_to(self.scratch):
            raise PermissionDenied(f"{where}: {path} leaves the job's output directory")
        return str(resolved)

    def read_roots(self) -> list[str]:
        """Where a sandboxed job may read besides its scratch: the sample catalog and the paths its
        sources name (a glob from its first wildcard on dropped)."""
        roots = [str(self.catalog_root)] if self.catalog_root else []
        for i, src in enumerate(self.manifest.spec.core_etl.sources):
            if src.path is not None:
                path = self.location(f"spec.coreEtl.sources[{i}].path", src.path)
                wild = _GLOB.search(path)
                roots.append(path if wild is None else path[: path.rfind("/", 0, wild.start()) + 1])
        return roots

    def table_path(self, table: str) -> Path | None:
        """Where a table of the local sample catalog lives (None: use Spark's own catalog)."""
        if self.catalog_root is None:
            return None
        parts = table.split(".")
        return self.catalog_root.joinpath(*parts[-2:])


def enter_sandbox(spark: Any, plan: Plan) -> None:
    """Put the session under the driver's sandbox, and make sure the driver enforces it: a driver
    without sparkgate's plugin would run anything, so the job is refused there."""
    spark.conf.set(SANDBOX_WRITE, str(plan.scratch))
    spark.conf.set(SANDBOX_READ, "\n".join(plan.read_roots()))
    try:
        spark.sql("SELECT java_method('java.lang.String', 'valueOf', 1) AS probe").schema  # noqa: B018
    except Exception as exc:
        if SANDBOX_REFUSED in str(exc):
            return
        raise
    raise PermissionDenied(
        "sandbox: the driver does not enforce the sandbox (it runs without sparkgate's driver plugin, "
        "which needs a JDK to build); sandboxed jobs cannot run on it"
    )


@contextlib.contextmanager
def step(where: str, sandbox: bool) -> Iterator[None]:
    """Run one step of the manifest; the driver's sandbox refusal becomes one naming the field."""
    try:
        yield
    except Exception as exc:
        text = str(exc)
        if not sandbox or SANDBOX_REFUSED not in text:
            raise
        reason = (text.split(SANDBOX_REFUSED, 1)[1].splitlines() or ["refused"])[0].strip()
        raise PermissionDenied(f"sandbox: {where} {reason}; sandboxed jobs may not") from None


def subquery(sql: str, alias: str) -> str:
    """``SELECT * FROM (<sql>) AS alias``: a query runs, anything else is a syntax error. The SQL
    is on lines of its own, so a trailing ``-- comment`` ends before the closing parenthesis; a
    trailing ``;`` is dropped."""
    body = _TRAILING_SEMICOLON.sub(lambda m: m.group(1) or "", sql.rstrip())
    return f"SELECT * FROM (\n{body}\n) AS {alias}"


def run(spark: Any, plan: Plan) -> dict[str, Any]:
    """Run the plan on ``spark`` (classic or Connect); returns (and writes) the result summary."""
    etl = plan.manifest.spec.core_etl
    for key, value in plan.manifest.spec.spark_conf.items():
        try:
            spark.conf.set(key, value)
        except Exception as exc:  # static conf on a running session: say so, keep going
            log(f"spark conf {key} not set at runtime ({type(exc).__name__}); it applies when the driver starts")
    # Files are read through the sources' paths, which are checked; never as `format`.`path` in SQL.
    spark.conf.set(RUN_SQL_ON_FILES, "false")
    if plan.sandbox:
        enter_sandbox(spark, plan)
    last = None
    for i, src in enumerate(etl.sources):
        with step(f"spec.coreEtl.sources[{i}]", plan.sandbox):
            df = _source(spark, plan, i)
            df.createOrReplaceTempView(src.name)
        last = src.name
    for i, t in enumerate(etl.transforms):
        log(f"transform {t.name}")
        with step(f"spec.coreEtl.transforms[{i}]", plan.sandbox):
            spark.sql(subquery(t.sql, "transform")).createOrReplaceTempView(t.name)
        last = t.name
    output_path = ""
    for i, (sink, target) in enumerate(zip(etl.sinks, plan.sink_paths, strict=True)):
        with step(f"spec.coreEtl.sinks[{i}]", plan.sandbox):
            written = _write(spark, sink, target)
        output_path = output_path or written
    view = etl.sinks[0].from_ if etl.sinks else last
    with step("the result preview", plan.sandbox):
        result = _summary(spark, view, output_path)
    plan.scratch.mkdir(parents=True, exist_ok=True)
    tmp = plan.scratch / (RESULT_FILE + ".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(plan.scratch / RESULT_FILE)
    log(f"done: {result['count']} row(s) in {view}" + (f", written to {output_path}" if output_path else ""))
    return result


def _source(spark: Any, plan: Plan, i: int) -> Any:
    src = plan.manifest.spec.core_etl.sources[i]
    if src.table is not None:
        local = plan.table_path(src.table)
        if local is not None and local.exists():
            log(f"source {src.name}: table {src.table} ({local})")
            df = spark.read.parquet(str(local))
        else:
            log(f"source {src.name}: table {src.table}")
            df = spark.table(src.table)
    elif src.path is not None:
        path = plan.location(f"spec.coreEtl.sources[{i}].path", src.path)
        log(f"source {src.name}: {src.format or 'parquet'} at {path}")
        df = spark.read.format(src.format or "parquet").options(**src.options).load(path)
    else:
        log(f"source {src.name}: SQL")
        df = spark.sql(subquery(src.sql or "", "source"))
    return df if plan.sample_limit is None else df.limit(plan.sample_limit)


def _write(spark: Any, sink: Sink, target: Path | str | None) -> str:
    """Write one sink; returns where it went."""
    writer = spark.table(sink.from_).write.format(sink.format).mode(sink.mode).options(**sink.options)
    if sink.partition_by:
        writer = writer.partitionBy(*sink.partition_by)
    if target is not None:
        log(f"sink {sink.from_} -> {target} ({sink.format}, {sink.mode})")
        writer.save(str(target))
        return str(target)
    log(f"sink {sink.from_} -> table {sink.table} ({sink.mode})")
    writer.saveAsTable(sink.table)
    return f"table:{sink.table}"


def _summary(spark: Any, view: str | None, output_path: str) -> dict[str, Any]:
    """The result: the first rows of ``view``, its row count and schema, where the job wrote."""
    df = spark.table(view)
    rows = [r.asDict(recursive=True) for r in df.limit(PREVIEW_ROWS).collect()]
    return {
        "view": view,
        "preview": json.loads(json.dumps(rows, default=_json_value)),
        "count": df.count(),
        "schema": json.loads(df.schema.json()),
        "output_path": output_path,
    }


def record_error(scratch: str | Path, message: str) -> None:
    """Keep why the job failed in the scratch directory (best effort: the log has it too)."""
    try:
        (Path(scratch) / ERROR_FILE).write_text(message[:65536])
    except OSError:
        pass


def record_session(scratch: str | Path) -> None:
    try:
        (Path(scratch) / SESSION_FILE).touch()
    except OSError:
        pass


def failure_in_log(text: str) -> str | None:
    """Why the job failed or was refused, as its last such line in ``text`` (its log) says."""
    for line in reversed(text.splitlines()):
        if "] failed: " in line or "] refused: " in line:
            return line.split("] ", 1)[1].split(": ", 1)[1]
    return None


def read_error(scratch: str | Path) -> str | None:
    try:
        return (Path(scratch) / ERROR_FILE).read_text() or None
    except OSError:
        return None


def read_result(scratch: str | Path) -> dict[str, Any] | None:
    """The summary :func:`run` left in a job's scratch directory (None: missing or unreadable)."""
    try:
        data: dict[str, Any] = json.loads((Path(scratch) / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data


def _json_value(v: Any) -> Any:
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, bytes | bytearray):
        return v.hex()
    return str(v)


def read_manifest_file(path: str) -> str:
    """The manifest text in ``path``; a file that cannot be read is a refusal naming it."""
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        raise BadRequest(f"manifest file {path} does not exist (working directory {os.getcwd()})") from None
    except IsADirectoryError:
        raise BadRequest(f"manifest file {path} is a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequest(f"manifest file {path} cannot be read: {exc}") from None


def standby() -> int:
    """Wait, with pyspark already imported, for one job's arguments on stdin; then run it.

    The runner keeps one such process ready, so a warm-driver job does not pay for starting
    Python and importing pyspark (~1 s). The line read is JSON: ``{"cwd", "log", "argv"}``, and
    ``token``: the runner's credential for the gateway, which never is in the environment (other
    processes of the user can read that, /proc/PID/environ, and a job's own code could too).
    """
    from pyspark.sql.connect.session import SparkSession  # noqa: F401 - the point is the import

    line = sys.stdin.readline()
    if not line.strip():
        return 0
    spec = json.loads(line)
    if spec.get("token"):
        os.environ["SPARK_CONNECT_AUTHENTICATE_TOKEN"] = spec["token"]
    os.chdir(spec["cwd"])
    fd = os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    return main(list(spec["argv"]))


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["--standby"]:
        return standby()
    ap = argparse.ArgumentParser(prog="sparkgate-job", description="Run a SparkJob manifest.")
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", metavar="FILE", help="the SparkJob manifest file")
    source.add_argument(
        "--manifest-yaml", metavar="TEXT", help="the manifest itself (a SparkApplication's arguments carry it)"
    )
    ap.add_argument("--scratch", default=os.environ.get("SPARKGATE_JOB_SCRATCH", "."), help="scratch output dir")
    ap.add_argument("--remote", help="sc:// URL: run on a Spark Connect driver (else: this process's Spark)")
    ap.add_argument("--sandbox", action="store_true", help="writes only under --scratch; sampled sources")
    ap.add_argument("--sample-limit", type=int, help="rows per source (sandbox sampling)")
    ap.add_argument("--catalog-root", help="directory of the local sample catalog (schema/table dirs)")
    ap.add_argument("--param", action="append", default=[], metavar="K=V", help="override spec.parameters")
    ap.add_argument("--token-from-stdin", action="store_true", help="read the gateway credential from stdin")
    args = ap.parse_args(argv)
    if args.token_from_stdin:
        os.environ["SPARK_CONNECT_AUTHENTICATE_TOKEN"] = sys.stdin.readline().strip()
    try:
        params = dict(p.split("=", 1) for p in args.param)
        text = args.manifest_yaml if args.manifest is None else read_manifest_file(args.manifest)
        manifest = parse_manifest(text).with_parameters(params)
        plan = Plan(
            manifest,
            Path(args.scratch),
            sandbox=args.sandbox,
            sample_limit=args.sample_limit,
            catalog_root=Path(args.catalog_root) if args.catalog_root else None,
        )
    except (BadRequest, PermissionDenied) as exc:
        log(f"refused: {exc.message}")
        record_error(args.scratch, exc.message)
        return 2
    name = f"sparkgate-{manifest.metadata.team}-{manifest.metadata.name}"
    if args.remote:
        from pyspark.sql.connect.session import SparkSession as RemoteSession

        spark: Any = RemoteSession.builder.remote(args.remote).create()
        record_session(args.scratch)
    else:
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.appName(name).getOrCreate()
    try:
        run(spark, plan)
    except PermissionDenied as exc:
        log(f"refused: {exc.message}")
        record_error(args.scratch, exc.message)
        return 2
    except Exception as exc:
        log(f"failed: {type(exc).__name__}: {exc}")
        record_error(args.scratch, f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        try:
            spark.stop()
        except Exception:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
