"""Workload and policy checks: what will block a drain, what will blip, what policy changes.

A PodDisruptionBudget that allows zero disruptions blocks every drain of a node hosting its
pods; a single-replica workload is unavailable while its pod moves. The policy inventory
follows the guide: enforcement is off during the migration, Kubernetes NetworkPolicies are
enforced by Cilium after finalize, Calico policies are not translated, and dormant Cilium
policies switch on all at once when enforcement is re-enabled.
"""

from __future__ import annotations

from collections import Counter

from migrator.preflight_checks.facts import Check, Finding, PreflightFacts, PreflightInputs, finding
from migrator.preflight_checks.facts import Severity as S

LIST_CAP = 5
CALICO_ONLY_ACTIONS = {"Deny", "Log", "Pass"}


def _capped(names: list[str]) -> str:
    more = len(names) - LIST_CAP
    return ", ".join(names[:LIST_CAP]) + (f" and {more} more" if more > 0 else "")


def check_pdbs(inputs: PreflightInputs, facts: PreflightFacts) -> list[Finding]:
    out: list[Finding] = []
    for pdb in facts.pdbs:
        if pdb.disruptions_allowed > 0:
            continue
        out.append(finding(
            "pdb.zero-disruptions", S.BLOCKING if inputs.pdb_blocks_run else S.WARNING,
            f"PodDisruptionBudget {pdb.namespace}/{pdb.name} allows 0 disruptions now: draining "
            "a node with its pods will block "
            + ("and halt the run" if inputs.pdb_blocks_run else "and the node will be skipped"),
            f"kubectl -n {pdb.namespace} get pdb {pdb.name} -o wide   # then scale the workload "
            "up or relax the budget"))
    return out


def check_single_replica(inputs: PreflightInputs, facts: PreflightFacts) -> list[Finding]:
    singles = [w for w in facts.workloads if w.replicas == 1]
    if not singles:
        return []
    first = singles[0]
    return [finding(
        "workloads.single-replica", S.WARNING,
        f"{len(singles)} workload(s) run a single replica and will be briefly unavailable when "
        f"their node is drained: {_capped([f'{w.kind}/{w.namespace}/{w.name}' for w in singles])}",
        f"kubectl -n {first.namespace} scale {first.kind.lower()}/{first.name} --replicas=2")]


def check_policies(inputs: PreflightInputs, facts: PreflightFacts) -> list[Finding]:
    counts = Counter(p.kind for p in facts.policies)
    out: list[Finding] = []
    if counts["NetworkPolicy"]:
        out.append(finding(
            "policy.kubernetes", S.INFO,
            f"{counts['NetworkPolicy']} Kubernetes NetworkPolicy object(s): "
            + ("enforced by Cilium on each node as it switches (policy.mode continuous)"
               if inputs.policy_mode == "continuous" else
               "not enforced by Cilium during the migration (enable-policy=never), enforced by Cilium after "
               "finalize")))
    calico = [p for p in facts.policies if p.kind in ("CalicoNetworkPolicy", "GlobalNetworkPolicy")]
    if calico and inputs.policy_mode != "continuous":   # continuous: the policy checks report the translation
        special = [p for p in calico if p.actions & CALICO_ONLY_ACTIONS]
        detail = (f"; {len(special)} use Calico-only actions (Deny/Log/Pass): "
                  f"{_capped([p.name for p in special])}" if special else "")
        out.append(finding(
            "policy.calico", S.WARNING,
            f"{len(calico)} Calico policy object(s) ({_capped([p.name for p in calico])}) stop "
            f"applying when Calico is removed and are not translated{detail}; rewrite them as "
            "Kubernetes NetworkPolicies or CiliumNetworkPolicies before finalize",
            "kubectl get networkpolicies.crd.projectcalico.org -A; "
            "kubectl get globalnetworkpolicies.crd.projectcalico.org"))
    cilium = [p for p in facts.policies
              if p.kind in ("CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy")]
    if cilium:
        out.append(finding(
            "policy.cilium", S.WARNING,
            f"{len(cilium)} Cilium policy object(s) ({_capped([p.name for p in cilium])}) are "
            "dormant now and become enforced at once when finalize sets enable-policy=default; "
            "review them (consider policyAuditMode first)",
            "helm upgrade cilium cilium/cilium -n kube-system --reuse-values --set policyAuditMode=true"))
    return out


CHECKS: tuple[Check, ...] = (check_pdbs, check_single_replica, check_policies)
#: The IDs its findings carry (``--skip-check`` accepts these).
IDS: tuple[str, ...] = ("pdb.zero-disruptions", "workloads.single-replica", "policy.kubernetes", "policy.calico",
                        "policy.cilium")
