"""Stage 3, for a session without a driver: its team and environment, from wherever the client put
them — headers (``sc://`` parameters become headers), a ``Config(Set)`` of
``spark.connect.grpc.header.*`` options, or options held from the session's earlier calls.

The JVM client sends one ``Config(Set)`` per builder option: ``x-doordash-team`` and
``x-doordash-environment`` arrive in two calls, and nothing needs a driver until both are known, so
the first is answered by the gateway and its options held (replayed to the driver when the session
is placed). The Python client sends all options in one Set, which is routable at once.
"""

from __future__ import annotations

from collections.abc import Mapping

from sparkgate.config import GatewaySettings
from sparkgate.connect import wire
from sparkgate.gateway.pipeline.call import Call, Caller
from sparkgate.gateway.pipeline.intents import Answer
from sparkgate.gateway.pipeline.lookup import NOOP_WITHOUT_SESSION
from sparkgate.gateway.routing import RoutingInfo, from_config_pairs, from_metadata, missing_routing_error, validate
from sparkgate.gateway.sessions import SessionBook


def tolerates_local_answer(request: bytes | None) -> bool:
    """Whether the client survives a first response with no ``server_side_session_id``.

    The gateway answers a routing-only ``Config(Set)`` itself, without a driver, so its response
    has an empty server-side session id. The JVM client ignores empty ids (``ResponseValidator``).
    The Python client stores the first one it sees — even empty — and closes the session when the
    driver's real id arrives later (``_verify_response_integrity``), so for Python an incomplete
    Set is refused at once with the missing-routing error. (Python sends all builder options in
    one Set anyway: if that Set lacks the environment, the session can never be routed.)
    """
    client_type = wire.read_string_field(request, 4) if request else ""
    return " python/" not in client_type


class ReadRouting:
    def __init__(self, settings: GatewaySettings, environments: Mapping[str, object], book: SessionBook) -> None:
        self._headers = settings.headers
        self._environments = environments
        self._book = book

    def read(self, call: Call, caller: Caller) -> RoutingInfo | Answer:
        """The session's validated routing info, or the gateway's answer while it is incomplete."""
        headers = self._headers
        key = caller.key(call)
        partial = from_metadata(call.metadata, headers)
        request = call.request
        set_pairs = wire.config_set_pairs(request) if call.method == "Config" and request else None
        if set_pairs is not None:
            partial.fill(from_config_pairs(set_pairs, headers))
        held = self._book.held(key)
        if held is not None:
            partial.fill(held.routing)
        if partial.complete:
            return validate(partial, headers, self._environments)
        if call.method in NOOP_WITHOUT_SESSION:
            # Interrupt / FetchErrorDetails of a session that never reached a driver: nothing to do.
            return Answer(call.method, call.ids.session_id)
        if set_pairs is not None and tolerates_local_answer(request):
            self._book.hold(key, partial, set_pairs)
            return Answer(call.method, call.ids.session_id)
        raise missing_routing_error(partial, headers)
