"""A record of every request the simulated API server answered.

Tests and benchmarks read it to prove what a command did and did not do: a dry run sends no
write, a drain uses evictions and never a DELETE, a resumed run deletes each agent pod once.
Verbs are the Kubernetes audit verbs (get, list, watch, create, update, patch, delete,
deletecollection); the resource is the store key plus the subresource (``pods/eviction``).
Each entry names its client twice, as an audit log does: the ``User-Agent`` it sent and the
user its bearer token authenticated as (give two processes two users to tell them apart).

Each entry also carries the body sizes: ``request_bytes``, the bytes of request body read from
the wire (the payload of a chunked body, without its framing), and ``response_bytes``, the bytes
of response body sent (none for HEAD). A watch is logged as its stream opens and its
``response_bytes`` grow with each event it sends, by the bytes of its JSON line, so a stream
still open counts what it has sent so far. ``RequestFilter`` selects entries the same
way in process (``sim.requests.request_bytes(resource="configmaps", ...)``) and over HTTP (the
API server's ``/sim/requests``, for a client in another process).

``on_nth`` calls back when the n-th matching request is recorded, on the thread serving it and
before its answer is sent: a chaos test that SIGKILLs the client there kills it exactly after
its n-th write was executed and before it learnt the outcome.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
VERBS = WRITE_VERBS | {"get", "list", "watch"}


@dataclass(frozen=True)
class RequestEntry:
    verb: str
    resource: str          # e.g. "pods", "pods/eviction", "apps/daemonsets", "" for non-resource paths
    namespace: str
    name: str
    code: int
    user_agent: str = ""
    user: str = ""           # the authenticated user ("" when the request carried no valid token)
    request_bytes: int = 0   # request body bytes read (a chunked body's payload, not its framing)
    response_bytes: int = 0  # response body bytes sent; for a watch, its events so far

    @property
    def is_write(self) -> bool:
        return self.verb in WRITE_VERBS


@dataclass(frozen=True)
class RequestFilter:
    """Which entries to count: every field left at None (or "") matches everything."""

    verbs: frozenset[str] | None = None
    resource: str | None = None      # exact, subresource included: "configmaps", "pods/eviction"
    namespace: str | None = None     # "" selects cluster-scoped and non-resource requests
    name_prefix: str = ""
    user: str | None = None

    def __call__(self, entry: RequestEntry) -> bool:
        return (self.verbs is None or entry.verb in self.verbs) \
            and (self.resource is None or entry.resource == self.resource) \
            and (self.namespace is None or entry.namespace == self.namespace) \
            and entry.name.startswith(self.name_prefix) \
            and (self.user is None or entry.user == self.user)

    @classmethod
    def from_query(cls, query: dict[str, str]) -> RequestFilter:
        """From URL parameters ``verb`` (comma-separated; ``write`` for every write verb),
        ``resource``, ``namespace``, ``namePrefix``, ``user``. Raises ValueError naming an unknown
        parameter or verb."""
        unknown = sorted(set(query) - {"verb", "resource", "namespace", "namePrefix", "user"})
        if unknown:
            raise ValueError(f"unknown parameter {unknown[0]!r}: use verb, resource, namespace, namePrefix, user")
        verbs: frozenset[str] | None = None
        if query.get("verb"):
            named = {v.strip() for v in query["verb"].split(",") if v.strip()}
            bad = sorted(named - VERBS - {"write"})
            if bad:
                raise ValueError(f"unknown verb {bad[0]!r}: use {', '.join(sorted(VERBS))} or write")
            verbs = frozenset((named - {"write"}) | (WRITE_VERBS if "write" in named else set()))
        return cls(verbs=verbs, resource=query.get("resource"), namespace=query.get("namespace"),
                   name_prefix=query.get("namePrefix", ""), user=query.get("user"))


class RequestLog:
    """Thread-safe, append-only list of answered requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[RequestEntry] = []
        self._cleared = 0   # entries dropped by reset(): an entry's position is its number minus this
        self._hooks: list[_Hook] = []

    def add(self, entry: RequestEntry) -> int:
        """Record ``entry``; returns its number, for ``add_response_bytes``."""
        fire: list[_Hook] = []
        with self._lock:
            number = self._cleared + len(self._entries)
            self._entries.append(entry)
            for hook in self._hooks:
                if hook.match(entry):
                    hook.seen += 1
                    if hook.seen == hook.n:
                        fire.append(hook)
            if fire:
                self._hooks = [h for h in self._hooks if h not in fire]
        for hook in fire:
            hook.callback(entry)
        return number

    def add_response_bytes(self, number: int, sent: int) -> None:
        """Count ``sent`` more response bytes for entry ``number`` (a watch stream, as it sends);
        nothing if a ``reset`` has dropped it."""
        with self._lock:
            at = number - self._cleared
            if 0 <= at < len(self._entries) and sent:
                entry = self._entries[at]
                self._entries[at] = replace(entry, response_bytes=entry.response_bytes + sent)

    def on_nth(self, n: int, callback: Callable[[RequestEntry], None],
               match: Callable[[RequestEntry], bool] = lambda e: e.is_write) -> None:
        """Call ``callback(entry)`` once, when the ``n``-th request matching ``match`` (from now
        on; by default a write) is recorded: on the serving thread, before its answer is sent."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        with self._lock:
            self._hooks.append(_Hook(n, callback, match))

    @property
    def entries(self) -> list[RequestEntry]:
        with self._lock:
            return list(self._entries)

    def counts(self) -> dict[tuple[str, str], int]:
        """Requests by (verb, resource)."""
        return dict(Counter((e.verb, e.resource) for e in self.entries))

    def writes(self) -> int:
        return sum(1 for e in self.entries if e.is_write)

    def total(self, *, exclude_watch: bool = True) -> int:
        return sum(1 for e in self.entries if not (exclude_watch and e.verb == "watch"))

    def select(self, where: RequestFilter | None = None, /, **fields: Any) -> list[RequestEntry]:
        """The entries matching ``where``, or a ``RequestFilter(**fields)``."""
        if where is not None and fields:
            raise TypeError("give a RequestFilter or its fields, not both")
        match = where if where is not None else RequestFilter(**fields)
        return [e for e in self.entries if match(e)]

    def request_bytes(self, where: RequestFilter | None = None, /, **fields: Any) -> int:
        """Request body bytes of the matching entries."""
        return sum(e.request_bytes for e in self.select(where, **fields))

    def response_bytes(self, where: RequestFilter | None = None, /, **fields: Any) -> int:
        """Response body bytes of the matching entries (watches: what they have sent so far)."""
        return sum(e.response_bytes for e in self.select(where, **fields))

    def bytes_written(self, *, verbs: frozenset[str] = WRITE_VERBS, **fields: Any) -> int:
        """Request body bytes of the matching writes: what a client pushed into the store, e.g.
        ``bytes_written(resource="configmaps", namespace="kube-system", name_prefix="migrator")``."""
        return self.request_bytes(verbs=verbs, **fields)

    def summary(self, where: RequestFilter | None = None) -> dict[str, Any]:
        """Counts and body bytes of the matching entries, in total and by verb and resource (the
        shape ``/sim/requests`` answers with)."""
        total = {"requests": 0, "requestBytes": 0, "responseBytes": 0}
        by: dict[tuple[str, str], dict[str, int]] = {}
        for e in self.select(where or RequestFilter()):
            for tally in (total, by.setdefault((e.verb, e.resource), {"requests": 0, "requestBytes": 0,
                                                                      "responseBytes": 0})):
                tally["requests"] += 1
                tally["requestBytes"] += e.request_bytes
                tally["responseBytes"] += e.response_bytes
        return {**total, "byVerbResource": [{"verb": verb, "resource": resource, **tally}
                                            for (verb, resource), tally in sorted(by.items())]}

    def reset(self) -> None:
        with self._lock:
            self._cleared += len(self._entries)
            self._entries.clear()


@dataclass(eq=False)
class _Hook:
    n: int
    callback: Callable[[RequestEntry], None]
    match: Callable[[RequestEntry], bool]
    seen: int = field(default=0)
