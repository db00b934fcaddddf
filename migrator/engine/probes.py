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
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from migrator.engine.actions import DeleteObject, ProbeCheck
from migrator.model.observation import ClusterObservation, Delta, PodFacts
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
def probe_pod(obs: ClusterObservation, plan: MigrationPlan, node: str, component: str = "pod") -> PodFacts | None:
    """The node's usable probe pod of ``component`` (pod or host), if any."""
    return _fleet(obs, plan, component).get(node)


def probe_pods_by_node(obs: ClusterObservation, plan: MigrationPlan) -> dict[str, PodFacts]:
    """Usable pod-network probe pods keyed by node."""
    return _fleet(obs, plan, "pod")


def _fleet(obs: ClusterObservation, plan: MigrationPlan, component: str) -> dict[str, PodFacts]:
    """Usable probe pods of ``component`` by node (the first by name per node), once per
    observation, derived from the previous observation's by what changed when it can be."""
    namespace = plan.probes.namespace
    grouped = _by_node(obs, namespace)

    def update(previous: dict[str, dict[str, PodFacts]], delta: Delta) -> dict[str, dict[str, PodFacts]]:
        fleets = {kind: dict(by_node) for kind, by_node in previous.items()}
        for node in _nodes_of(delta):
            for by_node in fleets.values():
                by_node.pop(node, None)
            _choose(fleets, grouped.get(node, {}).values(), namespace)
        return fleets

    fleets: dict[str, dict[str, PodFacts]] = obs.indexed(
        f"probes:{namespace}", obs.probe_pods,
        lambda: _choose({"pod": {}, "host": {}}, obs.probe_pods, namespace), update)
    return fleets[component]


def _choose(fleets: dict[str, dict[str, PodFacts]], pods: Iterable[PodFacts], namespace: str) -> dict[str, dict[str, PodFacts]]:
    """Enter each usable pod of ``pods`` in its component's fleet unless its node already has
    one first by name."""
    for pod in pods:
        if pod.ready and pod.node and pod.ip and pod.phase == "Running" and not pod.deleting \
                and pod.namespace == namespace:
            by_node = fleets.get(pod.labels.get(COMPONENT_LABEL, ""))
            if by_node is not None and (pod.node not in by_node or pod.name < by_node[pod.node].name):
                by_node[pod.node] = pod
    return fleets


def _nodes_of(delta: Delta) -> set[str]:
    """The nodes of the probe pods that changed."""
    return {pod.node for pod in (*delta.removed, *delta.added) if pod.node}


def _by_node(obs: ClusterObservation, namespace: str) -> dict[str, dict[str, PodFacts]]:
    """Probe pods grouped by node, then by name."""
    def build() -> dict[str, dict[str, PodFacts]]:
        grouped: dict[str, dict[str, PodFacts]] = {}
        for pod in obs.probe_pods:
            if pod.node:
                grouped.setdefault(pod.node, {})[pod.name] = pod
        return grouped

    def update(previous: dict[str, dict[str, PodFacts]], delta: Delta) -> dict[str, dict[str, PodFacts]]:
        grouped = dict(previous)
        for node in _nodes_of(delta):
            grouped[node] = dict(grouped.get(node, {}))
        gone: PodFacts
        for gone in delta.removed:
            if gone.node and grouped[gone.node].get(gone.name) is gone:
                del grouped[gone.node][gone.name]
        come: PodFacts
        for come in delta.added:
            if come.node:
                grouped[come.node][come.name] = come
        for node in _nodes_of(delta):
            if not grouped[node]:
                del grouped[node]
        return grouped

    grouped: dict[str, dict[str, PodFacts]] = obs.indexed(f"probes-by-node:{namespace}", obs.probe_pods,
                                                          build, update)
    return grouped


def _on_network(obs: ClusterObservation, plan: MigrationPlan, network: Network) -> dict[str, bool]:
    """Per node with a usable probe pod: is that pod's IP inside ``network``? Once per observation."""
    fleet = _fleet(obs, plan, "pod")

    def update(previous: dict[str, bool], delta: Delta) -> dict[str, bool]:
        on = dict(previous)
        for node in _nodes_of(delta):
            pod = fleet.get(node)
            if pod is None:
                on.pop(node, None)
            else:
                on[node] = pod.ip_in(network)
        return on

    on: dict[str, bool] = obs.indexed(f"probes-on:{plan.probes.namespace}:{network}", obs.probe_pods,
                                      lambda: {n: p.ip_in(network) for n, p in fleet.items()}, update)
    return on


def _members(obs: ClusterObservation, plan: MigrationPlan, network: Network) -> dict[bool, frozenset[str]]:
    """The nodes whose probe pod is (True) and is not (False) inside ``network``."""
    on = _on_network(obs, plan, network)

    def update(previous: dict[bool, frozenset[str]], delta: Delta) -> dict[bool, frozenset[str]]:
        nodes = _nodes_of(delta)
        return {flag: (members - nodes) | {n for n in nodes if on.get(n) is flag}
                for flag, members in previous.items()}

    members: dict[bool, frozenset[str]] = obs.indexed(
        f"probes-members:{plan.probes.namespace}:{network}", obs.probe_pods,
        lambda: {flag: frozenset(n for n, inside in on.items() if inside is flag) for flag in (True, False)},
        update)
    return members


def _node_index(obs: ClusterObservation, names: tuple[str, ...]) -> dict[str, int]:
    """Each node's position in ``names`` (``_node_names``), kept while the names stay."""
    index: dict[str, int] = obs.indexed("node-index", names, lambda: {n: i for i, n in enumerate(names)})
    return index


def _node_names(obs: ClusterObservation) -> tuple[str, ...]:
    """Every node's name, sorted (a set that rarely changes, unlike the nodes' facts)."""
    def update(previous: tuple[str, ...], delta: Delta) -> tuple[str, ...]:
        same = {n.name for n in delta.removed} == {n.name for n in delta.added}
        return previous if same else tuple(sorted(obs.node_by_name))

    names: tuple[str, ...] = obs.indexed("node-names", obs.nodes, lambda: tuple(sorted(obs.node_by_name)), update)
    return names


class PeerWalk:
    """A node's own order over every node of the cluster: a walk through the sorted names from
    a start with a stride, both from a hash of the node (coprime with their count, so it visits
    each once). Every node prefers different peers, the same ones on every turn and in every
    process, and neither taking the first few peers nor ranking a handful of them costs a pass
    over the cluster."""

    def __init__(self, node: str, names: tuple[str, ...], index: dict[str, int]) -> None:
        self.names, self.index, n = names, index, len(names)
        digest = int.from_bytes(hashlib.blake2b(node.encode(), digest_size=8).digest(), "big")
        self.start = digest % n if n else 0
        stride = 1 + (digest >> 32) % (n - 1) if n > 1 else 1
        while n > 1 and math.gcd(stride, n) != 1:
            stride = stride % (n - 1) + 1
        self.stride, self.inverse = stride, pow(stride, -1, n) if n > 1 else 1

    def __iter__(self) -> Iterator[str]:
        names, n = self.names, len(self.names)
        return (names[(self.start + i * self.stride) % n] for i in range(n))

    def rank(self, peer: str) -> int:
        """Where ``peer`` comes in the walk."""
        return (self.index[peer] - self.start) * self.inverse % len(self.names)

    def ordered(self, peers: Iterable[str]) -> list[str]:
        """``peers`` (names of the cluster's nodes) in the walk's order."""
        return sorted(peers, key=self.rank)


def fleet_missing(obs: ClusterObservation, plan: MigrationPlan, nodes: Iterable[str]) -> list[str]:
    """Ready nodes of ``nodes`` that lack a usable probe pod of either kind."""
    ready = obs.node_by_name
    pods, hosts = _fleet(obs, plan, "pod"), _fleet(obs, plan, "host")
    return [node for node in nodes if node not in pods or node not in hosts
            if (facts := ready.get(node)) is not None and facts.ready]


# ------------------------------------------------------------------------------- the gate
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
    names = _node_names(obs)
    walk = PeerWalk(node, names, _node_index(obs, names))
    members = _members(obs, plan, network)
    need: dict[str, int] = {}
    wanted = probes.checks.peers + SPARE_PEERS
    for kind, on_cilium in (("calico", False), ("cilium", True)):
        # the first peers in the node's order that are on this network and not in flight; a
        # suspect only when there is no other. A network with few nodes (Cilium early in the
        # run, Calico late) is ranked directly rather than found by walking every node.
        few = members[on_cilium]
        ranked: Iterable[str] = walk.ordered(few & walk.index.keys()) if len(few) * 8 < len(names) else walk

        def eligible(ranked: Iterable[str] = ranked, on_cilium: bool = on_cilium) -> Iterator[str]:
            return (n for n in ranked if n != node and n not in busy and on_network.get(n) is on_cilium)
        chosen = list(islice((n for n in eligible() if n not in suspects), wanted)) or list(islice(eligible(), wanted))
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
