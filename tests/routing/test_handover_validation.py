"""The hand-over's Cilium objects (``cluster/handover_objects.py``) against the simulated API server,
which serves Cilium's own BGP and LB IPAM CRDs (``sim/crds/``) and validates writes with their
``openAPIV3Schema``, as apiextensions-apiserver does:

* every object rendered at ``cilium.io/v2`` and at ``v2alpha1`` is accepted with
  ``fieldValidation=Strict`` (no field unknown to the schema) and reads back at the other version;
* an object with a field of the wrong type is refused with a 422 naming the field, in the words
  kube-openapi uses (``spec.bgpInstances[0].localASN in body must be of type integer``), and
  nothing is stored;
* a misspelt field is refused under Strict and pruned without it (what the server stores);
* on a cluster with Cilium 1.17's API (v2alpha1 only) the hand-over detects and renders v2alpha1,
  which the server accepts, while v2 is not served there.
"""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from migrator.cluster.kube import KubeCluster
from migrator.engine import handover_objects as objs
from migrator.engine.handover_translate import translate
from migrator.engine.routing import detect
from migrator.model.handover import Advertisement, BgpPeer, ClusterConfig, HandoverResources, LBPool
from tests.conftest import fast_config

RES = HandoverResources(
    bgp_api="cilium.io/v2", lb_api="cilium.io/v2",
    cluster_configs=(ClusterConfig("migrator-tor", (("migrator.io/routing", "cilium"),), "tor", 64512,
                                   (BgpPeer("tor", "172.18.255.1", 65000, "migrator-handover"),)),),
    advertisements=(Advertisement("migrator-pod-cidr", True, communities=("65000:100",)),
                    Advertisement("migrator-lb", False, ("LoadBalancerIP",), (("migrator.io/lb", "cilium"),))),
    lb_pools=(LBPool("migrator-default", "metallb-system/default", ("203.0.113.0/28",),
                     (("203.0.113.20", "203.0.113.30"),)),))


@pytest.fixture
def custom(kubeconfig):
    api = config.new_client_from_config(config_file=str(kubeconfig))
    yield client.CustomObjectsApi(api)
    api.close()


def kept(stored, sent) -> bool:
    """Every field sent is stored as sent: nothing pruned or changed (a real server may add the
    schema's defaults, e.g. CiliumBGPPeerConfig's ebgpMultihop: 1, which the simulator does not)."""
    if isinstance(sent, dict):
        return isinstance(stored, dict) and all(k in stored and kept(stored[k], v) for k, v in sent.items())
    if isinstance(sent, list):
        return isinstance(stored, list) and len(stored) == len(sent) and all(map(kept, stored, sent))
    return bool(stored == sent)


def rendered(res: HandoverResources) -> list[tuple[str, dict]]:
    return objs.bgp_objects(res) + objs.lb_pool_objects(res)


def create(custom, plural: str, obj: dict, **kw) -> dict:
    group, version = obj["apiVersion"].split("/")
    out: dict = custom.create_cluster_custom_object(group, version, plural, obj, **kw)
    return out


@pytest.mark.parametrize(("api", "other"), [("cilium.io/v2", "v2alpha1"), ("cilium.io/v2alpha1", "v2")])
def test_every_rendered_object_is_valid_at_both_served_versions(custom, api, other) -> None:
    res = dataclasses.replace(RES, bgp_api=api, lb_api=api)
    kinds = set()
    for plural, obj in rendered(res):
        stored = create(custom, plural, copy.deepcopy(obj), field_validation="Strict")
        assert kept(stored["spec"], obj["spec"]), plural
        back = custom.get_cluster_custom_object("cilium.io", other, plural, obj["metadata"]["name"])
        assert back["apiVersion"] == f"cilium.io/{other}" and kept(back["spec"], obj["spec"])
        kinds.add(obj["kind"])
    assert kinds == {"CiliumBGPPeerConfig", "CiliumBGPAdvertisement", "CiliumBGPClusterConfig",
                     "CiliumLoadBalancerIPPool"}


def test_a_field_of_the_wrong_type_is_refused_with_422_naming_it(custom, sim) -> None:
    [(plural, cfg)] = [(p, o) for p, o in rendered(RES) if o["kind"] == "CiliumBGPClusterConfig"]
    cfg["spec"]["bgpInstances"][0]["localASN"] = "64512"          # a string where the schema has int64
    with pytest.raises(ApiException) as refused:
        create(custom, plural, cfg)
    status = json.loads(refused.value.body)
    assert (refused.value.status, status["reason"]) == (422, "Invalid")
    assert status["message"].startswith('CiliumBGPClusterConfig.cilium.io "migrator-tor" is invalid: ')
    assert ('spec.bgpInstances[0].localASN: Invalid value: "string": spec.bgpInstances[0].localASN '
            'in body must be of type integer: "string"') in status["message"]
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.bgpInstances[0].localASN"]
    assert sim.store.try_get("cilium.io/ciliumbgpclusterconfigs", None, "migrator-tor") is None

    cfg["spec"]["bgpInstances"][0]["localASN"] = 64512
    cfg["spec"]["bgpInstances"][0]["peers"][0]["peerAddress"] = "172.18.255.300"   # not an IP: the pattern
    with pytest.raises(ApiException) as pattern:
        create(custom, plural, cfg)
    assert pattern.value.status == 422
    assert "spec.bgpInstances[0].peers[0].peerAddress" in json.loads(pattern.value.body)["message"]


def test_a_misspelt_field_is_refused_under_strict_and_pruned_without(custom) -> None:
    [(plural, pool)] = objs.lb_pool_objects(RES)
    pool["spec"]["serviceSelecter"] = pool["spec"].pop("serviceSelector")
    with pytest.raises(ApiException) as strict:
        create(custom, plural, copy.deepcopy(pool), field_validation="Strict")
    assert strict.value.status == 400
    assert 'unknown field "spec.serviceSelecter"' in json.loads(strict.value.body)["message"]
    stored = create(custom, plural, pool)
    assert "serviceSelecter" not in stored["spec"] and "serviceSelector" not in stored["spec"]


def test_cilium_1_17_gets_its_objects_at_v2alpha1(sim_factory, tmp_path) -> None:
    sim = sim_factory(scenario="calico-bgp-cilium-1.17", config=fast_config(3))
    kubeconfig = sim.write_kubeconfig(tmp_path / "kc")
    port = KubeCluster.from_kubeconfig(str(kubeconfig))
    try:
        inventory = port.read_routing_inventory()
    finally:
        port.close()
    det = detect(inventory)
    assert (det.cilium.bgp_v2, det.cilium.lb_ip_pool, det.cilium.incomplete) == (
        "cilium.io/v2alpha1", "cilium.io/v2alpha1", ())
    res = translate(inventory, det)
    assert res.blockers == ()
    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        custom = client.CustomObjectsApi(api)
        for plural, obj in rendered(res):
            assert obj["apiVersion"] == "cilium.io/v2alpha1"
            assert kept(create(custom, plural, copy.deepcopy(obj), field_validation="Strict")["spec"], obj["spec"])
        plural, obj = rendered(res)[0]
        with pytest.raises(ApiException) as unserved:
            create(custom, plural, dict(obj, apiVersion="cilium.io/v2", metadata={"name": "at-v2"}))
        assert unserved.value.status == 404
    finally:
        api.close()
