"""Facts a controller derives from each pod, kept per version of the pod and of the controller.

The ReplicaSet and disruption controllers recount every pod they own or select on each pod
event; at a pod per node that is a thousand pods per event. What they derive from one pod
(selected, active, ready) is a function of the pod and of the controller object's spec alone,
and store objects are immutable snapshots named by their resourceVersion, so the facts are kept
per (spec version, pod resourceVersion) and derived again only for the pods that changed.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any, Generic, TypeVar

Obj = dict[str, Any]
T = TypeVar("T")


class PodFacts(Generic[T]):
    """Per owner (a controller's key): each pod's facts, by pod uid."""

    def __init__(self) -> None:
        self._seen: dict[Hashable, dict[str, tuple[tuple[Hashable, str], T]]] = {}

    def of(self, owner: Hashable, spec_version: Hashable, pods: Iterable[Obj],
           derive: Callable[[Obj], T]) -> list[T]:
        """``derive(pod)`` for each of ``pods``, in order, reusing what was derived for the same
        pod version under the same ``spec_version``. Only these pods' facts are kept."""
        seen = self._seen.get(owner, {})
        self._seen[owner] = kept = {}
        out = []
        for pod in pods:
            meta = pod["metadata"]
            version = (spec_version, meta["resourceVersion"])
            known = seen.get(meta["uid"])
            facts = known[1] if known is not None and known[0] == version else derive(pod)
            kept[meta["uid"]] = (version, facts)
            out.append(facts)
        return out

    def forget(self, owner: Hashable) -> None:
        self._seen.pop(owner, None)
