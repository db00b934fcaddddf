"""The simulated API server through the official ``kubernetes`` client, over HTTPS.

CRUD, 409 on a stale resourceVersion, the three patch types, label and field selectors,
watch resumed from a resourceVersion, eviction refused (429) under a PDB, custom resources at
both served versions with schema validation, and two LeaseLocks racing with one winner.
"""

from __future__ import annotations

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.leaderelection.leaderelectionrecord import LeaderElectionRecord
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock


@pytest.fixture
def api(kubeconfig):
    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    yield api_client
    api_client.close()


def test_crud_and_stale_update_conflicts(api):
    core = client.CoreV1Api(api)
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "c1"}, "data": {"a": "1"}})
    assert cm.metadata.resource_version and cm.metadata.uid
    cm.data = {"a": "2"}
    newer = core.replace_namespaced_config_map("c1", "default", cm)
    assert newer.data == {"a": "2"}
    cm.data = {"a": "3"}   # still carries the old resourceVersion
    with pytest.raises(ApiException) as stale:
        core.replace_namespaced_config_map("c1", "default", cm)
    assert stale.value.status == 409
    with pytest.raises(ApiException) as dup:
        core.create_namespaced_config_map("default", {"metadata": {"name": "c1"}})
    assert dup.value.status == 409
    with pytest.raises(ApiException) as missing_ns:
        core.create_namespaced_config_map("nope", {"metadata": {"name": "c1"}})
    assert missing_ns.value.status == 404
    core.delete_namespaced_config_map("c1", "default")
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_config_map("c1", "default")
    assert gone.value.status == 404


def test_three_patch_types(api):
    core = client.CoreV1Api(api)
    core.patch_node("node-1", {"metadata": {"labels": {"smp": "yes"}}})           # dict: strategic merge
    core.patch_node("node-1", [{"op": "add", "path": "/metadata/labels/jp", "value": "yes"}])  # list: JSON patch
    core.patch_node("node-1", {"metadata": {"labels": {"smp": None}}},
                    _content_type="application/merge-patch+json")
    labels = core.read_node("node-1").metadata.labels
    assert labels["jp"] == "yes" and "smp" not in labels
    with pytest.raises(ApiException) as bad:
        core.patch_node("node-1", [{"op": "test", "path": "/metadata/labels/jp", "value": "no"}])
    assert bad.value.status == 422


def test_label_and_field_selectors(api, sim):
    core = client.CoreV1Api(api)
    on_node = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=node-2").items
    assert on_node and all(p.spec.node_name == "node-2" for p in on_node)
    agents = core.list_namespaced_pod("kube-system", label_selector="k8s-app in (cilium)").items
    assert len(agents) == len(sim.store.list("nodes"))
    assert not core.list_namespaced_pod("kube-system", label_selector="k8s-app=cilium,k8s-app!=cilium").items
    for bad in ("k8s-app=>cilium", "k8s-app~=cilium", "k8s-app in cilium"):   # an unknown operator
        with pytest.raises(ApiException) as refused:
            core.list_namespaced_pod("kube-system", label_selector=bad)
        assert refused.value.status == 400, bad


def test_watch_resumes_from_a_resource_version(api):
    core = client.CoreV1Api(api)
    start = core.list_namespaced_config_map("default").metadata.resource_version
    for i in range(3):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"w{i}"}})
    seen = [(e["type"], e["object"].metadata.name) for e in watch.Watch().stream(
        core.list_namespaced_config_map, "default", resource_version=start, timeout_seconds=1)]
    assert seen == [("ADDED", "w0"), ("ADDED", "w1"), ("ADDED", "w2")]


def test_eviction_is_refused_under_a_pdb_that_allows_none(api, sim):
    policy, core = client.PolicyV1Api(api), client.CoreV1Api(api)
    pod = next(p for p in sim.store.list("pods", "shop") if p["metadata"]["name"].startswith("api-"))
    policy.patch_namespaced_pod_disruption_budget(
        "api", "shop", {"spec": {"minAvailable": 2}}, _content_type="application/merge-patch+json")
    sim.settle(timeout=10)
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod_eviction(pod["metadata"]["name"], "shop",
                                            {"metadata": {"name": pod["metadata"]["name"], "namespace": "shop"}})
    assert refused.value.status == 429 and "DisruptionBudget" in refused.value.body
    policy.patch_namespaced_pod_disruption_budget(
        "api", "shop", {"spec": {"minAvailable": 1}}, _content_type="application/merge-patch+json")
    sim.settle(timeout=10)
    core.create_namespaced_pod_eviction(pod["metadata"]["name"], "shop",
                                        {"metadata": {"name": pod["metadata"]["name"], "namespace": "shop"}})
    evicted = sim.store.try_get("pods", "shop", pod["metadata"]["name"])
    assert evicted is None or evicted["metadata"].get("deletionTimestamp")   # terminating, or already gone


def test_eviction_ignores_a_pdb_whose_selector_has_an_unknown_operator(api, sim):
    """As the real eviction subresource: a PDB with an invalid selector does not match the pod."""
    policy, core = client.PolicyV1Api(api), client.CoreV1Api(api)
    pod = next(p for p in sim.store.list("pods", "shop") if p["metadata"]["name"].startswith("api-"))
    policy.delete_namespaced_pod_disruption_budget("api", "shop")
    policy.create_namespaced_pod_disruption_budget("shop", {
        "metadata": {"name": "odd"}, "spec": {"maxUnavailable": 0, "selector": {
            "matchExpressions": [{"key": "app", "operator": "Equals", "values": ["api"]}]}}})
    core.create_namespaced_pod_eviction(pod["metadata"]["name"], "shop",
                                        {"metadata": {"name": pod["metadata"]["name"], "namespace": "shop"}})
    evicted = sim.store.try_get("pods", "shop", pod["metadata"]["name"])
    assert evicted is None or evicted["metadata"].get("deletionTimestamp")


def test_ciliumnodeconfig_at_both_versions_and_validated(api):
    co = client.CustomObjectsApi(api)
    body = {"apiVersion": "cilium.io/v2", "kind": "CiliumNodeConfig", "metadata": {"name": "x"},
            "spec": {"nodeSelector": {"matchLabels": {"a": "b"}}, "defaults": {"k": "v"}}}
    co.create_namespaced_custom_object("cilium.io", "v2", "kube-system", "ciliumnodeconfigs", body)
    old = co.get_namespaced_custom_object("cilium.io", "v2alpha1", "kube-system", "ciliumnodeconfigs", "x")
    assert old["apiVersion"] == "cilium.io/v2alpha1" and old["spec"]["defaults"] == {"k": "v"}
    bad = dict(body, metadata={"name": "y"}, spec={"defaults": {}})
    with pytest.raises(ApiException) as invalid:
        co.create_namespaced_custom_object("cilium.io", "v2", "kube-system", "ciliumnodeconfigs", bad)
    assert invalid.value.status == 422 and "nodeSelector" in invalid.value.body
    with pytest.raises(ApiException) as smp:
        co.patch_namespaced_custom_object("cilium.io", "v2", "kube-system", "ciliumnodeconfigs", "x",
                                          {"spec": {"defaults": {"k": "w"}}},
                                          _content_type="application/strategic-merge-patch+json")
    assert smp.value.status == 415


def test_two_lease_locks_race_and_one_wins(api):
    client.Configuration.set_default(api.configuration)
    a = LeaseLock("race", "default", "a")
    b = LeaseLock("race", "default", "b")
    rec = LeaderElectionRecord("a", "15", "2026-01-01 00:00:00", "2026-01-01 00:00:00")
    assert a.create("race", "default", rec)
    assert not b.create("race", "default", LeaderElectionRecord("b", "15", "2026-01-01 00:00:01", "2026-01-01 00:00:01"))
    ok_a, _ = a.get("race", "default")
    ok_b, _ = b.get("race", "default")
    assert ok_a and ok_b
    renewed = LeaderElectionRecord("a", "15", "2026-01-01 00:00:00", "2026-01-01 00:00:05")
    assert a.update("race", "default", renewed)
    # b still holds the lease object read before a's renewal: its update is a stale write
    assert not b.update("race", "default", LeaderElectionRecord("b", "15", "2026-01-01 00:00:01", "2026-01-01 00:00:01"))
    _, lease = a.get("race", "default")
    assert lease.holder_identity == "a"
