"""The per-node gap report: flows enforced on one side only while a node's window is open.

During the run a flow between a pod on a migrated node (Cilium) and a pod still on Calico is
judged by Felix at the Calico end, exactly, and by Cilium at the other end, where the Calico pod
is only ``unmanaged``. The shims (``shims.py``) allow ``unmanaged`` on the ports a label rule
allows, so at the Cilium end they let in every Calico pod, not only the ones the rule names. A
gap flow is one such widened flow that Calico's semantics deny at the Cilium endpoint while the
Calico end lets it through (where Felix at the Calico end already denies it, there is no gap).

``window_gap(inv, rules, cilium_nodes)`` evaluates it over pods grouped by what can tell them
apart (namespace, labels, service account, named ports, which side they are on), with Calico's
evaluator (``calico_eval``) for the Calico verdicts and Cilium's selector matching for the
shims. The answer is bounded: a count and the first ``LINES`` flows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from migrator.policy.calico_eval import CalicoModel
from migrator.policy.cilium_eval import CiliumModel, _names_namespace, selector_matches
from migrator.policy.endpoints import Endpoint, Probe, probes
from migrator.policy.identity import NAMESPACE
from migrator.policy.model import Inventory, Pod
from migrator.policy.shims import ShimRule

LINES = 10


@dataclass(frozen=True)
class Gap:
    """Flows enforced on one side only during a node's window: how many, and the first few."""

    flows: int
    lines: tuple[str, ...]


def _groups(inv: Inventory, cilium_nodes: frozenset[str]) -> list[tuple[Endpoint, bool]]:
    groups: dict[tuple[Any, ...], list[Pod]] = {}
    for pod in inv.pods:
        if not pod.ip:
            continue
        key = (pod.namespace, tuple(sorted(pod.labels.items())), pod.service_account, pod.named_ports,
               pod.node in cilium_nodes)
        groups.setdefault(key, []).append(pod)
    out = []
    for key, pods in sorted(groups.items(), key=lambda kv: str(kv[0])):
        rep = pods[0]
        shown = ",".join(f"{k}={v}" for k, v in key[1]) or "*"
        out.append((Endpoint(key=f"{rep.namespace}/{shown}" + (f" ({len(pods)} pods)" if len(pods) > 1 else ""),
                             ip=rep.ip or "", pod=rep, members=len(pods)), bool(key[4])))
    return out


def _named(rule: ShimRule, labels: Mapping[str, str]) -> bool:
    """The rule's own peers select this (Calico-side) pod, so the shim widens nothing for it; a
    namespaced policy's peer selector that names no namespace stays in the policy's namespace."""
    return any((rule.namespace is None or _names_namespace(s) or labels.get(NAMESPACE) == rule.namespace)
               and selector_matches(s, labels) for s in rule.peers)


def window_gap(inv: Inventory, rules: Iterable[ShimRule], cilium_nodes: Iterable[str]) -> Gap:
    """The gap while the pods on ``cilium_nodes`` run on Cilium and the others on Calico."""
    rule_list = list(rules)
    on_cilium = frozenset(cilium_nodes)
    groups = _groups(inv, on_cilium)
    if not rule_list or not any(side for _e, side in groups):
        return Gap(0, ())
    calico = CalicoModel(inv)
    identities = CiliumModel((), inv)
    probe_list: list[Probe] = probes(inv)
    flows = 0
    lines: list[str] = []
    seen: set[tuple[str, str, Probe]] = set()
    for rule in rule_list:
        for migrated, side in groups:
            if not side or not selector_matches(rule.subject, identities.identity(migrated) or {}):
                continue
            for peer, peer_side in groups:
                if peer_side or _named(rule, identities.identity(peer) or {}):
                    continue
                src, dst = (peer, migrated) if rule.direction == "Ingress" else (migrated, peer)
                for probe in probe_list:
                    if (src.key, dst.key, probe) in seen or not CiliumModel._l4(rule.entry, probe, dst):
                        continue
                    at_cilium, _by = calico.direction_verdict(migrated, rule.direction, src, dst, probe)
                    other = "Egress" if rule.direction == "Ingress" else "Ingress"
                    at_calico, _ = calico.direction_verdict(peer, other, src, dst, probe)
                    if at_cilium or not at_calico:
                        continue
                    seen.add((src.key, dst.key, probe))
                    flows += src.members * dst.members
                    if len(lines) < LINES:
                        lines.append(f"{src.key} -> {dst.key} {probe}: Calico denies at "
                                     f"{'ingress' if rule.direction == 'Ingress' else 'egress'} of the migrated "
                                     f"side, {rule.shim} allows unmanaged ({rule.source})")
    return Gap(flows, tuple(lines))
