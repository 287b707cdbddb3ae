"""The one place audit and telemetry watch calls and sessions from.

Stages never write audit records or metrics themselves: the pipeline reports each call's decision,
the session table reports sessions ending, the engine reports calls ending — all to one
:class:`PipelineHook`, whose methods do nothing by default. The gateway's hook
(:class:`sparkgate.gateway.telemetry.Telemetry`) counts calls and writes the audit log.
"""

from __future__ import annotations

from sparkgate.gateway.affinity import Route
from sparkgate.gateway.pipeline.call import Call
from sparkgate.gateway.pipeline.intents import Decided
from sparkgate.security.identity import Identity


class PipelineHook:
    """Observes the pipeline; every method is a no-op unless overridden."""

    def decided(self, call: Call, identity: Identity | None, decision: Decided) -> None:
        """What the pipeline decided for ``call``, once per call (``identity``: None if the caller
        was not identified). A :class:`~.intents.Forward` with ``new`` set placed a new session."""

    def session_released(self, route: Route) -> None:
        """The client released its session (its ReleaseSession reached the driver)."""

    def session_abandoned(self, route: Route) -> None:
        """The session was released because its client left and did not come back."""

    def call_done(self, method: str, route: Route | None, status: int | None, seconds: float, reason: str) -> None:
        """A call ended (``status`` None: it was reset); ``route`` None if it never reached a driver."""
