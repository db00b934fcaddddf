"""What preflight looks at and what it reports: the data types shared by every check.

Kept apart from ``migrator/preflight.py`` so the check modules can import them without a
cycle. ``PreflightFacts`` is a read-once snapshot, so every check is a pure function of
``(PreflightInputs, PreflightFacts)`` and can be tested on literal values. ``Finding`` and
``Severity`` live in ``migrator/model/findings.py`` (the engine reads them) and are re-exported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from migrator.cluster.port import DaemonSetInfo, FelixInfo, IPPoolInfo, PolicyInfo, WorkloadInfo
from migrator.model.findings import Finding, Severity
from migrator.model.routing import RoutingInventory
from migrator.policy.compile import Translation

__all__ = ["Check", "Finding", "NodeAddress", "PdbState", "PreflightFacts", "PreflightInputs", "Severity",
           "finding"]


@dataclass(frozen=True)
class PreflightInputs:
    """The few plan values preflight compares the cluster against."""

    cilium_pod_cidr: str = "10.245.0.0/16"
    tunnel_port: int = 8473
    agent_namespace: str = "kube-system"
    agent_daemonset: str = "cilium"
    cilium_config: str = "cilium-config"
    node_config_namespace: str = "kube-system"
    pdb_blocks_run: bool = True          # the plan halts (rather than skips) on a blocked drain
    announceable_cidrs: tuple[str, ...] = ()   # plan routing.announceable_cidrs
    expect_routing: str = "auto"               # plan routing.expect
    handover: bool = False                     # plan routing.handover
    policy_mode: str = "off"             # the plan's policy.mode: continuous | off
    accepted: tuple[tuple[str, str], ...] = ()   # policy.accept: (name as the translation matches it, reason)


@dataclass(frozen=True)
class NodeAddress:
    """A node and its InternalIP addresses."""

    name: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class PdbState:
    """A PodDisruptionBudget and how many disruptions it allows right now."""

    namespace: str
    name: str
    disruptions_allowed: int


@dataclass(frozen=True)
class PreflightFacts:
    """Everything the checks look at, read once."""

    server_version: str = ""
    calico_node: DaemonSetInfo | None = None
    ippools: tuple[IPPoolInfo, ...] = ()
    felix: FelixInfo | None = None
    cilium_agent: DaemonSetInfo | None = None
    cilium_config: dict[str, str] | None = None
    node_config_versions: tuple[str, ...] = ()
    service_ip: str | None = None
    nodes: tuple[NodeAddress, ...] = ()
    pdbs: tuple[PdbState, ...] = ()
    workloads: tuple[WorkloadInfo, ...] = ()
    policies: tuple[PolicyInfo, ...] = ()
    routing: RoutingInventory | None = None
    translation: Translation | None = None    # read only with policy.mode continuous
    translation_error: str | None = None      # why the policy inventory could not be translated
    shim_schema: bool | None = None           # the served CCNP schema has enableDefaultDeny (None: not served)
    extra: dict[str, Any] = field(default_factory=dict)


Check = Callable[[PreflightInputs, PreflightFacts], list[Finding]]


def finding(check: str, severity: Severity, message: str, fix: str = "") -> Finding:
    return Finding(check=check, severity=severity, message=message, fix_command=fix)
