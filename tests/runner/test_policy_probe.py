"""The policy probe end to end: the real CLI against the sim (which enforces Kubernetes
NetworkPolicy on both plugins' pods). The truth table is taken before the first node starts; a
wrong policy change planted while the canary node is being migrated changes verdicts no gap
report explains, so the canary's gate fails and the node is rolled back."""

from __future__ import annotations

import time

from tests.runner.helpers import checkpoint, fast_plan, migrator, spawn

NAMESPACES = ("tenant-x", "tenant-y", "tenant-z")


def namespace(sim, name: str) -> None:
    sim.store.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}}})


def network_policy(sim, ns: str, name: str, spec: dict) -> None:
    sim.store.create("networking.k8s.io/networkpolicies", {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns}, "spec": spec})


def wait_for(proc, sim, predicate, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cp = checkpoint(sim)
        if cp is not None and predicate(cp):
            return
        assert proc.poll() is None, f"the run ended first: {proc.err()[-2000:]}"
        time.sleep(0.005)
    proc.kill()
    raise AssertionError("the moment never came")


def test_a_wrong_policy_change_mid_run_fails_the_gate_and_rolls_the_node_back(sim, kubeconfig, tmp_path):
    for ns in NAMESPACES:
        namespace(sim, ns)
    # before the run: z's pod c takes TCP 80 only from its own namespace (the table has denials)
    network_policy(sim, "tenant-z", "c-from-z", {
        "podSelector": {"matchLabels": {"pod": "c"}}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": 80, "protocol": "TCP"}]}]})
    plan = fast_plan(tmp_path, {"probes.policy": {"namespaces": list(NAMESPACES), "create_namespaces": False},
                                "probes.checks.deadline": "8s", "rollback.halt_after": 1})
    proc = spawn("run", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes",
                 "--output-dir", str(tmp_path))
    wait_for(proc, sim, lambda cp: any(r.phase.value == "LABELED" for r in cp.nodes))
    cp = checkpoint(sim)
    assert cp is not None and cp.policy_baseline is not None and cp.policy_baseline.complete
    table = cp.policy_baseline.table
    # denied: z/c from the 6 pods of other namespaces on all 4, from z/a and z/b on 81/TCP, 80/UDP, 81/UDP
    assert len(table) == 288 and table.count("0") == 6 * 4 + 2 * 3

    # the wrong change: a default deny on tenant-y's ingress, while node-1 (the canary) is switched
    network_policy(sim, "tenant-y", "oops-default-deny", {"podSelector": {}, "policyTypes": ["Ingress"]})
    code = proc.finish(timeout=150)
    cp = checkpoint(sim)
    assert cp is not None
    node1 = cp.node("node-1")
    assert node1 is not None and node1.phase.value == "ROLLED_BACK", proc.err()[-3000:]
    reason = node1.rollback_reason or ""
    assert "connectivity gate failed" in reason and "->tenant-y/" in reason, reason
    assert "denied now, allowed before the run (pods migrator-policy-probe-" in reason, reason
    assert code == 1 and "rolled back automatically" in proc.err()
    assert all(r.phase.value == "PENDING" for r in cp.nodes if r.name != "node-1")


def test_unchanged_policies_keep_the_table_through_every_gate_and_finalize(sim, kubeconfig, tmp_path):
    """Under the guide's ``enable-policy=never``, z/c's restriction is not enforced once its node
    switches: the gap report predicts it (those flows are explained, not judged), every gate
    passes, and after finalize (``enable-policy=default``) the table equals the one before."""
    for ns in NAMESPACES:
        namespace(sim, ns)
    network_policy(sim, "tenant-z", "c-from-z", {
        "podSelector": {"matchLabels": {"pod": "c"}}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": 80, "protocol": "TCP"}]}]})
    plan = fast_plan(tmp_path, {"probes.policy": {"namespaces": list(NAMESPACES), "create_namespaces": False},
                                "probes.checks.deadline": "10s"})
    args = ("--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes", "--output-dir", str(tmp_path))
    proc = spawn("run", *args)
    code = proc.finish(timeout=150)
    cp = checkpoint(sim)
    assert code == 0 and cp is not None, proc.err()[-3000:]
    assert {r.phase.value for r in cp.nodes} == {"DONE"}
    judged = {}
    for record in cp.nodes:   # every gate passed the table (288 flows, less those explained) and its own checks
        assert (record.probes or "").startswith("ok "), record.probes
        judged[record.name] = int((record.probes or "").removeprefix("ok ").split("/")[0])
    assert all(n > 288 - 30 for n in judged.values()), judged
    assert judged["node-1"] > 288 and judged["cp-1"] < 288, judged   # z/c (on node-3) left enforcement

    # finalize dials the table again: a change made since fails it, naming the flow
    network_policy(sim, "tenant-x", "oops-default-deny", {"podSelector": {}, "policyTypes": ["Ingress"]})
    refused = migrator("finalize", *args)
    assert refused.returncode == 1, refused.stderr[-3000:]
    assert "the policy probe's table differs from before the run" in refused.stderr
    assert "policy tenant-x/a->tenant-x/b 80/TCP denied, allowed before the run" in refused.stderr
    sim.store.delete("networking.k8s.io/networkpolicies", "tenant-x", "oops-default-deny")
    assert migrator("resume", *args).returncode == 0
    done = migrator("finalize", *args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "all 288 flows have their verdicts from before the run" in done.stderr
    sim.settle(timeout=20)
    assert not [p for ns in NAMESPACES for p in sim.store.list("pods", ns)]   # the probe went with finalize


def test_calico_policies_scenario_changes_only_flows_the_gap_report_names(sim_factory, tmp_path):
    """The tenants of ``--scenario calico-policies`` (Calico tiers, ordered policies, Kubernetes
    default-deny): the table before the run has the scenario's denials, and every gate of the run
    (the guide's ``enable-policy=never``: each switched tenant pod leaves Calico's enforcement)
    passes because each change is one the gap report predicted."""
    sim = sim_factory(nodes=4, scenario="calico-policies")
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    plan = fast_plan(tmp_path, {"probes.policy": {"namespaces": ["tenant-a", "tenant-b", "shared"],
                                                  "create_namespaces": False,
                                                  "pods": {"a": {"app": "server"}, "b": {"app": "server"}, "c": {}}}})
    proc = spawn("run", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes", "--output-dir", str(tmp_path))
    code = proc.finish(timeout=150)
    cp = checkpoint(sim)
    assert cp is not None and cp.policy_baseline is not None
    assert code == 0, proc.err()[-3000:]
    assert {r.phase.value for r in cp.nodes} == {"DONE"}
    table = cp.policy_baseline.table
    assert table.count("0") > 0 and table.count("1") > 0, table
    judged = [int((r.probes or "").removeprefix("ok ").split("/")[0]) for r in cp.nodes]
    assert judged[-1] < judged[0], judged   # more tenant pods out of Calico's enforcement: more flows explained
