"""The migration plan: ``MigrationPlan``, ``load_plan``, ``plan_hash`` and the JSON schema.

A plan is the operator's whole intent in one YAML file (``plans/*.yaml``): which nodes, in
which order and how many at once, how to drain, when work may happen, what finalize removes,
and where the checkpoint and the lock live. It is validated once, completely, before anything
touches the cluster; a ``PlanError`` names the offending field path and says what to do.

``python -m migrator.model.plan --schema`` prints the JSON schema (``plans/plan.schema.json``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from migrator.model.plan_file import PlanFileError, read_plan_document
from migrator.model.selector import LabelSelector
from migrator.model.units import (
    DAYS,
    PERCENT_RE,
    ClockTime,
    Duration,
    K8sName,
    Port,
    Weekday,
    check_label_key,
    format_duration,
    parse_duration,
)

__all__ = ["MIGRATION_LABEL", "MigrationPlan", "PlanError", "format_duration", "json_schema",
           "load_plan", "parse_duration", "parse_plan", "plan_hash", "render_schema"]

MIGRATION_LABEL = "io.cilium.migration/cilium-default"
API_VERSION = "migrator.io/v1"
KIND = "MigrationPlan"
DEFAULT_VERIFY_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.53"


class PlanError(ValueError):
    """The plan is invalid; the message names the field path and what to do."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------

class NodeConfigRef(_Section):
    """Where the CiliumNodeConfig lives and which apiVersion to write."""

    name: K8sName = Field(default="cilium-default", description="CiliumNodeConfig name.")
    namespace: K8sName = Field(default="kube-system", description="Cilium's namespace.")
    api_version: Literal["auto", "cilium.io/v2", "cilium.io/v2alpha1"] = Field(
        default="auto", description="auto = cilium.io/v2 when served, else cilium.io/v2alpha1.")


class AgentRef(_Section):
    """How to find the cilium agent pods and how long a restart may take."""

    namespace: K8sName = Field(default="kube-system", description="Agent pods' namespace.")
    selector: dict[str, str] = Field(default_factory=lambda: {"k8s-app": "cilium"},
                                     description="Equality label selector of agent pods.")
    daemonset: K8sName = Field(default="cilium", description="Agent DaemonSet name.")
    config_map: K8sName = Field(default="cilium-config", description="Cilium's ConfigMap name.")
    restart_timeout: Duration = Field(default=timedelta(minutes=5),
                                      description="How long the new agent pod may take to be Ready.")

    @field_validator("selector")
    @classmethod
    def _selector_keys(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("must select the agent pods, e.g. {k8s-app: cilium}")
        for key in value:
            check_label_key(key)
        return value


class CiliumSection(_Section):
    """The Cilium side of the dual overlay."""

    pod_cidr: str = Field(description="Cilium cluster-pool CIDR, e.g. 10.245.0.0/16.")
    tunnel_protocol: Literal["vxlan", "geneve"] = Field(default="vxlan",
                                                        description="Cilium encapsulation.")
    tunnel_port: Port = Field(default=8473, description="Cilium tunnel UDP port (≠ Calico's).")
    node_config: NodeConfigRef = Field(default_factory=NodeConfigRef,
                                       description="The CiliumNodeConfig the migration creates.")
    agent: AgentRef = Field(default_factory=AgentRef, description="The cilium agent.")

    @field_validator("pod_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            network = ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a network CIDR such as 10.245.0.0/16 ({exc})") from exc
        if network.prefixlen == network.max_prefixlen:
            raise ValueError(f"{value!r} is a single address; give a pod network such as 10.245.0.0/16")
        return str(network)

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        """``pod_cidr`` as an ipaddress network."""
        return ipaddress.ip_network(self.pod_cidr)


class RoutingSection(_Section):
    """How the cluster routes today, where the API cannot show it (routed clusters without an overlay).

    During the migration Cilium runs the guide's overlay on its own tunnel port while Calico keeps
    routing as it does (BGP via BIRD, or a node router announcing each node's podCIDR). Preflight
    detects the routing from the cluster's objects; these fields carry what only the operator
    knows: which prefixes the fabric accepts, and what the routing is expected to be."""

    announceable_cidrs: tuple[str, ...] = Field(
        default=(), description="CIDRs the network fabric accepts from the nodes (metal-stack: the "
                                "private network's additional announceable CIDRs, typically pod and "
                                "service CIDRs). When given, preflight blocks unless the Cilium pod CIDR "
                                "(and, on a node-routed cluster, every node's pod CIDR) lies inside one.")
    expect: Literal["auto", "overlay", "bgp", "node-routed"] = Field(
        default="auto", description="The routing the operator expects: overlay (Calico VXLAN/IPIP), bgp "
                                    "(BIRD, no encapsulation) or node-routed (Calico backend none, a node "
                                    "router announces each node's podCIDR). Preflight blocks when detection "
                                    "finds another; auto accepts what it finds.")

    handover: bool = Field(
        default=False, description="Hand routing and LoadBalancer IPs to Cilium after every node is migrated "
                                   "(`migrator handover`): the migration's CiliumNodeConfig then also turns on "
                                   "Cilium's BGP control plane (inert until a node is handed over), and finalize "
                                   "waits for the hand-over.")
    native_routing: bool = Field(
        default=False, description="At finalize, after the hand-over, switch Cilium from its migration overlay to "
                                   "native routing (each node's pod CIDR routed through the routers Cilium's BGP "
                                   "announces it to): every agent restarts at once with routing-mode native, "
                                   "because a tunnel-mode node and a native one cannot reach each other "
                                   "(cilium/cilium#9680); cross-node pod traffic pauses until the agents are "
                                   "back (see README). Needs handover.")
    handover_timeout: Duration = Field(
        default=timedelta(minutes=5), description="How long one hand-over step may take to be observed (a node's "
                                                  "sessions Established, a Service's IP kept) before the hand-over "
                                                  "halts.")

    @model_validator(mode="after")
    def _native_needs_handover(self) -> RoutingSection:
        if self.native_routing and not self.handover:
            raise ValueError("native_routing needs handover: true (Cilium's BGP must announce every node's pod "
                             "CIDR before the overlay goes)")
        return self

    @field_validator("announceable_cidrs")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for cidr in value:
            try:
                out.append(str(ipaddress.ip_network(cidr, strict=True)))
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not a network CIDR such as 10.240.0.0/12 ({exc})") from exc
        if len(set(out)) != len(out):
            raise ValueError("lists a CIDR twice")
        return tuple(out)


class NodeSelection(_Section):
    """Which nodes the plan migrates: all, a label selector, or an explicit list, minus exclude."""

    names: tuple[K8sName, ...] | None = Field(
        default=None, description="Explicit node names (also the order for strategy explicit).")
    selector: LabelSelector | None = Field(default=None, description="Nodes matching this selector.")
    exclude: tuple[K8sName, ...] = Field(default=(), description="Nodes never touched.")

    @model_validator(mode="after")
    def _one_way(self) -> NodeSelection:
        if self.names is not None and self.selector is not None:
            raise ValueError("give either names or selector, not both")
        if self.names is not None:
            if not self.names:
                raise ValueError("names is empty; list nodes or drop the key to select all nodes")
            if len(set(self.names)) != len(self.names):
                raise ValueError("names lists a node twice")
        return self


class OrderSection(_Section):
    """Deterministic node order. Control-plane nodes always go last (never first)."""

    strategy: Literal["explicit", "canaries-first", "zones-round-robin", "name"] = Field(
        default="canaries-first", description="How to order the selected nodes.")
    canaries: tuple[K8sName, ...] = Field(default=(), description="Nodes migrated first, in order.")


class ConcurrencySection(_Section):
    """How many nodes may be out of service at once."""

    max_unavailable: int | str = Field(default=1, description='Nodes in flight: an int ≥ 1 or "N%".')
    per_zone: int | None = Field(default=None, ge=1, description="Optional limit per zone.")

    @field_validator("max_unavailable")
    @classmethod
    def _max(cls, value: int | str) -> int | str:
        if isinstance(value, bool):
            raise ValueError('must be an integer ≥ 1 or a percentage like "20%"')
        if isinstance(value, int):
            if value < 1:
                raise ValueError(f"{value} is too small; at least 1 node must be allowed")
            return value
        match = PERCENT_RE.match(value.strip())
        if not match or not 1 <= int(match.group(1)) <= 100:
            raise ValueError(f'{value!r} is not an integer ≥ 1 or a percentage "1%".."100%"')
        return value.strip()

    def limit(self, total: int) -> int:
        """``max_unavailable`` resolved against ``total`` selected nodes (at least 1)."""
        if isinstance(self.max_unavailable, int):
            return self.max_unavailable
        percent = int(self.max_unavailable.rstrip("%"))
        return max(1, total * percent // 100)


class PdbOverride(_Section):
    """An explicit, audited permission to delete pods whose eviction a PDB blocks."""

    reason: str = Field(min_length=10, description="Why bypassing PDBs is acceptable (audited).")
    approved_by: str = Field(min_length=1, description="Who approved it (audited).")
    after: Duration = Field(default=timedelta(minutes=5),
                            description="How long evictions must have been blocked first.")


class DrainSection(_Section):
    """Eviction-only drain, like ``kubectl drain --ignore-daemonsets``."""

    timeout: Duration = Field(default=timedelta(minutes=10), description="Drain deadline per node.")
    grace_period_seconds: int | None = Field(default=None, ge=0,
                                             description="Override pods' termination grace period.")
    delete_emptydir_data: bool = Field(default=False,
                                       description="Evict pods with emptyDir volumes (data is lost).")
    unmanaged_pods: Literal["block", "delete"] = Field(
        default="block", description="Bare pods without a controller: block the node or delete them.")
    on_pdb_blocked: Literal["halt", "skip"] = Field(
        default="halt", description="At the deadline with evictions still blocked: halt or skip the node.")
    retry_interval: Duration = Field(default=timedelta(seconds=5),
                                     description="Back-off after a 429 without Retry-After.")
    pdb_override: PdbOverride | None = Field(default=None,
                                             description="Audited permission to delete PDB-blocked pods.")


STEER_TAINT = "migrator.io/awaiting-migration"


class PlacementSection(_Section):
    """Where pods evicted from the node being migrated go."""

    strategy: Literal["drain", "steer", "in-place"] = Field(
        default="in-place",
        description="drain: cordon and drain as the Cilium guide does (evicted pods land anywhere, often on a "
                    "node migrated later, and restart again then). steer: nodes not yet started carry the "
                    f"PreferNoSchedule taint {STEER_TAINT} while the run goes on, so evicted pods prefer nodes "
                    "already on Cilium; the taints are recorded in the checkpoint and removed when the run ends, "
                    "pauses, aborts or is rolled back. in-place: the node is neither cordoned nor drained; it is "
                    "switched first, then its pods that still have Calico IPs are evicted (PDBs honoured, drain's "
                    "rules for bare and emptyDir pods checked before the switch) while every node not yet on "
                    "Cilium, including the node itself until its new agent is Ready, carries the same taint, so "
                    "replacements land on Cilium nodes, mostly the node they left. The default: it restarts "
                    "each workload pod once (make bench: 1.00 restarts per pod against 1.09 to 1.11 for steer and "
                    "1.10 to 1.79 for drain, depending on the scheduler's scoring).")


class RecycleSection(_Section):
    """Recreate the node's pods that still have Calico IPs (DaemonSet pods, leftovers)."""

    enabled: bool = Field(default=True, description="Recycle pods after the agent switch.")
    timeout: Duration = Field(default=timedelta(minutes=5),
                              description="How long replacements may take to get Cilium IPs.")


class VerifySection(_Section):
    """The per-node verification pod."""

    timeout: Duration = Field(default=timedelta(minutes=3), description="Verification deadline.")
    namespace: K8sName = Field(default="kube-system", description="Namespace for verification pods.")
    image: str = Field(default=DEFAULT_VERIFY_IMAGE, min_length=1, description="Verification image.")
    args: tuple[str, ...] = Field(default=("netexec", "--http-port=8080"),
                                  description="Verification container args.")


class ProbeChecksSection(_Section):
    """How each connectivity check is judged."""

    tries: int = Field(default=3, ge=1, le=20, description="Connections per check round (netexec /dial tries).")
    pass_threshold: float = Field(default=0.66, gt=0, le=1,
                                  description="Fraction of a round's tries that must answer for the check to pass.")
    interval: Duration = Field(default=timedelta(seconds=5),
                               description="Wait before a failing check is dialled again (a check not dialled "
                                           "yet, such as a peer that just finished migrating, goes at once).")
    deadline: Duration = Field(default=timedelta(minutes=2),
                               description="Per node: every check must pass within this time of the gate starting.")
    peers: int = Field(default=2, ge=1, le=10,
                       description="Probe pods on this many Calico nodes and this many Cilium nodes are dialled, "
                                   "both ways (fewer when fewer exist).")


class SamplingSection(_Section):
    """Continuous sampling of the pod-to-pod matrix while the run goes on."""

    pairs: int = Field(default=6, ge=0, description="Probe-pod pairs dialled per round; 0 turns sampling off.")
    interval: Duration = Field(default=timedelta(seconds=30), description="Time between sampling rounds.")


class PolicyProbeSection(_Section):
    """The policy probe: a truth table of probe pods in three namespaces (pods a, b, c in each,
    the shape of Kubernetes' network-policy e2e tests) over every pair × ``ports`` × TCP/UDP,
    taken before the run and at every node's gate; a verdict that changed from before the run and
    that the current policy gap report does not explain fails the node's gate."""

    namespaces: tuple[K8sName, K8sName, K8sName] = Field(
        default=("migrator-policy-x", "migrator-policy-y", "migrator-policy-z"),
        description="The three namespaces of the probe pods.")
    create_namespaces: bool = Field(
        default=True, description="Create the namespaces (false: they exist, e.g. tenant namespaces).")
    pods: dict[K8sName, dict[str, str]] = Field(
        default_factory=lambda: {name: dict[str, str]() for name in ("a", "b", "c")},
        description="Probe pod name → extra labels it carries (each also carries pod=<name>), so the "
                    "cluster's policies select the probe pods as they select workloads.")
    ports: tuple[Port, ...] = Field(default=(80, 81), min_length=1, max_length=4,
                                    description="Ports each probe pod serves over TCP and UDP.")
    tries: int = Field(default=1, ge=1, le=5, description="Connections per flow and round.")

    @field_validator("pods")
    @classmethod
    def _pods(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        if not 1 <= len(value) <= 3:
            raise ValueError("name one to three probe pods (e.g. a, b, c)")
        for labels in value.values():
            for key in labels:
                check_label_key(key)
        return value


class ProbesSection(_Section):
    """The probe fleet (agnhost netexec) and the connectivity gate every node passes before uncordon."""

    enabled: bool = Field(default=True, description="Deploy the probe fleet and gate every node on it.")
    namespace: K8sName = Field(default="cni-migration-probes", description="Namespace of the probe fleet.")
    image: str = Field(default=DEFAULT_VERIFY_IMAGE, min_length=1, description="agnhost image (runs netexec).")
    port: Port = Field(default=8080, description="netexec HTTP port of the probe pods.")
    host_port: Port = Field(default=8081, description="netexec HTTP port of the hostNetwork probe pods.")
    ready_timeout: Duration = Field(default=timedelta(minutes=5),
                                    description="How long the probe fleet may take to be Ready when the run is "
                                                "prepared before the run halts.")
    dns_name: str = Field(default="kubernetes.default.svc.cluster.local", min_length=1,
                          description="Name resolved through kube-dns by the DNS check.")
    checks: ProbeChecksSection = Field(default_factory=ProbeChecksSection, description="Judging each check.")
    sampling: SamplingSection = Field(default_factory=SamplingSection, description="Continuous sampling.")
    policy: PolicyProbeSection | None = Field(
        default=None, description="The policy probe (a truth table of allowed and denied flows); null: none.")

    @model_validator(mode="after")
    def _policy_needs_probes(self) -> ProbesSection:
        if self.policy is not None and not self.enabled:
            raise ValueError("probes.policy needs probes.enabled: true (its checks are part of each node's gate)")
        return self


class RollbackSection(_Section):
    """Putting a node back on Calico: automatically when its gate fails, or on call."""

    automatic: bool = Field(default=True,
                            description="Roll a node back by itself when its connectivity gate fails "
                                        "(false: mark it FAILED and halt).")
    halt_after: int | None = Field(default=1, ge=1,
                                   description="Halt the run once this many nodes were rolled back "
                                               "automatically; null keeps going.")
    timeout: Duration = Field(default=timedelta(minutes=10),
                              description="Deadline for one node's rollback, from its start.")
    image: str = Field(default="ghcr.io/nicolaka/netshoot:v0.13", min_length=1,
                       description="Image of the node-local pod that restores Calico's CNI config.")


class CanarySection(_Section):
    """What `migrator canary` does after migrating the plan's nodes."""

    soak: Duration = Field(default=timedelta(minutes=10),
                           description="How long the canary nodes run on Cilium under continuous probes.")
    on_success: Literal["keep", "rollback"] = Field(
        default="keep", description="keep: leave the canaries on Cilium; rollback: rehearsal, always undo. "
                                    "A failed canary is always rolled back.")


class WindowGate(_Section):
    """Maintenance window: a node may only start inside it."""

    start: ClockTime = Field(description='Local start time, "HH:MM".')
    end: ClockTime = Field(description='Local end time, "HH:MM" (may be before start: overnight).')
    timezone: str = Field(default="UTC", description="IANA time zone, e.g. Europe/Berlin.")
    days: tuple[Weekday, ...] = Field(
        default=DAYS, description="Days (of the window's start) on which it opens.")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not an IANA time zone such as UTC or Europe/Berlin") from exc
        return value

    @model_validator(mode="after")
    def _span(self) -> WindowGate:
        if self.start == self.end:
            raise ValueError("start equals end; the window would be empty")
        if not self.days:
            raise ValueError("days is empty; the window would never open")
        return self


class BlockingPodsGate(_Section):
    """No node starts while pods matching this selector exist."""

    namespace: K8sName | None = Field(default=None, description="Namespace; None = all namespaces.")
    selector: LabelSelector = Field(description="Pods that block the start of a node.")


class GatesSection(_Section):
    """Conditions that must hold before a node starts."""

    window: WindowGate | None = Field(default=None, description="Maintenance window.")
    pause_between_nodes: Duration = Field(default=timedelta(0),
                                          description="Wait after a node is done before the next starts.")
    blocking_pods: BlockingPodsGate | None = Field(default=None, description="Blocking pods gate.")


class ObjectToRemove(_Section):
    """An API object finalize deletes."""

    group: str = Field(description="API group ('' for core).")
    version: str = Field(description="API version within the group.")
    plural: str = Field(min_length=1, description="Resource plural.")
    namespace: K8sName | None = Field(default=None, description="Namespace; None if cluster-scoped.")
    name: str | None = Field(default=None, description="Object name; None = every object of the kind.")


def _default_calico_objects() -> tuple[ObjectToRemove, ...]:
    return (
        ObjectToRemove(group="apps", version="v1", plural="daemonsets", namespace="kube-system",
                       name="calico-node"),
        ObjectToRemove(group="apps", version="v1", plural="deployments", namespace="kube-system",
                       name="calico-kube-controllers"),
        ObjectToRemove(group="crd.projectcalico.org", version="v1", plural="ippools"),
        ObjectToRemove(group="crd.projectcalico.org", version="v1", plural="felixconfigurations"),
    )


class FinalizeSection(_Section):
    """Post-migration: final Helm values, Cilium restart, CiliumNodeConfig and Calico removal."""

    helm_values_path: str = Field(default="values-final.yaml", min_length=1,
                                  description="Where to write the final Helm values.")
    apply_configmap: bool = Field(default=False,
                                  description="Also patch cilium-config with the final values.")
    remove_calico: tuple[ObjectToRemove, ...] = Field(default_factory=_default_calico_objects,
                                                      description="Calico objects to delete.")
    node_cleanup: bool = Field(default=True, description="Run the per-node Calico clean-up pod.")
    cleanup_image: str = Field(default="ghcr.io/nicolaka/netshoot:v0.13", min_length=1,
                               description="Image of the node clean-up pods.")
    timeout: Duration = Field(default=timedelta(minutes=10),
                              description="Deadline of each finalize wait (rollout, clean-up).")


class AcceptedApproximation(_Section):
    """One approximation the operator accepts: the translated policy enforces it as stated by
    ``migrator policy translate``, and the run goes on (recorded in the checkpoint's audit and
    printed by preflight)."""

    policy: str = Field(min_length=1, description="The policy as the translation names it, e.g. gnp/tenant-isolation "
                                                  "or np/shop/allow-web; '*' accepts the construct in every policy.")
    approximation: str = Field(min_length=1, description="The approximation's construct, e.g. icmp-code or "
                                                         "narrowing (the word after the rule in `migrator policy "
                                                         "translate`'s REASON column).")
    reason: str = Field(min_length=10, description="Why the approximation is acceptable (audited).")

    @property
    def name(self) -> str:
        """The name ``policy.findings.blocking`` matches: ``policy#construct``, or the bare construct."""
        return self.approximation if self.policy == "*" else f"{self.policy}#{self.approximation}"


class PolicySection(_Section):
    """What happens to network policy during the run.

    ``off`` keeps the Cilium guide's behaviour: migrated nodes enforce no policy until finalize,
    and Calico policies stop applying when Calico is removed (preflight says so loudly).
    ``continuous`` carries Calico's policies across: their translations are applied before the
    first node switches, each migrated node enforces them (``enable-policy: default`` in the
    CiliumNodeConfig), temporary shim policies let un-migrated (Calico) pods in where translated
    rules allow them, and finalize deletes the Calico policies only once ``policy verify`` passes
    on the live translations. Preflight blocks on an untranslatable policy, and on an
    approximation not listed in ``accept``."""

    mode: Literal["continuous", "off"] = Field(
        default="off", description="continuous: translate and enforce node by node; off: the guide's "
                                   "behaviour (no enforcement on migrated nodes until finalize).")
    accept: tuple[AcceptedApproximation, ...] = Field(
        default=(), description="Approximations accepted by name (policy and construct, with a reason).")

    @property
    def accepted(self) -> tuple[str, ...]:
        """The accepted names, as ``policy.findings.blocking`` takes them."""
        return tuple(a.name for a in self.accept)


class StateSection(_Section):
    """Where the checkpoint and the lock live."""

    configmap_name: K8sName = Field(default="cni-migration-state", description="Checkpoint ConfigMap.")
    configmap_namespace: K8sName = Field(default="kube-system", description="Its namespace.")
    lease_name: K8sName = Field(default="cni-migration-lock", description="Lock Lease name.")
    lease_namespace: K8sName = Field(default="kube-system", description="Its namespace.")
    lease_duration: Duration = Field(default=timedelta(seconds=30),
                                     description="Lease duration; a lease older than this is stale.")

    @field_validator("lease_duration")
    @classmethod
    def _lease(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=5):
            raise ValueError("must be at least 5s")
        return value


class ApiSection(_Section):
    """How the run treats a faulty API server."""

    outage_tolerance: Duration = Field(
        default=timedelta(minutes=10),
        description="How long the run keeps its state and waits while the API server is unreachable or "
                    "failing (after each call's own retries) before it halts, resumable.")


class MigrationPlan(_Section):
    """A complete migration plan (``kind: MigrationPlan``)."""

    api_version: Literal["migrator.io/v1"] = Field(description="Always migrator.io/v1.")
    kind: Literal["MigrationPlan"] = Field(description="Always MigrationPlan.")
    name: K8sName = Field(description="Plan name (shown in the checkpoint and events).")
    cilium: CiliumSection = Field(description="The Cilium side.")
    routing: RoutingSection = Field(default_factory=RoutingSection,
                                    description="Routing facts the API cannot show (routed clusters).")
    nodes: NodeSelection = Field(default_factory=NodeSelection, description="Which nodes.")
    order: OrderSection = Field(default_factory=OrderSection, description="Node order.")
    concurrency: ConcurrencySection = Field(default_factory=ConcurrencySection,
                                            description="Nodes in flight.")
    drain: DrainSection = Field(default_factory=DrainSection, description="Drain policy.")
    placement: PlacementSection = Field(default_factory=PlacementSection, description="Pod placement.")
    recycle: RecycleSection = Field(default_factory=RecycleSection, description="Pod recycling.")
    verify: VerifySection = Field(default_factory=VerifySection, description="Verification.")
    gates: GatesSection = Field(default_factory=GatesSection, description="Start gates.")
    finalize: FinalizeSection = Field(default_factory=FinalizeSection, description="Finalize.")
    policy: PolicySection = Field(default_factory=PolicySection, description="Network policy during the run.")
    probes: ProbesSection = Field(default_factory=ProbesSection, description="Connectivity probes.")
    rollback: RollbackSection = Field(default_factory=RollbackSection, description="Rollback.")
    canary: CanarySection | None = Field(default=None,
                                         description="Canary settings (required by `migrator canary`).")
    state: StateSection = Field(default_factory=StateSection, description="Checkpoint and lock.")
    api: ApiSection = Field(default_factory=ApiSection, description="API server outages.")
    max_failures: int = Field(default=0, ge=0,
                              description="Failed nodes tolerated before the run halts.")

    @model_validator(mode="after")
    def _cross_checks(self) -> MigrationPlan:
        if self.order.strategy == "explicit" and self.nodes.names is None:
            raise ValueError("order.strategy explicit needs nodes.names (the order to follow)")
        if self.order.strategy == "canaries-first" and self.nodes.names is not None:
            missing = [c for c in self.order.canaries if c not in self.nodes.names]
            if missing:
                raise ValueError(f"order.canaries {missing} are not in nodes.names")
        overlap = set(self.order.canaries) & set(self.nodes.exclude)
        if overlap:
            raise ValueError(f"order.canaries {sorted(overlap)} are also in nodes.exclude")
        if self.placement.strategy == "in-place" and self.drain.pdb_override is not None:
            raise ValueError("drain.pdb_override needs placement.strategy drain or steer: in-place never "
                             "deletes a PDB-guarded pod, it waits before the switch and then halts or skips "
                             "as drain.on_pdb_blocked says")
        return self


# --------------------------------------------------------------------------------------------
# Loading, hashing, schema
# --------------------------------------------------------------------------------------------

def _loc(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif str(item).startswith(("function-", "constrained-")) or str(item) in ("int", "str"):
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(plan)"


def _explain(exc: ValidationError) -> str:
    lines = []
    seen: set[str] = set()
    for error in exc.errors():
        where = _loc(tuple(error["loc"]))
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field; remove it or check its spelling (see plans/plan.schema.json)"
        elif error["type"] == "missing":
            message = "required field is missing; add it"
        line = f"{where}: {message}"
        if line not in seen:
            seen.add(line)
            lines.append(line)
    return "invalid plan: " + "; ".join(lines[:5]) + ("" if len(lines) <= 5 else f" (+{len(lines) - 5} more)")


def parse_plan(data: Any) -> MigrationPlan:
    """Validate a plan already parsed from YAML/JSON. Raises ``PlanError``."""
    if not isinstance(data, dict):
        raise PlanError("invalid plan: (plan): the document must be a mapping with "
                        "api_version, kind, name, cilium ...")
    try:
        return MigrationPlan.model_validate(data)
    except ValidationError as exc:
        raise PlanError(_explain(exc)) from exc


def load_plan(path: str | Path) -> MigrationPlan:
    """Read and validate a plan file. Raises ``PlanError`` naming the field and what to do (the
    file itself — size, encoding, YAML, duplicate keys — is checked by ``plan_file``)."""
    try:
        data = read_plan_document(path)
    except PlanFileError as exc:
        raise PlanError(str(exc)) from exc
    return parse_plan(data)


def plan_hash(plan: MigrationPlan) -> str:
    """A short stable digest of the whole plan's meaning (not its formatting). The run's identity,
    which ignores tuning, is ``model.identity.plan_identity``; checkpoints of schema 1 hold this."""
    canonical = json.dumps(plan.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def json_schema() -> dict[str, Any]:
    """The plan's JSON schema (what ``plans/plan.schema.json`` holds)."""
    schema = MigrationPlan.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "MigrationPlan"
    return schema


def render_schema() -> str:
    """The JSON schema as the text committed to ``plans/plan.schema.json``."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":  # pragma: no cover - exercised through the golden-file test
    if sys.argv[1:] != ["--schema"]:
        print("usage: python -m migrator.model.plan --schema > plans/plan.schema.json", file=sys.stderr)
        raise SystemExit(2)
    sys.stdout.write(render_schema())
