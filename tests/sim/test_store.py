"""The object store's shared semantics: versions, CAS, generation, deletion, history, indexes."""

import pytest

from migrator.sim.errors import AlreadyExists, Conflict, Gone, NotFound
from migrator.sim.store import ResourceType, Store


@pytest.fixture
def store():
    s = Store(history=8)
    s.register(ResourceType("", "pods", "Pod", True, True))
    s.register(ResourceType("", "configmaps", "ConfigMap", True, False))
    s.add_index("pods", "nodeName", lambda o: o.get("spec", {}).get("nodeName"))
    return s


def pod(name, node="n1"):
    return {"metadata": {"name": name, "namespace": "d"}, "spec": {"nodeName": node}}


def test_create_sets_server_metadata_and_rejects_duplicates(store):
    p = store.create("pods", pod("a"))
    assert p["metadata"]["uid"] and "generation" not in p["metadata"]   # pods get one from v1.33
    assert int(p["metadata"]["resourceVersion"]) == store.resource_version
    with pytest.raises(AlreadyExists):
        store.create("pods", pod("a"))


def test_stale_update_conflicts_and_noop_keeps_version(store):
    p = store.create("configmaps", {"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "1"}})
    same = store.update("configmaps", p)
    assert same["metadata"]["resourceVersion"] == p["metadata"]["resourceVersion"]
    changed = dict(p, data={"a": "2"})
    newer = store.update("configmaps", changed)
    assert int(newer["metadata"]["resourceVersion"]) > int(p["metadata"]["resourceVersion"])
    assert "generation" not in newer["metadata"]   # ConfigMaps have none on kube-apiserver
    with pytest.raises(Conflict):
        store.update("configmaps", dict(p, data={"a": "3"}))


def test_status_subresource_is_separate(store):
    store.create("pods", pod("a"))
    store.mutate("pods", "d", "a", lambda o: o.update(status={"phase": "Running"}), subresource="status")
    after = store.mutate("pods", "d", "a", lambda o: o.update(status={"phase": "Failed"}))
    assert after["status"]["phase"] == "Running"


def test_index_follows_moves_and_deletes(store):
    store.create("pods", pod("a", "n1"))
    store.create("pods", pod("b", "n2"))
    store.mutate("pods", "d", "a", lambda o: o["spec"].update(nodeName="n2"))
    assert [o["metadata"]["name"] for o in store.list("pods", index=("nodeName", "n2"))] == ["a", "b"]
    store.delete("pods", "d", "b")
    assert [o["metadata"]["name"] for o in store.list("pods", index=("nodeName", "n2"))] == ["a"]


def test_finalizers_hold_deletion_until_removed(store):
    cm = {"metadata": {"name": "c", "namespace": "d", "finalizers": ["x"]}}
    store.create("configmaps", cm)
    obj, gone = store.delete("configmaps", "d", "c")
    assert not gone and obj["metadata"]["deletionTimestamp"]
    store.mutate("configmaps", "d", "c", lambda o: o["metadata"].update(finalizers=[]))
    with pytest.raises(NotFound):
        store.get("configmaps", "d", "c")


def test_graceful_pod_deletion_waits_for_kubelet(store):
    store.create("pods", pod("a"))
    _, gone = store.delete("pods", "d", "a", graceful=True)
    assert not gone and store.get("pods", "d", "a")["metadata"]["deletionTimestamp"]
    _, gone = store.delete("pods", "d", "a")
    assert gone


def test_history_is_bounded_and_reports_gone(store):
    for i in range(20):  # the history keeps between 8 and 16 events
        store.create("configmaps", {"metadata": {"name": f"c{i}", "namespace": "d"}})
    with pytest.raises(Gone):
        store.events_since(1)
    recent = store.events_since(store.resource_version - 2)
    assert [e.type for e in recent] == ["ADDED", "ADDED"]


def labelled(name, ns="d", **labels):
    return {"metadata": {"name": name, "namespace": ns, "labels": labels}, "spec": {}}


def names(objs):
    return [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objs]


def test_namespace_lists_follow_creates_and_deletes(store):
    for ns, name in (("b", "x"), ("a", "z"), ("b", "a"), ("a", "b")):
        store.create("pods", labelled(name, ns))
    assert names(store.list("pods")) == [("a", "b"), ("a", "z"), ("b", "a"), ("b", "x")]
    assert names(store.list("pods", "b")) == [("b", "a"), ("b", "x")]
    store.create("pods", labelled("m", "b"))
    store.delete("pods", "a", "b")
    assert names(store.list("pods", "b")) == [("b", "a"), ("b", "m"), ("b", "x")]
    assert names(store.list("pods")) == [("a", "z"), ("b", "a"), ("b", "m"), ("b", "x")]
    assert store.list("pods", "gone") == []


def test_label_lists_match_a_scan_through_relabels_and_deletes(store):
    store.create("pods", labelled("a", app="web", tier="front"))
    store.create("pods", labelled("b", app="web"))
    store.create("pods", labelled("c", ns="e", app="web", tier="front"))
    store.create("pods", labelled("d", app="db", tier="front"))

    def scan(ns, selector):
        return names(store.list("pods", ns, predicate=lambda o: all(
            (o["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())))

    def check(ns, selector, expected):
        assert names(store.list("pods", ns, labels=selector)) == scan(ns, selector) == expected

    check("d", {"app": "web"}, [("d", "a"), ("d", "b")])
    check(None, {"app": "web", "tier": "front"}, [("d", "a"), ("e", "c")])
    store.mutate("pods", "d", "b", lambda o: o["metadata"]["labels"].update(tier="front"))
    store.mutate("pods", "d", "a", lambda o: o["metadata"].pop("labels"))
    store.delete("pods", "e", "c")
    check(None, {"app": "web", "tier": "front"}, [("d", "b")])
    check("d", {"tier": "front"}, [("d", "b"), ("d", "d")])
    check("d", {"app": "nothing"}, [])
    assert names(store.list("pods", "d", labels={})) == names(store.list("pods", "d"))


def test_namespace_version_moves_with_each_change_in_that_namespace_only(store):
    assert store.namespace_version("pods", "d") == 0
    store.create("pods", labelled("a"))
    first = store.namespace_version("pods", "d")
    store.create("pods", labelled("x", ns="e"))
    assert store.namespace_version("pods", "d") == first
    store.mutate("pods", "d", "a", lambda o: o.update(status={"phase": "Running"}), subresource="status")
    written = store.namespace_version("pods", "d")
    assert written > first
    store.update("pods", store.get("pods", "d", "a"))   # a no-op write changes nothing
    assert store.namespace_version("pods", "d") == written
    store.delete("pods", "d", "a")
    assert store.namespace_version("pods", "d") == store.resource_version > written


def test_rebuild_writes_a_new_version_and_leaves_the_snapshot_alone(store):
    before = store.create("configmaps", {"metadata": {"name": "c", "namespace": "d", "labels": {"a": "1"}},
                                         "data": {"big": "x" * 100, "part": "old"}})
    after = store.rebuild("configmaps", "d", "c", lambda o: {**o, "data": {**o["data"], "part": "new"}})
    assert before["data"]["part"] == "old" and before["metadata"]["resourceVersion"] != after["metadata"]["resourceVersion"]
    assert store.get("configmaps", "d", "c")["data"] == {"big": "x" * 100, "part": "new"}
    assert store.list("configmaps", "d", labels={"a": "1"}) == [after]
    same = store.rebuild("configmaps", "d", "c", lambda o: dict(o))
    assert same is after and store.resource_version == int(after["metadata"]["resourceVersion"])
    with pytest.raises(NotFound):
        store.rebuild("configmaps", "d", "gone", dict)
