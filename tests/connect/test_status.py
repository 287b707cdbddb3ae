from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

from sparkgate.connect.status import STATUS_DETAILS_KEY, grpc_error, session_changed
from sparkgate.errors import BadRequest, Unavailable


def test_session_changed_is_what_clients_recognise() -> None:
    code, details, trailers = grpc_error(session_changed("abc"))
    assert code is grpc.StatusCode.INTERNAL
    assert details.startswith("[INVALID_HANDLE.SESSION_CHANGED]")
    ((key, raw),) = trailers
    assert key == STATUS_DETAILS_KEY
    st = status_pb2.Status.FromString(raw)
    info = error_details_pb2.ErrorInfo()
    assert st.details[0].Unpack(info)
    assert info.metadata["errorClass"] == "INVALID_HANDLE.SESSION_CHANGED"
    assert "errorId" not in info.metadata  # else the client calls FetchErrorDetails on a dead session


def test_plain_errors_have_no_trailers() -> None:
    assert grpc_error(BadRequest("nope")) == (grpc.StatusCode.INVALID_ARGUMENT, "nope", ())


def test_unavailable_with_retry_info() -> None:
    code, _, trailers = grpc_error(Unavailable("later", retry_after_seconds=2.5))
    assert code is grpc.StatusCode.UNAVAILABLE
    st = status_pb2.Status.FromString(trailers[0][1])
    retry = error_details_pb2.RetryInfo()
    assert st.details[0].Unpack(retry)
    assert retry.retry_delay.seconds == 2 and retry.retry_delay.nanos == 500_000_000
