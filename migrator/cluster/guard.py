"""``GuardedPort``: the ``ClusterPort`` every command uses — retried once, here, and fenced.

``commands._connect`` wraps the HTTP port in this class exactly once, so every command (run,
resume, finalize, rollback, canary, status, pause, abort, preflight, plan) gets the same
behaviour and no call site retries on its own:

- **Retries** (policy in ``migrator/retry.py``): each method has a ``Rule`` saying whether a
  repeat is safe (``Safety``); ``CALLS`` below is the whole matrix. A call that stays failing
  reaches the caller as ``Unavailable``/``Throttled`` after at most about the per-call deadline.
- **Unknown outcomes** are never re-sent blindly: a call whose repeat could act twice is
  retried only when the server provably did not execute it. A ``create_pod`` retried after an
  unknown outcome that then meets ``AlreadyExists`` reads the pod back: its name is
  deterministic, so the pod is the one the first request created.
- **Fencing**: ``fence`` is shared with the run lease (``cluster/lease.py``). Every mutating
  call checks it before each attempt, so once the lease is expired on this process's
  monotonic clock (``LeaseExpired``) or known to be held by someone else (``LockLost``) this
  process sends no write at all. Reads and the lease's own requests are never fenced.
- **Watches** pass through, not retried: the cache reconnects its own, and the lease's keep-alive
  renews (or waits for its next renewal) when its watch cannot be opened or breaks.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from migrator.clock import Clock, SystemClock
from migrator.cluster.errors import AlreadyExists, Unavailable
from migrator.cluster.lease import Fence
from migrator.cluster.port import (
    ChangeCursor,
    ClusterPort,
    ConfigMapSnapshot,
    DaemonSetInfo,
    FelixInfo,
    IPPoolInfo,
    LeaseRecord,
    LeaseWatch,
    ObjectRef,
    PodRequest,
    PolicyInfo,
    PolicyInventory,
    WatchScope,
    WorkloadInfo,
)
from migrator.model.handover import HandoverState
from migrator.model.observation import NodeConfigFacts, NodeFacts, PdbFacts, PodFacts
from migrator.model.routing import RoutingInventory
from migrator.retry import RetrySettings, Safety, not_executed, retrying

T = TypeVar("T")
S, ONCE, P = Safety.SAFE, Safety.ONCE, Safety.PROBE
LEASE_DEADLINE = 5.0  # seconds: a renewal that cannot get through is tried afresh by the keep-alive


@dataclass(frozen=True)
class Rule:
    """How one port method is guarded."""

    safety: Safety     # which failures are retried (retry.py)
    writes: bool       # fenced by the run lease
    why: str           # why a repeat is (or is not) safe
    lease: bool = False  # the lease's own request: never fenced, shorter deadline


_READ = Rule(S, False, "a read")
CALLS: dict[str, Rule] = {
    # reads
    **{name: _READ for name in (
        "server_version", "served_versions", "crd_has_field", "list_nodes", "list_pods", "list_pdbs",
        "get_node_config", "get_daemonset", "get_pod", "read_configmap", "list_configmaps", "list_objects",
        "list_ippools", "get_felix_configuration", "get_service_cluster_ip", "list_policies", "list_workloads",
        "read_policy_inventory", "read_routing_inventory", "read_handover_state", "list_policy_objects")},
    "proxy_get": Rule(P, False, "a probe through pods/proxy: a 5xx may be the path to the pod, the probe judges it"),
    # writes computed from what they read: a repeat finds the change made and does nothing
    "cordon_node": Rule(S, True, "reads spec.unschedulable first; a repeat is a no-op"),
    "uncordon_node": Rule(S, True, "reads spec.unschedulable first; a repeat is a no-op"),
    "set_node_label": Rule(S, True, "reads the label first; a repeat is a no-op"),
    "set_node_taint": Rule(S, True, "patch carries the resourceVersion it was computed from (409: recompute)"),
    "patch_configmap": Rule(S, True, "merge of fixed keys; a repeat is a no-op"),
    "restart_daemonset": Rule(S, True, "the restartedAt stamp is fixed in the checkpoint; a repeat is a no-op"),
    "ensure_node_config": Rule(S, True, "reads first; create has a fixed name, replace is idempotent"),
    "delete_node_config": Rule(S, True, "delete by name; already gone is False"),
    "delete_object": Rule(S, True, "delete by name; already gone is False"),
    "patch_object": Rule(S, True, "reads first; a merge patch already held is not sent, a repeat is a no-op"),
    "apply_object": Rule(S, True, "reads first; create has a fixed name (AlreadyExists is False), patch is a merge"),
    "create_pod": Rule(S, True, "deterministic name: a repeat meets AlreadyExists and reads the pod back"),
    "create_configmap": Rule(S, True, "fixed name: a repeat meets AlreadyExists, which the store reloads on"),
    "replace_configmap": Rule(S, True, "compare-and-swap on resourceVersion: a repeat cannot apply twice"),
    "evict_pod": Rule(S, True, "with a uid precondition: gone or replaced is False, a terminating pod is not "
                               "evicted again; without a uid only when not executed"),
    "delete_pod": Rule(S, True, "with a uid precondition: gone or replaced is False; without a uid only when "
                                "not executed"),
    "emit_node_event": Rule(ONCE, True, "generateName: a repeat would record the Event twice"),
    # the lease: compare-and-swap, never fenced (renewing is how the fence is lifted)
    "read_lease": Rule(S, False, "a read", lease=True),
    "create_lease": Rule(S, False, "fixed name: a repeat meets AlreadyExists; the lock reads who holds it",
                         lease=True),
    "replace_lease": Rule(S, False, "compare-and-swap on resourceVersion", lease=True),
    "delete_lease": Rule(S, False, "resourceVersion precondition; already gone is False", lease=True),
}
# the cache keeps its own watch loop; the lease's keep-alive loops over its watch (cluster/lease.py)
UNGUARDED = ("start_watching", "wait_for_change", "node_changes", "pod_changes", "close", "watch_lease")


class GuardedPort:
    """Wraps a ``ClusterPort``: retries per ``CALLS``, fences writes with the run lease."""

    def __init__(self, inner: ClusterPort, *, settings: RetrySettings | None = None,
                 clock: Clock | None = None, rng: random.Random | None = None,
                 on_retry: Callable[[BaseException], None] | None = None,
                 fence: Fence | None = None) -> None:
        self.inner = inner
        self.settings = settings or RetrySettings()
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.on_retry = on_retry
        self.fence = fence or Fence(self.clock)

    def __repr__(self) -> str:
        return f"GuardedPort({self.inner!r})"

    def _guard(self, name: str, fn: Callable[..., T], *args: Any, safety: Safety | None = None,
               unknown: list[BaseException] | None = None, **kwargs: Any) -> T:
        """Call ``fn`` under ``CALLS[name]``; failures whose outcome is unknown land in ``unknown``."""
        rule = CALLS[name]
        settings = replace(self.settings, deadline=min(self.settings.deadline, LEASE_DEADLINE)) \
            if rule.lease else self.settings
        seen = unknown if unknown is not None else []

        def attempt() -> T:
            if rule.writes:
                self.fence.check_write(name.replace("_", " "))
            try:
                return fn(*args, **kwargs)
            except Unavailable as exc:
                if not not_executed(exc):
                    seen.append(exc)
                raise

        policy = retrying(settings, clock=self.clock, rng=self.rng, safety=safety or rule.safety,
                          on_retry=self.on_retry, name=name)
        return policy(attempt)

    # -- not retried: the watch cache reconnects on its own, with back-off -----------------------
    def start_watching(self, scope: WatchScope) -> None:
        self.inner.start_watching(scope)

    def wait_for_change(self, timeout: float) -> bool:
        return self.inner.wait_for_change(timeout)

    def close(self) -> None:
        self.inner.close()

    # -- reads ------------------------------------------------------------------------------------
    def server_version(self) -> str:
        return self._guard("server_version", self.inner.server_version)

    def served_versions(self, crd_name: str) -> list[str]:
        return self._guard("served_versions", self.inner.served_versions, crd_name)

    def crd_has_field(self, crd_name: str, version: str, path: str) -> bool:
        return self._guard("crd_has_field", self.inner.crd_has_field, crd_name, version, path)

    def list_nodes(self) -> list[NodeFacts]:
        return self._guard("list_nodes", self.inner.list_nodes)

    def list_pods(self, *, node: str | None = None, namespace: str | None = None,
                  labels: dict[str, str] | None = None, unready: bool = False) -> list[PodFacts]:
        return self._guard("list_pods", self.inner.list_pods, node=node, namespace=namespace,
                           labels=labels, unready=unready)

    def node_changes(self, cursor: ChangeCursor | None
                     ) -> tuple[dict[tuple[str, str], NodeFacts | None] | None, ChangeCursor | None]:
        return self.inner.node_changes(cursor)   # the cache's memory: no API call to guard

    def pod_changes(self, namespace: str, cursor: ChangeCursor | None
                    ) -> tuple[dict[tuple[str, str], PodFacts | None] | None, ChangeCursor | None]:
        return self.inner.pod_changes(namespace, cursor)   # the cache's memory: no API call to guard

    def list_pdbs(self) -> list[PdbFacts]:
        return self._guard("list_pdbs", self.inner.list_pdbs)

    def get_node_config(self, namespace: str, name: str, *, version: str) -> NodeConfigFacts | None:
        return self._guard("get_node_config", self.inner.get_node_config, namespace, name, version=version)

    def get_daemonset(self, namespace: str, name: str) -> DaemonSetInfo | None:
        return self._guard("get_daemonset", self.inner.get_daemonset, namespace, name)

    def get_pod(self, namespace: str, name: str) -> PodFacts | None:
        return self._guard("get_pod", self.inner.get_pod, namespace, name)

    def read_configmap(self, namespace: str, name: str) -> ConfigMapSnapshot | None:
        return self._guard("read_configmap", self.inner.read_configmap, namespace, name)

    def list_configmaps(self, namespace: str, label_selector: str) -> list[ConfigMapSnapshot]:
        return self._guard("list_configmaps", self.inner.list_configmaps, namespace, label_selector)

    def list_objects(self, group: str, version: str, plural: str, *,
                     namespace: str | None = None) -> list[ObjectRef]:
        return self._guard("list_objects", self.inner.list_objects, group, version, plural, namespace=namespace)

    def list_ippools(self) -> list[IPPoolInfo]:
        return self._guard("list_ippools", self.inner.list_ippools)

    def get_felix_configuration(self, name: str = "default") -> FelixInfo | None:
        return self._guard("get_felix_configuration", self.inner.get_felix_configuration, name)

    def get_service_cluster_ip(self, namespace: str = "default", name: str = "kubernetes") -> str | None:
        return self._guard("get_service_cluster_ip", self.inner.get_service_cluster_ip, namespace, name)

    def list_policies(self) -> list[PolicyInfo]:
        return self._guard("list_policies", self.inner.list_policies)

    def list_workloads(self) -> list[WorkloadInfo]:
        return self._guard("list_workloads", self.inner.list_workloads)

    def read_policy_inventory(self) -> PolicyInventory:
        return self._guard("read_policy_inventory", self.inner.read_policy_inventory)

    def read_routing_inventory(self) -> RoutingInventory:
        return self._guard("read_routing_inventory", self.inner.read_routing_inventory)

    def read_handover_state(self) -> HandoverState:
        return self._guard("read_handover_state", self.inner.read_handover_state)
    def list_policy_objects(self, label_selector: str) -> list[dict[str, Any]]:
        return self._guard("list_policy_objects", self.inner.list_policy_objects, label_selector)

    def proxy_get(self, namespace: str, pod: str, port: int, path: str, query: dict[str, str]) -> str:
        return self._guard("proxy_get", self.inner.proxy_get, namespace, pod, port, path, query)

    # -- writes -----------------------------------------------------------------------------------
    def cordon_node(self, name: str) -> bool:
        return self._guard("cordon_node", self.inner.cordon_node, name)

    def uncordon_node(self, name: str) -> bool:
        return self._guard("uncordon_node", self.inner.uncordon_node, name)

    def set_node_taint(self, name: str, key: str, effect: str, present: bool) -> bool:
        return self._guard("set_node_taint", self.inner.set_node_taint, name, key, effect, present)

    def set_node_label(self, name: str, key: str, value: str | None) -> bool:
        return self._guard("set_node_label", self.inner.set_node_label, name, key, value)

    def emit_node_event(self, node: str, *, reason: str, message: str,
                        type: str = "Normal", namespace: str = "default") -> None:
        self._guard("emit_node_event", self.inner.emit_node_event, node, reason=reason, message=message,
                    type=type, namespace=namespace)

    def evict_pod(self, namespace: str, name: str, *, uid: str | None = None,
                  grace_period_seconds: int | None = None) -> bool:
        return self._guard("evict_pod", self.inner.evict_pod, namespace, name, uid=uid,
                           grace_period_seconds=grace_period_seconds, safety=None if uid else Safety.ONCE)

    def delete_pod(self, namespace: str, name: str, *, uid: str | None = None,
                   grace_period_seconds: int | None = None) -> bool:
        return self._guard("delete_pod", self.inner.delete_pod, namespace, name, uid=uid,
                           grace_period_seconds=grace_period_seconds, safety=None if uid else Safety.ONCE)

    def create_pod(self, request: PodRequest) -> PodFacts:
        unknown: list[BaseException] = []
        try:
            return self._guard("create_pod", self.inner.create_pod, request, unknown=unknown)
        except AlreadyExists:
            if unknown:  # an earlier attempt may have created it: the name is deterministic
                created = self.get_pod(request.namespace, request.name)
                if created is not None:
                    return created
            raise

    def ensure_node_config(self, namespace: str, name: str, *, version: str,
                           node_selector: dict[str, str], defaults: dict[str, str]) -> bool:
        return self._guard("ensure_node_config", self.inner.ensure_node_config, namespace, name,
                           version=version, node_selector=node_selector, defaults=defaults)

    def delete_node_config(self, namespace: str, name: str, *, version: str) -> bool:
        return self._guard("delete_node_config", self.inner.delete_node_config, namespace, name, version=version)

    def create_configmap(self, namespace: str, name: str, data: dict[str, str], *,
                         labels: dict[str, str] | None = None) -> ConfigMapSnapshot:
        return self._guard("create_configmap", self.inner.create_configmap, namespace, name, data, labels=labels)

    def replace_configmap(self, namespace: str, name: str, data: dict[str, str], *,
                          resource_version: str,
                          labels: dict[str, str] | None = None) -> ConfigMapSnapshot:
        return self._guard("replace_configmap", self.inner.replace_configmap, namespace, name, data,
                           resource_version=resource_version, labels=labels)

    def patch_configmap(self, namespace: str, name: str, data: dict[str, str]) -> bool:
        return self._guard("patch_configmap", self.inner.patch_configmap, namespace, name, data)

    def restart_daemonset(self, namespace: str, name: str, *, restarted_at: datetime) -> bool:
        return self._guard("restart_daemonset", self.inner.restart_daemonset, namespace, name,
                           restarted_at=restarted_at)

    def apply_object(self, manifest: dict[str, Any]) -> bool:
        return self._guard("apply_object", self.inner.apply_object, manifest)

    def delete_object(self, ref: ObjectRef) -> bool:
        return self._guard("delete_object", self.inner.delete_object, ref)

    def patch_object(self, api_version: str, plural: str, namespace: str | None, name: str,
                     patch: dict[str, Any]) -> bool:
        return self._guard("patch_object", self.inner.patch_object, api_version, plural, namespace, name, patch)

    # -- the lease (never fenced) ---------------------------------------------------------------
    def read_lease(self, namespace: str, name: str) -> LeaseRecord | None:
        return self._guard("read_lease", self.inner.read_lease, namespace, name)

    def create_lease(self, record: LeaseRecord) -> LeaseRecord:
        return self._guard("create_lease", self.inner.create_lease, record)

    def replace_lease(self, record: LeaseRecord) -> LeaseRecord:
        return self._guard("replace_lease", self.inner.replace_lease, record)

    def delete_lease(self, namespace: str, name: str, *, resource_version: str) -> bool:
        return self._guard("delete_lease", self.inner.delete_lease, namespace, name,
                           resource_version=resource_version)

    def watch_lease(self, namespace: str, name: str, *, resource_version: str,
                    timeout: float) -> LeaseWatch:
        """A read, never fenced; not retried: the keep-alive renews or waits when it fails."""
        return self.inner.watch_lease(namespace, name, resource_version=resource_version, timeout=timeout)
