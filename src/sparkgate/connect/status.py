"""gRPC statuses in the shape Spark Connect clients understand.

Spark's server reports SQL errors as status INTERNAL with ``[ERROR_CLASS] message SQLSTATE: xxxxx``
as details and a ``grpc-status-details-bin`` trailer holding ``google.rpc.Status`` with an
``ErrorInfo`` (``reason`` = exception class, ``domain`` = ``org.apache.spark``, ``metadata`` with
``errorClass``, ``messageParameters``, ``sqlState``, ``classes``). Clients key behaviour on it:

* Python ``_handle_rpc_error`` closes the client on ``errorClass == INVALID_HANDLE.SESSION_CHANGED``;
  the JVM ``ResponseValidator`` does the same when the message contains ``[INVALID_HANDLE.SESSION_CHANGED]``.
* Without an ``errorId`` the client does not call FetchErrorDetails (which would fail on a closed
  session and hide the real message behind ``[NO_ACTIVE_SESSION]``), so ours never carry one.
* ``google.rpc.RetryInfo`` makes both clients retry with backoff.
"""

from __future__ import annotations

import json

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from sparkgate.errors import SessionLost, SparkgateError

#: gRPC status code number → name (``grpc.StatusCode`` values are ``(number, name)``).
STATUS_NAMES = {c.value[0]: c.name for c in grpc.StatusCode}

STATUS_DETAILS_KEY = "grpc-status-details-bin"

_SQL_EXCEPTION = "org.apache.spark.SparkSQLException"


def session_changed(session_id: str, why: str = "its driver is gone") -> SessionLost:
    return SessionLost(
        "INVALID_HANDLE.SESSION_CHANGED",
        session_id,
        f"[INVALID_HANDLE.SESSION_CHANGED] The handle {session_id} is invalid. The existing Spark "
        f"server driver instance has restarted. Please reconnect. ({why}; sparkgate will route a "
        "new session to a healthy driver) SQLSTATE: HY000",
    )


def session_not_found(session_id: str, why: str) -> SessionLost:
    return SessionLost(
        "INVALID_HANDLE.SESSION_NOT_FOUND",
        session_id,
        f"[INVALID_HANDLE.SESSION_NOT_FOUND] The handle {session_id} is invalid. Session not found. "
        f"({why}) SQLSTATE: HY000",
    )


def _status_details(code: grpc.StatusCode, message: str, *details: object) -> bytes:
    st = status_pb2.Status(code=code.value[0], message=message)
    for d in details:
        a = any_pb2.Any()
        a.Pack(d)  # type: ignore[arg-type]
        st.details.append(a)
    return bytes(st.SerializeToString())


def grpc_error(err: SparkgateError) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str | bytes], ...]]:
    """``(code, details, trailing_metadata)`` for an error, ready for ``context.abort``."""
    if isinstance(err, SessionLost):
        info = error_details_pb2.ErrorInfo(
            reason=_SQL_EXCEPTION,
            domain="org.apache.spark",
            metadata={
                "errorClass": err.error_class,
                "messageParameters": json.dumps({"handle": err.session_id}),
                "sqlState": "HY000",
                "classes": json.dumps([_SQL_EXCEPTION, "java.sql.SQLException"]),
            },
        )
        code = grpc.StatusCode.INTERNAL
        return code, err.message, ((STATUS_DETAILS_KEY, _status_details(code, err.message, info)),)
    code = err.grpc_status
    retry_after = getattr(err, "retry_after_seconds", None)
    if retry_after:
        retry = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=int(retry_after), nanos=int((retry_after % 1) * 1e9))
        )
        return code, err.message, ((STATUS_DETAILS_KEY, _status_details(code, err.message, retry)),)
    return code, err.message, ()


def retry_after(trailing_metadata: object) -> float | None:
    """The ``RetryInfo`` delay in an error's trailing metadata, in seconds, if it has one."""
    for key, value in trailing_metadata or ():  # type: ignore[attr-defined]
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        st = status_pb2.Status()
        try:
            st.ParseFromString(value)
        except Exception:  # not a Status: no delay to read
            return None
        for detail in st.details:
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    return None
