"""One small error tree for the whole platform.

Every error a user can cause or see is a :class:`SparkgateError`. Each class knows the gRPC status
and the HTTP status it maps to, so the edges (the gRPC relay, the runner service, the REST API)
translate once, with the message written for the person who has to act on it::

    SparkgateError                 INTERNAL            500   our failure (logged with a traceback)
    ├── ConfigError                INTERNAL            500   bad configuration file / environment
    ├── BadRequest                 INVALID_ARGUMENT    400   the request is malformed or incomplete
    ├── Unauthenticated            UNAUTHENTICATED     401   no or bad credentials
    ├── PermissionDenied           PERMISSION_DENIED   403   authenticated, but not allowed
    ├── NotFound                   NOT_FOUND           404   unknown job / session / driver
    ├── Conflict                   FAILED_PRECONDITION 409   valid request, wrong state (e.g. results before completion)
    ├── ResourceExhausted          RESOURCE_EXHAUSTED  429   a quota or rate limit
    └── Unavailable                UNAVAILABLE         503   no driver can be had right now; retry later
        └── DriverStartError       UNAVAILABLE         503   a driver failed to start (its log path is in the message)
"""

from __future__ import annotations

from typing import ClassVar

import grpc


class SparkgateError(Exception):
    """Base of every sparkgate error; carries a user-facing message."""

    grpc_status: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    http_status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(SparkgateError):
    """The configuration file or an environment override is invalid."""


class BadRequest(SparkgateError):
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400


class PayloadTooLarge(BadRequest):
    """A request larger than a configured limit (HTTP 413)."""

    http_status = 413


class Unauthenticated(SparkgateError):
    grpc_status = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401


class PermissionDenied(SparkgateError):
    grpc_status = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403


class NotFound(SparkgateError):
    grpc_status = grpc.StatusCode.NOT_FOUND
    http_status = 404


class Conflict(SparkgateError):
    grpc_status = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 409


class ResourceExhausted(SparkgateError):
    """A quota or rate limit; ``retry_after_seconds`` (if known) becomes a ``RetryInfo``."""

    grpc_status = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429

    def __init__(self, message: str, *, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class Unavailable(SparkgateError):
    """Retry later. ``retry_after_seconds`` becomes a ``google.rpc.RetryInfo`` clients honour."""

    grpc_status = grpc.StatusCode.UNAVAILABLE
    http_status = 503

    def __init__(self, message: str, *, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class DriverStartError(Unavailable):
    """A Spark Connect driver did not become ready."""


class SessionLost(SparkgateError):
    """The session's driver is gone or never had it; the client must start a new session.

    Sent to clients as Spark's own ``INVALID_HANDLE.*`` error (status INTERNAL, the error class in
    the message and in an ``ErrorInfo`` detail) so both the Python and the JVM client react as they
    would to a restarted Spark Connect server: drop the session, and the next ``getOrCreate()``
    builds a new one. See :mod:`sparkgate.connect.status`.
    """

    http_status = 410

    def __init__(self, error_class: str, session_id: str, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.session_id = session_id
