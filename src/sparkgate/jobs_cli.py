"""``sparkgate submit | status ID | cancel | results | jobs``: the Spark Runner from a terminal.

A thin gRPC client of ``sparkrunner.SparkRunnerService`` (``runner.host:runner.port``, or
``--runner HOST:PORT``); everything it shows comes from Submit / Check / Cancel / List.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sparkgate.client._session import access_token
from sparkgate.errors import Unavailable
from sparkgate.runner.client import RunnerClient
from sparkgate.runner.jobs import PROGRESS_MARK, TERMINAL
from sparkgate.runner.proto import spark_runner_pb2 as pb


def _out(text: str = "") -> None:
    print(text, flush=True)


async def with_runner(target: str, work: Callable[[RunnerClient], Awaitable[int]]) -> int:
    """Run ``work`` with a client of the Spark Runner at ``target``, as the user of the token
    ``sparkgate`` finds (the runner checks it when auth is on, as the gateway does)."""
    token = access_token()
    client = RunnerClient(target, (("authorization", f"Bearer {token}"),) if token else ())
    try:
        return await work(client)
    except Unavailable:
        raise Unavailable(
            f"no Spark Runner answers at {target}; is `sparkgate up` running? (--runner HOST:PORT selects another)"
        ) from None
    finally:
        await client.close()


def _read_manifest(name: str) -> str:
    """The manifest file ``name`` (``-``: standard input)."""
    try:
        return sys.stdin.read() if name == "-" else Path(name).read_text()
    except OSError as exc:
        raise SystemExit(f"sparkgate: cannot read the manifest: {exc}") from None


async def submit(client: RunnerClient, args: Any) -> int:
    text = await asyncio.to_thread(_read_manifest, args.manifest)
    options = dict(o.split("=", 1) for o in args.option)
    if args.sandbox:
        options["sandbox"] = "true"
    if args.driver:
        options["driver"] = args.driver
    for p in args.param:
        k, _, v = p.partition("=")
        options[f"param.{k}"] = v
    req = pb.SubmitRequest(
        manifest=text, team=args.team or "", environment=args.env, user=args.user or getpass.getuser(), options=options
    )
    resp = await client.call("Submit", req)
    _out(f"submitted {resp.job_id}  (namespace {resp.namespace}, {resp.backend})")
    if not args.follow:
        _out(f"  sparkgate status {resp.job_id}    sparkgate results {resp.job_id}")
        return 0
    return await follow(client, resp.job_id)


async def follow(client: RunnerClient, job_id: str) -> int:
    """Print state changes and new log lines as the runner reports them, until the job ends;
    exit 0 only if it COMPLETED."""
    seen_states = 0
    async for event in client.watch(job_id, log_filter=PROGRESS_MARK):
        for line in event.log_lines:
            _out(f"  {line}")
        if not event.HasField("state"):
            continue
        resp = event.state
        for change in resp.history[seen_states:]:
            _out(f"[{change.at}] {change.state}" + (f": {change.message}" if change.message else ""))
        seen_states = len(resp.history)
        if resp.state in TERMINAL:
            if resp.state == "COMPLETED":
                await show_results(client, job_id, rows=10)
            elif resp.error:
                _out(f"error: {resp.error}")
            return 0 if resp.state == "COMPLETED" else 1
    raise Unavailable(f"the Spark Runner stopped following job {job_id}; see sparkgate status {job_id}")


async def status(client: RunnerClient, job_id: str, as_json: bool) -> int:
    r = await client.call("Check", pb.CheckRequest(job_id=job_id))
    if as_json:
        from google.protobuf.json_format import MessageToDict

        _out(json.dumps(MessageToDict(r), indent=2))
        return 0
    _out(f"job        {r.job_id}")
    _out(f"state      {r.state}" + (f"  ({r.error.splitlines()[0]})" if r.error else ""))
    _out(f"team/env   {r.team}/{r.environment}   user {r.user}   namespace {r.namespace}")
    _out(f"backend    {r.backend}   attempts {r.attempts}")
    if r.spark_ui_url:
        _out(f"spark ui   {r.spark_ui_url}")
    if r.output_path:
        _out(f"output     {r.output_path}")
    for c in r.history:
        _out(f"  {c.at}  {c.state:<10} {c.message}")
    return 0


async def show_results(client: RunnerClient, job_id: str, rows: int = 100, as_json: bool = False) -> int:
    r = await client.call("Check", pb.CheckRequest(job_id=job_id, include_results=True))
    if r.state != "COMPLETED":
        _out(f"job {job_id} is {r.state}; results exist only for COMPLETED jobs")
        return 1
    preview = json.loads(r.result_preview or "[]")
    if as_json:
        _out(json.dumps({"count": r.result_count, "schema": json.loads(r.result_schema or "{}"), "preview": preview}))
        return 0
    columns = [f["name"] for f in json.loads(r.result_schema or "{}").get("fields", [])]
    _out(table(columns, [[row.get(c) for c in columns] for row in preview[:rows]]))
    shown = min(rows, len(preview))
    _out(
        f"{r.result_count} row(s){f', first {shown} shown' if shown < r.result_count else ''}"
        + (f"; full output: {r.output_path}" if r.output_path else "")
    )
    return 0


def table(columns: list[str], rows: list[list[Any]]) -> str:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([line, sep, *body])


async def cancel(client: RunnerClient, job_id: str) -> int:
    r = await client.call("Cancel", pb.CancelRequest(job_id=job_id))
    _out(f"{job_id}: {r.state}")
    return 0


async def jobs(client: RunnerClient, args: Any) -> int:
    r = await client.call(
        "List", pb.ListRequest(team=args.team or "", user=args.user or "", state=args.state or "", limit=args.limit)
    )
    rows = [[j.job_id, j.state, f"{j.team}/{j.environment}", j.user, j.created_at] for j in r.jobs]
    _out(table(["JOB", "STATE", "TEAM/ENV", "USER", "CREATED"], rows) if rows else "(no jobs)")
    return 0
