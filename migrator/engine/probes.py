"""Connectivity probes, pure: the probe fleet's manifests, which checks gate a node, which pairs
a sampling round dials, and how results are judged.

The fleet is agnhost ``netexec`` in its own namespace: a DaemonSet of pods on the pod network
(``migrator-probe``), a hostNetwork variant (``migrator-probe-host``) and a ClusterIP Service in
front of the pod variant. Every check is a request through the API server's pods/proxy
subresource to ``/dial`` on a source probe pod, which connects ``tries`` times to the target
and reports the answers, so checks work the same on any cluster the tool can reach. A check's
outcome is ``ok …``, ``fail …`` (the probe answered, or the API server could not reach the
probe pod) or ``unknown …`` (the API server itself failed: no evidence about the network).

The gate of a node (after its pods were recycled, before uncordon) dials, from the node's new
probe pod: the verification pod on the same node, probe pods on Calico nodes and on Cilium
nodes (and back from them), the probe Service, the API server by name through kube-dns and by
ClusterIP; and from the node's hostNetwork probe pod to its probe pod. ``peers`` peers per
network must answer both ways, out of a few more dialled: one broken peer elsewhere must not
fail — and roll back — the node being migrated (continuous sampling reports that peer), and
nodes that continuous sampling has already seen failing are not chosen as peers while another
peer on their network remains.
Peers are chosen deterministically per node (a hash), so different nodes probe different peers
and a restarted process picks the same ones.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import islice
from typing import Any

from migrator.engine.actions import DeleteObject, ProbeCheck
from migrator.model.observation import ClusterObservation, PodFacts
from migrator.model.plan import MigrationPlan

POD_DS = "migrator-probe"
HOST_DS = "migrator-probe-host"
SERVICE = "migrator-probe"
NAME_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
MANAGED = {"app.kubernetes.io/managed-by": "migrator"}
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _labels(component: str) -> dict[str, str]:
    return {NAME_LABEL: "migrator-probe", COMPONENT_LABEL: component, **MANAGED}


def _daemonset(plan: MigrationPlan, name: str, component: str, port: int, host: bool) -> dict[str, Any]:
    probes = plan.probes
    selector = {NAME_LABEL: "migrator-probe", COMPONENT_LABEL: component}
    spec: dict[str, Any] = {
        "tolerations": [{"operator": "Exists"}],
        "terminationGracePeriodSeconds": 1,
        "containers": [{
            "name": "netexec", "image": probes.image,
            "args": ["netexec", f"--http-port={port}", "--udp-port=-1"],
            "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 5},
            "resources": {"requests": {"cpu": "5m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]}},
        }],
    }
    if host:
        spec.update(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet")
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": name, "namespace": probes.namespace, "labels": _labels(component)},
            "spec": {"selector": {"matchLabels": selector},
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
                     "template": {"metadata": {"labels": _labels(component)}, "spec": spec}}}


def fleet_manifests(plan: MigrationPlan) -> tuple[dict[str, Any], ...]:
    """Namespace, the two DaemonSets and the Service, in the order they must be applied."""
    probes = plan.probes
    return (
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": probes.namespace, "labels": {NAME_LABEL: "migrator-probe", **MANAGED}}},
        _daemonset(plan, POD_DS, "pod", probes.port, host=False),
        _daemonset(plan, HOST_DS, "host", probes.host_port, host=True),
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": SERVICE, "namespace": probes.namespace, "labels": _labels("pod")},
         "spec": {"type": "ClusterIP", "selector": {NAME_LABEL: "migrator-probe", COMPONENT_LABEL: "pod"},
                  "ports": [{"name": "http", "port": probes.port, "targetPort": probes.port,
                             "protocol": "TCP"}]}},
    )


def fleet_removal(plan: MigrationPlan) -> DeleteObject:
    """Deleting the probe namespace removes the whole fleet (its DaemonSets, pods, Service)."""
    return DeleteObject(group="", version="v1", plural="namespaces", name=plan.probes.namespace)


# ------------------------------------------------------------------------------- probe pods
def _usable(pod: PodFacts) -> bool:
    return pod.phase == "Running" and pod.ready and not pod.deleting and bool(pod.ip)


def probe_pod(obs: ClusterObservation, plan: MigrationPlan, node: str, component: str = "pod") -> PodFacts | None:
    """The node's usable probe pod of ``component`` (pod or host), if any."""
    return _fleet(obs, plan, component).get(node)


def probe_pods_by_node(obs: ClusterObservation, plan: MigrationPlan) -> dict[str, PodFacts]:
    """Usable pod-network probe pods keyed by node."""
    return _fleet(obs, plan, "pod")


def _fleet(obs: ClusterObservation, plan: MigrationPlan, component: str) -> dict[str, PodFacts]:
    """Usable probe pods of ``component`` by node (the first listed per node), once per observation."""
    namespace = plan.probes.namespace

    def build() -> dict[str, PodFacts]:
        found: dict[str, PodFacts] = {}
        for pod in obs.probe_pods:
            if pod.node and pod.node not in found and pod.labels.get(COMPONENT_LABEL) == component \
                    and _usable(pod) and pod.namespace == namespace:
                found[pod.node] = pod
        return found
    fleet: dict[str, PodFacts] = obs.indexed(f"probes:{namespace}:{component}", obs.probe_pods, build)
    return fleet


def _on_network(obs: ClusterObservation, plan: MigrationPlan, network: Network) -> dict[str, bool]:
    """Per node with a usable probe pod: is that pod's IP inside ``network``? Once per observation."""
    fleet = _fleet(obs, plan, "pod")
    on: dict[str, bool] = obs.indexed(f"probes-on:{plan.probes.namespace}:{network}", obs.probe_pods,
                                      lambda: {n: p.ip_in(network) for n, p in fleet.items()})
    return on


@lru_cache(maxsize=512)
def _peer_order(node: str, peers: tuple[str, ...]) -> tuple[str, ...]:
    """``peers`` in ``node``'s own order (a hash of the pair: every node prefers different peers,
    the same ones on every turn). Kept per node while the cluster's nodes stay the same."""
    return tuple(sorted(peers, key=lambda peer: _rank(node, peer)))


def fleet_missing(obs: ClusterObservation, plan: MigrationPlan, nodes: Iterable[str]) -> list[str]:
    """Ready nodes of ``nodes`` that lack a usable probe pod of either kind."""
    ready = {n.name for n in obs.nodes if n.ready}
    missing = []
    for node in nodes:
        if node in ready and (probe_pod(obs, plan, node) is None or probe_pod(obs, plan, node, "host") is None):
            missing.append(node)
    return missing


# ------------------------------------------------------------------------------- the gate
def _rank(node: str, peer: str) -> str:
    return hashlib.sha256(f"{node}\0{peer}".encode()).hexdigest()


def _check(plan: MigrationPlan, name: str, src: PodFacts, host: str, port: int, *, src_port: int | None = None) -> ProbeCheck:
    return ProbeCheck(name=name, namespace=src.namespace, pod=src.name,
                      pod_port=src_port or plan.probes.port, host=host, port=port,
                      tries=plan.probes.checks.tries)


SPARE_PEERS = 2  # extra peers dialled per network, so one broken peer does not fail the node


@dataclass(frozen=True)
class Gate:
    """The checks of one gate and what passing means: every fixed check, and per network
    (``calico``, ``cilium``) ``need`` peers answering both ways."""

    checks: tuple[ProbeCheck, ...] = ()
    need: dict[str, int] = field(default_factory=dict)
    waiting: str | None = None
    names: dict[str, str] = field(default_factory=dict)   # how a check is shown, where its name is short

    def shown(self, name: str) -> str:
        return self.names.get(name, name)

    def verdict(self, passed_names: set[str]) -> tuple[bool, list[str]]:
        """(passed?, the names still standing in the way)."""
        missing = [c.name for c in self.checks if ":" not in c.name and c.name not in passed_names]
        for kind, need in self.need.items():
            peers = {c.name.split(":", 1)[1] for c in self.checks if c.name.startswith(f"to-{kind}:")}
            good = [p for p in peers if f"to-{kind}:{p}" in passed_names and f"from-{kind}:{p}" in passed_names]
            if len(good) < need:
                missing += sorted(n for n in (c.name for c in self.checks)
                                  if n.split(":", 1)[0] in (f"to-{kind}", f"from-{kind}") and n not in passed_names)
        return not missing, missing

    def todo(self, passed_names: set[str], failed_names: set[str]) -> tuple[ProbeCheck, ...]:
        """The next round: unpassed fixed checks, and per network only as many peers as are still
        needed — fresh ones first; a spare is dialled only after a peer failed."""
        names = [c.name for c in self.checks]
        wanted = {n for n in names if ":" not in n and n not in passed_names}
        for kind, need in self.need.items():
            peers = [n.split(":", 1)[1] for n in names if n.startswith(f"to-{kind}:")]
            pair = {p: (f"to-{kind}:{p}", f"from-{kind}:{p}") for p in peers}
            good = [p for p in peers if set(pair[p]) <= passed_names]
            rest = [p for p in peers if p not in good]
            fresh = [p for p in rest if not set(pair[p]) & failed_names]
            failed = [p for p in rest if set(pair[p]) & failed_names]
            for peer in (fresh + failed)[:max(0, need - len(good))]:
                wanted |= {n for n in pair[peer] if n not in passed_names}
        return tuple(c for c in self.checks if c.name in wanted)


def gate_checks(plan: MigrationPlan, obs: ClusterObservation, node: str, network: Network, *,
                busy: frozenset[str], same_node_peer: PodFacts | None, expect_cilium: bool = True,
                suspects: frozenset[str] = frozenset()) -> Gate:
    """The gate of ``node``, or a ``Gate`` that says why it must wait.

    ``expect_cilium`` says which network the node's probe pod must be on (forward: Cilium;
    after a rollback: Calico). ``busy`` are the nodes in flight: never used as peers.
    ``suspects`` (nodes in failing sampled pairs) are used only when a network has no other
    peer: a node already known broken must not fail the node being migrated. Up to
    ``peers`` + ``SPARE_PEERS`` peers per network are dialled; ``peers`` of them (or all there
    are) must answer both ways.
    """
    probes = plan.probes
    own = probe_pod(obs, plan, node)
    host = probe_pod(obs, plan, node, "host")
    if own is None or host is None:
        return Gate(waiting="waiting for the node's probe pods to be Ready")
    if own.ip_in(network) != expect_cilium:
        return Gate(waiting=f"waiting for the probe pod to get a {'Cilium' if expect_cilium else 'Calico'} IP")
    checks: list[ProbeCheck] = []
    if same_node_peer is not None and same_node_peer.ip:
        checks.append(_check(plan, "same-node", own, same_node_peer.ip, probes.port))
    by_node = probe_pods_by_node(obs, plan)
    on_network = _on_network(obs, plan, network)
    # over every node of the cluster (a set that rarely changes, unlike the usable probe pods)
    order = _peer_order(node, obs.indexed("node-names", obs.nodes, lambda: tuple(sorted(obs.node_by_name))))
    need: dict[str, int] = {}
    wanted = probes.checks.peers + SPARE_PEERS
    for kind, on_cilium in (("calico", False), ("cilium", True)):
        # the first peers in the node's order that are on this network and not in flight; a
        # suspect only when there is no other
        candidates = (n for n in order if n != node and n not in busy and on_network.get(n) is on_cilium)
        chosen = list(islice((n for n in candidates if n not in suspects), wanted)) or list(islice(
            (n for n in order if n != node and n not in busy and on_network.get(n) is on_cilium), wanted))
        if chosen:
            need[kind] = min(probes.checks.peers, len(chosen))
        for peer in chosen:
            pod = by_node[peer]
            checks.append(_check(plan, f"to-{kind}:{peer}", own, pod.ip or "", probes.port))
            checks.append(_check(plan, f"from-{kind}:{peer}", pod, own.ip or "", probes.port))
    if obs.probe_service_ip:
        checks.append(_check(plan, "service", own, obs.probe_service_ip, probes.port))
    if obs.apiserver_ip:
        checks.append(_check(plan, "apiserver", own, obs.apiserver_ip, 443))
        checks.append(_check(plan, "dns", own, probes.dns_name, 443))
    checks.append(_check(plan, "host-to-pod", host, own.ip or "", probes.port, src_port=probes.host_port))
    return Gate(checks=tuple(checks), need=need)


# ------------------------------------------------------------------------------- sampling
def sample_pairs(plan: MigrationPlan, obs: ClusterObservation, busy: frozenset[str],
                 cursor: int) -> tuple[tuple[ProbeCheck, ...], int]:
    """The next round of pod-to-pod pairs among nodes not in flight, and the next cursor.

    Pairs are enumerated without building the N² matrix: index ``i`` is source ``i // (n-1)``
    and the ``i % (n-1)``-th other node as target; the cursor walks the whole matrix in turn.
    """
    wanted = plan.probes.sampling.pairs
    pods = probe_pods_by_node(obs, plan)
    names = sorted(n for n in pods if n not in busy)
    n = len(names)
    if wanted == 0 or n < 2:
        return (), cursor
    total = n * (n - 1)
    checks = []
    for k in range(min(wanted, total)):
        index = (cursor + k) % total
        i, j = divmod(index, n - 1)
        if j >= i:
            j += 1
        src, dst = pods[names[i]], pods[names[j]]
        checks.append(_check(plan, f"{names[i]}->{names[j]}", src, dst.ip or "", plan.probes.port))
    return tuple(checks), (cursor + len(checks)) % total


def pair_nodes(name: str) -> tuple[str, str]:
    """The (source, target) nodes of a sampling check name ``a->b``."""
    src, _, dst = name.partition("->")
    return src, dst


def sampled_suspects(failures: Iterable[str]) -> frozenset[str]:
    """The nodes to blame for failing sampled pairs (kept as ``"a->b outcome"``): a node that
    fails with two or more partners is the broken end of its pairs; a pair whose ends fail with
    no one else leaves both in doubt."""
    pairs = [pair_nodes(failure.split(" ", 1)[0]) for failure in failures]
    partners: dict[str, set[str]] = {}
    for a, b in pairs:
        partners.setdefault(a, set()).add(b)
        partners.setdefault(b, set()).add(a)
    suspects: set[str] = set()
    for pair in pairs:
        repeat = {n for n in pair if len(partners[n]) >= 2}
        suspects |= repeat or set(pair)
    return frozenset(n for n in suspects if n)


#: How a check's outcome starts when the API server did not relay the probe's answer.
UNKNOWN = "unknown"


def unknown(outcome: str | None) -> bool:
    """True for the outcome of a check the API server did not relay (no evidence either way)."""
    return outcome is not None and outcome.startswith(UNKNOWN)


def passed(answered: int, tries: int, threshold: float) -> bool:
    """A round passes when at least ``threshold`` of its tries were answered."""
    return tries > 0 and answered / tries >= threshold - 1e-9


def sweep_checks(plan: MigrationPlan, obs: ClusterObservation) -> tuple[ProbeCheck, ...]:
    """A whole-cluster sweep in O(nodes): each probe pod dials the next node's (a ring), and the
    first one also dials the probe Service and the API server by name."""
    pods = probe_pods_by_node(obs, plan)
    names = sorted(pods)
    checks = [_check(plan, f"{a}->{b}", pods[a], pods[b].ip or "", plan.probes.port)
              for a, b in zip(names, names[1:] + names[:1], strict=True) if a != b]
    if names and obs.probe_service_ip:
        checks.append(_check(plan, "service", pods[names[0]], obs.probe_service_ip, plan.probes.port))
    if names and obs.apiserver_ip:
        checks.append(_check(plan, "dns", pods[names[0]], plan.probes.dns_name, 443))
    return tuple(checks)
