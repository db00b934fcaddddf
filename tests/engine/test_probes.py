"""The pure probe logic: fleet manifests, the gate's checks, sampling rotation, folding results."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import kubernetes_validate
import pytest

from migrator.engine.actions import ActionResult, ProbeCheck, RunProbes
from migrator.engine.budget import DisruptionBudgets
from migrator.engine.node_rows import FORWARD
from migrator.engine.node_steps import NodeCursor, StepContext, StepOutcome
from migrator.engine.probes import (
    SPARE_PEERS,
    PeerWalk,
    fleet_manifests,
    gate_checks,
    pair_nodes,
    passed,
    sample_pairs,
    sampled_suspects,
    sweep_checks,
)
from migrator.engine.results import record_results
from migrator.engine.rows import advance
from migrator.model.checkpoint import Checkpoint, Intent, NodeRecord
from migrator.model.observation import ClusterObservation, NodeFacts, PodFacts
from migrator.model.states import NodePhase, RunPhase
from tests.engine.loop import make_plan

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
CILIUM = ipaddress.ip_network("10.245.0.0/16")
PLAN = make_plan(probes={"enabled": True})


def probe(node: str, ip: str, component: str = "pod", ready: bool = True) -> PodFacts:
    return PodFacts(namespace="cni-migration-probes", name=f"migrator-probe-{component}-{node}", uid=f"u-{node}-{component}",
                    node=node, phase="Running", ready=ready, ip=ip, daemonset=True, owner_kind="DaemonSet",
                    labels={"app.kubernetes.io/name": "migrator-probe", "app.kubernetes.io/component": component})


def cluster(cilium: set[str], nodes: int = 6) -> ClusterObservation:
    names = [f"node-{i}" for i in range(1, nodes + 1)]
    pods = []
    for i, name in enumerate(names, 1):
        pods.append(probe(name, f"10.245.{i}.5" if name in cilium else f"192.168.{i}.5"))
        pods.append(probe(name, f"172.18.0.{i}", "host"))
    return ClusterObservation(nodes=tuple(NodeFacts(name=n) for n in names), probe_pods=tuple(pods),
                              probe_service_ip="10.96.0.50", apiserver_ip="10.96.0.1")


def test_fleet_manifests_are_valid_kubernetes_objects():
    docs = fleet_manifests(PLAN)
    assert [d["kind"] for d in docs] == ["Namespace", "DaemonSet", "DaemonSet", "Service"]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.32", strict=True)
    pod_ds, host_ds = docs[1], docs[2]
    assert pod_ds["spec"]["template"]["spec"]["tolerations"] == [{"operator": "Exists"}]
    assert host_ds["spec"]["template"]["spec"]["hostNetwork"] is True
    assert docs[3]["spec"]["selector"] == pod_ds["spec"]["selector"]["matchLabels"]


def test_gate_dials_peers_on_both_networks_both_ways_and_skips_busy_nodes():
    obs = cluster(cilium={"node-1", "node-2", "node-3"}, nodes=8)
    gate = gate_checks(PLAN, obs, "node-1", CILIUM, busy=frozenset({"node-2"}), same_node_peer=None)
    assert gate.waiting is None
    names = [c.name for c in gate.checks]
    calico = [n.split(":")[1] for n in names if n.startswith("to-calico:")]
    assert len(calico) == 4 and sorted(calico) == sorted(n.split(":")[1] for n in names if n.startswith("from-calico:"))
    assert [n for n in names if "cilium" in n] == ["to-cilium:node-3", "from-cilium:node-3"]  # node-2 is busy
    assert gate.need == {"calico": 2, "cilium": 1}
    assert {"service", "apiserver", "dns", "host-to-pod"} <= set(names)
    host = next(c for c in gate.checks if c.name == "host-to-pod")
    assert host.pod == "migrator-probe-host-node-1" and host.pod_port == PLAN.probes.host_port
    again = gate_checks(PLAN, obs, "node-1", CILIUM, busy=frozenset({"node-2"}), same_node_peer=None)
    assert again.checks == gate.checks  # a restarted process picks the same peers


@pytest.mark.parametrize("cilium_count", [1, 3, 20, 150, 199])
def test_peers_are_the_first_in_the_nodes_own_order_however_few_share_its_network(cilium_count):
    """A network with few nodes is ranked directly rather than by walking every node: the peers
    must be the same either way, the first eligible ones in the node's own walk."""
    names = [f"node-{i}" for i in range(1, 201)]
    cilium = set(names[-cilium_count:]) | {"node-7", "node-8"}   # the nodes whose gates are taken
    obs = cluster(cilium=cilium, nodes=200)
    busy = frozenset({names[-1], names[0]})
    for node in ("node-7", "node-8"):
        gate = gate_checks(PLAN, obs, node, CILIUM, busy=busy, same_node_peer=None)
        wanted = PLAN.probes.checks.peers + SPARE_PEERS
        for kind, members in (("cilium", cilium), ("calico", set(names) - cilium)):
            walk = PeerWalk(node, tuple(sorted(names)), {n: i for i, n in enumerate(sorted(names))})
            by_rank = [n for n in walk if n in members and n != node and n not in busy]
            assert [c.name.split(":")[1] for c in gate.checks if c.name.startswith(f"to-{kind}:")] == by_rank[:wanted]


def test_one_broken_peer_does_not_fail_the_gate_but_a_broken_node_does():
    obs = cluster(cilium={"node-1", "node-2"}, nodes=8)
    gate = gate_checks(PLAN, obs, "node-1", CILIUM, busy=frozenset(), same_node_peer=None)
    names = {c.name for c in gate.checks}
    calico = sorted(n.split(":")[1] for n in names if n.startswith("to-calico:"))
    broken = calico[0]
    answered = {n for n in names if broken not in n}
    ok, blocking = gate.verdict(answered)
    assert ok and blocking == []
    ok, blocking = gate.verdict({n for n in names if "calico" not in n})
    assert not ok and all("calico" in n for n in blocking)
    ok, blocking = gate.verdict(names - {"dns"})
    assert not ok and blocking == ["dns"]


def test_a_peer_sampling_saw_failing_is_dialled_only_when_its_network_has_no_other():
    obs = cluster(cilium={"node-1", "node-2", "node-3", "node-4"})   # Calico peers: node-5, node-6
    failures = ("node-2->node-5 fail 0/3: i/o timeout", "node-6->node-5 fail 0/3: i/o timeout")
    assert sampled_suspects(failures) == {"node-5"}       # the end failing with everyone
    assert sampled_suspects(failures[:1]) == {"node-2", "node-5"}   # one pair: either end
    suspects = sampled_suspects(failures[:1] + ("node-6->node-3 fail 0/3: i/o timeout",))
    assert suspects == {"node-2", "node-5", "node-6", "node-3"}
    gate = gate_checks(PLAN, obs, "node-1", CILIUM, busy=frozenset(), same_node_peer=None, suspects=suspects)
    names = [c.name for c in gate.checks]
    assert sorted(n for n in names if "calico" in n) == ["from-calico:node-5", "from-calico:node-6",
                                                         "to-calico:node-5", "to-calico:node-6"]
    assert sorted(n for n in names if "cilium" in n) == ["from-cilium:node-4", "to-cilium:node-4"]
    assert gate.need == {"calico": 2, "cilium": 1}   # every Calico peer is suspect: dialled, judged as before
    alone = gate_checks(PLAN, obs, "node-1", CILIUM, busy=frozenset({"node-6"}), same_node_peer=None,
                        suspects=frozenset({"node-5"}))
    assert [n for n in (c.name for c in alone.checks) if "calico" in n] == ["to-calico:node-5", "from-calico:node-5"]
    spared = gate_checks(PLAN, obs, "node-1", CILIUM, busy=frozenset(), same_node_peer=None,
                         suspects=frozenset({"node-5"}))
    assert [n for n in (c.name for c in spared.checks) if "calico" in n] == ["to-calico:node-6", "from-calico:node-6"]
    assert spared.need["calico"] == 1


def test_gate_waits_for_the_probe_pod_to_be_on_the_expected_network():
    obs = cluster(cilium=set())
    gate = gate_checks(PLAN, obs, "node-1", CILIUM, busy=frozenset(), same_node_peer=None)
    assert gate.checks == () and "Cilium IP" in (gate.waiting or "")
    gate = gate_checks(PLAN, obs, "node-1", CILIUM, busy=frozenset(), same_node_peer=None, expect_cilium=False)
    assert gate.waiting is None and gate.checks


def test_sampling_walks_the_whole_matrix_without_repeating():
    obs = cluster(cilium={"node-1"}, nodes=5)
    seen: list[str] = []
    cursor = 0
    for _ in range(10):
        checks, cursor = sample_pairs(PLAN, obs, frozenset({"node-5"}), cursor)
        seen += [c.name for c in checks]
    pairs = [pair_nodes(n) for n in seen[:12]]
    assert len(set(pairs)) == 12 and all(a != b and "node-5" not in (a, b) for a, b in pairs)
    assert seen[12:24] == seen[:12]  # 4 nodes: 12 ordered pairs, then the rotation starts again


def test_sweep_is_a_ring_plus_service_and_dns():
    names = [c.name for c in sweep_checks(PLAN, cluster(cilium=set(), nodes=3))]
    assert names == ["node-1->node-2", "node-2->node-3", "node-3->node-1", "service", "dns"]


@pytest.mark.parametrize("answered,tries,threshold,ok", [(2, 3, 0.66, True), (1, 3, 0.66, False), (3, 3, 1.0, True),
                                                          (0, 3, 0.1, False)])
def test_pass_threshold(answered, tries, threshold, ok):
    assert passed(answered, tries, threshold) is ok


def _cp(*records: NodeRecord) -> Checkpoint:
    return Checkpoint(plan_name="t", plan_hash="h", run_id="r", run_phase=RunPhase.MIGRATING, started_at=T0,
                      nodes=records)


def _probes(purpose: str, detail: dict[str, str], node: str | None = None) -> ActionResult:
    checks = tuple(ProbeCheck(name=n, namespace="ns", pod="p", pod_port=8080, host="h", port=1) for n in detail)
    return ActionResult.success(RunProbes(node=node, purpose=purpose, checks=checks, threshold=0.66), changed=False,
                                detail=detail)


def test_gate_results_accumulate_passes_and_keep_the_last_failure():
    record = NodeRecord(name="node-1", phase=NodePhase.PODS_RECYCLED, intent=Intent(step="probe", passed=("dns",)))
    cp = record_results(_cp(record), [_probes("gate", {"service": "ok 3/3", "to-calico:node-2": "fail 0/3: i/o timeout"},
                                              "node-1")], T0)
    intent = cp.by_name["node-1"].intent
    assert intent is not None and intent.passed == ("dns", "service")
    assert intent.failures == {"to-calico:node-2": "fail 0/3: i/o timeout"}


def test_sample_failure_pauses_only_for_pairs_outside_the_nodes_in_flight():
    busy = NodeRecord(name="node-1", phase=NodePhase.CORDONED, intent=Intent(step="drain"))
    idle = [NodeRecord(name=f"node-{i}") for i in (2, 3)]
    cp = record_results(_cp(busy, *idle), [_probes("sample", {"node-1->node-2": "fail 0/3: x"})], T0)
    assert cp.requested is None and cp.sampling.failures == ()
    cp = record_results(_cp(busy, *idle), [_probes("sample", {"node-2->node-3": "fail 0/3: no route"})], T0)
    assert cp.requested == "pause" and "node-2->node-3" in (cp.last_error or "") and "no node is rolled back" in (cp.last_error or "")
    assert cp.sampling.failures and "no route" in cp.sampling.failures[0]


def test_spares_are_dialled_only_after_a_peer_failed():
    obs = cluster(cilium={"node-1"}, nodes=8)
    gate = gate_checks(PLAN, obs, "node-1", CILIUM, busy=frozenset(), same_node_peer=None)
    first = gate.todo(set(), set())
    peers = sorted({c.name.split(":")[1] for c in first if c.name.startswith("to-calico:")})
    assert len(peers) == 2 and len(first) == 4 + 4  # 2 peers both ways + service, apiserver, dns, host-to-pod
    broken = peers[0]
    passed_now = {c.name for c in first if broken not in c.name}
    second = gate.todo(passed_now, {f"to-calico:{broken}"})
    spare = {c.name.split(":")[1] for c in second}
    assert broken not in spare and len(spare) == 1 and {c.name for c in second} == {
        f"to-calico:{s}" for s in spare} | {f"from-calico:{s}" for s in spare}


def _gate_round(record: NodeRecord, obs: ClusterObservation, now: datetime, busy: frozenset[str]):
    """One decision of the forward gate row for ``record`` (its deadline far away)."""
    ctx = StepContext(plan=PLAN, obs=obs, now=now, network=CILIUM, budgets=DisruptionBudgets(obs), busy=busy)
    out = StepOutcome(record=record.model_copy(update={"phase_started_at": now}))
    way = advance(FORWARD["probe"], NodeCursor(out=out, ctx=ctx, node=NodeFacts(name=record.name)))
    sent = [c.name for a in out.actions if isinstance(a, RunProbes) for c in a.checks]
    return Gate(passed=way is not None and way.kind == "done"), sent, out


@dataclass(frozen=True)
class Gate:
    passed: bool


def test_a_peer_that_joins_the_gate_is_dialled_at_once_and_a_failing_check_waits_the_interval():
    """A node that passed every check it was asked must not wait an interval because a peer
    stopped being busy meanwhile; a failing check is dialled again only after the interval."""
    obs = cluster(cilium={"node-1", "node-2", "node-3"}, nodes=8)
    gate = gate_checks(PLAN, obs, "node-1", CILIUM, busy=frozenset({"node-3"}), same_node_peer=None)
    everything = tuple(c.name for c in gate.checks)
    assert gate.need["cilium"] == 1   # node-2 alone while node-3 is in flight
    record = NodeRecord(name="node-1", phase=NodePhase.PODS_RECYCLED,
                        intent=Intent(step="probe", sent_at=T0, passed=everything))
    soon = T0 + timedelta(seconds=1)   # well inside the 5s interval
    verdict, sent, _ = _gate_round(record, obs, soon, busy=frozenset({"node-3"}))
    assert verdict.passed and sent == []
    verdict, sent, out = _gate_round(record, obs, soon, busy=frozenset())   # node-3 finished
    assert not verdict.passed and sorted(sent) == ["from-cilium:node-3", "to-cilium:node-3"]
    assert out.record.intent is not None and out.record.intent.sent_at == T0   # the interval still runs

    failing = record.model_copy(update={"intent": record.intent.model_copy(update={   # type: ignore[union-attr]
        "passed": tuple(n for n in everything if n != "dns"), "failures": {"dns": "fail 0/3: no answer"}})})
    verdict, sent, out = _gate_round(failing, obs, soon, busy=frozenset({"node-3"}))
    assert not verdict.passed and sent == [] and out.wake_at == T0 + PLAN.probes.checks.interval
    later = T0 + PLAN.probes.checks.interval
    verdict, sent, out = _gate_round(failing, obs, later, busy=frozenset({"node-3"}))
    assert sent == ["dns"] and out.record.intent is not None and out.record.intent.sent_at == later


@pytest.mark.parametrize("count", [1, 2, 7, 12, 97, 100])
def test_a_nodes_walk_visits_every_node_once_and_ranks_as_it_walks(count):
    names = tuple(sorted(f"node-{i}" for i in range(count)))
    index = {n: i for i, n in enumerate(names)}
    orders = set()
    for node in names[:10]:
        walk = PeerWalk(node, names, index)
        order = list(walk)
        assert sorted(order) == list(names)                          # each node once
        assert [walk.rank(n) for n in order] == list(range(count))  # rank is the walk's position
        assert walk.ordered(reversed(names)) == order
        orders.add(tuple(order))
    assert len(orders) == min(count, 10) or count <= 2               # nodes prefer different peers


@pytest.mark.parametrize("seed", range(6))
def test_fleet_indexes_derived_from_the_previous_observation_equal_a_fresh_build(seed):
    """Each turn's probe-fleet indexes are derived from the previous observation's by the pods
    that changed (``ClusterObservation.follow``); after any sequence of changes they must equal
    the indexes built from scratch over the same pods."""
    import random

    from migrator.engine.probes import _by_node, _fleet, _members, _on_network
    from migrator.model.observation import Delta

    rng = random.Random(seed)
    nodes = [f"node-{i}" for i in range(1, 13)]
    pods = {}
    for node in nodes:
        for component, ip in (("pod", f"192.168.{nodes.index(node)}.5"), ("host", "172.18.0.1")):
            p = probe(node, ip, component)
            pods[(p.namespace, p.name)] = p

    def observe(current, previous=None, delta=None):
        # as the Observer does: model_copy keeps the very tuple (validation would copy it)
        obs = ClusterObservation(nodes=tuple(NodeFacts(name=n) for n in nodes)).model_copy(
            update={"probe_pods": current})
        if previous is not None:
            obs.follow(previous, {id(delta.before): delta})
        return obs

    def indexes(obs):
        return (_fleet(obs, PLAN, "pod"), _fleet(obs, PLAN, "host"), _by_node(obs, PLAN.probes.namespace),
                _on_network(obs, PLAN, CILIUM), _members(obs, PLAN, CILIUM))

    current = tuple(pods.values())
    obs = observe(current)
    indexes(obs)
    for _ in range(40):
        removed, added = [], []
        for key in rng.sample(sorted(pods), min(len(pods), rng.randint(0, 4))):   # each pod once a turn
            old = pods[key]
            removed.append(old)
            move = rng.random()
            if move < 0.1:                               # deleted
                del pods[key]
                continue
            node = old.node or rng.choice(nodes)
            new = old.model_copy(update={
                "ip": f"10.245.{nodes.index(node)}.{rng.randint(2, 250)}" if move < 0.6 else old.ip,
                "ready": rng.random() < 0.8, "deleting": rng.random() < 0.1,
                "name": old.name if move < 0.8 else f"{old.name}-{rng.randint(0, 99)}"})
            if new.name != old.name:
                del pods[key]
            pods[(new.namespace, new.name)] = new
            added.append(new)
        if rng.random() < 0.3:                           # a new pod (a DaemonSet replacing one)
            node, component = rng.choice(nodes), rng.choice(("pod", "host"))
            new = probe(node, f"10.245.{nodes.index(node)}.{rng.randint(2, 250)}", component).model_copy(
                update={"name": f"migrator-probe-{component}-{node}-{rng.randint(100, 999)}"})
            if (new.namespace, new.name) not in pods:
                pods[(new.namespace, new.name)] = new
                added.append(new)
        before, current = current, tuple(pods.values())
        nxt = observe(current, obs, Delta(before, current, tuple(removed), tuple(added)))
        derived = indexes(nxt)
        assert derived == indexes(observe(current)), "derived indexes differ from a fresh build"
        carried = nxt.__pydantic_private__["_memo"]
        assert all(value is not None for _, value in carried.values())
        obs = nxt
    unchanged = observe(current, obs, Delta(current, current, (), ()))
    assert indexes(unchanged)[0] is indexes(obs)[0]      # nothing changed: the very index carries over
