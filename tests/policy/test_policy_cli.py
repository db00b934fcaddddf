"""``migrator policy translate`` and ``verify`` against the simulated cluster, with Calico policies
created through its API (validated against the Calico CRD schemas the sim serves)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import structlog
import yaml
from kubernetes import client

from migrator.cli import main
from tests.chaos.incli import _Capture

EXAMPLE = Path(__file__).resolve().parents[2] / "plans" / "example.yaml"
CALICO = ("crd.projectcalico.org", "v1")


def _create(api: client.ApiClient, plural: str, body: dict[str, Any], namespace: str | None = None) -> None:
    custom = client.CustomObjectsApi(api)
    body = {"apiVersion": "crd.projectcalico.org/v1", **body}
    if namespace:
        custom.create_namespaced_custom_object(*CALICO, namespace, plural, body)
    else:
        custom.create_cluster_custom_object(*CALICO, plural, body)


def _policies(api: client.ApiClient, *, untranslatable: bool = False) -> None:
    _create(api, "globalnetworksets", {"kind": "GlobalNetworkSet",
                                       "metadata": {"name": "partners", "labels": {"kind": "partner"}},
                                       "spec": {"nets": ["203.0.113.0/24"]}})
    _create(api, "globalnetworkpolicies", {"kind": "GlobalNetworkPolicy", "metadata": {"name": "guard"}, "spec": {
        "order": 100, "selector": "app == 'cache'", "types": ["Ingress"],
        "doNotTrack": untranslatable, "applyOnForward": untranslatable,
        "ingress": [{"action": "Deny", "source": {"selector": "role == 'fe'"}},
                    {"action": "Allow", "source": {"selector": "kind == 'partner'", "namespaceSelector": "global()"}},
                    {"action": "Allow", "protocol": "TCP", "destination": {"ports": [80]}}]}})
    if untranslatable:   # 101 ports: this schema has no endPort, and listing them is refused past 64
        _create(api, "networkpolicies", {"kind": "NetworkPolicy", "metadata": {"name": "range", "namespace": "shop"},
                                         "spec": {"selector": "app == 'api'", "ingress": [
                                             {"action": "Allow", "protocol": "TCP",
                                              "destination": {"ports": ["8000:8100"]}}]}}, namespace="shop")
    _create(api, "networkpolicies", {"kind": "NetworkPolicy", "metadata": {"name": "same-ns", "namespace": "default"},
                                     "spec": {"selector": "all()", "types": ["Egress"],
                                              "egress": [{"action": "Allow", "destination": {"selector": "all()"}}]}},
            namespace="default")


def _cli(capsys: Any, *args: str) -> tuple[int, str, str]:
    """``migrator ARGS`` in-process: exit code, stdout, stderr (streams that outlive the call, since the
    CLI points the process's logger at them and the in-process sim keeps logging)."""
    out, err = _Capture(), _Capture()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):  # type: ignore[type-var]
        code = main(list(args))
    structlog.contextvars.clear_contextvars()
    return code, out.getvalue(), err.getvalue()


def test_translate_prints_cilium_objects_and_the_summary(sim_factory: Any, tmp_path: Path, capsys: Any) -> None:
    sim = sim_factory(nodes=2)
    kc = str(sim.write_kubeconfig(tmp_path / "kc"))
    from kubernetes import config
    api = config.new_client_from_config(config_file=kc)
    try:
        _policies(api)
    finally:
        api.close()
    code, out, err = _cli(capsys, "policy", "translate", "--plan", str(EXAMPLE), "--kubeconfig", kc)
    assert code == 0, err
    objects = list(yaml.safe_load_all(out))
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {("CiliumClusterwideNetworkPolicy", "calico.guard"), ("CiliumNetworkPolicy", "calico.same-ns"),
            ("CiliumCIDRGroup", "calico-globalnetset.partners")} <= kinds
    guard = next(o for o in objects if o["metadata"]["name"] == "calico.guard")
    assert guard["apiVersion"] == "cilium.io/v2"
    (spec,) = [s for s in ([guard["spec"]] if "spec" in guard else guard["specs"]) if "ingress" in s]
    assert {"fromCIDRSet": [{"cidrGroupRef": "calico-globalnetset.partners"}]} in spec["ingress"]
    assert all(e["fromEndpoints"][0]["matchLabels"]["k8s:role"] == "fe" for e in spec["ingressDeny"])
    rows = {line.split()[0]: line.split()[1] for line in err.splitlines()[1:-1]}
    assert rows == {"gnp/guard": "exact", "np/default/same-ns": "exact", "np/shop/default.web-allow-http": "exact"}
    assert err.splitlines()[0].split() == ["POLICY", "CLASS", "REASON"]

    code, out, err = _cli(capsys, "policy", "translate", "--plan", str(EXAMPLE), "--kubeconfig", kc, "-o", "json")
    assert code == 0 and json.loads(out)["kind"] == "List" and len(json.loads(out)["items"]) == len(objects)

    code, out, err = _cli(capsys, "policy", "verify", "--plan", str(EXAMPLE), "--kubeconfig", kc)
    assert code == 0, out + err
    assert "0 differ" in out


def test_untranslatable_policy_exits_1_naming_the_construct(sim_factory: Any, tmp_path: Path, capsys: Any) -> None:
    sim = sim_factory(nodes=2)
    kc = str(sim.write_kubeconfig(tmp_path / "kc"))
    from kubernetes import config
    api = config.new_client_from_config(config_file=kc)
    try:
        _policies(api, untranslatable=True)
    finally:
        api.close()
    code, out, err = _cli(capsys, "policy", "translate", "--plan", str(EXAMPLE), "--kubeconfig", kc)
    assert code == 1
    assert "gnp/guard" in err and "untranslatable" in err and "doNotTrack" in err
    assert "np/shop/range" in err and "port range 8000-8100 needs endPort" in err   # the sim's CRD predates it
    assert "calico.guard" not in out and "calico.range" not in out and "calico.same-ns" in out


def test_a_missing_plan_is_invalid_input(tmp_path: Path, capsys: Any) -> None:
    code, _out, err = _cli(capsys, "policy", "verify", "--plan", str(tmp_path / "nope.yaml"))
    assert code == 2 and "nope.yaml" in err


def test_crd_field_detection_reads_the_served_schema(sim_factory: Any, tmp_path: Path) -> None:
    from migrator.cluster.kube import KubeCluster
    sim = sim_factory(nodes=2)
    port = KubeCluster.from_kubeconfig(str(sim.write_kubeconfig(tmp_path / "kc")))
    try:
        crd = "ciliumnetworkpolicies.cilium.io"
        assert port.crd_has_field(crd, "v2", "spec.ingress.toPorts.ports.port")
        assert port.crd_has_field(crd, "v2", "specs.ingressDeny.fromCIDRSet.cidrGroupRef")
        assert not port.crd_has_field(crd, "v2", "spec.ingress.toPorts.ports.endPort")   # this CRD predates it
        assert not port.crd_has_field(crd, "v9", "spec")
        assert not port.crd_has_field("nothing.example.com", "v1", "spec")
    finally:
        port.close()


def test_every_translated_object_is_accepted_unchanged_by_the_served_schemas(sim_factory: Any, tmp_path: Path) -> None:
    """The objects of every translation-table row, at the sim's versions and schema (no endPort), are
    created through the API and read back without a field pruned."""
    from kubernetes import config

    from migrator.policy.compile import translate
    from migrator.policy.emit import CiliumVersions
    from tests.policy.fixtures import inventory
    from tests.policy.test_translate import CASES
    plural = {"CiliumNetworkPolicy": "ciliumnetworkpolicies", "CiliumCIDRGroup": "ciliumcidrgroups",
              "CiliumClusterwideNetworkPolicy": "ciliumclusterwidenetworkpolicies"}
    sim = sim_factory(nodes=2)
    api = config.new_client_from_config(config_file=str(sim.write_kubeconfig(tmp_path / "kc")))
    custom = client.CustomObjectsApi(api)
    seen: set[tuple[str, str]] = set()
    try:
        for case in CASES:
            inv = inventory(*case.policies, tiers=case.tiers, host_endpoints=case.hosts)
            for o in translate(inv, CiliumVersions(end_port=False)).objects:
                meta = o["metadata"]
                if (o["kind"], meta["name"]) in seen:
                    continue
                seen.add((o["kind"], meta["name"]))
                group, version = o["apiVersion"].split("/")
                if meta.get("namespace"):
                    got = custom.create_namespaced_custom_object(group, version, meta["namespace"], plural[o["kind"]], o)
                else:
                    got = custom.create_cluster_custom_object(group, version, plural[o["kind"]], o)
                body = {k: got[k] for k in o if k != "metadata"}
                assert body == {k: o[k] for k in o if k != "metadata"}, case.id
    finally:
        api.close()
    assert len(seen) > len(CASES)
