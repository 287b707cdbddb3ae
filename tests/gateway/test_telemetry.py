"""Per-call metrics: counted on plain numbers, exposed as Prometheus families when scraped."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sparkgate.gateway.affinity import Route
from sparkgate.gateway.telemetry import Telemetry

ROUTE = Route("alice", "sid", "d1", "127.0.0.1:1", "fe", "prod")


def samples(t: Telemetry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(t.registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_calls_are_counted_by_status_and_timed_across_statuses() -> None:
    t = Telemetry()
    for seconds, status in [(0.0004, 0), (0.001, 0), (0.003, 0), (2.0, 3), (4000.0, None)]:
        t.call_done("Config", ROUTE, status, seconds)
    t.call_done("ExecutePlan", None, 16, 0.01)
    got = samples(t)
    call = {"method": "Config", "team": "fe", "environment": "prod"}

    def rpcs(status: str, labels: dict[str, str] = call) -> float:
        return got[("sparkgate_rpcs_total", frozenset({**labels, "status": status}.items()))]

    def hist(suffix: str, **extra: str) -> float:
        return got[(f"sparkgate_rpc_duration_seconds_{suffix}", frozenset({**call, **extra}.items()))]

    assert (rpcs("OK"), rpcs("INVALID_ARGUMENT"), rpcs("CANCELLED")) == (3, 1, 1)
    unrouted = {"method": "ExecutePlan", "team": "-", "environment": "-"}
    assert rpcs("UNAUTHENTICATED", unrouted) == 1
    # One histogram per call kind, whatever the status; buckets are cumulative, bounds inclusive.
    assert hist("count") == 5
    assert abs(hist("sum") - 4002.0044) < 1e-9
    assert hist("bucket", le="0.001") == 2
    assert hist("bucket", le="0.005") == 3
    assert hist("bucket", le="2.5") == 4
    assert hist("bucket", le="1800.0") == 4
    assert hist("bucket", le="+Inf") == 5


def test_an_idle_gateway_exports_the_families_without_samples() -> None:
    text = generate_latest(Telemetry().registry).decode()
    assert "# TYPE sparkgate_rpcs_total counter" in text
    assert "# TYPE sparkgate_rpc_duration_seconds histogram" in text


def test_a_release_that_found_its_session_closed_is_no_audit_error() -> None:
    errors: list[dict[str, object]] = []

    class Audit:
        def emit(self, event: str, **fields: object) -> None:
            errors.append({"event": event, **fields})

    t = Telemetry(audit=Audit())  # type: ignore[arg-type]
    closed = "[INVALID_HANDLE.SESSION_CLOSED] The handle 6f0c… is invalid. Session was closed. SQLSTATE: HY000"
    t.call_done("ReleaseExecute", ROUTE, 13, 0.001, closed)  # raced the session's ReleaseSession
    assert errors == []
    t.call_done("ExecutePlan", ROUTE, 13, 0.001, closed)  # anything else on a closed session is an error
    t.call_done("ReleaseExecute", ROUTE, 13, 0.001, "java.lang.OutOfMemoryError")
    assert [e["method"] for e in errors] == ["ExecutePlan", "ReleaseExecute"]
    assert (
        samples(t)[
            (
                "sparkgate_rpcs_total",
                frozenset(
                    {"method": "ReleaseExecute", "team": "fe", "environment": "prod", "status": "INTERNAL"}.items()
                ),
            )
        ]
        == 2
    )
