"""The API server's errors: :class:`ApiStatusError` carries a ``Status`` body as the real server sends it.

Every failed request is answered with ``{"kind": "Status", "apiVersion": "v1", "status": "Failure",
"message", "reason", "code", "details"}``; clients branch on ``code`` and ``reason`` (lightkube's
``ApiError.status``), so both follow the constructors of ``k8s.io/apimachinery/pkg/api/errors``:

=====  =====================  ==========================================================
code   reason                 raised for
=====  =====================  ==========================================================
400    BadRequest             a body that is not an object of the endpoint's kind; a field
                              the schema does not know (as with ``fieldValidation=Strict``)
404    NotFound               no such object, or no such URL
405    MethodNotAllowed       a verb the resource does not serve
409    AlreadyExists          create of a name in use
409    Conflict               a stale ``resourceVersion``, a failed delete precondition
410    Expired                a watch from a ``resourceVersion`` older than the history
415    UnsupportedMediaType   a patch type the resource does not accept
422    Invalid                an object that fails validation (``details.causes`` name the fields)
=====  =====================  ==========================================================
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Gone",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiStatusError(Exception):
    """A request the fake API server refuses, with the ``Status`` it answers."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def reason_for(code: int) -> str:
    return _REASONS.get(code, "InternalError" if code >= 500 else "BadRequest")


def _details(kind: str, name: str, group: str = "", **more: Any) -> Obj:
    details: Obj = {"name": name, "kind": kind}
    if group:
        details["group"] = group
    details.update(more)
    return details


def not_found(plural: str, name: str, group: str = "") -> ApiStatusError:
    what = f"{plural}.{group}" if group else plural
    return ApiStatusError(404, "NotFound", f'{what} "{name}" not found', _details(plural, name, group))


def already_exists(plural: str, name: str, group: str = "") -> ApiStatusError:
    what = f"{plural}.{group}" if group else plural
    return ApiStatusError(409, "AlreadyExists", f'{what} "{name}" already exists', _details(plural, name, group))


def conflict(plural: str, name: str, why: str, group: str = "") -> ApiStatusError:
    what = f"{plural}.{group}" if group else plural
    message = f'Operation cannot be fulfilled on {what} "{name}": {why}'
    return ApiStatusError(409, "Conflict", message, _details(plural, name, group))


STALE = "the object has been modified; please apply your changes to the latest version and try again"


def invalid(kind: str, name: str, causes: list[tuple[str, str, str]], group: str = "") -> ApiStatusError:
    """422 Invalid; each cause is ``(field, reason, message)``, e.g. ``("spec.x", "FieldValueInvalid", ...)``."""
    what = f"{kind}.{group}" if group else kind
    summary = "; ".join(f"{field}: {message}" for field, _, message in causes)
    details = _details(kind, name, group, causes=[{"reason": r, "message": m, "field": f} for f, r, m in causes])
    return ApiStatusError(422, "Invalid", f'{what} "{name}" is invalid: {summary}', details)


def bad_request(message: str) -> ApiStatusError:
    return ApiStatusError(400, "BadRequest", message)


def expired(message: str) -> ApiStatusError:
    return ApiStatusError(410, "Expired", message)


def generic(code: int, message: str | None = None) -> ApiStatusError:
    """An error of ``code`` with the reason the real server gives it (for injected failures)."""
    reason = reason_for(code)
    details: Obj | None = {"retryAfterSeconds": 1} if code in (429, 503, 504) else None
    return ApiStatusError(code, reason, message or f"injected failure ({code} {reason})", details)
