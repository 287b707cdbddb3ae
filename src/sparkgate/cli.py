"""The ``sparkgate`` command.

    sparkgate up            start the whole local platform (gateway + warm pool of Spark drivers)
    sparkgate gateway       run only the gateway (drivers are left running on exit for the next one)
    sparkgate status        show pools, drivers and sessions of a running gateway
    sparkgate config        print the effective configuration (defaults + file + environment);
                            --reference: every setting explained (docs/configuration.md)
    sparkgate certs         make a local CA and TLS certificates for the gateway (development)
    sparkgate submit        submit a SparkJob manifest to the Spark Runner (--follow to watch it)
    sparkgate status ID     a job's state and history;  cancel ID, results ID, jobs: the rest
    sparkgate runner        run only the Spark Runner (gRPC :50051)
    sparkgate playground    run only the DCP Playground (web UI + REST API on :8080)

Run ``sparkgate COMMAND --help`` for each command's options.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

import yaml

from sparkgate import jobs_cli
from sparkgate.config import Settings, load_settings
from sparkgate.errors import SparkgateError
from sparkgate.logs import setup_logging
from sparkgate.platform import Platform
from sparkgate.runner.client import RunnerClient

log = logging.getLogger("sparkgate")

_EPILOG = """\
configuration:
  A YAML file (--config, $SPARKGATE_CONFIG, or ./sparkgate.yaml) plus environment overrides
  SPARKGATE__<SECTION>__<KEY>=value, e.g. SPARKGATE__POOL__SIZE=2 or SPARKGATE__GATEWAY__PORT=15003.
  `sparkgate config` prints every setting with its current value.

examples:
  sparkgate up                          # gateway on :15002, one warm local driver, runner on :50051
  sparkgate up --pool-size 2 --port 16002
  SPARKGATE__LOCAL__DRIVER_MEMORY=4g sparkgate up
  sparkgate submit src/sparkgate/runner/samples/daily_orders.yaml --env local --follow
"""


_T = TypeVar("_T")


def _run(main: Coroutine[Any, Any, _T]) -> _T:
    """``asyncio.run`` on uvloop when it is installed (the h2 engine relays ~20 % faster on it)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def _out(msg: str = "") -> None:
    print(msg, flush=True)


def _snippet(port: int) -> str:
    host = "localhost"
    return f"""\
  from pyspark.sql import SparkSession
  spark = (SparkSession.builder
           .remote("sc://{host}:{port}/;x-doordash-team=my-team;x-doordash-environment=local")
           .getOrCreate())
  spark.sql("SELECT 1 AS ok").show()

  # or as builder options, unchanged except for the host:
  spark = (SparkSession.builder.remote("sc://{host}:{port}")
           .config("spark.connect.grpc.header.x-doordash-team", "my-team")
           .config("spark.connect.grpc.header.x-doordash-environment", "staging")
           .getOrCreate())"""


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def _progress(platform: Platform, stop: asyncio.Event) -> None:
    """Print warm-pool progress until the pool is at target (or we are stopping)."""
    target = platform.clusters.pool_size
    if target == 0:
        return
    t0 = time.monotonic()
    last = -1
    # Woken at once when the pool is ready (not at the next tick), and once a second to show progress.
    ready = asyncio.create_task(platform.clusters.wait_pool_ready(), name="up: pool ready")
    stopping = asyncio.create_task(stop.wait(), name="up: stop")
    try:
        while True:
            warm = len(platform.clusters.warm())
            if warm != last or int(time.monotonic() - t0) % 5 == 0:
                line = f"  warming drivers: {warm}/{target} ready ({time.monotonic() - t0:4.0f}s)"
                _out(line + _failed_starts(platform))
                last = warm
            if ready.done():
                ready.result()  # (raises what went wrong rather than report a ready pool)
                return
            if stopping.done():
                return
            await asyncio.wait({ready, stopping}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (ready, stopping):
            task.cancel()
        await asyncio.gather(ready, stopping, return_exceptions=True)


def _failed_starts(platform: Platform) -> str:
    """Why the warm pool is not filling, if its starts fail (the first line of the last error;
    the log has the rest)."""
    for key, b in platform.clusters.backoff.items():
        if key.startswith("pool:") and b.failures:
            info = b.to_dict()
            info["last_error"] = (b.last_error.splitlines() or ["unknown"])[0][:160]
            return f"; start failing: {_start_failure(info)}"
    return ""


def _start_failure(info: Mapping[str, Any]) -> str:
    """A profile's or namespace's failing driver starts (``StartBackoff.to_dict``), in one line."""
    return f"{info['failures']}x, next try in {info['retry_in_seconds']:.0f}s: {info['last_error']}"


async def _run_up(settings: Settings) -> int:
    stop = asyncio.Event()
    _install_signal_handlers(stop)
    _out(f"sparkgate: starting the local platform (state in {settings.state_dir.resolve()})")
    async with Platform(settings) as platform:
        port = platform.gateway.port
        _out(f"  gateway      sc://localhost:{port}   (Spark Connect; listening on {settings.gateway.host})")
        if platform.admin is not None:
            _out(f"  status       http://127.0.0.1:{platform.admin.port}/status   (or: sparkgate status)")
        if platform.runner_server is not None:
            _out(
                f"  runner       {settings.runner.host}:{platform.runner_server.port}   "
                "(Spark Runner gRPC; sparkgate submit MANIFEST --env local --follow)"
            )
        if platform.playground is not None:
            url = f"http://{settings.playground.host}:{platform.playground.port}/"
            _out(f"  playground   {url}   (web UI; API docs at {url}docs)")
        _out(f"  environments {', '.join(sorted(settings.environments))}  (all served by local drivers)")
        sizes = ", ".join(f"{n} {name}" for name, n in sorted(_pool_sizes(settings).items()) if n)
        _out(
            f"  warm pool    {platform.clusters.pool_size} driver(s) ({sizes or 'none'}), "
            f"{settings.local.driver_memory} heap each, logs in {settings.state_path('drivers')}"
        )
        await _progress(platform, stop)
        if not stop.is_set():
            _out("")
            _out("sparkgate is ready. Connect with:")
            _out("")
            _out(_snippet(port))
            _out("")
            _out("Press Ctrl-C to stop (stops every driver).")
        await stop.wait()
        _out("sparkgate: stopping (draining calls, then stopping drivers) ...")
        n = len(platform.clusters.drivers())
    _out(f"sparkgate: stopped ({n} driver(s) shut down)")
    return 0


def _with_runner(settings: Settings, args: argparse.Namespace, work: Callable[[RunnerClient], Awaitable[int]]) -> int:
    """Run a job command against the Spark Runner (``--runner``, else the configured one)."""
    host = settings.runner.host if settings.runner.host not in ("0.0.0.0", "::") else "127.0.0.1"
    return asyncio.run(jobs_cli.with_runner(args.runner or f"{host}:{settings.runner.port}", work))


async def _run_runner(settings: Settings) -> int:
    from pathlib import Path

    from sparkgate.runner.backends import kubernetes_backend
    from sparkgate.runner.backends.base import ExecutionBackend
    from sparkgate.runner.backends.local import LocalBackend
    from sparkgate.runner.server import RunnerServer
    from sparkgate.runner.service import Runner
    from sparkgate.runner.store import JobStore, database_url
    from sparkgate.security.guard import build_guard

    stop = asyncio.Event()
    _install_signal_handlers(stop)
    r = settings.runner
    backend: ExecutionBackend
    if r.backend == "kubernetes":
        backend = kubernetes_backend(settings)
    else:
        backend = LocalBackend(
            settings.state_path("jobs"),
            gateway_url=r.gateway_url,
            default_driver=r.local_driver,
            catalog_root=settings.state_path(r.catalog_dir),
            spark_home=Path(settings.local.spark_home) if settings.local.spark_home else None,
        )
    runner = Runner(
        r,
        JobStore(database_url(r.database_url, settings.state_dir)),
        backend,
        list(settings.environments),
        data_roots={name: env.data_roots for name, env in settings.environments.items()},
    )
    await runner.start()
    try:
        async with build_guard(settings) as guard, RunnerServer(runner, r.host, r.port, guard=guard) as server:
            _out(f"sparkgate runner listening on {r.host}:{server.port} (jobs in {settings.state_path('jobs')})")
            await stop.wait()
    finally:
        await runner.close()
    return 0


async def _run_playground(settings: Settings, runner: str | None) -> int:
    from sparkgate.playground.app import create_app
    from sparkgate.playground.server import PlaygroundServer

    stop = asyncio.Event()
    _install_signal_handlers(stop)
    pg = settings.playground
    server = PlaygroundServer(create_app(settings, runner or pg.runner_target), pg.host, pg.port)
    await server.start()
    _out(f"sparkgate playground on http://{pg.host}:{server.port}/ (runner {runner or pg.runner_target})")
    try:
        await stop.wait()
    finally:
        await server.stop()
    return 0


def _pool_sizes(settings: Settings) -> dict[str, int]:
    return {name: p.size for name, p in settings.pool.all_profiles().items()}


async def _run_gateway(settings: Settings, keep_drivers: bool) -> int:
    stop = asyncio.Event()
    _install_signal_handlers(stop)
    # Replicas sharing state share the drivers: one leaving must not stop what the others serve.
    shared = settings.state.backend != "local"
    # Only the gateway (and its admin endpoints): the runner and the Playground run on their own
    # (`sparkgate runner`, `sparkgate playground`), so that replicas of it can share one host.
    settings = settings.model_copy(
        update={
            "runner": settings.runner.model_copy(update={"enabled": False}),
            "playground": settings.playground.model_copy(update={"enabled": False}),
        }
    )
    async with Platform(settings, stop_drivers_on_exit=not (keep_drivers or shared)) as platform:
        _out(f"sparkgate gateway listening on {settings.gateway.host}:{platform.gateway.port}")
        await stop.wait()
        if shared:
            # The last replica to leave stops the drivers (all of them: it looks for those the
            # others started first); until then the others still serve them.
            last = await platform.gateway.leave()
            if last and not keep_drivers:
                await platform.clusters.reconcile()
                platform.stop_drivers_on_exit = True
    return 0


def _status(settings: Settings, url: str | None, raw: bool) -> int:
    import json
    import urllib.error
    import urllib.request

    base = url or f"http://127.0.0.1:{settings.admin.port}"
    try:
        with urllib.request.urlopen(base.rstrip("/") + "/status", timeout=5) as resp:
            data = json.load(resp)
    except (urllib.error.URLError, OSError) as exc:
        print(
            f"sparkgate: no gateway answers at {base} ({exc}); is `sparkgate up` running? "
            "(--url or admin.port select another)",
            file=sys.stderr,
        )
        return 1
    if raw:
        _out(json.dumps(data, indent=2))
        return 0
    gw, pool = data["gateway"], data["pool"]
    _out(f"gateway  port {gw['port']}")
    replicas = data.get("replicas") or []
    if len(replicas) > 1:  # gateways sharing state (state.backend: redis)
        _out(f"replicas {len(replicas)} gateways share sessions:")
        for r in sorted(replicas, key=lambda r: r.get("started_at", 0)):
            mark = " (this one)" if r.get("id") == gw.get("replica") else ""
            role = "leader" if r.get("leader") else ""
            _out(
                f"  {r.get('address', '?'):<32} {r.get('sessions', 0):>6} sessions  v{r.get('version', '?'):<10} "
                f"{role:<6}{mark}"
            )
    _out(
        f"pool     {pool['warm']}/{pool['target']} warm, {pool['sessions_per_driver']} sessions per driver, "
        f"placement {pool.get('placement', '-')}"
    )
    for name, prof in pool.get("profiles", {}).items():
        version = f", Spark {prof['spark_version']}" if prof.get("spark_version") else ""
        _out(f"  profile {name}: {prof['warm']}/{prof['target']} warm{version}")
    archive = data.get("class_archive")
    if archive:  # (local drivers: whether they start from a class-data archive)
        _out(f"  class-data archive: {archive['state']}" + (f" ({archive['path']})" if archive.get("path") else ""))
    for key, b in data.get("start_failures", {}).items():
        _out(f"  start failing: {key}: {_start_failure(b)}")
    _out("")
    _out(f"{'DRIVER':<18} {'STATE':<9} {'NAMESPACE':<32} {'PROFILE':<10} {'SESSIONS':>8}  ADDRESS")
    for d in data["drivers"]:
        state = d["state"] + ("?" if d.get("suspect") else "")
        ns = d["namespace"] or "(warm pool)"
        _out(f"{d['id']:<18} {state:<9} {ns:<32} {d.get('profile', '-'):<10} {d['sessions']:>8}  {d['address']}")
    if not data["drivers"]:
        _out("(no drivers)")
    _out("")
    _out(f"{'SESSION':<38} {'USER':<16} {'TEAM/ENV':<28} {'DRIVER':<18} {'IDLE':>6}")
    for r in data["sessions"]:
        team_env = f"{r['team']}/{r['environment']}"
        _out(
            f"{r['session_id']:<38} {r['user'] or '-':<16} {team_env:<28} {r['driver']:<18} {r['idle_seconds']:>5.0f}s"
        )
    if not data["sessions"]:
        _out("(no sessions)")
    for driver_id, why in data.get("recently_dead", {}).items():
        _out(f"dead: {driver_id}: {why}")
    return 0


def _apply_common(args: argparse.Namespace) -> Settings:
    over: dict[str, Any] = {}
    if getattr(args, "port", None) is not None and getattr(args, "command", "") == "playground":
        over["playground"] = {"port": args.port}
    elif getattr(args, "port", None) is not None:
        over.setdefault("gateway", {})["port"] = args.port
    if getattr(args, "host", None) is not None:
        over.setdefault("gateway", {})["host"] = args.host
    if getattr(args, "admin_port", None) is not None:
        over["admin"] = {"port": args.admin_port}
    if getattr(args, "pool_size", None) is not None:
        over["pool"] = {"size": args.pool_size}
    if getattr(args, "runner_port", None) is not None:
        over["runner"] = {"port": args.runner_port}
    if getattr(args, "playground_port", None) is not None:
        over["playground"] = {"port": args.playground_port}
    if getattr(args, "state_dir", None) is not None:
        over["state_dir"] = args.state_dir
    settings = load_settings(args.config, **over)
    setup_logging(settings.log_format, args.log_level or settings.log_level)
    return settings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sparkgate",
        description="One front door to Apache Spark: a Spark Connect gateway with warm driver pools.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", metavar="PATH", help="YAML configuration file")
        sp.add_argument("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING (default from config: INFO)")
        sp.add_argument("--state-dir", metavar="DIR", help="where routes, driver logs and records live")

    up = sub.add_parser(
        "up",
        help="start the local platform: gateway on :15002 and a warm pool of Spark drivers",
        description="Start the gateway and a warm pool of local Spark Connect drivers, print how to "
        "connect, and run until Ctrl-C / SIGTERM, then stop every driver.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(up)
    up.add_argument("--port", type=int, help="gateway port (default 15002)")
    up.add_argument("--host", help="gateway bind address (default 0.0.0.0)")
    up.add_argument("--pool-size", type=int, metavar="N", help="warm drivers to keep ready (default 1)")
    up.add_argument("--admin-port", type=int, metavar="P", help="status/health HTTP port (default 9090; 0 = any)")
    up.add_argument("--runner-port", type=int, metavar="P", help="Spark Runner gRPC port (default 50051; 0 = any)")
    up.add_argument("--playground-port", type=int, metavar="P", help="Playground web port (default 8080; 0 = any)")

    gw = sub.add_parser(
        "gateway",
        help="run only the gateway (for restarts and deployments)",
        description="Run the Spark Gateway with the configured provider. Drivers it finds running "
        "are adopted. On exit it stops the drivers unless --keep-drivers, or unless other "
        "replicas sharing its state (state.backend: redis) still serve them: the last to leave "
        "stops them.",
        epilog="examples:\n  sparkgate gateway --port 15002 --admin-port 9090\n"
        "  SPARKGATE__STATE__BACKEND=redis SPARKGATE__STATE__REDIS_URL=redis://127.0.0.1:6379/0 \\\n"
        "    sparkgate gateway --port 15012 --admin-port 9192   # one of several replicas",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(gw)
    gw.add_argument("--port", type=int, help="gateway port (default 15002)")
    gw.add_argument("--host", help="gateway bind address (default 0.0.0.0)")
    gw.add_argument("--admin-port", type=int, metavar="P", help="status/health HTTP port (default 9090; 0 = any)")
    gw.add_argument("--pool-size", type=int, metavar="N", help="warm drivers to keep ready (default 1)")
    gw.add_argument("--keep-drivers", action="store_true", help="leave drivers running on exit")
    gw.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="processes sharing the port, one replica each (default: one per core with state.backend: "
        "redis, else 1; more than 1 needs redis)",
    )

    cfg = sub.add_parser(
        "config",
        help="print the effective configuration as YAML (or, --reference, every setting explained)",
        description="Print every setting with the value in effect: the defaults, the YAML file and "
        "SPARKGATE__* environment overrides, merged.",
        epilog="examples:\n  sparkgate config\n"
        "  SPARKGATE__GATEWAY__PORT=15003 sparkgate config | grep -A3 '^gateway'\n"
        "  sparkgate config --reference > docs/configuration.md",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(cfg)
    cfg.add_argument(
        "--reference",
        action="store_true",
        help="print the configuration reference instead (Markdown: every setting, its type, default and meaning)",
    )

    st = sub.add_parser(
        "status",
        help="show pools, drivers and sessions of a running gateway, or one job (status ID)",
        description="Without a job id: ask a running gateway's admin endpoint (GET /status) what it "
        "runs. With one: the job's state, team, output and every state change, from the Spark Runner.",
        epilog="examples:\n  sparkgate status\n  sparkgate status --json | jq '.drivers[].state'\n"
        "  sparkgate status --url http://gateway-host:9090\n  sparkgate status feature-engineering-daily-orders-17...",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(st)
    st.add_argument("job_id", nargs="?", help="a job id (from sparkgate submit / sparkgate jobs)")
    st.add_argument("--runner", metavar="HOST:PORT", help="Spark Runner address (default runner.host:runner.port)")
    st.add_argument("--url", help="admin base URL (default http://127.0.0.1:<admin.port>)")
    st.add_argument("--json", action="store_true", help="print the raw JSON")

    ct = sub.add_parser(
        "certs",
        help="make a local CA and TLS certificates for the gateway (development only)",
        description="Make (or add to) a local certificate authority and sign a server certificate for "
        "the gateway (localhost, 127.0.0.1, ::1, this host's name and --san names) and client "
        "certificates for mTLS service identities (--client NAME → CN=NAME). Prints the settings "
        "that turn TLS on and how clients trust the CA.",
        epilog="example:\n  sparkgate certs --client sparkgate-runner\n"
        "  SPARKGATE__TLS__CERT_FILE=.sparkgate/certs/server.pem "
        "SPARKGATE__TLS__KEY_FILE=.sparkgate/certs/server-key.pem sparkgate up",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(ct)

    def runner_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--runner", metavar="HOST:PORT", help="Spark Runner address (default runner.host:runner.port)")

    sm = sub.add_parser(
        "submit",
        help="submit a SparkJob manifest to the Spark Runner",
        description="Validate and submit a SparkJob manifest (YAML; '-' reads stdin). The job runs on a "
        "warm driver (--driver pool, the default) or a driver of its own (--driver own). With --follow, "
        "prints state changes and the job's progress, then a preview of the result; the exit code is 0 "
        "only if the job COMPLETED.",
        epilog="examples:\n  sparkgate submit src/sparkgate/runner/samples/daily_orders.yaml --env local --follow\n"
        "  sparkgate submit job.yaml --env staging --param ds=2024-06-02 --sandbox\n"
        "  sparkgate manifest-schema > sparkjob.schema.json   # for your editor",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(sm)
    runner_arg(sm)
    sm.add_argument("manifest", help="manifest file, or - for stdin")
    sm.add_argument("--team", help="team (default: the manifest's metadata.team)")
    sm.add_argument("--env", required=True, help="environment: local, test, staging, prod")
    sm.add_argument("--user", help="who submits (default: your login name)")
    sm.add_argument("--follow", "-f", action="store_true", help="watch the job until it ends")
    sm.add_argument("--sandbox", action="store_true", help="write only under the job's scratch output, sample sources")
    sm.add_argument("--driver", choices=["pool", "own"], help="a warm driver (pool) or one of its own (own)")
    sm.add_argument("--param", action="append", default=[], metavar="K=V", help="override spec.parameters.K")
    sm.add_argument("--option", action="append", default=[], metavar="K=V", help="a raw Submit option")

    for name, text in (("cancel", "stop a job (idempotent)"), ("results", "show a finished job's result preview")):
        sp = sub.add_parser(name, help=text, description=text)
        common(sp)
        runner_arg(sp)
        sp.add_argument("job_id")
        if name == "results":
            sp.add_argument("--rows", type=int, default=100, help="rows to show (at most 100 are kept)")
            sp.add_argument("--json", action="store_true", help="count, schema and preview as JSON")

    jb = sub.add_parser("jobs", help="list jobs, newest first", description="List jobs, newest first.")
    common(jb)
    runner_arg(jb)
    jb.add_argument("--team")
    jb.add_argument("--user")
    jb.add_argument("--state", choices=["PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"])
    jb.add_argument("--limit", type=int, default=50)

    rn = sub.add_parser(
        "runner",
        help="run only the Spark Runner (gRPC on runner.port, default 50051)",
        description="Run the Spark Runner service on its own. Warm-pool jobs go to runner.gateway_url.",
    )
    common(rn)

    pg = sub.add_parser(
        "playground",
        help="run only the DCP Playground (web UI + REST API, default :8080)",
        description="Serve the Playground against a running Spark Runner (playground.runner_target, or --runner).",
    )
    common(pg)
    runner_arg(pg)
    pg.add_argument("--port", type=int, help="web port (default playground.port, 8080)")

    ms = sub.add_parser("manifest-schema", help="print the SparkJob manifest's JSON Schema (for editors)")
    common(ms)
    ct.add_argument("--dir", metavar="DIR", help="where to write them (default: <state_dir>/certs)")
    ct.add_argument("--san", action="append", default=[], metavar="NAME", help="another server name or IP (repeatable)")
    ct.add_argument("--client", action="append", default=[], metavar="NAME", help="a client certificate (repeatable)")
    return p


def _certs(settings: Settings, directory: str | None, hosts: list[str], clients: list[str]) -> int:
    from sparkgate.security.certs import make_dev_certs

    made = make_dev_certs(directory or settings.state_path("certs"), hosts=hosts, clients=clients)
    _out(f"CA           {made.ca}")
    _out(f"server       {made.server_cert}  (key {made.server_key})")
    for name, (cert, key) in made.clients.items():
        _out(f"client       {cert}  (key {key}, CN={name})")
    _out("")
    _out("Turn TLS on (sparkgate.yaml):")
    _out(
        f"  tls: {{cert_file: {made.server_cert}, key_file: {made.server_key}"
        + (f", client_ca_file: {made.ca}}}" if clients else "}")
    )
    _out("Clients trust the CA with:")
    _out(f"  export GRPC_DEFAULT_SSL_ROOTS_FILE_PATH={made.ca}")
    _out('  SparkSession.builder.remote("sc://localhost:15002/;use_ssl=true;token=...")')
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "config" and args.reference:
            from sparkgate.config_reference import reference

            _out(reference().rstrip("\n"))
            return 0
        settings = _apply_common(args)
        if args.command == "config":
            _out(yaml.safe_dump(settings.model_dump(mode="json", by_alias=True), sort_keys=False).rstrip())
            return 0
        if args.command == "status" and args.job_id:
            return _with_runner(settings, args, lambda c: jobs_cli.status(c, args.job_id, args.json))
        if args.command == "status":
            return _status(settings, args.url, args.json)
        if args.command == "submit":
            return _with_runner(settings, args, lambda c: jobs_cli.submit(c, args))
        if args.command == "cancel":
            return _with_runner(settings, args, lambda c: jobs_cli.cancel(c, args.job_id))
        if args.command == "results":
            return _with_runner(settings, args, lambda c: jobs_cli.show_results(c, args.job_id, args.rows, args.json))
        if args.command == "jobs":
            return _with_runner(settings, args, lambda c: jobs_cli.jobs(c, args))
        if args.command == "runner":
            return _run(_run_runner(settings))
        if args.command == "playground":
            return _run(_run_playground(settings, args.runner))
        if args.command == "manifest-schema":
            import json

            from sparkgate.runner.manifest import json_schema

            _out(json.dumps(json_schema(), indent=2))
            return 0
        if args.command == "certs":
            return _certs(settings, args.dir, args.san, args.client)
        if args.command == "up":
            return _run(_run_up(settings))
        if args.command == "gateway":
            from sparkgate import workers

            n = 1 if os.environ.get(workers.WORKER_ENV) else workers.worker_count(settings, args.workers)
            if n > 1:
                cli_args = list(sys.argv[1:] if argv is None else argv)
                # A worker's stop: its drain, then driver stops if it is the last replica.
                grace = settings.gateway.drain_seconds + 60
                return asyncio.run(workers.supervise(workers.worker_argv(cli_args), n, grace))
            return _run(_run_gateway(settings, args.keep_drivers))
    except SparkgateError as err:
        print(f"sparkgate: {err.message}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"sparkgate: {err}", file=sys.stderr)
        return 1
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
