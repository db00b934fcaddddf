"""The routing hand-over as an ordered list of single writes, each with its undo (pure).

Every step is one idempotent write that moves at most one thing (a MetalLB object, a Cilium
object, one node's BGP session, one Service's IP), so that a checkpoint can record the index of
the step in flight, a crash resumes by observing and writing it again, and a rollback is the
undo of the steps done, newest first. The order is what keeps every prefix announced by exactly
one kind of speaker per node and never by nobody:

1. ``restrict-pool``: MetalLB's IPAddressPools stop allocating to Services labelled for Cilium
   (no Service is yet, so nothing changes);
2. ``yield-peer``: a MetalLB BGPPeer whose router Cilium will peer from the node's address leaves
   nodes labelled for Cilium (none is yet); ``yield-bird-peer`` likewise for a Calico BGPPeer
   (BIRD's session to that router);
3. ``create``: the Cilium BGP peer config, advertisements, cluster configs and LB IPAM pools (they
   select only labelled nodes and Services: nothing changes);
4. ``hand-node`` for the first node: its label makes a CiliumBGPClusterConfig select it, so
   Cilium's operator creates its ``CiliumBGPNodeConfig`` and the agent (running the BGP control
   plane since its migration restart: ``routing.handover`` puts ``enable-bgp-control-plane`` in
   the CiliumNodeConfig) opens its sessions; where 2 applies, MetalLB's session on that node ends
   in the same write. Done when the node's ``CiliumBGPNodeConfig`` status reports every peer
   established with routes advertised (``engine/handover.py``). MetalLB still announces every
   LoadBalancer IP from the other nodes;
5. ``hand-service`` for each Service: its label takes the IP out of MetalLB's pool and into
   Cilium's advertisement in one write (with the IP pinned or requested from LB IPAM);
6. ``hand-node`` for every other node (``engine/handover.py`` runs these ``concurrency.max_unavailable``
   at a time: each moves only its own node's sessions).

Services move while at least one node runs Cilium's BGP and, on a cluster where MetalLB yields its
router, before the last node takes MetalLB's last session away. Undoing in reverse keeps the same
invariant. The tunnel stays: switching a node's routing to native is not a step here, because a
tunnel-mode node and a native one cannot reach each other (cilium/cilium#9680).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from migrator.model.handover import HandoverResources

StepKind = Literal["restrict-pool", "yield-peer", "yield-bird-peer", "create", "hand-node", "hand-service"]
UNDO_DOC: dict[str, str] = {
    "restrict-pool": "remove the pool's serviceAllocation",
    "yield-peer": "remove the peer's nodeSelectors exclusion",
    "yield-bird-peer": "give the Calico BGPPeer back its nodeSelector",
    "create": "delete the object",
    "hand-node": "remove the node label (the operator deletes the node's CiliumBGPNodeConfig, the agent its sessions)",
    "hand-service": "remove the Service label (MetalLB's pool takes the IP back, Cilium withdraws it)",
}


@dataclass(frozen=True)
class Step:
    """One write of the hand-over. ``target`` is (namespace, name) for namespaced objects, ("", name)
    otherwise; for ``create`` the namespace slot holds the plural."""

    kind: StepKind
    target: tuple[str, str]

    @property
    def key(self) -> str:
        """Stable name of the step, for the checkpoint and the log."""
        ns, name = self.target
        return f"{self.kind}:{ns + '/' if ns else ''}{name}"

    @property
    def undo(self) -> str:
        return UNDO_DOC[self.kind]


def handover_steps(res: HandoverResources, nodes: list[str], creates: list[tuple[str, str]]) -> tuple[Step, ...]:
    """The steps in order. ``creates`` is ``(plural, name)`` of the objects to create, in the order
    they must exist (peer config and advertisements before the cluster configs that refer to them)."""
    if res.blockers:
        raise ValueError("the hand-over is blocked: " + "; ".join(res.blockers))
    steps = [Step("restrict-pool", p) for p in res.metallb_pools]
    steps += [Step("yield-peer", p) for p in res.metallb_peers_yield]
    steps += [Step("yield-bird-peer", ("", name)) for name in res.calico_peers_yield]
    steps += [Step("create", c) for c in creates]
    ordered = sorted(nodes)
    steps += [Step("hand-node", ("", n)) for n in ordered[:1]]
    steps += [Step("hand-service", (s.namespace, s.name)) for s in res.services]
    steps += [Step("hand-node", ("", n)) for n in ordered[1:]]
    return tuple(steps)


def rollback_steps(steps: tuple[Step, ...], done: int) -> tuple[Step, ...]:
    """The steps to undo, newest first, after ``done`` of them ran (the one in flight included:
    its write may have landed, and every undo is idempotent)."""
    return tuple(reversed(steps[:min(done + 1, len(steps))]))
