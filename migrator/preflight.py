"""Preflight: read the cluster once and report what would make the migration fail.

``run_preflight(plan, port)`` gathers a ``PreflightFacts`` snapshot through the ``ClusterPort``
(read-only: preflight never writes), then runs pure checks from ``migrator/preflight_checks/``
over it. Each ``Finding`` names the check, a severity (blocking findings make ``migrator
preflight`` exit 1), a message saying what is wrong and why it matters, and the exact command
that fixes it. The checks follow the envelope and pitfalls of the Cilium migration guide.

``migrator preflight`` prints the findings; ``plan``, ``run``, ``resume`` and ``canary`` gather
them too (``Observer.observe(..., preflight=True)``) and the run's PREFLIGHT phase halts on a
blocking one (``engine/preflight_gate.py``) unless ``--skip-check ID`` names its check.
"""

from __future__ import annotations

from typing import Any

import structlog

from migrator.cluster.port import ClusterPort
from migrator.policy.model import PolicyInputError
from migrator.policy_live import read_translation
from migrator.preflight_checks import calico, cilium, policy, routing, workloads
from migrator.preflight_checks.facts import (
    Finding,
    NodeAddress,
    PdbState,
    PreflightFacts,
    PreflightInputs,
    Severity,
)
from migrator.preflight_checks.plan_inputs import extract, node_addresses, pdb_states

__all__ = ["CHECK_IDS", "Finding", "NodeAddress", "PdbState", "PreflightFacts", "PreflightInputs", "Severity",
           "evaluate", "gather", "has_blocking", "inputs_from_plan", "run_preflight", "unknown_checks"]

log = structlog.get_logger(__name__)

CNC_CRD = "ciliumnodeconfigs.cilium.io"
CCNP_CRD = "ciliumclusterwidenetworkpolicies.cilium.io"
CALICO_NAMESPACES = ("kube-system", "calico-system")
CHECKS = calico.CHECKS + routing.CHECKS + cilium.CHECKS + workloads.CHECKS + policy.CHECKS
#: Every check ID a finding can carry, in check order.
CHECK_IDS: tuple[str, ...] = calico.IDS + routing.IDS + cilium.IDS + workloads.IDS + policy.IDS


def inputs_from_plan(plan: Any) -> PreflightInputs:
    """Extract the values preflight needs from a ``MigrationPlan``."""
    return extract(plan)


def gather(inputs: PreflightInputs, port: ClusterPort) -> PreflightFacts:
    """Read the cluster (GETs and LISTs only)."""
    calico_node = None
    for namespace in CALICO_NAMESPACES:
        calico_node = port.get_daemonset(namespace, "calico-node")
        if calico_node is not None:
            break
    config = port.read_configmap(inputs.agent_namespace, inputs.cilium_config)
    translation, error, shim_schema = None, None, None
    if inputs.policy_mode == "continuous":
        try:
            translation = read_translation(port)[1]
        except (PolicyInputError, ValueError) as exc:
            error = str(exc)
        if "v2" in port.served_versions(CCNP_CRD):
            shim_schema = port.crd_has_field(CCNP_CRD, "v2", "spec.enableDefaultDeny")
    return PreflightFacts(
        translation=translation, translation_error=error, shim_schema=shim_schema,
        server_version=port.server_version(),
        calico_node=calico_node,
        ippools=tuple(port.list_ippools()),
        felix=port.get_felix_configuration("default"),
        cilium_agent=port.get_daemonset(inputs.agent_namespace, inputs.agent_daemonset),
        cilium_config=dict(config.data) if config else None,
        node_config_versions=tuple(port.served_versions(CNC_CRD)),
        service_ip=port.get_service_cluster_ip("default", "kubernetes"),
        nodes=tuple(node_addresses(port.list_nodes())),
        pdbs=tuple(pdb_states(port.list_pdbs())),
        workloads=tuple(port.list_workloads()),
        policies=tuple(port.list_policies()),
        routing=port.read_routing_inventory(),
    )


def evaluate(inputs: PreflightInputs, facts: PreflightFacts) -> list[Finding]:
    """Run every check over gathered facts (pure). Blocking findings first, then by check."""
    findings = [f for check in CHECKS for f in check(inputs, facts)]
    order = {Severity.BLOCKING: 0, Severity.WARNING: 1, Severity.INFO: 2}
    return sorted(findings, key=lambda f: (order[f.severity], f.check))


def run_preflight(plan: Any, port: ClusterPort) -> list[Finding]:
    """Preflight findings for ``plan`` against the cluster behind ``port``."""
    inputs = inputs_from_plan(plan)
    findings = evaluate(inputs, gather(inputs, port))
    log.info("preflight.done", findings=len(findings),
             blocking=sum(f.severity is Severity.BLOCKING for f in findings))
    return findings


def has_blocking(findings: list[Finding]) -> bool:
    return any(f.severity is Severity.BLOCKING for f in findings)


def unknown_checks(ids: list[str] | tuple[str, ...]) -> list[str]:
    """The IDs among ``ids`` that no check reports (``--skip-check`` refuses them)."""
    return [i for i in dict.fromkeys(ids) if i not in CHECK_IDS]
