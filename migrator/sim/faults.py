"""Fault injection at the API layer: errors and latency by verb and resource, seeded.

A rule matches a request by verb and resource (``*`` matches anything; a resource rule also
matches its subresources, ``pods`` matches ``pods/eviction``) and, with probability
``error_rate``, answers ``code`` instead of serving it (503 Service Unavailable, 429 Too Many
Requests with ``Retry-After``, 500...). ``latency`` seconds are added to every matching
request. Decisions come from one seeded ``random.Random`` so a failing run replays from its
seed (given the same request order).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

from migrator.sim.errors import ApiError, InternalError, ServiceUnavailable, TooManyRequests


@dataclass(frozen=True)
class FaultRule:
    verb: str = "*"
    resource: str = "*"
    error_rate: float = 0.0
    code: int = 503
    latency: float = 0.0
    retry_after: int = 1

    def matches(self, verb: str, resource: str) -> bool:
        if self.verb != "*" and self.verb != verb:
            return False
        return self.resource == "*" or resource == self.resource or resource.startswith(self.resource + "/")


class ApiFaults:
    """The active fault rules of one simulated API server."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.rules: list[FaultRule] = []
        self.injected = 0

    def add(self, verb: str = "*", resource: str = "*", error_rate: float = 0.0, code: int = 503,
            latency: float = 0.0, retry_after: int = 1) -> FaultRule:
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError(f"error_rate must be within [0, 1], got {error_rate}")
        rule = FaultRule(verb, resource, error_rate, code, latency, retry_after)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def decide(self, verb: str, resource: str) -> tuple[float, ApiError | None]:
        """(extra latency, error to answer instead, or None) for one request."""
        delay, error = 0.0, None
        with self._lock:
            for rule in self.rules:
                if not rule.matches(verb, resource):
                    continue
                delay += rule.latency
                if error is None and rule.error_rate and self._rng.random() < rule.error_rate:
                    error = _error_for(rule)
            if error is not None:
                self.injected += 1
        return delay, error


def _error_for(rule: FaultRule) -> ApiError:
    if rule.code == 429:
        return TooManyRequests("injected fault: the server has received too many requests and has asked us "
                               "to try again later", retry_after=rule.retry_after)
    if rule.code == 503:
        return ServiceUnavailable("injected fault: the server is currently unable to handle the request",
                                  retry_after=rule.retry_after)
    err = InternalError(f"injected fault: code {rule.code}")
    err.code = rule.code
    return err
