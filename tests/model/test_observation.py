"""Observation facts: selectors, PDB coverage, agent lookup, the Cilium-IP helper."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from migrator.model.observation import ClusterObservation, NodeFacts, PdbFacts, PodFacts
from migrator.model.selector import LabelSelector, SelectorRequirement


def pod(name: str, node: str = "n1", ip: str | None = None, **kw: object) -> PodFacts:
    return PodFacts(namespace=kw.pop("namespace", "shop"), name=name, uid=f"uid-{name}", node=node, ip=ip,
                    **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("selector", "labels", "expected"), [
    (LabelSelector(), {"a": "b"}, True),
    (LabelSelector(match_labels={"app": "web"}), {"app": "web"}, True),
    (LabelSelector(match_labels={"app": "web"}), {"app": "api"}, False),
    (LabelSelector(match_expressions=(SelectorRequirement(key="tier", operator="In", values=("a", "b")),)),
     {"tier": "b"}, True),
    (LabelSelector(match_expressions=(SelectorRequirement(key="tier", operator="NotIn", values=("a",)),)),
     {}, True),
    (LabelSelector(match_expressions=(SelectorRequirement(key="tier", operator="Exists"),)), {}, False),
    (LabelSelector(match_expressions=(SelectorRequirement(key="tier", operator="DoesNotExist"),)), {}, True),
])
def test_selector_semantics(selector: LabelSelector, labels: dict, expected: bool) -> None:
    assert selector.matches(labels) is expected


def test_requirement_values_must_fit_operator() -> None:
    with pytest.raises(ValueError):
        SelectorRequirement(key="k", operator="In")
    with pytest.raises(ValueError):
        SelectorRequirement(key="k", operator="Exists", values=("x",))


def test_indexes_and_helpers() -> None:
    early = datetime(2026, 1, 1, tzinfo=UTC)
    late = datetime(2026, 1, 2, tzinfo=UTC)
    obs = ClusterObservation(
        nodes=(NodeFacts(name="n1"), NodeFacts(name="n2")),
        pods=(pod("web-1", labels={"app": "web"}, ip="192.168.1.4"),
              pod("cilium-a", namespace="kube-system", labels={"k8s-app": "cilium"}, created_at=early),
              pod("cilium-b", namespace="kube-system", labels={"k8s-app": "cilium"}, created_at=late),
              pod("other", node="n2", ip="10.245.0.9")),
        pdbs=(PdbFacts(namespace="shop", name="web", selector=LabelSelector(match_labels={"app": "web"})),
              PdbFacts(namespace="other", name="web", selector=LabelSelector(match_labels={"app": "web"}))),
        pod_nodes=frozenset({"n1", "n2"}))
    assert [p.name for p in obs.pods_on("n1")] == ["cilium-a", "cilium-b", "web-1"]
    assert obs.agent_pod("n1", "kube-system", {"k8s-app": "cilium"}).name == "cilium-b"
    assert [p.name for p in obs.pdbs_covering(obs.pod("shop", "web-1"))] == ["web"]
    assert obs.pdbs_covering(obs.pod("shop", "other")) == ()
    assert not ClusterObservation.has_cilium_ip(obs.pod("shop", "web-1"), "10.245.0.0/16")
    assert ClusterObservation.has_cilium_ip(obs.pod("shop", "other"), "10.245.0.0/16")
    assert obs.observes_pods_of("n2") and not obs.observes_pods_of("n3")
    copied = obs.model_copy(update={"pods": ()})
    assert copied.pods_on("n1") == () and len(obs.pods_on("n1")) == 3
