"""A 403 is a missing permission, not an outcome: against the simulated API server enforcing RBAC
for a ServiceAccount bound to the tool's ClusterRole less one rule, the executor raises the refusal
of a probe dial or an eviction (the run stops and names it) instead of folding it into a failed
check or a retried eviction; an Event stays best effort, and a PodDisruptionBudget's 429 is still
a result the engine waits on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from migrator.cluster import errors as E
from migrator.cluster.kube import KubeCluster
from migrator.engine import actions as A
from migrator.execute import Executor
from migrator.rbac import RULES
from tests.sim.test_guide_steps import netexec_pod

RBAC = "rbac.authorization.k8s.io"


@pytest.fixture
def restricted(sim: Any, tmp_path: Path):
    """``make(without)``: an executor acting as a ServiceAccount bound to the tool's ClusterRole less
    the ``group/resource`` rows in ``without``, so the 403s are RBAC's own."""
    ports: list[KubeCluster] = []

    def make(*without: str) -> Executor:
        name = f"mig-{len(ports)}"
        rules = [{"apiGroups": [r.group], "resources": [r.resource], "verbs": list(r.verbs)}
                 for r in RULES if f"{r.group}/{r.resource}" not in without]
        sim.store.create("serviceaccounts", {"metadata": {"name": name, "namespace": "default"}})
        sim.store.create(f"{RBAC}/clusterroles", {"metadata": {"name": name}, "rules": rules})
        sim.store.create(f"{RBAC}/clusterrolebindings", {
            "metadata": {"name": name}, "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": "default"}]})
        path = sim.write_kubeconfig(tmp_path / name, service_account=f"default/{name}")
        ports.append(KubeCluster.from_kubeconfig(str(path)))
        return Executor(ports[-1])

    yield make
    for port in ports:
        port.close()


def test_a_refused_dial_is_raised_not_a_failed_check(sim: Any, restricted: Any) -> None:
    """A failed check fails the gate and rolls the node back: a 403 on pods/proxy must not become one."""
    netexec_pod(sim, "client", "node-1")
    target = netexec_pod(sim, "target", "node-2")["status"]["podIP"]
    check = A.ProbeCheck(name="c", namespace="default", pod="client", pod_port=8080, host=target, port=8080, tries=3)
    probes = A.RunProbes(node="node-1", purpose="gate", checks=(check,), threshold=0.66)
    assert restricted().run_one(probes).detail == {"c": "ok 3/3"}          # with the whole role
    with pytest.raises(E.Forbidden, match=r'cannot get resource "pods/proxy" in API group ""'):
        restricted("/pods/proxy").run_one(probes)


def test_a_refused_eviction_is_raised_at_once(sim: Any, restricted: Any) -> None:
    """Without pods/eviction the first eviction ends the run: retrying it until drain.timeout cannot help."""
    pod = netexec_pod(sim, "victim", "node-1")
    evict = A.EvictPod(node="node-1", namespace="default", name="victim", uid=pod["metadata"]["uid"])
    with pytest.raises(E.Forbidden, match=r'cannot create resource "pods/eviction" in API group ""'):
        restricted("/pods/eviction").run_one(evict)
    assert not sim.store.get("pods", "default", "victim")["metadata"].get("deletionTimestamp")
    assert restricted().run_one(evict).ok      # with the whole role it goes through


def test_a_refused_event_is_best_effort(restricted: Any) -> None:
    result = restricted("/events").run_one(A.EmitEvent(node="node-1", reason="Migrating", message="m"))
    assert not result.ok and result.error_kind == "Forbidden"


def test_a_disruption_budget_429_is_still_a_result(sim_factory: Any, tmp_path: Path) -> None:
    sim = sim_factory(scenario="pdb-blocked")
    port = KubeCluster.from_kubeconfig(str(sim.write_kubeconfig(tmp_path / "kc")))
    try:
        pdb = next(p for p in port.list_pdbs() if p.disruptions_allowed == 0)
        labels = sim.store.get("policy/poddisruptionbudgets", pdb.namespace, pdb.name)["spec"]["selector"]["matchLabels"]
        pod = next(iter(port.list_pods(namespace=pdb.namespace, labels=labels)))
        result = Executor(port).run_one(A.EvictPod(node="node-1", namespace=pod.namespace,
                                                   name=pod.name, uid=pod.uid))
        assert not result.ok and result.error_kind == "DisruptionBudgetBlocked"
    finally:
        port.close()
