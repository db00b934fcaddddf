"""The observation the engine decides on, taken through KubeCluster from the simulated cluster."""

from __future__ import annotations

import time
from pathlib import Path

from migrator.cluster.port import WatchScope
from migrator.model.plan import load_plan
from migrator.observe import Observer

PLAN = Path(__file__).resolve().parents[2] / "plans" / "example.yaml"
PAUSE = {"name": "c", "image": "registry.k8s.io/pause:3.9"}


def test_a_budget_allowing_no_disruption_brings_its_unready_pods_from_every_node(sim, port) -> None:
    """Only the pods of the nodes in flight are observed, plus, for a budget at zero, the pods of
    its namespace not Ready wherever they are: the replacements it waits for."""
    sim.store.mutate("policy/poddisruptionbudgets", "shop", "web", lambda o: o["spec"].update(maxUnavailable=0))
    sim.store.create("pods", {"metadata": {"name": "starting", "namespace": "shop"},
                              "spec": {"nodeSelector": {"pool": "nowhere"}, "containers": [PAUSE]}})
    sim.store.create("pods", {"metadata": {"name": "elsewhere", "namespace": "kube-system"},
                              "spec": {"nodeSelector": {"pool": "nowhere"}, "containers": [PAUSE]}})
    port.start_watching(WatchScope(node_config_version="v2"))
    observer = Observer(load_plan(PLAN), port)
    deadline = time.monotonic() + 10
    while (obs := observer.observe(frozenset({"node-1"}))).budget_pods == () and time.monotonic() < deadline:
        time.sleep(0.02)
    web = next(p for p in obs.pdbs if p.name == "web")
    assert web.disruptions_allowed == 0
    assert [p.key for p in obs.budget_pods] == ["shop/starting"]   # kube-system's budget has room
    assert {p.node for p in obs.pods} == {"node-1"}
    assert observer.observe(None).budget_pods == ()   # every pod is observed already


def test_finalizing_reads_the_configmap_the_plan_names(sim, port) -> None:
    """Finalize patches ``cilium.agent.config_map``; the observation must read that one too."""
    sim.store.create("configmaps", {"metadata": {"name": "cilium-settings", "namespace": "kube-system"},
                                    "data": {"enable-policy": "never"}})
    plan = load_plan(PLAN)
    agent = plan.cilium.agent.model_copy(update={"config_map": "cilium-settings"})
    plan = plan.model_copy(update={"cilium": plan.cilium.model_copy(update={"agent": agent})})
    assert Observer(plan, port).observe(None, finalizing=True).cilium_config == {"enable-policy": "never"}


def test_the_probe_fleet_follows_the_caches_changes(sim, port) -> None:
    """Once watching, the probe fleet comes from the cache's changes: the very same tuple while
    nothing changed (so indexes over it carry over), and after pods come, change and go, the
    pods a fresh observer lists, with a fleet equal to the one it builds."""
    from migrator.engine.probes import probe_pods_by_node

    plan = load_plan(PLAN)
    namespace = plan.probes.namespace
    sim.store.create("namespaces", {"metadata": {"name": namespace}})

    def probe(name: str, node: str) -> dict:
        return {"metadata": {"name": name, "namespace": namespace,
                             "labels": {"app.kubernetes.io/name": "migrator-probe",
                                        "app.kubernetes.io/component": "pod"}},
                "spec": {"nodeName": node, "containers": [PAUSE]}}

    for i in (1, 2, 3):
        sim.store.create("pods", probe(f"probe-{i}", f"node-{i}"))
    port.start_watching(WatchScope(node_config_version="v2"))
    observer = Observer(plan, port)

    def settled() -> bool:
        return len(probe_pods_by_node(observer.observe(frozenset()), plan)) == 3
    deadline = time.monotonic() + 10
    while not settled() and time.monotonic() < deadline:
        time.sleep(0.05)
    first = observer.observe(frozenset())
    assert observer.observe(frozenset()).probe_pods is first.probe_pods   # nothing changed
    sim.store.delete("pods", namespace, "probe-2")
    sim.store.create("pods", probe("probe-4", "node-4"))
    deadline = time.monotonic() + 10
    previous = first
    while len(probe_pods_by_node(obs := observer.observe(frozenset()), plan)) != 3 \
            or "node-4" not in probe_pods_by_node(obs, plan):
        assert time.monotonic() < deadline, "the fleet never followed the changes"
        previous = obs
        time.sleep(0.05)
    follows = obs.__pydantic_private__["_follows"]          # handed how the fleet changed, not to rebuild it
    _, changes = follows.steps[0]                            # the changes since the previous observation
    assert changes[id(previous.probe_pods)].after is obs.probe_pods
    fresh = Observer(plan, port).observe(frozenset())
    assert sorted(p.name for p in obs.probe_pods) == sorted(p.name for p in fresh.probe_pods)
    assert probe_pods_by_node(obs, plan) == probe_pods_by_node(fresh, plan)
