"""From the engine's models to preflight's inputs: the plan values and the node/PDB facts.

Preflight compares the cluster with a handful of plan values; extracting them here keeps the
checks independent of the plan's layout. Attribute access only, so the checks stay testable
with literal ``PreflightInputs``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from migrator.preflight_checks.facts import NodeAddress, PdbState, PreflightInputs


def _get(obj: Any, *path: str, default: Any = None) -> Any:
    for name in path:
        obj = getattr(obj, name, None)
        if obj is None:
            return default
    return obj


def extract(plan: Any) -> PreflightInputs:
    """The plan values preflight needs (defaults are the migration guide's)."""
    base = PreflightInputs()
    on_blocked = _get(plan, "drain", "on_pdb_blocked", default="halt")
    on_blocked = getattr(on_blocked, "value", on_blocked)
    return PreflightInputs(
        cilium_pod_cidr=str(_get(plan, "cilium", "pod_cidr", default=base.cilium_pod_cidr)),
        tunnel_port=int(_get(plan, "cilium", "tunnel_port", default=base.tunnel_port)),
        agent_namespace=str(_get(plan, "cilium", "agent", "namespace", default=base.agent_namespace)),
        agent_daemonset=str(_get(plan, "cilium", "agent", "daemonset", default=base.agent_daemonset)),
        cilium_config=str(_get(plan, "cilium", "agent", "config_map", default=base.cilium_config)),
        node_config_namespace=str(_get(plan, "cilium", "node_config", "namespace",
                                       default=base.node_config_namespace)),
        pdb_blocks_run=str(on_blocked) != "skip",
        announceable_cidrs=tuple(_get(plan, "routing", "announceable_cidrs", default=())),
        expect_routing=str(_get(plan, "routing", "expect", default="auto")),
        handover=bool(_get(plan, "routing", "handover", default=False)),
        policy_mode=str(_get(plan, "policy", "mode", default=base.policy_mode)),
        accepted=tuple((a.name, a.reason) for a in _get(plan, "policy", "accept", default=())),
    )


def node_addresses(nodes: Iterable[Any]) -> list[NodeAddress]:
    """Node names with their InternalIP (``NodeFacts.internal_ip``)."""
    return [NodeAddress(n.name, (n.internal_ip,) if getattr(n, "internal_ip", None) else ())
            for n in nodes]


def pdb_states(pdbs: Iterable[Any]) -> list[PdbState]:
    """PDB names with their current ``disruptions_allowed`` (``PdbFacts``); a budget with a
    null selector selects no pod (policy/v1) and so blocks nothing."""
    return [PdbState(p.namespace, p.name, int(p.disruptions_allowed)) for p in pdbs if p.selector is not None]
