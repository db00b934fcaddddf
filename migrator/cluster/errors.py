"""Our error taxonomy for everything that goes wrong talking to the API server.

The shell never sees ``kubernetes.client.ApiException``: ``cluster/kube.py`` maps it exactly
once, at the edge, into one of these classes (chained with ``raise ... from``). Callers decide
on the class, never on an HTTP status code. Only ``Unavailable`` and ``Throttled`` are
retryable (see ``migrator/retry.py``); a ``Conflict`` on the checkpoint means "reload and
decide again", never "retry as-is".

Messages come only from the Kubernetes ``Status`` body (or a plain-text answer relayed by
pods/proxy) and are capped, so a misbehaving server cannot flood logs or the checkpoint.
``map_status`` is the one table from a ``Status`` and its HTTP code to our classes; ``kube.py``
feeds it from ``ApiException`` and from watch ``ERROR`` events.
"""

from __future__ import annotations

from typing import Any

MESSAGE_LIMIT = 256
ACTION_ERROR_KINDS = frozenset({"NotFound", "Conflict", "AlreadyExists", "Throttled", "Forbidden",
                                "Invalid", "Unavailable", "DisruptionBudgetBlocked"})


def cap_message(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Return ``text`` on one line, truncated to ``limit`` characters with an ellipsis."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class ClusterError(Exception):
    """Base class: an API request failed. ``status`` is the HTTP code when one was received."""

    retryable: bool = False

    def __init__(self, message: str, *, status: int | None = None, reason: str = "") -> None:
        self.message = cap_message(message)
        self.status = status
        self.reason = reason
        super().__init__(self.message)

    @property
    def kind(self) -> str:
        """The class name for ``ActionResult.error_kind`` (``Error`` for the generic ones)."""
        name = type(self).__name__
        return name if name in ACTION_ERROR_KINDS else "Error"


class NotFound(ClusterError):
    """404: the object (or its namespace, or the resource kind) does not exist."""


class Conflict(ClusterError):
    """409 on update: the resourceVersion or uid precondition no longer holds. Reload, decide again."""


class AlreadyExists(ClusterError):
    """409 on create: an object with that name already exists."""


class Forbidden(ClusterError):
    """403: the credentials in the kubeconfig may not do this. Fix RBAC; retrying will not help."""


class Invalid(ClusterError):
    """422 (or 400/415): the server rejected the request body. A bug or an invalid plan value."""


class Throttled(ClusterError):
    """429 without a disruption-budget cause: the server asks us to slow down."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None,
                 status: int | None = 429, reason: str = "TooManyRequests") -> None:
        super().__init__(message, status=status, reason=reason)
        self.retry_after = retry_after


class DisruptionBudgetBlocked(ClusterError):
    """429 on eviction whose cause is a PodDisruptionBudget: the pod may not be evicted now.

    Not retried by ``retry.py``: the drain step backs off on its own until its deadline,
    because whether to wait, skip the node or halt is a plan decision.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, status=429, reason="TooManyRequests")
        self.retry_after = retry_after


class Unavailable(ClusterError):
    """5xx, a timeout or a refused connection: the server could not answer. Retryable.

    ``sent`` is False when the request provably never reached the server (connection refused,
    connect timeout, name resolution), so it was not executed; True when it may have been
    (a read timeout, a connection reset mid-answer, a 500/502/504): its outcome is unknown.
    """

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None,
                 status: int | None = None, reason: str = "ServiceUnavailable",
                 sent: bool = True) -> None:
        super().__init__(message, status=status, reason=reason)
        self.retry_after = retry_after
        self.sent = sent

    @property
    def kind(self) -> str:
        return "Unavailable"


class LeaseExpired(Unavailable):
    """Refused locally, never sent: our run lease passed its ``renewTime + leaseDuration`` (on
    this process's monotonic clock) without a successful renewal, so another process may
    already hold it. Writes resume once a renewal succeeds; reads are unaffected. Not retried
    by ``retry.py`` (waiting is the runner's outage tolerance)."""

    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="LeaseExpired", sent=False)


class ConfigError(ClusterError):
    """The kubeconfig, context or in-cluster configuration could not be loaded (exit code 2)."""


class Expired(ClusterError):
    """410 Gone on a watch: the resourceVersion is too old. The cache re-lists."""


def map_status(status: dict[str, Any], *, code: int, fallback: str = "",
               retry_after: float | None = None) -> ClusterError:
    """Our error for a Kubernetes ``Status`` body with HTTP ``code``."""
    reason = str(status.get("reason") or fallback or "")
    message = cap_message(str(status.get("message") or fallback or f"HTTP {code}"))
    causes = (status.get("details") or {}).get("causes") or []
    if retry_after is None:
        try:
            hinted = (status.get("details") or {}).get("retryAfterSeconds")
            retry_after = float(hinted) if hinted is not None else None
        except (TypeError, ValueError):
            retry_after = None
    if code == 404:
        return NotFound(message, status=code, reason=reason)
    if code == 409:
        cls = AlreadyExists if reason == "AlreadyExists" else Conflict
        return cls(message, status=code, reason=reason)
    if code in (401, 403):
        return Forbidden(message, status=code, reason=reason)
    if code in (400, 415, 422):
        return Invalid(message, status=code, reason=reason)
    if code == 410:
        return Expired(message, status=code, reason=reason)
    if code == 429:
        if any(c.get("reason") == "DisruptionBudget" for c in causes if isinstance(c, dict)):
            return DisruptionBudgetBlocked(message, retry_after=retry_after)
        return Throttled(message, retry_after=retry_after, status=code, reason=reason)
    return Unavailable(message, retry_after=retry_after, status=code or None, reason=reason)
