"""Which pods of a node the drain evicts, which block it, and which the recycle step recreates.

Drain follows ``kubectl drain --ignore-daemonsets``: DaemonSet pods, mirror pods and finished
pods stay; pods already terminating are waited for; a pod with emptyDir data or a bare pod
without a controller is evicted only when the plan allows it, otherwise it blocks the node.
Recycle picks every non-hostNetwork pod on the node whose IP is not in the Cilium CIDR (after
the switch those are DaemonSet pods and anything the drain left behind).
Pods the migrator itself runs on the node (verification and node-action pods) are never touched.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from migrator.model.observation import PodFacts
from migrator.model.plan import MigrationPlan

VERIFY_PREFIX = "migrator-verify-"
CLEANUP_PREFIX = "migrator-cleanup-"
ROLLBACK_PREFIX = "migrator-rollback-"


def _pod_name(prefix: str, node: str) -> str:
    name = f"{prefix}{node}"
    return name if len(name) <= 63 else name[:63].rstrip("-.")


def verify_pod_name(node: str) -> str:
    """Deterministic name of the node's verification pod (a retry finds the same pod)."""
    return _pod_name(VERIFY_PREFIX, node)


def cleanup_pod_name(node: str) -> str:
    """Deterministic name of the node's Calico clean-up pod."""
    return _pod_name(CLEANUP_PREFIX, node)


def rollback_pod_name(node: str) -> str:
    """Deterministic name of the node's restore-Calico-CNI pod."""
    return _pod_name(ROLLBACK_PREFIX, node)


def ours(pod: PodFacts, plan: MigrationPlan) -> bool:
    """A pod the migrator created (verification or node-local action)."""
    if pod.node_action is not None:
        return True
    return pod.namespace == plan.verify.namespace and pod.name.startswith((VERIFY_PREFIX, CLEANUP_PREFIX, ROLLBACK_PREFIX))


def is_agent(pod: PodFacts, plan: MigrationPlan) -> bool:
    """A cilium agent pod (by the plan's namespace and selector)."""
    agent = plan.cilium.agent
    return pod.namespace == agent.namespace and all(
        pod.labels.get(k) == v for k, v in agent.selector.items())


@dataclass
class DrainView:
    """The drain's view of one node's pods."""

    to_evict: list[PodFacts] = field(default_factory=list)
    terminating: list[PodFacts] = field(default_factory=list)
    blocked: list[tuple[PodFacts, str]] = field(default_factory=list)

    @property
    def drained(self) -> bool:
        """Nothing left to evict, nothing blocking, nothing still terminating."""
        return not self.to_evict and not self.terminating and not self.blocked


def drain_view(pods: tuple[PodFacts, ...], plan: MigrationPlan) -> DrainView:
    """Classify the pods of a node for the drain step."""
    view = DrainView()
    for pod in pods:
        if pod.daemonset or pod.mirror or pod.terminal or ours(pod, plan):
            continue
        if pod.deleting:
            view.terminating.append(pod)
        elif pod.unmanaged and plan.drain.unmanaged_pods == "block":
            view.blocked.append((pod, "bare pod without a controller (drain.unmanaged_pods: block)"))
        elif pod.emptydir and not plan.drain.delete_emptydir_data:
            view.blocked.append((pod, "uses emptyDir data (drain.delete_emptydir_data: false)"))
        else:
            view.to_evict.append(pod)
    return view


@dataclass
class RecycleView:
    """The recycle step's view of one node's pods."""

    to_recycle: list[PodFacts] = field(default_factory=list)
    terminating: list[PodFacts] = field(default_factory=list)

    @property
    def settled(self) -> bool:
        """No pod on the node holds a non-Cilium IP any more (replacements checked apart)."""
        return not self.to_recycle and not self.terminating


def recycle_view(pods: tuple[PodFacts, ...], plan: MigrationPlan,
                 network: ipaddress.IPv4Network | ipaddress.IPv6Network, *, to_cilium: bool = True) -> RecycleView:
    """Classify the pods of a node for recycling onto Cilium (or, rolling back, onto Calico)."""
    view = RecycleView()
    for pod in pods:
        if pod.host_network or pod.mirror or pod.terminal or ours(pod, plan):
            continue
        wrong = bool(pod.ip) and pod.ip_in(network) != to_cilium
        if pod.deleting:
            if wrong or not pod.ip:
                view.terminating.append(pod)
        elif wrong:
            view.to_recycle.append(pod)
    return view


def owner_key(pod: PodFacts) -> str | None:
    """``Kind/namespace/name`` of the pod's controller, if any."""
    if pod.owner_kind is None or pod.owner_name is None:
        return None
    return f"{pod.owner_kind}/{pod.namespace}/{pod.owner_name}"


def replaced(owner: str, pods: tuple[PodFacts, ...],
             network: ipaddress.IPv4Network | ipaddress.IPv6Network, *, to_cilium: bool = True) -> bool:
    """A Ready pod of ``owner`` on the wanted network (Cilium, or Calico) runs on the node."""
    return any(owner_key(p) == owner and p.ready and not p.deleting and bool(p.ip)
               and p.ip_in(network) == to_cilium for p in pods)
