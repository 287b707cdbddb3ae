"""What each call did: Prometheus metrics and the audit log — the gateway's :class:`PipelineHook`.

Audit records: ``session.create`` when a call placed a new session, ``permission.denied`` and
``rpc.error`` for calls refused by the gateway or failed on a driver, ``session.release`` and
``session.abandoned`` when sessions end.

The engine reports every finished call once (:meth:`Telemetry.call_done`): method, the session's
team and environment (``-`` before it was routed), the gRPC status and the time from request
headers to the end of the response. A call costs a dictionary lookup and three additions on plain
numbers; the Prometheus families (``sparkgate_rpcs_total``, ``sparkgate_rpc_duration_seconds``)
are built from them when the registry is scraped. Calls are reported on the event loop's thread
and a scrape may read from another: each number is read whole, and a call counted in one family
a moment before the other is the worst a scrape can see.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from sparkgate.connect.status import STATUS_NAMES
from sparkgate.errors import PermissionDenied, Unauthenticated
from sparkgate.gateway.affinity import Route
from sparkgate.gateway.pipeline.call import Call
from sparkgate.gateway.pipeline.hook import PipelineHook
from sparkgate.gateway.pipeline.intents import Decided, Forward, Refuse
from sparkgate.security.audit import AuditLog
from sparkgate.security.identity import Identity

#: Seconds; unary calls take ~1 ms through the gateway, queries seconds to minutes.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


class _Calls:
    """Finished calls of one (method, team, environment, status): count, total seconds, per bucket."""

    __slots__ = ("buckets", "count", "seconds")

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(_BUCKETS) + 1)  # the last one is +Inf


class Telemetry(PipelineHook):
    def __init__(self, registry: CollectorRegistry | None = None, audit: AuditLog | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.audit = audit
        self._calls: dict[tuple[str, str, str, str], _Calls] = {}
        self.registry.register(_CallsCollector(self._calls))

    def decided(self, call: Call, identity: Identity | None, decision: Decided) -> None:
        audit = self.audit
        if audit is None:
            return
        if type(decision) is Forward:
            if decision.new:
                route = decision.route
                audit.emit(
                    "session.create",
                    who=route.owner,
                    auth=identity.method if identity is not None else "none",
                    team=route.team,
                    environment=route.environment,
                    session=route.session_id,
                    driver=route.driver_id,
                    method=call.method,
                )
            return
        if type(decision) is Refuse:
            exc = decision.error
            if isinstance(exc, Unauthenticated):
                return  # audited as auth.failure by the guard
            audit.emit(
                "permission.denied" if isinstance(exc, PermissionDenied) else "rpc.error",
                who=identity.subject if identity is not None else call.ids.user_id,
                session=call.ids.session_id,
                method=call.method,
                status=exc.grpc_status.name,
                reason=exc.message,
            )

    def session_released(self, route: Route) -> None:
        if self.audit is not None:
            self.audit.emit("session.release", **route.audit_fields())

    def session_abandoned(self, route: Route) -> None:
        if self.audit is not None:
            self.audit.emit("session.abandoned", **route.audit_fields())

    def call_done(self, method: str, route: Route | None, status: int | None, seconds: float, reason: str = "") -> None:
        """Record a finished call; ``status`` None means the stream was reset (client cancel)."""
        code = "CANCELLED" if status is None else STATUS_NAMES.get(status, str(status))
        if route is not None:
            key = (method, route.team, route.environment, code)
        else:
            key = (method, "-", "-", code)
        calls = self._calls.get(key)
        if calls is None:
            calls = self._calls[key] = _Calls()
        calls.count += 1
        calls.seconds += seconds
        calls.buckets[bisect_left(_BUCKETS, seconds)] += 1  # le: the first bound >= seconds
        if (
            route is not None
            and status not in (0, None, 1)
            and self.audit is not None
            and not _already_released(method, reason)
        ):
            self.audit.emit(
                "rpc.error",
                **route.audit_fields(),
                method=method,
                status=code,
                reason=reason[:500],
            )


class _CallsCollector(Collector):
    """The two call families, built at scrape time from :class:`Telemetry`'s numbers."""

    def __init__(self, calls: dict[tuple[str, str, str, str], _Calls]) -> None:
        self._calls = calls

    def describe(self) -> Iterator[Metric]:
        return iter(self._families([]))

    def collect(self) -> Iterator[Metric]:
        return iter(self._families(list(self._calls.items())))

    @staticmethod
    def _families(items: list[tuple[tuple[str, str, str, str], _Calls]]) -> list[Metric]:
        rpcs = CounterMetricFamily(
            "sparkgate_rpcs",
            "Spark Connect calls finished, by method, team, environment and gRPC status",
            labels=("method", "team", "environment", "status"),
        )
        durations = HistogramMetricFamily(
            "sparkgate_rpc_duration_seconds",
            "Time from a call's request headers to the end of its response",
            labels=("method", "team", "environment"),
        )
        by_call: dict[tuple[str, str, str], tuple[list[int], float]] = {}
        for key, calls in items:
            rpcs.add_metric(key, calls.count)
            merged, seconds = by_call.get(key[:3], ([0] * len(calls.buckets), 0.0))
            by_call[key[:3]] = ([a + b for a, b in zip(merged, calls.buckets, strict=True)], seconds + calls.seconds)
        for labels, (buckets, seconds) in by_call.items():
            cumulative, total = [], 0
            for bound, n in zip((*(str(float(b)) for b in _BUCKETS), "+Inf"), buckets, strict=True):
                total += n
                cumulative.append((bound, total))
            durations.add_metric(labels, cumulative, seconds)
        return [rpcs, durations]


#: What a driver answers a release of something it already let go of: a ReleaseExecute that raced
#: its session's ReleaseSession (pyspark sends both as it stops), or a release sent twice.
_GONE = ("INVALID_HANDLE.SESSION_CLOSED", "INVALID_HANDLE.SESSION_NOT_FOUND", "INVALID_HANDLE.OPERATION_NOT_FOUND")


def _already_released(method: str, reason: str) -> bool:
    """A release that found nothing to release did what it asked: counted, but no audit error."""
    return method in ("ReleaseExecute", "ReleaseSession") and any(code in reason for code in _GONE)
