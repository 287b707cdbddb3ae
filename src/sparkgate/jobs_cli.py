"""``sparkgate submit | status ID | cancel | results | jobs``: the Spark Runner from a terminal.

A thin gRPC client of ``sparkrunner.SparkRunnerService`` (``runner.host:runner.port``, or
``--runner HOST:PORT``); everything it shows comes from Submit / Check / Cancel / List.
"""

from __future__ import annotations

import getpass
import json
import sys
import time
from pathlib import Path
from typing import Any

import grpc

from sparkgate.client._session import access_token
from sparkgate.runner.jobs import TERMINAL
from sparkgate.runner.proto import spark_runner_pb2 as pb
from sparkgate.runner.proto import spark_runner_pb2_grpc as pb_grpc


def _out(text: str = "") -> None:
    print(text, flush=True)


class RunnerClient:
    def __init__(self, target: str) -> None:
        self.target = target
        self.channel = grpc.insecure_channel(target)
        self.stub = pb_grpc.SparkRunnerServiceStub(self.channel)  # type: ignore[no-untyped-call]
        token = access_token()  # the runner checks it when auth is on, as the gateway does
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def call(self, method: str, request: Any, timeout: float = 30) -> Any:
        try:
            return getattr(self.stub, method)(request, metadata=self.metadata, timeout=timeout)
        except grpc.RpcError as err:
            code = err.code()  # type: ignore[attr-defined]
            if code is grpc.StatusCode.UNAVAILABLE:
                raise SystemExit(
                    f"sparkgate: no Spark Runner answers at {self.target}; is `sparkgate up` running? "
                    "(--runner HOST:PORT selects another)"
                ) from None
            raise SystemExit(f"sparkgate: {code.name}: {err.details()}") from None  # type: ignore[attr-defined]


def submit(client: RunnerClient, args: Any) -> int:
    path = Path(args.manifest)
    try:
        text = sys.stdin.read() if args.manifest == "-" else path.read_text()
    except OSError as exc:
        raise SystemExit(f"sparkgate: cannot read the manifest: {exc}") from None
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
    resp = client.call("Submit", req)
    _out(f"submitted {resp.job_id}  (namespace {resp.namespace}, {resp.backend})")
    if not args.follow:
        _out(f"  sparkgate status {resp.job_id}    sparkgate results {resp.job_id}")
        return 0
    return follow(client, resp.job_id)


def follow(client: RunnerClient, job_id: str) -> int:
    """Print state changes and new log lines until the job ends; exit 0 only if it COMPLETED."""
    seen_states = 0
    seen_log: list[str] = []
    while True:
        resp = client.call("Check", pb.CheckRequest(job_id=job_id, include_logs=True))
        for change in resp.history[seen_states:]:
            _out(f"[{change.at}] {change.state}" + (f": {change.message}" if change.message else ""))
        seen_states = len(resp.history)
        lines = [ln for ln in resp.logs.splitlines() if "[sparkgate-job" in ln]
        for ln in lines[len(seen_log) :] if lines[: len(seen_log)] == seen_log else lines:
            _out(f"  {ln}")
        seen_log = lines
        if resp.state in TERMINAL:
            if resp.state == "COMPLETED":
                show_results(client, job_id, rows=10)
            elif resp.error:
                _out(f"error: {resp.error}")
            return 0 if resp.state == "COMPLETED" else 1
        time.sleep(0.5)


def status(client: RunnerClient, job_id: str, as_json: bool) -> int:
    r = client.call("Check", pb.CheckRequest(job_id=job_id))
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


def show_results(client: RunnerClient, job_id: str, rows: int = 100, as_json: bool = False) -> int:
    r = client.call("Check", pb.CheckRequest(job_id=job_id, include_results=True))
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


def cancel(client: RunnerClient, job_id: str) -> int:
    r = client.call("Cancel", pb.CancelRequest(job_id=job_id))
    _out(f"{job_id}: {r.state}")
    return 0


def jobs(client: RunnerClient, args: Any) -> int:
    r = client.call(
        "List", pb.ListRequest(team=args.team or "", user=args.user or "", state=args.state or "", limit=args.limit)
    )
    rows = [[j.job_id, j.state, f"{j.team}/{j.environment}", j.user, j.created_at] for j in r.jobs]
    _out(table(["JOB", "STATE", "TEAM/ENV", "USER", "CREATED"], rows) if rows else "(no jobs)")
    return 0
