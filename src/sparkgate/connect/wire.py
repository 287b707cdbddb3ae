"""Just enough of the protobuf wire format to route Spark Connect requests without decoding them.

The gateway relays every request and response as opaque bytes. To route, it needs a handful of
*top-level* fields that every ``SparkConnectService`` request shares (``spark/connect/base.proto``):

* ``session_id`` is field 1 (string) of every request message,
* ``user_context`` is field 2, and its ``user_id`` is field 1 of that message,
* operation ids live in a per-RPC field (``ExecutePlanRequest.operation_id`` = 6, ...),
* ``ConfigRequest.operation.set.pairs`` (3.1.1) carries the builder's ``.config(k, v)`` options.

Decoding the whole message would be slower and wrong: protobuf's default recursion limit (100) is
below Spark's ``spark.connect.grpc.marshallerRecursionLimit`` (1024), so deep plans would fail in a
decoding proxy. A scan here touches only the top level and skips everything else by length.

The module also *encodes* the few small responses the gateway answers by itself (a ``ConfigResponse``
for a routing-only ``Config(Set)``, a ``ReleaseSessionResponse`` for an unknown session).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from sparkgate.errors import BadRequest

# Wire types (https://protobuf.dev/programming-guides/encoding/#structure).
VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5


def _varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    if pos < len(buf) and buf[pos] < 0x80:  # one byte: tags and short lengths, nearly all of them
        return buf[pos], pos + 1
    result = shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise BadRequest("request is not a valid protobuf message (truncated varint)")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 64:
            raise BadRequest("request is not a valid protobuf message (varint too long)")


def iter_fields(buf: bytes | memoryview) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(field_number, wire_type, start, end)`` for each top-level field.

    For LEN fields ``start:end`` is the payload; for scalars it spans the encoded value.
    Raises :class:`BadRequest` on anything that is not well-formed protobuf.
    """
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wtype = key >> 3, key & 7
        if field == 0:
            raise BadRequest("request is not a valid protobuf message (field number 0)")
        if wtype != LEN:
            start, pos = pos, _skip_scalar(buf, pos, wtype)
            yield field, wtype, start, pos
            continue
        length, start = _varint(buf, pos)
        pos = start + length
        if pos > end:
            raise BadRequest("request is not a valid protobuf message (field runs past the end)")
        yield field, wtype, start, pos


def _string(buf: bytes | memoryview, start: int, end: int, what: str) -> str:
    try:
        return bytes(buf[start:end]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"{what} is not valid UTF-8") from exc


class RequestIds(NamedTuple):
    """The ids the gateway routes by, read from the top level of any Spark Connect request."""

    session_id: str = ""
    user_id: str = ""
    operation_id: str = ""
    #: ``CloneSessionRequest.new_session_id`` (the clone's id, chosen by the client).
    new_session_id: str = ""


# Field number of the per-RPC id the gateway cares about beyond session and user.
_OPERATION_ID_FIELD = {"ExecutePlan": 6, "ReattachExecute": 3, "ReleaseExecute": 3}
_NEW_SESSION_ID_FIELD = {"CloneSession": 4}


def scan_request(method: str, buf: bytes | memoryview) -> RequestIds:
    """Read session id, user id and (per method) operation id from a serialized request.

    Validates the top level (and ``user_context``) as :func:`iter_fields` does; this is the same
    walk written out (sharing :func:`_skip_scalar`), because it runs for every call the gateway
    relays.
    """
    session_id = user_id = operation_id = new_session_id = ""
    op_field = _OPERATION_ID_FIELD.get(method, -1)
    new_field = _NEW_SESSION_ID_FIELD.get(method, -1)
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        if key < 8:
            raise BadRequest("request is not a valid protobuf message (field number 0)")
        if key & 7 != LEN:
            pos = _skip_scalar(buf, pos, key & 7)
            continue
        length, start = _varint(buf, pos)
        pos = start + length
        if pos > end:
            raise BadRequest("request is not a valid protobuf message (field runs past the end)")
        field = key >> 3
        if field == 1:
            session_id = _string(buf, start, pos, "session_id")
        elif field == 2:
            user_id = _user_id(memoryview(buf)[start:pos])
        elif field == op_field:
            operation_id = _string(buf, start, pos, "operation_id")
        elif field == new_field:
            new_session_id = _string(buf, start, pos, "new_session_id")
    return RequestIds(session_id, user_id, operation_id, new_session_id)


def _skip_scalar(buf: bytes | memoryview, pos: int, wtype: int) -> int:
    if wtype == VARINT:
        pos = _varint(buf, pos)[1]
    elif wtype == I64:
        pos += 8
    elif wtype == I32:
        pos += 4
    else:  # groups are not used by any Spark Connect message
        raise BadRequest(f"request is not a valid protobuf message (wire type {wtype})")
    if pos > len(buf):
        raise BadRequest("request is not a valid protobuf message (field runs past the end)")
    return pos


def _user_id(ctx: memoryview) -> str:
    user_id = ""
    for field, wtype, start, end in iter_fields(ctx):
        if field == 1 and wtype == LEN:
            user_id = _string(ctx, start, end, "user_context.user_id")
    return user_id


def with_user_id(buf: bytes | memoryview, user_id: str) -> bytes:
    """The same request with ``user_context.user_id`` (field 2.1) set to ``user_id``.

    With auth on, the driver must see the authenticated identity, not the user id the client
    chose: Spark keys sessions on (user_id, session_id). Every other field — and the rest of the
    ``UserContext`` (``user_name``, ``extensions``) — is copied as is; nothing else is decoded.
    """
    mv = memoryview(buf)
    out = bytearray()
    begin = 0
    found = False
    for field, wtype, start, end in iter_fields(mv):
        if field == 2 and wtype == LEN:
            ctx = mv[start:end]
            inner = bytearray(encode_string(1, user_id))
            inner_begin = 0
            for f2, _w2, _s2, e2 in iter_fields(ctx):
                if f2 != 1:
                    inner += ctx[inner_begin:e2]
                inner_begin = e2
            out += encode_string(2, bytes(inner))
            found = True
        else:
            out += mv[begin:end]
        begin = end
    if not found:
        out += encode_string(2, encode_string(1, user_id))
    return bytes(out)


def config_set_pairs(buf: bytes | memoryview) -> list[tuple[str, str | None]] | None:
    """The ``(key, value)`` pairs of a ``ConfigRequest`` whose operation is ``Set``, else ``None``.

    ``ConfigRequest.operation`` = 3 → ``Operation.set`` = 1 → ``Set.pairs`` = 1 → ``KeyValue{key=1, value=2}``.
    """
    view = memoryview(buf)
    for field, wtype, start, end in iter_fields(view):
        if field != 3 or wtype != LEN:
            continue
        op = view[start:end]
        for f2, w2, s2, e2 in iter_fields(op):
            if f2 != 1 or w2 != LEN:
                return None  # another operation (get, unset, ...)
            pairs: list[tuple[str, str | None]] = []
            for f3, w3, s3, e3 in iter_fields(op[s2:e2]):
                if f3 != 1 or w3 != LEN:
                    continue
                kv = op[s2:e2][s3:e3]
                key, value = "", None
                for f4, w4, s4, e4 in iter_fields(kv):
                    if f4 == 1 and w4 == LEN:
                        key = _string(kv, s4, e4, "config key")
                    elif f4 == 2 and w4 == LEN:
                        value = _string(kv, s4, e4, "config value")
                pairs.append((key, value))
            return pairs
    return None


def scan_response_ssid(method: str, buf: bytes | memoryview) -> str:
    """The ``server_side_session_id`` a driver put in a response ("" if absent)."""
    want = _RESPONSE_SSID_FIELD.get(method)
    if want is None:
        return ""
    for field, wtype, start, end in iter_fields(buf):
        if field == want and wtype == LEN:
            return _string(buf, start, end, "server_side_session_id")
    return ""


def read_string_field(buf: bytes | memoryview, field_number: int) -> str:
    """A top-level string field of any message, request or response ("" if absent)."""
    for field, wtype, start, end in iter_fields(buf):
        if field == field_number and wtype == LEN:
            return _string(buf, start, end, f"field {field_number}")
    return ""


_RESPONSE_SSID_FIELD = {
    "ExecutePlan": 15,
    "ReattachExecute": 15,
    "AnalyzePlan": 15,
    "Config": 4,
    "AddArtifacts": 3,
    "ArtifactStatus": 3,
    "Interrupt": 3,
    "ReleaseExecute": 3,
    "ReleaseSession": 2,
    "FetchErrorDetails": 3,
    "CloneSession": 2,
}

# ---------------------------------------------------------------------------------------------
# Encoding (small messages only)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_string(field: int, value: str | bytes) -> bytes:
    data = value.encode("utf-8") if isinstance(value, str) else value
    return _encode_varint(field << 3 | LEN) + _encode_varint(len(data)) + data


def encode_varint_field(field: int, value: int) -> bytes:
    return _encode_varint(field << 3 | VARINT) + _encode_varint(value)


#: Field number of ``session_id`` in each response message (base.proto; note the odd ones).
RESPONSE_SESSION_ID_FIELD = {
    "ExecutePlan": 1,
    "ReattachExecute": 1,
    "AnalyzePlan": 1,
    "Config": 1,
    "AddArtifacts": 2,
    "ArtifactStatus": 2,
    "Interrupt": 1,
    "ReleaseExecute": 1,
    "ReleaseSession": 1,
    "FetchErrorDetails": 4,
    "CloneSession": 1,
}


def empty_response(method: str, session_id: str, server_side_session_id: str = "") -> bytes:
    """A response with only the session ids set — what a driver answers for a no-op.

    Clients accept an empty ``server_side_session_id`` (Python checks only non-empty values,
    JVM ``ResponseValidator`` ignores empty ones), so the gateway can answer without a driver.
    """
    out = encode_string(RESPONSE_SESSION_ID_FIELD[method], session_id)
    if server_side_session_id:
        out += encode_string(_RESPONSE_SSID_FIELD[method], server_side_session_id)
    return out


def encode_config_set_request(
    session_id: str, user_id: str, pairs: list[tuple[str, str | None]], client_type: str = "sparkgate"
) -> bytes:
    """A silent ``ConfigRequest(Set)``, used to replay options buffered before a session was routable."""
    body = b""
    for key, value in pairs:
        kv = encode_string(1, key) + (encode_string(2, value) if value is not None else b"")
        body += encode_string(1, kv)
    body += encode_varint_field(2, 1)  # silent = true
    operation = encode_string(1, body)
    out = encode_string(1, session_id)
    if user_id:
        out += encode_string(2, encode_string(1, user_id))
    out += encode_string(3, operation) + encode_string(4, client_type)
    return out
