"""DaemonSet, Deployment/ReplicaSet and Job controllers: one daemon pod per eligible node
(including a node added later), recreation and rolling updates, replacement of an evicted
pod on another node, Deployment rollouts and status, Job completion and backoff."""

from __future__ import annotations

import pytest

from tests.sim.controller_harness import FINISH, Harness


@pytest.fixture
def h():
    harness = Harness()
    yield harness
    harness.stop()


def daemonset(name: str, *, tolerations=None, node_selector=None) -> dict:
    spec = {"containers": [{"name": "agent", "image": "busybox"}]}
    if tolerations:
        spec["tolerations"] = tolerations
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


def deployment(name: str, replicas: int, image: str = "nginx:1") -> dict:
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}}}


def test_daemonset_runs_one_pod_per_eligible_node_including_new_ones(h):
    h.node("a")
    h.node("b", unschedulable=True)  # cordoned: daemons still run
    h.node("down", ready=False)  # NotReady: only daemons tolerating not-ready:NoSchedule (CNI agents)
    h.node("tainted", taints=[{"key": "dedicated", "effect": "NoSchedule"}])
    h.node("other-os", labels={"kubernetes.io/os": "windows"})
    h.store.create("apps/daemonsets", daemonset("agent", node_selector={}))
    h.store.create("apps/daemonsets", daemonset("linux", node_selector={"kubernetes.io/os": "linux"}))
    h.store.create("apps/daemonsets", daemonset("cni", tolerations=[{"operator": "Exists"}]))
    h.settle()
    cni = sorted(p["spec"]["nodeName"] for p in h.pods("default", app="cni"))
    assert cni == ["a", "b", "down", "other-os", "tainted"]
    agent = sorted(p["spec"]["nodeName"] for p in h.pods("default", app="agent"))
    assert agent == ["a", "b", "other-os"]
    assert h.pods("default", app="linux") == []  # no node carries the label yet
    pod = h.pods("default", app="agent")[0]
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
    assert {"controller-revision-hash", "pod-template-generation"} <= set(pod["metadata"]["labels"])
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchFields"][0]["values"] == [pod["spec"]["nodeName"]]

    h.node("c")
    h.settle()
    assert sorted(p["spec"]["nodeName"] for p in h.pods("default", app="agent")) == ["a", "b", "c", "other-os"]
    st = h.store.get("apps/daemonsets", "default", "agent")["status"]
    assert (st["desiredNumberScheduled"], st["currentNumberScheduled"], st["updatedNumberScheduled"]) == (4, 4, 4)
    assert st["numberReady"] == 4 and st["numberUnavailable"] == 0 and st["observedGeneration"] == 1


def test_daemonset_recreates_deleted_pod_and_rolls_on_template_change(h):
    for n in ("a", "b", "c"):
        h.node(n)
    h.store.create("apps/daemonsets", daemonset("agent"))
    h.settle()
    victim = next(p for p in h.pods("default") if p["spec"]["nodeName"] == "b")
    h.store.delete("pods", "default", victim["metadata"]["name"], graceful=True)
    h.settle()
    on_b = [p for p in h.pods("default") if p["spec"]["nodeName"] == "b"]
    assert len(on_b) == 1 and on_b[0]["metadata"]["uid"] != victim["metadata"]["uid"]

    before = {p["metadata"]["labels"]["controller-revision-hash"] for p in h.pods("default")}
    h.store.mutate("apps/daemonsets", "default", "agent", lambda d: d["spec"]["template"].setdefault(
        "metadata", {}).setdefault("annotations", {}).update({"kubectl.kubernetes.io/restartedAt": "now"}))
    h.settle()
    pods = h.pods("default")
    after = {p["metadata"]["labels"]["controller-revision-hash"] for p in pods}
    assert len(pods) == 3 and len(after) == 1 and after.isdisjoint(before)
    assert {p["metadata"]["labels"]["pod-template-generation"] for p in pods} == {"2"}
    st = h.store.get("apps/daemonsets", "default", "agent")["status"]
    assert st["updatedNumberScheduled"] == 3 and st["numberAvailable"] == 3 and st["observedGeneration"] == 2


def revisions(h, name: str) -> dict[int, dict]:
    return {r["revision"]: r for r in h.store.list("apps/controllerrevisions", "default")
            if r["metadata"]["ownerReferences"][0]["name"] == name}


def test_daemonset_history_keeps_a_revision_per_template_within_its_limit(h):
    # pkg/controller/daemon/update.go: a revision <ds>-<hash> per template, labelled with the hash
    # the pods carry, owned by the DaemonSet; an old template coming back is renumbered, not copied;
    # beyond revisionHistoryLimit the oldest revisions no live pod runs are deleted.
    for n in ("a", "b"):
        h.node(n)
    ds = daemonset("agent")
    ds["spec"]["revisionHistoryLimit"] = 1
    h.store.create("apps/daemonsets", ds)
    h.settle()
    first = revisions(h, "agent")[1]
    hash1 = first["metadata"]["labels"]["controller-revision-hash"]
    assert first["metadata"]["name"] == f"agent-{hash1}"
    assert first["metadata"]["labels"]["app"] == "agent"
    assert first["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
    assert first["metadata"]["ownerReferences"][0]["controller"] is True
    assert first["data"]["spec"]["template"]["$patch"] == "replace"
    assert {p["metadata"]["labels"]["controller-revision-hash"] for p in h.pods("default")} == {hash1}

    def image(tag: str):
        return lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image=f"busybox:{tag}")

    h.store.mutate("apps/daemonsets", "default", "agent", image("2"))
    h.settle()
    assert sorted(revisions(h, "agent")) == [1, 2]   # one old revision: within the limit
    h.store.mutate("apps/daemonsets", "default", "agent", image("3"))
    h.settle()
    assert sorted(revisions(h, "agent")) == [2, 3]   # the oldest, run by no pod, went
    h.ready_pods = False                             # pods of the next template never become Ready
    h.store.mutate("apps/daemonsets", "default", "agent", lambda d: d["spec"]["template"]["spec"][
        "containers"][0].update(image="busybox"))
    h.settle()
    now = revisions(h, "agent")
    assert sorted(now) == [3, 4] and now[4]["metadata"]["name"] == first["metadata"]["name"]
    h.store.mutate("apps/daemonsets", "default", "agent", image("5"))
    h.settle()
    # revision 3's template still runs on a node (the stalled rollout): it is kept past the limit,
    # while revision 4 goes once its one pod, never ready, was replaced
    assert sorted(revisions(h, "agent")) == [3, 5]


def test_daemonset_rolling_update_keeps_at_most_one_node_unavailable(h):
    for n in ("a", "b", "c"):
        h.node(n)
    h.store.create("apps/daemonsets", daemonset("agent"))
    h.settle()
    h.ready_pods = False  # new pods never become Ready: the rollout must stall after one node
    h.store.mutate("apps/daemonsets", "default", "agent",
                   lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="busybox:2"))
    h.settle()
    images = sorted(p["spec"]["containers"][0]["image"] for p in h.pods("default"))
    assert images == ["busybox", "busybox", "busybox:2"]
    st = h.store.get("apps/daemonsets", "default", "agent")["status"]
    assert (st["updatedNumberScheduled"], st["numberUnavailable"]) == (1, 1)


def test_daemonset_follows_each_change_of_a_node_or_its_pod_after_many_quiet_reconciles(h):
    """The controller reuses a node's last verdict while the node and its pods are unchanged:
    a taint, a readiness flip or a deleted pod on one node among many must still be acted on."""
    for i in range(30):
        h.node(f"n{i:02}")
    h.store.create("apps/daemonsets", daemonset("agent"))
    h.settle()
    for i in range(3):   # reconciles that change nothing
        h.store.mutate("apps/daemonsets", "default", "agent",
                       lambda d, i=i: d["metadata"].setdefault("annotations", {}).update(poke=str(i)))
        h.settle()
    assert len(h.pods("default", app="agent")) == 30
    h.set_node("n07", lambda n: n["spec"].update(taints=[{"key": "evict", "effect": "NoExecute"}]))
    h.settle()
    assert "n07" not in {p["spec"]["nodeName"] for p in h.pods("default", app="agent")}
    assert h.store.get("apps/daemonsets", "default", "agent")["status"]["desiredNumberScheduled"] == 29
    h.set_node("n07", lambda n: n["spec"].update(taints=[]))
    victim = next(p for p in h.pods("default", app="agent") if p["spec"]["nodeName"] == "n12")
    h.store.delete("pods", "default", victim["metadata"]["name"])
    h.settle()
    nodes = sorted(p["spec"]["nodeName"] for p in h.pods("default", app="agent"))
    assert nodes == [f"n{i:02}" for i in range(30)]
    assert victim["metadata"]["uid"] not in {p["metadata"]["uid"] for p in h.pods("default", app="agent")}
    st = h.store.get("apps/daemonsets", "default", "agent")["status"]
    assert (st["desiredNumberScheduled"], st["numberReady"], st["numberUnavailable"]) == (30, 30, 0)


def test_daemonset_status_after_random_changes_matches_a_full_pass(h):
    """Between full passes the controller recomputes only the nodes whose Node or pods changed;
    after each of many random changes its status must equal a fresh pass over every node."""
    import random

    from migrator.sim.controllers.daemon_nodes import Tally
    from migrator.sim.controllers.daemonset import daemon_tolerations
    from migrator.sim.controllers.matching import template_hash

    rng = random.Random(7)
    names = [f"n{i:02}" for i in range(12)]
    for n in names:
        h.node(n)
    h.store.create("apps/daemonsets", daemonset("all"))
    h.store.create("apps/daemonsets", daemonset("pool", node_selector={"pool": "a"}))
    h.settle()

    def node_op():
        n = rng.choice(names)
        op = rng.choice(["taint", "untaint", "cordon", "uncordon", "down", "up", "pool", "unpool"])
        if op in ("taint", "untaint"):
            taints = [{"key": "k", "effect": rng.choice(["NoSchedule", "NoExecute"])}] if op == "taint" else []
            h.set_node(n, lambda o: o["spec"].update(taints=taints))
        elif op in ("cordon", "uncordon"):
            h.set_node(n, lambda o: o["spec"].update(unschedulable=op == "cordon"))
        elif op in ("down", "up"):
            h.set_node(n, lambda o: o["status"].update(conditions=[{"type": "Ready", "status": str(op == "up")}]))
        else:
            h.set_node(n, lambda o: o["metadata"]["labels"].update(pool="a" if op == "pool" else "b"))

    def pod_op():
        pods = h.pods("default")
        if not pods:
            return
        pod = rng.choice(pods)
        name = pod["metadata"]["name"]
        op = rng.choice(["delete", "graceful", "unready", "ready", "fail"])
        if op in ("delete", "graceful"):
            h.store.delete("pods", "default", name, graceful=op == "graceful")
        elif op in ("unready", "ready"):
            h.set_ready(name, op == "ready")
        else:
            h.store.mutate("pods", "default", name, lambda o: o["status"].update(phase="Failed"), subresource="status")

    for _ in range(40):
        rng.choice([node_op, pod_op])()
        h.settle()
        for ds in h.store.list("apps/daemonsets", "default"):
            spec = ds["spec"]["template"]["spec"]
            fresh = Tally((ds["metadata"]["uid"], 1, template_hash(ds["spec"]["template"])), spec,
                          daemon_tolerations(spec))
            by_node: dict = {}
            for pod in h.pods("default", app=ds["metadata"]["name"]):
                by_node.setdefault(pod["spec"]["nodeName"], []).append(pod)
            fresh.full(h.store.list("nodes"), by_node)
            counts = fresh.counts
            expected = (counts["desired"], counts["current"], counts["available"], counts["updated"],
                        counts["misscheduled"], max(0, counts["desired"] - counts["available"]))
            st = ds["status"]
            assert (st["desiredNumberScheduled"], st["currentNumberScheduled"], st["numberAvailable"],
                    st["updatedNumberScheduled"], st["numberMisscheduled"], st["numberUnavailable"]) == expected
            assert fresh.actions(lambda node, pods=by_node: pods.get(node, [])) == ([], [], [])   # converged


def test_deployment_replaces_an_evicted_pod_on_another_node(h):
    for n in ("a", "b", "c"):
        h.node(n)
    h.store.create("apps/deployments", deployment("web", 3))
    h.settle()
    victim = next(p for p in h.pods("default", app="web") if p["spec"]["nodeName"] == "b")
    h.set_node("b", lambda d: d["spec"].update(unschedulable=True))
    h.store.delete("pods", "default", victim["metadata"]["name"], graceful=True)  # what an eviction does
    h.settle()
    pods = h.pods("default", app="web")
    assert len(pods) == 3 and victim["metadata"]["name"] not in {p["metadata"]["name"] for p in pods}
    assert "b" not in {p["spec"]["nodeName"] for p in pods}
    st = h.store.get("apps/deployments", "default", "web")["status"]
    assert (st["replicas"], st["readyReplicas"], st["availableReplicas"], st["updatedReplicas"]) == (3, 3, 3, 3)
    assert {c["type"]: c["reason"] for c in st["conditions"]} == {
        "Available": "MinimumReplicasAvailable", "Progressing": "NewReplicaSetAvailable"}


def test_deployment_rolls_to_a_new_replicaset(h):
    for n in ("a", "b"):
        h.node(n)
    h.store.create("apps/deployments", deployment("web", 4))
    h.settle()
    h.store.mutate("apps/deployments", "default", "web",
                   lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="nginx:2"))
    h.settle()
    rs = {r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: r
          for r in h.store.list("apps/replicasets", "default")}
    assert rs["1"]["spec"]["replicas"] == 0 and rs["2"]["spec"]["replicas"] == 4
    assert {p["spec"]["containers"][0]["image"] for p in h.pods("default", app="web")} == {"nginx:2"}
    pod = h.pods("default", app="web")[0]
    assert pod["metadata"]["labels"]["pod-template-hash"] == rs["2"]["metadata"]["labels"]["pod-template-hash"]
    deploy = h.store.get("apps/deployments", "default", "web")
    assert deploy["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert deploy["status"]["observedGeneration"] == deploy["metadata"]["generation"] == 2


def test_deployment_scales_down_unready_pods_first(h):
    h.node("a")
    h.store.create("apps/deployments", deployment("web", 3))
    h.settle()
    slow = h.pods("default", app="web")[1]["metadata"]["name"]
    h.set_ready(slow, False)
    h.settle()
    h.store.mutate("apps/deployments", "default", "web", lambda d: d["spec"].update(replicas=2))
    h.settle()
    names = {p["metadata"]["name"] for p in h.pods("default", app="web")}
    assert len(names) == 2 and slow not in names


def job(name: str, *, outcome: str, completions: int = 1, backoff: int = 6, ttl: int | None = None) -> dict:
    spec = {"completions": completions, "parallelism": 1, "backoffLimit": backoff,
            "template": {"metadata": {"annotations": {FINISH: outcome}},
                         "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}
    if ttl is not None:
        spec["ttlSecondsAfterFinished"] = ttl
    return {"metadata": {"name": name, "namespace": "default"}, "spec": spec}


def test_job_completes_after_its_pods_succeed(h):
    h.node("a")
    h.store.create("batch/jobs", job("once", outcome="Succeeded", completions=2))
    h.settle()
    st = h.store.get("batch/jobs", "default", "once")["status"]
    assert st["succeeded"] == 2 and "active" not in st and st["completionTime"]
    assert [c["type"] for c in st["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    pods = h.pods("default")
    assert len(pods) == 2 and all(p["metadata"]["labels"]["job-name"] == "once" for p in pods)


def test_job_fails_past_its_backoff_limit_and_expires_by_ttl(h):
    h.node("a")
    h.store.create("batch/jobs", job("flaky", outcome="Failed", backoff=1, ttl=0))
    h.settle()
    assert h.store.try_get("batch/jobs", "default", "flaky") is None  # ttl 0: deleted once finished
    h.store.create("batch/jobs", job("kept", outcome="Failed", backoff=2))
    h.settle()
    st = h.store.get("batch/jobs", "default", "kept")["status"]
    assert st["failed"] == 3
    assert {c["type"]: c["reason"] for c in st["conditions"]}["Failed"] == "BackoffLimitExceeded"
