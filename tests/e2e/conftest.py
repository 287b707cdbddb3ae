"""End-to-end fixtures: a real gateway in front of real Spark Connect drivers, used by real pyspark clients.

pyspark's client is synchronous, so the gateway runs in-process on a background thread with its own
asyncio event loop (:class:`GatewayHarness`); tests talk to it over loopback like any client would.
Drivers cost ~10 s and ~1.5 GB each to
start, so one set of drivers (at most :data:`MAX_DRIVERS` JVMs) serves every e2e test, and the tests
spread over only three namespaces:

* :data:`NS_API` — a service's direct connection (``feature-engineering`` / ``prod``),
* :data:`NS_NOTEBOOK` — a notebook's ``get_spark`` helper (``data-science`` / ``staging``),
* :data:`NS_T1` — ``t1`` / ``local``, used by everything else,

and one more namespace, :data:`NS_LAKE` (``t1`` / ``lake``): an environment whose catalog is named
``lakehouse``, so it has a pool profile and a driver of its own (started on demand).

Every RPC the gateway routes is recorded (:attr:`GatewayHarness.calls`), so tests can check which
driver each call of a session went to without the gateway exposing anything for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

pytest.importorskip("pyspark", reason="e2e tests need pyspark: pip install -e '.[spark]'")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("e2e tests need a Java runtime for the Spark Connect drivers", allow_module_level=True)

import pyspark.sql
from pyspark.sql.connect.session import SparkSession

from sparkgate.clusters.base import namespace_for
from sparkgate.clusters.local import CONNECT_SERVER_CLASS, LocalProvider
from sparkgate.clusters.manager import ClusterManager
from sparkgate.config import DEFAULT_PROFILE, Settings, load_settings
from sparkgate.gateway.affinity import Route
from sparkgate.gateway.pipeline.intents import Forward, Refuse
from sparkgate.gateway.server import Gateway

T = TypeVar("T")

NS_API = ("feature-engineering", "prod")
NS_NOTEBOOK = ("data-science", "staging")
NS_T1 = ("t1", "local")
NS_LAKE = ("t1", "lake")

#: NS_LAKE first: its driver starts while the warm pool's first one does.
NAMESPACES = (NS_LAKE, NS_T1, NS_API, NS_NOTEBOOK)

#: One driver per namespace above; the warm pool (one driver) is used up claiming them.
MAX_DRIVERS = len(NAMESPACES)
POOL_SIZE = 1


@dataclass(frozen=True)
class Call:
    """One RPC as the gateway's session router decided it."""

    method: str
    session_id: str
    #: Driver the call was forwarded to; ``"answer"`` if the gateway answered; ``"error"`` if refused.
    outcome: str
    at: float


class GatewayHarness:
    """Local provider, cluster manager and (one at a time) a gateway, on a private event loop thread."""

    def __init__(self, state_dir: Path) -> None:
        self.calls: list[Call] = []
        self.driver_ids: set[str] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="e2e-gateway-loop", daemon=True)
        self._thread.start()
        config = state_dir / "sparkgate.yaml"
        config.write_text("{}\n")  # hermetic: never pick up ./sparkgate.yaml or $SPARKGATE_CONFIG
        self.settings: Settings = load_settings(
            config,
            {},
            state_dir=str(state_dir),
            gateway={"host": "127.0.0.1", "port": 0, "affinity": {"backend": "sqlite"}},
            local={
                # Small test data: a handful of shuffle partitions instead of 200 keeps joins fast
                # on two cores; no UI saves memory and start-up time.
                "spark_conf": {"spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false"},
            },
            pool={"size": POOL_SIZE, "profiles": {"lake": {}}},
            environments={
                **{name: {} for name in ("local", "test", "staging", "prod")},
                NS_LAKE[1]: {"profile": "lake", "catalog": {"name": "lakehouse"}},
            },
        )
        self.provider = LocalProvider(self.settings.local, self.settings.state_dir)
        self.clusters: ClusterManager | None = None
        self.gateway: Gateway | None = None
        self.port = 0

    # -- running things on the gateway's loop ---------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 300) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _call(self, fn: Callable[[], T]) -> T:
        async def wrapper() -> T:
            return fn()

        return self.run(wrapper(), timeout=30)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the provider and a cluster manager, and give each namespace its driver."""

        async def first_start() -> None:
            await self.provider.__aenter__()
            clusters = await self._start_clusters()
            # Claim the warm pool for each namespace in turn, up front. Left to the tests,
            # placement would depend on test order and timing: the manager hands the warm driver
            # to *any* new session, even of a namespace that already has a driver, and a pool
            # refill in flight is not counted against max_drivers (see the report).
            for team, environment in NAMESPACES:
                if clusters.profile_for(team, environment) == DEFAULT_PROFILE:
                    await clusters.wait_pool_ready(timeout=240)
                await clusters.acquire(team, environment)
            namespaces = sorted(d.namespace for d in clusters.drivers())
            assert namespaces == sorted(namespace_for(*ns) for ns in NAMESPACES)

        self.run(first_start(), timeout=600)

    async def _start_clusters(self) -> ClusterManager:
        s = self.settings
        self.clusters = ClusterManager(
            self.provider,
            profiles=s.pool.all_profiles(),
            profile_for=s.profile_for,
            catalogs=s.profile_catalogs(),
            max_drivers=MAX_DRIVERS,
        )
        await self.clusters.start()
        self._note_drivers()
        return self.clusters

    def start_gateway(self) -> None:
        """Start a gateway on a new port."""
        gateway = self.settings.gateway.model_copy(update={"port": 0})
        self.run(self._start_gateway(self.settings.model_copy(update={"gateway": gateway})))

    async def _start_gateway(self, settings: Settings) -> None:
        assert self.clusters is not None
        gw = Gateway(settings, self.clusters)
        self._record(gw)
        await gw.start()
        self.gateway = gw
        self.port = gw.port

    def stop_gateway(self) -> None:
        async def stop() -> None:
            if self.gateway is not None:
                await self.gateway.stop(0)
                self.gateway = None

        self.run(stop())

    def _record(self, gw: Gateway) -> None:
        """Watch the pipeline's decisions (through its hook) so every call lands in :attr:`calls`."""
        hook = gw.telemetry
        decided = hook.decided

        def recording(call: Any, identity: Any, decision: Any) -> None:
            if isinstance(decision, Forward):
                outcome = decision.driver.id
            else:
                outcome = "error" if isinstance(decision, Refuse) else "answer"
            self.calls.append(Call(call.method, call.ids.session_id, outcome, time.time()))
            decided(call, identity, decision)

        hook.decided = recording  # type: ignore[method-assign]

    def _note_drivers(self) -> None:
        if self.clusters is not None:
            self.driver_ids.update(d.id for d in self.clusters.drivers())

    def restart_gateway(self) -> None:
        """Stop the gateway and its cluster manager (drivers keep running), start new ones with the
        same settings, port and route database: what a redeploy looks like to clients."""

        async def restart() -> None:
            assert self.gateway is not None and self.clusters is not None
            settings = self.gateway.settings.model_copy(
                update={"gateway": self.gateway.settings.gateway.model_copy(update={"port": self.port})}
            )
            self._note_drivers()
            await self.gateway.stop(0)
            await self.clusters.close(stop_drivers=False)
            await self._start_clusters()
            await self._start_gateway(settings)

        port = self.port
        self.run(restart(), timeout=120)
        assert self.port == port

    def close(self) -> None:
        async def close() -> None:
            self._note_drivers()
            if self.gateway is not None:
                await self.gateway.stop(0)
            if self.clusters is not None:
                await self.clusters.close(stop_drivers=True)
            await self.provider.__aexit__(None, None, None)

        try:
            self.run(close(), timeout=120)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    # -- what tests use -------------------------------------------------------------------------

    def url(self, team: str | None = None, environment: str | None = None, **params: str) -> str:
        """``sc://127.0.0.1:PORT/;x-doordash-team=...;...`` (routing headers as URL parameters)."""
        headers = self.settings.gateway.headers
        pairs: dict[str, str] = {}
        if team is not None:
            pairs[headers.team] = team
        if environment is not None:
            pairs[headers.environment] = environment
        pairs.update(params)
        base = f"sc://127.0.0.1:{self.port}"
        if not pairs:
            return base
        return base + "/;" + ";".join(f"{k}={urllib.parse.quote(v, safe='')}" for k, v in pairs.items())

    @property
    def target(self) -> str:
        """``host:port`` for raw gRPC channels."""
        return f"127.0.0.1:{self.port}"

    def client_env(self) -> dict[str, str]:
        """This process's environment for a client subprocess: pointed at this gateway, without the
        developer's own ``SPARK_CONNECT_*`` / ``SPARKGATE_*`` settings or token file."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_CONNECT_", "SPARKGATE_"))}
        env.update(SPARK_CONNECT_GATEWAY=self.target, SPARKGATE_TOKEN_FILE="/nonexistent")
        return env

    def routes(self) -> list[Route]:
        def snapshot() -> list[Route]:
            assert self.gateway is not None
            return self.gateway.store.all()

        return self._call(snapshot)

    def route(self, session_id: str) -> Route | None:
        found = [r for r in self.routes() if r.session_id == session_id]
        return found[0] if found else None

    def namespace_of(self, driver_id: str) -> str | None:
        def lookup() -> str | None:
            assert self.clusters is not None
            d = self.clusters.get(driver_id)
            return None if d is None else d.namespace

        return self._call(lookup)

    def calls_for(self, session_id: str, method: str | None = None) -> list[Call]:
        return [c for c in list(self.calls) if c.session_id == session_id and (method is None or c.method == method)]

    def settle(self, session_id: str, quiet: float = 0.3, timeout: float = 10) -> None:
        """Wait until no RPC of the session has arrived for ``quiet`` seconds (pyspark sends
        ReleaseExecute from a background pool, after the call that caused it returned)."""

        def quiet_now() -> bool:
            calls = self.calls_for(session_id)
            return not calls or time.time() - calls[-1].at >= quiet

        self.wait_for(quiet_now, timeout, what=f"session {session_id} to go quiet")

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.05)


def _pids_of(driver_id: str) -> list[int]:
    out = subprocess.run(
        ["pgrep", "-f", f"{CONNECT_SERVER_CLASS}.*{driver_id}|{driver_id}.*{CONNECT_SERVER_CLASS}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return [int(p) for p in out.stdout.split()]


@pytest.fixture(scope="package")
def spark_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHarness]:
    """The drivers (one per namespace) and the event loop the gateways run on, shared by every e2e
    test. Package scope: the JVMs go away as soon as the last e2e test is done."""
    harness = GatewayHarness(tmp_path_factory.mktemp("sparkgate-e2e"))
    try:
        harness.start()
        yield harness
    finally:
        try:
            harness.close()
        finally:
            # Nothing we started may outlive the tests: the provider's records and the process
            # table must both be empty of our drivers. Kill leftovers by pid, then fail loudly.
            leftovers = {d: _pids_of(d) for d in sorted(harness.driver_ids)}
            leftovers = {d: pids for d, pids in leftovers.items() if pids}
            for pids in leftovers.values():
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            assert not leftovers, f"driver JVMs left running after the tests: {leftovers}"
            assert not asyncio.run(harness.provider.list_drivers()), "driver records left behind"


@pytest.fixture(scope="package")
def gateway(spark_stack: GatewayHarness) -> Iterator[GatewayHarness]:
    """A gateway in front of the session's drivers, shared by the e2e tests."""
    spark_stack.start_gateway()
    try:
        yield spark_stack
    finally:
        close_leaked_clients()
        spark_stack.stop_gateway()


@pytest.fixture(autouse=True)
def _isolate_test() -> Iterator[None]:
    """Keep pyspark finalizers off the gateway's loop thread, and sessions out of the next test.

    ``SparkSession.__del__`` closes its client, and closing *any* client joins pyspark's
    process-wide ReleaseExecute thread pool (``ExecutePlanResponseReattachableIterator.shutdown``),
    whose threads may be waiting on the gateway. If the cyclic garbage collector happens to run on
    the gateway's loop thread, that loop blocks on calls only it can answer: a deadlock. So during
    an e2e test the collector is off, and garbage is collected here, on the test's thread.

    A default session a failed test left behind would be returned by the next ``getOrCreate()``.
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        stop_all([])
        gc.enable()
        gc.collect()


@pytest.fixture
def connect(gateway: GatewayHarness) -> Iterator[Callable[..., SparkSession]]:
    """``connect(url, conf)`` → a fresh SparkSession (``builder.remote(url).config(k, v)….create()``).

    Every session made here (and any default session a test left behind) is stopped at teardown:
    an unstopped pyspark client runs an ``atexit`` ExecutePlan against a gateway that is gone by
    then, and retries it for minutes.
    """
    made: list[SparkSession] = []

    def make(url: str, conf: dict[str, str] | None = None) -> SparkSession:
        # The user-facing builder (pyspark.sql, not pyspark.sql.connect): it also switches
        # pyspark.sql.functions to Spark Connect mode, as it would in an application.
        builder = pyspark.sql.SparkSession.builder.remote(url)
        for k, v in (conf or {}).items():
            builder = builder.config(k, v)
        spark: SparkSession = builder.create()
        made.append(spark)
        return spark

    yield make
    stop_all(made)


def close_leaked_clients() -> None:
    """Close any pyspark client a test forgot: each registers an ``atexit`` ExecutePlan that, with
    the gateway gone, retries UNAVAILABLE with backoff for ~10 minutes before giving up."""
    from pyspark.sql.connect.client.core import SparkConnectClient

    for obj in gc.get_objects():
        if isinstance(obj, SparkConnectClient) and not obj.is_closed:
            obj.close()


def stop_all(sessions: list[SparkSession]) -> None:
    """Stop ``sessions`` and pyspark's cached default/active session, so ``getOrCreate()`` in a
    later test builds a new session instead of reusing one routed elsewhere."""
    leftovers = [SparkSession.getActiveSession(), SparkSession._get_default_session()]
    for s in [*sessions, *(s for s in leftovers if s is not None)]:
        with contextlib.suppress(Exception):
            s.stop()
