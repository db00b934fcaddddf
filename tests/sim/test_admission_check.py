"""The compiled schema check (fastjsonschema) never passes an object jsonschema refuses: for the
built-in kinds and every CRD the simulator serves, objects broken one field at a time (wrong
types, booleans for integers, unknown fields where none are allowed, missing required fields)
get the same verdict from both. A refusal's answer is always jsonschema's."""

from __future__ import annotations

import random
from typing import Any

import fastjsonschema
import pytest

from migrator.sim import admission
from migrator.sim.errors import Invalid
from migrator.sim.registry import build_registry, crd_resources

POD: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}},
    "spec": {"nodeName": "worker-1", "terminationGracePeriodSeconds": 30, "hostNetwork": False,
             "containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                             "resources": {"limits": {"cpu": "100m"}}}],
             "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}]},
    "status": {"phase": "Running", "podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]},
}
NODE: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1", "labels": {"kubernetes.io/os": "linux"}},
    "spec": {"podCIDR": "10.0.1.0/24", "unschedulable": True,
             "taints": [{"key": "migrator.io/steer", "effect": "NoSchedule"}]},
    "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.1"}],
               "conditions": [{"type": "Ready", "status": "True"}]},
}
CONFIGMAP: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": "state", "namespace": "kube-system"}, "data": {"k": "v"}}
CNC: dict[str, Any] = {
    "apiVersion": "cilium.io/v2", "kind": "CiliumNodeConfig", "metadata": {"name": "migration", "namespace": "kube-system"},
    "spec": {"nodeSelector": {"matchLabels": {"io.cilium.migration/cilium-default": "true"}},
             "defaults": {"write-cni-conf-when-ready": "/host/etc/cni/net.d/05-cilium.conflist"}},
}
BGP_CLUSTER: dict[str, Any] = {
    "apiVersion": "cilium.io/v2", "kind": "CiliumBGPClusterConfig", "metadata": {"name": "tor"},
    "spec": {"nodeSelector": {"matchLabels": {"migrator.io/bgp": "cilium"}},
             "bgpInstances": [{"name": "main", "localASN": 64512,
                               "peers": [{"name": "tor", "peerASN": 64500, "peerAddress": "10.0.0.1",
                                          "peerConfigRef": {"name": "tor"}}]}]},
}
WRONG = ["a string", 3, 2.5, True, None, [], {}]


def _mutants(obj: Any, rng: random.Random, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """(path, value) pairs: every field of ``obj`` given each wrong value, plus unknown fields."""
    out: list[tuple[tuple[Any, ...], Any]] = []
    if isinstance(obj, dict):
        out.append((path + ("notAField",), "x"))
        for key, value in obj.items():
            out += [(path + (key,), wrong) for wrong in WRONG]
            out += _mutants(value, rng, path + (key,))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            out += _mutants(value, rng, path + (i,))
    return out


def _set(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    import copy
    new = copy.deepcopy(obj)
    target = new
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return new


def _drop(obj: Any, path: tuple[Any, ...]) -> Any:
    import copy
    new = copy.deepcopy(obj)
    target = new
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return new


def _verdicts(validator: Any, check: Any, obj: Any) -> tuple[bool, bool]:
    try:
        check(obj)
        fast = True
    except fastjsonschema.JsonSchemaValueException:
        fast = False
    return fast, not list(validator.iter_errors(obj))


def _resource(kind: str) -> Any:
    registry = build_registry()
    for crd in registry.crds:
        for res in crd_resources(crd):
            if res.kind == kind and res.version == "v2":
                return res
    raise AssertionError(f"no {kind} served")


@pytest.mark.parametrize("obj", [POD, NODE, CONFIGMAP], ids=lambda o: o["kind"])
def test_builtin_kinds_compiled_check_agrees_with_jsonschema(obj: dict[str, Any]) -> None:
    validator = admission._builtin_validator("", "v1", obj["kind"])
    check = admission._builtin_check("", "v1", obj["kind"])
    assert validator is not None and check is not None
    assert _verdicts(validator, check, obj) == (True, True)
    cases = _mutants(obj, random.Random(1))
    refused = 0
    for path, value in cases:
        mutant = _set(obj, path, value)
        fast, slow = _verdicts(validator, check, mutant)
        assert fast == slow or fast is False, f"the compiled check passes {path}={value!r}, jsonschema refuses it"
        refused += not slow
    assert refused > len(cases) // 3, "the mutants are mostly invalid: the comparison means something"


@pytest.mark.parametrize("obj", [CNC, BGP_CLUSTER], ids=lambda o: o["kind"])
def test_crd_compiled_check_agrees_with_jsonschema(obj: dict[str, Any]) -> None:
    res = _resource(obj["kind"])
    validator, check = admission._crd_validator(res), admission._crd_check(res)
    assert check is not None
    assert _verdicts(validator, check, obj) == (True, True)
    cases = _mutants(obj, random.Random(1)) + [(p, None) for p, _ in _mutants(obj, random.Random(1))]
    refused = 0
    for path, value in cases:
        mutant = _set(obj, path, value) if value is not None or path[-1] == "notAField" else _drop(obj, path)
        fast, slow = _verdicts(validator, check, mutant)
        assert fast == slow or fast is False, f"the compiled check passes {path}={value!r}, jsonschema refuses it"
        refused += not slow
    assert refused > 10


def test_a_refused_object_is_answered_with_jsonschemas_errors() -> None:
    res = _resource("CiliumBGPClusterConfig")
    bad = _set(BGP_CLUSTER, ("spec", "bgpInstances", 0, "localASN"), "64512")
    with pytest.raises(Invalid) as refused:
        admission.validate(res, bad)
    assert 'spec.bgpInstances[0].localASN in body must be of type integer: "string"' in str(refused.value)


def test_the_compiled_check_fills_in_no_default() -> None:
    """A structural schema's ``default`` is the API server's to apply, not the check's."""
    check = admission._compiled({"type": "object", "properties": {
        "peerConfigRef": {"type": "object", "properties": {"kind": {"type": "string", "default": "CiliumBGPPeerConfig"}}}}})
    assert check is not None
    obj: dict[str, Any] = {"peerConfigRef": {}}
    check(obj)
    assert obj == {"peerConfigRef": {}}
