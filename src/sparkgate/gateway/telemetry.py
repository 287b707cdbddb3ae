"""What each call did: Prometheus metrics and, for failed calls that reached a driver, the audit log.

Both engines report every finished call once (:meth:`Telemetry.call_done`): method, the session's
team and environment (``-`` before it was routed), the gRPC status and the time from request
headers to the end of the response. Counters are looked up per label set once and then kept, so a
call costs a dictionary lookup and two additions, not prometheus_client's label parsing.
"""

from __future__ import annotations

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from sparkgate.gateway.affinity import Route
from sparkgate.security.audit import AuditLog

#: gRPC status code number → name (``grpc.StatusCode`` values are ``(number, name)``).
STATUS_NAMES = {c.value[0]: c.name for c in grpc.StatusCode}
#: Seconds; unary calls take ~1 ms through the gateway, queries seconds to minutes.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


class Telemetry:
    def __init__(self, registry: CollectorRegistry | None = None, audit: AuditLog | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.audit = audit
        labels = ("method", "team", "environment", "status")
        self._calls = Counter(
            "sparkgate_rpcs",
            "Spark Connect calls finished, by method, team, environment and gRPC status",
            labels,
            registry=self.registry,
        )
        self._latency = Histogram(
            "sparkgate_rpc_duration_seconds",
            "Time from a call's request headers to the end of its response",
            ("method", "team", "environment"),
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, str, str], tuple[object, object]] = {}

    def call_done(self, method: str, route: Route | None, status: int | None, seconds: float, reason: str = "") -> None:
        """Record a finished call; ``status`` None means the stream was reset (client cancel)."""
        code = "CANCELLED" if status is None else STATUS_NAMES.get(status, str(status))
        team, env = (route.team, route.environment) if route is not None else ("-", "-")
        key = (method, team, env, code)
        pair = self._children.get(key)
        if pair is None:
            pair = (self._calls.labels(*key), self._latency.labels(method, team, env))
            self._children[key] = pair
        counter, hist = pair
        counter.inc()  # type: ignore[attr-defined]
        hist.observe(seconds)  # type: ignore[attr-defined]
        if route is not None and status not in (0, None, 1) and self.audit is not None:
            self.audit.emit(
                "rpc.error",
                who=route.owner or route.user_id,
                team=route.team,
                environment=route.environment,
                session=route.session_id,
                driver=route.driver_id,
                method=method,
                status=code,
                reason=reason[:500],
            )
