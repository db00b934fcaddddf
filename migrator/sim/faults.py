"""Fault injection at the API layer: errors, latency and outages, seeded.

A rule matches a request by verb and resource (``*`` matches anything; a resource rule also
matches its subresources, ``pods`` matches ``pods/eviction`` and ``pods/proxy``) and, with
probability ``error_rate``, answers one of its ``codes`` instead of serving it (503 Service
Unavailable and 429 Too Many Requests with ``Retry-After``, 500...). ``latency`` seconds are
added to every matching request. Decisions come from one seeded ``random.Random`` so a failing
run replays from its seed (given the same request order). A fault is decided before the
request is executed, so a faulted request has no effect at all.

An ``Outage`` is a window of wall time in which the API server answers nothing: in ``refuse``
mode it stops listening and closes every open connection (what a kube-apiserver restarting
during a control-plane upgrade looks like from a client: connections reset, then refused); in
``503`` mode it keeps accepting and answers every request 503 with ``Retry-After`` and ends
open watches (what a load balancer in front of an upgrading control plane answers).

Only requests that arrive over HTTP are subject to faults: the simulated controllers, kubelets
and agents work on the store directly, as a real control plane's internals are not what a
client's faults are about.

The ``parse_*`` functions read the command-line forms (``0.05``, ``503,500,429``,
``get,list``, ``30s:2m``) and raise ``ValueError`` with one line naming what is wrong.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass
from typing import Literal

from migrator.sim.errors import ApiError, InternalError, ServiceUnavailable, TooManyRequests

#: The Kubernetes audit verbs a rule can name.
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
#: Error codes a fault can answer (the ones a real control plane answers under load or upgrade).
FAULT_CODES = (429, 500, 502, 503, 504)
OutageMode = Literal["refuse", "503"]
OUTAGE_MODES: tuple[OutageMode, ...] = ("refuse", "503")


@dataclass(frozen=True)
class FaultRule:
    """One rule: which requests it matches and what it does to them."""

    verb: str = "*"
    resource: str = "*"
    error_rate: float = 0.0
    code: int = 503
    latency: float = 0.0
    retry_after: int = 1
    codes: tuple[int, ...] = ()   # when set, the code of each fault is drawn from these (seeded)

    def matches(self, verb: str, resource: str) -> bool:
        if self.verb != "*" and self.verb != verb:
            return False
        return self.resource == "*" or resource == self.resource or resource.startswith(self.resource + "/")


@dataclass(frozen=True)
class Outage:
    """The API server unavailable for ``duration`` wall seconds, ``after`` seconds from serving."""

    after: float
    duration: float
    mode: OutageMode = "refuse"


class ApiFaults:
    """The active fault rules of one simulated API server."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.rules: list[FaultRule] = []
        self.injected = 0

    def add(self, verb: str = "*", resource: str = "*", error_rate: float = 0.0, code: int = 503,
            latency: float = 0.0, retry_after: int = 1, codes: tuple[int, ...] = ()) -> FaultRule:
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError(f"error_rate must be within [0, 1], got {error_rate}")
        rule = FaultRule(verb, resource, error_rate, code, latency, retry_after, tuple(codes))
        with self._lock:
            self.rules.append(rule)
        return rule

    def add_mixed(self, rate: float, codes: tuple[int, ...], verbs: tuple[str, ...] = ()) -> list[FaultRule]:
        """``rate`` of the requests of each of ``verbs`` (every verb when empty) answered with a
        code drawn from ``codes``: the form ``migrator sim serve --fault-rate`` uses."""
        return [self.add(verb=verb, error_rate=rate, code=codes[0], codes=codes) for verb in (verbs or ("*",))]

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
                    code = self._rng.choice(rule.codes) if rule.codes else rule.code
                    error = error_for(code, rule.retry_after)
            if error is not None:
                self.injected += 1
        return delay, error


def error_for(code: int, retry_after: int = 1) -> ApiError:
    """The Status kube-apiserver answers with ``code``."""
    if code == 429:
        return TooManyRequests("injected fault: the server has received too many requests and has asked us "
                               "to try again later", retry_after=retry_after)
    if code == 503:
        return ServiceUnavailable("injected fault: the server is currently unable to handle the request",
                                  retry_after=retry_after)
    err = InternalError(f"injected fault: code {code}")
    err.code = code
    if code == 504:
        err.reason = "Timeout"
    return err


# ---------------------------------------------------------------------------- command-line forms
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_rate(text: str) -> float:
    """A probability per request, ``0`` to ``1``."""
    try:
        rate = float(text)
    except ValueError:
        raise ValueError(f"--fault-rate {text!r} is not a number; give a probability from 0 to 1 "
                         "(0.05 fails 5 % of requests)") from None
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"--fault-rate {text} is outside 0..1; give a probability (0.05 fails 5 % of requests)")
    return rate


def parse_codes(text: str) -> tuple[int, ...]:
    """Comma-separated HTTP codes among ``FAULT_CODES``."""
    codes: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part.isdigit() or int(part) not in FAULT_CODES:
            raise ValueError(f"--fault-codes {text!r}: {part!r} is not one of "
                             f"{','.join(map(str, FAULT_CODES))}")
        codes.append(int(part))
    return tuple(codes)


def parse_verbs(text: str) -> tuple[str, ...]:
    """Comma-separated audit verbs (``get,list``); ``*`` or ``all`` for every verb (empty tuple)."""
    if text.strip() in ("*", "all"):
        return ()
    verbs: list[str] = []
    for part in (p.strip().lower() for p in text.split(",")):
        if part not in VERBS:
            raise ValueError(f"--fault-verbs {text!r}: {part!r} is not a verb; use any of {','.join(VERBS)}")
        verbs.append(part)
    return tuple(dict.fromkeys(verbs))


def parse_duration(text: str, what: str) -> float:
    """``90``, ``30s``, ``2m``, ``1.5h``, ``500ms`` in seconds."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"{what} {text!r} is not a duration; write it like 30s, 2m or 1h")
    return float(match.group(1)) * _UNIT[match.group(2)]


def parse_outage(text: str, mode: str = "refuse") -> Outage:
    """``AFTER:DURATION`` (``30s:2m``): unavailable from AFTER after serving starts, for DURATION."""
    after, sep, duration = text.partition(":")
    if not sep:
        raise ValueError(f"--outage {text!r} must be AFTER:DURATION, like 30s:1m")
    if mode not in OUTAGE_MODES:
        raise ValueError(f"--outage-mode {mode!r} must be one of {', '.join(OUTAGE_MODES)}")
    seconds = parse_duration(duration, "--outage duration")
    if seconds <= 0:
        raise ValueError(f"--outage {text!r}: the duration must be longer than 0s")
    checked: OutageMode = "503" if mode == "503" else "refuse"
    return Outage(after=parse_duration(after, "--outage start"), duration=seconds, mode=checked)
