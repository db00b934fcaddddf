"""The dry-run forecast: waves under the limits, blockers named, nothing executed."""

from __future__ import annotations

from datetime import timedelta

from migrator.engine.forecast import forecast
from tests.engine.loop import make_plan
from tests.engine.toy import ToyCluster


def test_waves_respect_concurrency_and_control_plane_last() -> None:
    toy = ToyCluster(workers=5, control_plane=2, zones=2)
    plan = make_plan(concurrency={"max_unavailable": 2})
    result = forecast(plan, toy.observe())
    assert result.waves == (("node-1", "node-2"), ("node-3", "node-4"), ("node-5",), ("cp-1", "cp-2"))
    per_node = timedelta(minutes=10 + 5 + 3 + 5)
    assert result.worst_case == per_node * 4
    assert result.node_config_version == "cilium.io/v2"
    assert not result.blocked


def test_blockers_and_pdb_limits_are_named() -> None:
    toy = ToyCluster(workers=2)
    toy.add_bare_pod("node-1")
    toy.add_pdb("web", allowed=0)
    result = forecast(make_plan(), toy.observe())
    node1 = next(n for n in result.nodes if n.name == "node-1")
    assert node1.blockers == ("shop/debug-shell: bare pod without a controller (drain.unmanaged_pods: block)",)
    assert node1.pdb_limited == ("shop/web-pdb (shop/web-node-1-0)",)
    assert node1.recycle == ("shop/log-agent-node-1",)
    assert result.blocked
    text = result.render()
    assert "blocker: shop/debug-shell" in text and "wave 1: node-1" in text
    assert "pod placement: drain: nodes are cordoned and drained" in text
    gated = forecast(make_plan(probes={"enabled": True, "checks": {"deadline": "2m"}}), toy.observe())
    assert gated.worst_case - result.worst_case == timedelta(minutes=2) * len(result.waves)


def test_unserved_node_config_is_a_warning() -> None:
    toy = ToyCluster(workers=1)
    toy.served = ()
    result = forecast(make_plan(), toy.observe())
    assert result.node_config_version is None
    assert any("halt at prepare" in w for w in result.warnings)
