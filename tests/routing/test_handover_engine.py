"""The hand-over phase's pure parts: merge-patch arithmetic, the refusals of `migrator handover`,
preflight with `routing.handover`, the CiliumNodeConfig and finalize settings it implies."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from migrator.engine.decide import Inbox, decide
from migrator.engine.finalize import _final_config, finalize_blockers, helm_values
from migrator.engine.node_config import BGP_KEY, node_config_spec
from migrator.model.checkpoint import Checkpoint, HandoverProgress, NodeRecord
from migrator.model.merge_patch import holds, inverse
from migrator.model.observation import ClusterObservation
from migrator.model.plan import parse_plan
from migrator.model.states import NodePhase, RunPhase
from tests.routing.helpers import read_inventory

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def plan(**routing):
    return parse_plan({"api_version": "migrator.io/v1", "kind": "MigrationPlan", "name": "p",
                       "cilium": {"pod_cidr": "10.245.0.0/16"}, "routing": routing,
                       "nodes": {"names": ["n1", "n2"]}})


def done_run(p, **changes) -> Checkpoint:
    from migrator.model.identity import identity_record
    return Checkpoint(plan_name=p.name, **identity_record(p), run_id="r", run_phase=RunPhase.NODES_DONE,
                      started_at=NOW, nodes=(NodeRecord(name="n1", phase=NodePhase.DONE),
                                             NodeRecord(name="n2", phase=NodePhase.DONE)), **changes)


@pytest.mark.parametrize(("current", "patch", "held"), [
    ({"a": 1}, {"a": 1}, True),
    ({"a": 1}, {"a": 2}, False),
    ({}, {"meta": {"annotations": {"x": None}}}, True),          # deleting under a missing key is a no-op
    ({"meta": {"annotations": {"x": "1"}}}, {"meta": {"annotations": {"x": None}}}, False),
    ({"meta": "text"}, {"meta": {"x": None}}, False),
    ({"l": [1, 2]}, {"l": [1, 2]}, True),
    ({"l": [1, 2, 3]}, {"l": [1, 2]}, False),                   # a list is replaced whole
])
def test_holds(current, patch, held) -> None:
    assert holds(current, patch) is held


def test_inverse_restores_what_an_operator_had() -> None:
    original = {"metadata": {"labels": {"app": "web"}, "annotations": {"metallb.universe.tf/address-pool": "a"}},
                "spec": {"serviceAllocation": {"namespaces": ["shop"]}}}
    patch = {"metadata": {"labels": {"migrator.io/lb": "cilium"},
                          "annotations": {"metallb.universe.tf/address-pool": None, "lbipam.cilium.io/ips": "1.2.3.4"}},
             "spec": {"serviceAllocation": {"serviceSelectors": [{"matchLabels": {}}]}}}
    undo = inverse(original, patch)
    assert undo == {"metadata": {"labels": {"migrator.io/lb": None},
                                 "annotations": {"metallb.universe.tf/address-pool": "a", "lbipam.cilium.io/ips": None}},
                    "spec": {"serviceAllocation": {"serviceSelectors": None}}}
    assert holds(original, undo)
    assert not holds(original, patch)


def test_the_plan_field_turns_the_bgp_control_plane_on_in_the_node_config_and_after_finalize() -> None:
    on, off = plan(handover=True), plan()
    assert node_config_spec(on)[1][BGP_KEY] == "true"
    assert BGP_KEY not in node_config_spec(off)[1]
    assert _final_config(on)[BGP_KEY] == "true" and BGP_KEY not in _final_config(off)
    assert "bgpControlPlane" in helm_values(on) and "bgpControlPlane" not in helm_values(off)


@pytest.mark.parametrize(("progress", "blocked"), [
    (None, "not started"),
    (HandoverProgress(state="undone"), "rolled back"),
    (HandoverProgress(key="hand-node:n1"), "at step hand-node:n1"),
    (HandoverProgress(state="done"), None),
])
def test_finalize_waits_for_the_handover(progress, blocked) -> None:
    p = plan(handover=True)
    found = [b for b in finalize_blockers(done_run(p, handover=progress), plan=p) if "hand-over" in b]
    assert (found[0] if found else None) is None if blocked is None else blocked in found[0]
    assert [b for b in finalize_blockers(done_run(plan()), plan=plan()) if "hand-over" in b] == []


def test_handover_is_refused_without_the_plan_field_and_before_every_node_is_done() -> None:
    first = Inbox(purpose="handover", first=True)
    p = plan()
    d = decide(p, done_run(p), ClusterObservation(), NOW, first)
    assert d.stop is not None and d.stop.code == "invalid" and "routing.handover is off" in d.stop.message
    p = plan(handover=True)
    cp = done_run(p).model_copy(update={"run_phase": RunPhase.MIGRATING})
    d = decide(p, cp, ClusterObservation(), NOW, first)
    assert d.stop is not None and d.stop.code == "halted" and "run is MIGRATING" in d.stop.message
    cp = done_run(p).with_nodes({"n2": NodeRecord(name="n2", phase=NodePhase.ROLLED_BACK)})
    d = decide(p, cp, ClusterObservation(), NOW, first)
    assert d.stop is not None and "n2 is ROLLED_BACK" in d.stop.message
    d = decide(p, done_run(p), ClusterObservation(), NOW, Inbox(purpose="handover-rollback", first=True))
    assert d.stop is not None and d.stop.code == "done" and "no hand-over to roll back" in d.stop.message
    d = decide(p, done_run(p), ClusterObservation(), NOW, first)     # accepted: waits for the routing objects
    assert d.stop is None and d.checkpoint.handover == HandoverProgress(step_started_at=NOW)
    assert "waiting for the routing objects" in d.reason


def test_preflight_blocks_a_plan_asking_for_a_handover_that_cannot_run(sim_factory, tmp_path) -> None:
    from migrator.preflight_checks.facts import PreflightFacts, PreflightInputs, Severity
    from migrator.preflight_checks.routing import check_handover
    from tests.conftest import fast_config

    sim = sim_factory(scenario="calico-bgp", config=fast_config(3))
    inventory = read_inventory(sim, tmp_path / "kc")
    unserved = dataclasses.replace(inventory, cilium_served={})
    [f] = check_handover(PreflightInputs(handover=True), PreflightFacts(routing=unserved))
    assert f.severity is Severity.BLOCKING and "no Cilium BGPv2 API" in f.message
    [f] = check_handover(PreflightInputs(), PreflightFacts(routing=unserved))
    assert f.severity is Severity.WARNING
    [f] = check_handover(PreflightInputs(handover=True), PreflightFacts(routing=inventory))
    assert f.severity is Severity.INFO


def test_metallb_l2_mode_blocks_the_handover_naming_the_services() -> None:
    from migrator.engine.handover_translate import translate
    from migrator.engine.routing import detect
    from migrator.model.routing import (
        CILIUM_BGP_CRDS,
        LoadBalancerService,
        MetalLBAdvertisement,
        MetalLBPeer,
        MetalLBPool,
        RoutingInventory,
    )

    def inventory(kind: str) -> RoutingInventory:
        return RoutingInventory(
            calico_backend="vxlan",
            metallb_pools=(MetalLBPool("metallb-system", "p", ("198.51.100.0/28",)),),
            metallb_peers=(MetalLBPeer("metallb-system", "tor", 64512, 65000, "172.18.255.1"),),
            metallb_advertisements=(MetalLBAdvertisement(kind, "metallb-system", "a", pools=("p",)),),
            lb_services=(LoadBalancerService("shop", "web", ("198.51.100.1",)),),
            cilium_served={crd: ("v2",) for crd in CILIUM_BGP_CRDS.values()})
    l2 = translate(inventory("L2Advertisement"), detect(inventory("L2Advertisement")))
    assert [b for b in l2.blockers if "L2 mode (shop/web)" in b and "CiliumL2AnnouncementPolicy" in b]
    bgp = translate(inventory("BGPAdvertisement"), detect(inventory("BGPAdvertisement")))
    assert not [b for b in bgp.blockers if "L2" in b]


def test_after_the_services_the_other_nodes_go_max_unavailable_at_a_time() -> None:
    from migrator.engine.handover import _window
    from migrator.engine.handover_steps import Step

    steps = (Step("restrict-pool", ("m", "p")), Step("hand-node", ("", "n1")), Step("hand-service", ("a", "s")),
             *(Step("hand-node", ("", f"n{i}")) for i in range(2, 7)))
    assert _window(steps, 1, True, 3) == [1]                 # the first node goes alone
    assert _window(steps, 0, True, 3) == [0] and _window(steps, 2, True, 3) == [2]
    assert _window(steps, 3, True, 3) == [3, 4, 5]
    assert _window(steps, 6, True, 3) == [6, 7]
    assert _window(steps, 7, False, 3) == [7, 6, 5]          # undone newest first, the first node alone
    assert _window(steps, 4, False, 3) == [4, 3]
    assert _window(steps, 4, True, 1) == [4]
