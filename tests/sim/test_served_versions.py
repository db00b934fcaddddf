"""A scenario serves an older release's CRD versions (``Scenario.served_versions``,
``registry.serve_versions``): discovery, the versions a client can write and the
CustomResourceDefinition object it reads all say the same, as on a cluster running that release."""

from __future__ import annotations

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from migrator.sim.registry import load_crds, serve_versions
from tests.conftest import fast_config


def test_only_the_named_versions_are_served_and_the_first_is_stored(sim_factory, tmp_path) -> None:
    sim = sim_factory(scenario="cnc-v2alpha1-only", config=fast_config(2))
    api = config.new_client_from_config(config_file=str(sim.write_kubeconfig(tmp_path / "kc")))
    try:
        crd = client.ApiextensionsV1Api(api).read_custom_resource_definition("ciliumnodeconfigs.cilium.io")
        assert [(v.name, v.served, v.storage) for v in crd.spec.versions] == [("v2alpha1", True, True)]
        group = next(g for g in client.ApisApi(api).get_api_versions().groups if g.name == "cilium.io")
        assert "cilium.io/v2alpha1" in [v.group_version for v in group.versions]
        resources = client.CustomObjectsApi(api)
        body = {"apiVersion": "cilium.io/v2", "kind": "CiliumNodeConfig", "metadata": {"name": "x"},
                "spec": {"nodeSelector": {"matchLabels": {"a": "b"}}, "defaults": {"k": "v"}}}
        with pytest.raises(ApiException) as missing:
            resources.create_namespaced_custom_object("cilium.io", "v2", "kube-system", "ciliumnodeconfigs", body)
        assert missing.value.status == 404
        made = resources.create_namespaced_custom_object("cilium.io", "v2alpha1", "kube-system", "ciliumnodeconfigs",
                                                         dict(body, apiVersion="cilium.io/v2alpha1"))
        assert made["apiVersion"] == "cilium.io/v2alpha1"
        # other Cilium CRDs keep the versions their files declare
        resources.list_namespaced_custom_object("cilium.io", "v2", "kube-system", "ciliumnetworkpolicies")
    finally:
        api.close()


def test_no_versions_leaves_the_crd_out_and_an_unknown_version_is_refused() -> None:
    crds = load_crds()
    names = [c["metadata"]["name"] for c in serve_versions(crds, {"ciliuml2announcementpolicies.cilium.io": ()})]
    assert "ciliuml2announcementpolicies.cilium.io" not in names and len(names) == len(crds) - 1
    with pytest.raises(ValueError, match=r"ciliuml2announcementpolicies.cilium.io has no version \['v2'\]"):
        serve_versions(crds, {"ciliuml2announcementpolicies.cilium.io": ("v2",)})
