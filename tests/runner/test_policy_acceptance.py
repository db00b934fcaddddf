"""Issue 17's acceptance on ``--scenario calico-policies`` with ``policy.mode: continuous`` and the
policy probe, through the real CLI: at every node's switch the truth table differs from the one
before the run only in flows that node's gap report names (and a change it does not name is
caught); a node rolled back, on call or automatically after its gate failed on a policy flow,
gives the table back and takes away only what the tool added for that node.

The table is the probe's (its pods, in ``flow_keys`` order, against the baseline the run kept in
its checkpoint), answered by the simulated network: Felix on Calico nodes, Cilium on migrated ones.
A node's gap report is recomputed the way the run computes it before the label
(``policy.transition.gap`` from the other migrated nodes to them and the node, over the live
inventory and the objects the run applied: the checkpoint keeps only the first lines, and the
drain has moved pods since the run computed it)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from migrator.cluster.kube import KubeCluster
from migrator.engine.policy_probe import ALLOWED, DENIED, NAME, NAME_LABEL, POD_LABEL, flow_keys
from migrator.model.checkpoint import Checkpoint
from migrator.model.plan import load_plan
from migrator.policy.endpoints import probes
from migrator.policy.shims import RUN_LABEL
from migrator.policy.transition import GapReport, gap
from tests.runner.helpers import LABEL, checkpoint, fast_plan, migrator, spawn
from tests.runner.test_policy_e2e import NO_NAT_POOL
from tests.runner.test_policy_probe import network_policy
from tests.runner.test_rollback import assert_on_calico

NAMESPACES = ["tenant-a", "tenant-b", "shared"]
RUN = {"policy.mode": "continuous", "order.strategy": "explicit", "nodes.names": ["node-1", "node-2"],
       "probes.policy": {"namespaces": NAMESPACES, "create_namespaces": False,
                         "pods": {"a": {"app": "server"}, "b": {}}}}
#: the wrong change planted: nothing may enter ``shared`` any more (before the run: a, b -> shared allowed)
OOPS = ("shared", "oops-default-deny", {"podSelector": {}, "policyTypes": ["Ingress"]})

UNNAMED_PORT = 65432   # the port ``policy.endpoints.probes`` adds per protocol for those no rule names
Key = tuple[tuple[str, str], tuple[str, str], int, str]


class Cluster:
    """The simulated cluster with the scenario, the run's plan and a port to read what the run reads."""

    def __init__(self, sim_factory: Any, tmp_path: Any, changes: dict[str, Any] | None = None) -> None:
        self.sim = sim_factory(nodes=4, scenario="calico-policies")   # node-3 keeps room for moved pods
        self.sim.store.create("crd.projectcalico.org/ippools", NO_NAT_POOL)
        kc = str(self.sim.write_kubeconfig(tmp_path / "kc"))
        self.plan = fast_plan(tmp_path, {**RUN, **(changes or {})})
        self.args = ("--plan", str(self.plan), "--kubeconfig", kc, "--yes", "--output-dir", str(tmp_path))
        self.port = KubeCluster.from_kubeconfig(kc)
        self.keys: list[Key] = flow_keys(load_plan(self.plan).probes.policy)

    def probe_pods(self) -> dict[tuple[str, str], dict[str, Any]]:
        out = {}
        for ns in NAMESPACES:
            for p in self.sim.store.list("pods", ns):
                labels = p["metadata"].get("labels") or {}
                if labels.get(NAME_LABEL) == NAME and p["status"].get("phase") == "Running" \
                        and not p["metadata"].get("deletionTimestamp"):
                    out[(ns, labels[POD_LABEL])] = p
        return out

    def table(self) -> str:
        """The truth table now, one character per flow in the probe's order."""
        pods, net = self.probe_pods(), self.sim.fleet.network
        return "".join(ALLOWED if net.reachable(pods[s]["status"]["podIP"], pods[d]["status"]["podIP"], port,
                                                 proto.lower())[0] else DENIED for s, d, port, proto in self.keys)

    def changed(self, baseline: str) -> list[Key]:
        now = self.table()
        return [k for k, was, is_ in zip(self.keys, baseline, now, strict=True) if was != is_]

    def run_objects(self) -> list[dict[str, Any]]:
        return self.port.list_policy_objects(RUN_LABEL)

    def report(self, before: set[str], after: set[str]) -> GapReport:
        """The gap of the step from ``before`` to ``after`` migrated (enforcing) nodes, as the run
        computes it, with the objects the run applied."""
        return gap(self.port.read_policy_inventory(), self.run_objects(), before, after)

    def unnamed(self, flows: list[Key], report: GapReport) -> list[Key]:
        """The flows among ``flows`` the report does not name (by endpoint group and probe: a port
        no rule names stands as the report's unnamed port of its protocol) or does not cover
        (``GapReport.covers``, what the probe's gates ask)."""
        inv = self.port.read_policy_inventory()
        named = {(f.source, f.destination, f.probe) for f in report.flows}
        referenced = {str(p) for p in probes(inv)}
        live = {(p.namespace, p.name): p for p in inv.pods}
        pods = {key: live[(p["metadata"]["namespace"], p["metadata"]["name"])] for key, p in self.probe_pods().items()}

        def probe(port: int, proto: str) -> str:
            return f"{port}/{proto}" if f"{port}/{proto}" in referenced else f"{UNNAMED_PORT}/{proto}"
        return [(s, d, port, proto) for s, d, port, proto in flows
                if (report.group(pods[s]), report.group(pods[d]), probe(port, proto)) not in named
                or not report.covers(pods[s], pods[d], port, proto)]

    def node_of(self, key: tuple[str, str]) -> str:
        return self.probe_pods()[key]["spec"]["nodeName"]

    def labelled(self) -> set[str]:
        return {n["metadata"]["name"] for n in self.sim.store.list("nodes")
                if (n["metadata"].get("labels") or {}).get(LABEL) == "true"}


@pytest.fixture
def cluster(sim_factory: Any, tmp_path: Any) -> Iterator[Callable[..., Cluster]]:
    made: list[Cluster] = []

    def make(changes: dict[str, Any] | None = None) -> Cluster:
        made.append(Cluster(sim_factory, tmp_path, changes))
        return made[-1]
    yield make
    for c in made:
        c.port.close()


def refs(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objects}


def recorded_flows(cp: Checkpoint, node: str) -> int:
    record = cp.node(node)
    assert record is not None and record.policy_gap, node
    found = re.match(r"(\d+) flow", record.policy_gap)
    return int(found.group(1)) if found else 0


def wait_for(proc: Any, sim: Any, predicate: Any, timeout: float = 90) -> Checkpoint:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cp = checkpoint(sim)
        if cp is not None and predicate(cp):
            return cp
        assert proc.poll() is None, f"the run ended first: {proc.err()[-2000:]}"
        time.sleep(0.01)
    proc.kill()
    pytest.fail("the moment never came")


def done(name: str) -> Any:
    return lambda cp: (r := cp.node(name)) is not None and r.phase.value == "DONE"


def test_at_every_switch_the_table_differs_only_in_flows_the_nodes_gap_report_names(cluster):
    c = cluster({"gates.pause_between_nodes": "4s"})   # a still moment after each node
    proc = spawn("run", *c.args)
    migrated: set[str] = set()
    try:
        for node in ("node-1", "node-2"):
            cp = wait_for(proc, c.sim, done(node))
            assert c.labelled() == migrated | {node}
            assert cp.policy_baseline is not None and cp.policy_baseline.complete
            baseline = cp.policy_baseline.table
            report = c.report(migrated, migrated | {node})
            assert recorded_flows(cp, node) > 0 and report.flows   # the run wrote its report before the label
            changed = c.changed(baseline)
            assert c.unnamed(changed, report) == [], node
            if node == "node-1":
                # the dual overlay's one gap: node-1's Cilium pods take in the Calico pods of
                # node-2 as ``unmanaged`` (the shims allow them), e.g. across tenants
                assert changed and all({c.node_of(s), c.node_of(d)} == {"node-1", "node-2"} for s, d, _, _ in changed)
            else:
                assert changed == []   # both sides on Cilium: the translation enforces it all
            migrated.add(node)
        assert proc.finish(timeout=60) == 0, proc.err()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    # the check can fail: a change nobody's gap report explains (nothing enters ``shared`` now)
    network_policy(c.sim, *OOPS)
    c.sim.settle(timeout=10)
    unnamed = c.unnamed(c.changed(baseline), report)
    assert unnamed and all(d[0] == "shared" for _, d, _, _ in unnamed), unnamed


def test_an_on_call_node_rollback_restores_the_table_and_removes_only_that_nodes_part(cluster):
    c = cluster()
    ran = migrator("run", *c.args)
    assert ran.returncode == 0, ran.stderr[-3000:]
    cp = checkpoint(c.sim)
    assert cp is not None and cp.policy_baseline is not None and cp.policy_baseline.complete
    baseline = cp.policy_baseline.table
    assert c.changed(baseline) == []           # both probe nodes migrated: the translation enforces it all
    applied = refs(c.run_objects())
    assert any(kind == "CiliumClusterwideNetworkPolicy" and name.startswith("migrator-shim.") for kind, name in applied)
    [cnc] = c.sim.store.list("cilium.io/ciliumnodeconfigs")

    back = migrator("rollback", "--node", "node-1", "--reason", "pager: tenant-b reports errors", *c.args)
    assert back.returncode == 0, back.stderr[-3000:]
    c.sim.settle(timeout=20)
    assert c.labelled() == {"node-2"}
    # node-1's pods are Calico's again, node-2 keeps enforcing: the translation, the shims and the
    # CiliumNodeConfig (enforcement for the labelled nodes) stay, untouched
    assert refs(c.run_objects()) == applied
    assert [o["spec"] for o in c.sim.store.list("cilium.io/ciliumnodeconfigs")] == [cnc["spec"]]
    assert_on_calico(c.sim, "node-1")
    changed = c.changed(baseline)   # the dual overlay's gap, now node-2's: Calico pods are ``unmanaged`` to it
    assert changed and all({c.node_of(s), c.node_of(d)} == {"node-1", "node-2"} for s, d, _, _ in changed), changed
    assert c.unnamed(changed, c.report({"node-2"}, {"node-2"})) == []   # node-2 alone on Cilium: its gap

    back = migrator("rollback", "--node", "node-2", *c.args)
    assert back.returncode == 0, back.stderr[-3000:]
    c.sim.settle(timeout=20)
    assert c.labelled() == set()
    assert_on_calico(c.sim, "node-2")
    assert c.changed(baseline) == []           # every probe pod on Calico: the table from before the run
    assert refs(c.run_objects()) == applied    # the run is not rolled back: inert until a node enforces
    assert c.sim.store.list("crd.projectcalico.org/globalnetworkpolicies")   # Calico's own, untouched


def test_a_gate_failing_on_a_policy_flow_rolls_the_node_back_and_restores_the_table(cluster):
    c = cluster({"probes.checks.deadline": "8s", "rollback.halt_after": 1})
    proc = spawn("run", *c.args)
    try:
        cp = wait_for(proc, c.sim, lambda cp: (r := cp.node("node-1")) is not None and r.phase.value == "LABELED")
        assert cp.policy_baseline is not None and cp.policy_baseline.complete
        baseline = cp.policy_baseline.table
        applied = refs(c.run_objects())
        network_policy(c.sim, *OOPS)           # the wrong change, while node-1 is switched
        code = proc.finish(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    cp = checkpoint(c.sim)
    assert cp is not None and code == 1, proc.err()[-3000:]
    node1 = cp.node("node-1")
    assert node1 is not None and node1.phase.value == "ROLLED_BACK", proc.err()[-3000:]
    reason = node1.rollback_reason or ""
    assert "connectivity gate failed" in reason and "->shared/" in reason, reason
    assert cp.node("node-2") is not None and cp.node("node-2").phase.value == "PENDING"
    c.sim.settle(timeout=20)
    assert c.labelled() == set() and refs(c.run_objects()) == applied
    assert_on_calico(c.sim, "node-1")
    assert c.changed(baseline) != []           # the wrong change still denies what entered shared
    c.sim.store.delete("networking.k8s.io/networkpolicies", OOPS[0], OOPS[1])
    assert c.changed(baseline) == []           # undone: Calico enforces every probe pod as before the run
