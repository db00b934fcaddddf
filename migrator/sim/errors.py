"""Errors of the simulated API server, each one a Kubernetes ``Status``.

Everything that can go wrong inside the simulated cluster raises an ``ApiError``.
The HTTP layer turns it into the JSON ``Status`` object a real kube-apiserver would
send, so clients (the official ``kubernetes`` package, ``kubectl``) see the same
codes, reasons and causes they would see on a real cluster.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A failed API operation, rendered as a ``metav1.Status``."""

    code = 500
    reason = "InternalError"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.retry_after = retry_after

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        details = dict(self.details)
        if self.retry_after is not None:
            details.setdefault("retryAfterSeconds", self.retry_after)
        if details:
            body["details"] = details
        return body


def _details(kind: str | None, name: str | None, group: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if name:
        out["name"] = name
    if group:
        out["group"] = group
    if kind:
        out["kind"] = kind
    return out


class BadRequest(ApiError):
    code = 400
    reason = "BadRequest"


class Unauthorized(ApiError):
    code = 401
    reason = "Unauthorized"


class Forbidden(ApiError):
    code = 403
    reason = "Forbidden"


class NotFound(ApiError):
    code = 404
    reason = "NotFound"

    @classmethod
    def of(cls, plural: str, name: str, group: str = "") -> NotFound:
        what = f"{plural}.{group}" if group else plural
        return cls(f'{what} "{name}" not found', details=_details(plural, name, group))


class MethodNotAllowed(ApiError):
    code = 405
    reason = "MethodNotAllowed"


class AlreadyExists(ApiError):
    code = 409
    reason = "AlreadyExists"

    @classmethod
    def of(cls, plural: str, name: str, group: str = "") -> AlreadyExists:
        what = f"{plural}.{group}" if group else plural
        return cls(f'{what} "{name}" already exists', details=_details(plural, name, group))


class Conflict(ApiError):
    code = 409
    reason = "Conflict"

    @classmethod
    def stale(cls, plural: str, name: str, group: str = "") -> Conflict:
        what = f"{plural}.{group}" if group else plural
        return cls(
            f'Operation cannot be fulfilled on {what} "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again",
            details=_details(plural, name, group),
        )


class Gone(ApiError):
    code = 410
    reason = "Expired"


class NotAcceptable(ApiError):
    code = 406
    reason = "NotAcceptable"


class UnsupportedMediaType(ApiError):
    code = 415
    reason = "UnsupportedMediaType"


class Invalid(ApiError):
    code = 422
    reason = "Invalid"

    @classmethod
    def of(cls, kind: str, name: str, causes: list[dict[str, str]], group: str = "") -> Invalid:
        text = "; ".join(f"{c.get('field', '')}: {c.get('message', '')}" for c in causes[:5])
        details = _details(kind, name, group)
        details["causes"] = causes
        qualified = f"{kind}.{group}" if group else kind   # schema.GroupKind.String(), as errors.NewInvalid
        return cls(f'{qualified} "{name}" is invalid: {text}', details=details)


class TooManyRequests(ApiError):
    code = 429
    reason = "TooManyRequests"


class InternalError(ApiError):
    code = 500
    reason = "InternalError"


class ServiceUnavailable(ApiError):
    code = 503
    reason = "ServiceUnavailable"
