"""Cross-check (not a fit): the simulator's Felix model and the tool's Calico evaluator were written
apart from Calico's documentation; on seeded random inventories of Calico and Kubernetes policies they
must give every flow between the pods (and a few outside addresses) the same verdict."""

from __future__ import annotations

import random
from typing import Any

import pytest

from migrator.policy import model as pm
from migrator.policy.calico_eval import CalicoModel
from migrator.policy.endpoints import Endpoint, Probe
from tests.sim.policy_harness import calico_flow, pod, policy, store_with

PODS = [pod("x", "web", "192.168.1.1", {"app": "web", "role": "fe"}, ports=[("http", 8080, "TCP")]),
        pod("x", "db", "192.168.1.2", {"app": "db"}),
        pod("y", "lb", "192.168.2.1", {"role": "lb"}, sa="robot"),
        pod("y", "other", "192.168.2.2", {"app": "web"})]
OUTSIDE = ["203.0.113.5", "198.51.100.7"]
SELECTORS = ["app == 'web'", "app == 'db'", "has(role)", "role != 'fe'", "all()", "app == 'db' || role == 'lb'",
             "!has(app)", "app in {'web', 'db'} && !has(role)"]
PEERS: list[dict[str, Any]] = [
    {}, {"selector": "role == 'fe'"}, {"selector": "has(role)"}, {"namespaceSelector": "team == 'blue'"},
    {"namespaceSelector": "all()", "selector": "app == 'web'"}, {"selector": "kind == 'partner'",
                                                                 "namespaceSelector": "global()"},
    {"nets": ["203.0.113.0/24"]}, {"notNets": ["192.168.0.0/16"]}, {"serviceAccounts": {"names": ["robot"]}},
    {"notSelector": "app == 'web'"}, {"notSelector": "kind == 'partner'"},
    {"notSelector": "has(role)", "namespaceSelector": "all()"}, {"selector": "has(app)", "notSelector": "role == 'fe'"},
]   # a lone notSelector in a namespaced policy is confined to the policy's namespace, in a global one it is not
L4: list[dict[str, Any]] = [{}, {"protocol": "TCP", "destination": {"ports": [80]}},
                            {"protocol": "TCP", "destination": {"ports": ["79:81"]}},
                            {"protocol": "TCP", "destination": {"ports": ["http"]}},
                            {"protocol": "TCP", "destination": {"notPorts": [80]}}, {"protocol": "UDP"}]


def _rule(rnd: random.Random, direction: str) -> dict[str, Any]:
    out: dict[str, Any] = {"action": rnd.choice(("Allow", "Deny", "Pass", "Log"))}
    l4 = rnd.choice(L4)
    if "protocol" in l4:
        out["protocol"] = l4["protocol"]
    dest = dict(l4.get("destination") or {})
    peer = dict(rnd.choice(PEERS))
    if direction == "ingress":
        out["source"] = peer
    else:
        dest.update(peer)
    if dest:
        out["destination"] = dest
    return out


def _objects(seed: int) -> list[tuple[str, dict[str, Any]]]:
    rnd = random.Random(seed)
    out = [policy("Tier", "security", {"order": 100, "defaultAction": rnd.choice(("Deny", "Pass"))}),
           policy("GlobalNetworkSet", "partners", {"nets": ["203.0.113.0/25"]}, labels={"kind": "partner"})]
    for i in range(rnd.randint(1, 5)):
        direction = rnd.choice(("ingress", "egress"))
        spec: dict[str, Any] = {"selector": rnd.choice(SELECTORS), "types": [direction.capitalize()],
                                direction: [_rule(rnd, direction) for _ in range(rnd.randint(0, 3))]}
        if rnd.random() < 0.7:
            spec["order"] = rnd.choice((10, 100, 1000, 2000))
        kind = rnd.choice(("gnp", "np", "tiered", "knp"))
        if kind in ("gnp", "tiered") and rnd.random() < 0.2:   # host endpoints only: never a pod's verdict
            spec.update({"doNotTrack": True, "applyOnForward": True})
        if kind == "knp":
            peers = rnd.choice(([], [{"podSelector": {"matchLabels": {"app": "web"}}}],
                                [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}],
                                [{"ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.0/28"]}}]))
            ports = rnd.choice(([], [{"protocol": "TCP", "port": 80}], [{"protocol": "TCP", "port": "http"}]))
            key = "from" if direction == "ingress" else "to"
            out.append(policy("KubernetesNetworkPolicy", f"k{i}", {
                "podSelector": rnd.choice(({}, {"matchLabels": {"app": "web"}})), "policyTypes": spec["types"],
                direction: [{key: peers, "ports": ports}] if rnd.random() < 0.8 else []}, ns=rnd.choice("xy")))
        elif kind == "np":
            out.append(policy("NetworkPolicy", f"p{i}", spec, ns=rnd.choice("xy")))
        elif kind == "tiered":
            out.append(policy("GlobalNetworkPolicy", f"security.p{i}", {"tier": "security", **spec}))
        else:
            out.append(policy("GlobalNetworkPolicy", f"p{i}", spec))
    return out


def _inventory(store: Any) -> pm.Inventory:
    calico = "crd.projectcalico.org"
    return pm.Inventory(
        policies=tuple([pm.calico_policy("NetworkPolicy", o) for o in store.list(f"{calico}/networkpolicies")]
                       + [pm.calico_policy("GlobalNetworkPolicy", o) for o in store.list(f"{calico}/globalnetworkpolicies")]
                       + [pm.kubernetes_policy(o) for o in store.list("networking.k8s.io/networkpolicies")]),
        network_sets=tuple(pm.network_set(o, global_=True) for o in store.list(f"{calico}/globalnetworksets")),
        tiers=tuple(pm.tier(o) for o in store.list(f"{calico}/tiers")),
        pods=tuple(pm.pod(p) for p in store.list("pods")),
        namespaces={n["metadata"]["name"]: dict(n["metadata"].get("labels") or {}) for n in store.list("namespaces")})


@pytest.mark.parametrize("seed", range(40))
def test_the_sim_and_the_tool_agree_on_calico_verdicts(seed: int) -> None:
    store = store_with(*PODS, *_objects(seed))
    tool = CalicoModel(_inventory(store))
    ends = {p["metadata"]["name"]: Endpoint(key=p["metadata"]["name"], ip=p["status"]["podIP"], pod=pm.pod(p))
            for p in store.list("pods")}
    ends.update({ip: Endpoint(key=ip, ip=ip) for ip in OUTSIDE})
    for src in ends:
        for dst in ends:
            if src == dst or (src in OUTSIDE and dst in OUTSIDE):
                continue
            for port, proto in ((80, "TCP"), (8080, "TCP"), (81, "TCP"), (80, "UDP")):
                sim_ok, why = calico_flow(store, src, dst, port, proto.lower())
                tool_ok, tool_why = tool.verdict(ends[src], ends[dst], Probe(proto, port))
                assert sim_ok == tool_ok, (seed, src, dst, port, proto, why, tool_why)


def _enforced_like_felix(store: Any, tag: Any) -> None:
    """The tool's translation of the store's inventory, applied to the simulated Cilium (every pod a
    managed endpoint, outside addresses ``world``), gives the simulated Felix's verdict on every flow."""
    from migrator.policy.compile import translate
    from migrator.policy.emit import CiliumVersions
    from migrator.sim.cilium_identity import reserved
    from migrator.sim.cilium_policy import CiliumPolicies
    from tests.sim.policy_harness import RESOURCE
    for obj in translate(_inventory(store), CiliumVersions(end_port=True)).objects:
        store.create(RESOURCE[obj["kind"]], dict(obj))
    cilium = CiliumPolicies(store)
    pods = {p["metadata"]["name"]: p for p in store.list("pods")}
    idents = {name: cilium.identity(p) for name, p in pods.items()}
    idents.update({ip: reserved(ip, "world") for ip in OUTSIDE})
    for src in idents:
        for dst in idents:
            if src == dst or (src in OUTSIDE and dst in OUTSIDE):
                continue
            for port, proto in ((80, "tcp"), (8080, "tcp"), (81, "tcp"), (80, "udp")):
                calico_ok, calico_why = calico_flow(store, src, dst, port, proto)
                ok, why = True, ""
                if src in pods:
                    ok, why = cilium.verdict(idents[src], "egress", idents[dst], port, proto)
                if ok and dst in pods:
                    ok, why = cilium.verdict(idents[dst], "ingress", idents[src], port, proto)
                assert ok == calico_ok, (tag, src, dst, port, proto, calico_why, why)


def test_exact_translations_enforced_by_the_simulated_cilium_give_calicos_verdicts() -> None:
    """Every random inventory the tool translates exactly is enforced by the simulated Cilium as the
    simulated Felix enforces the Calico policies."""
    from migrator.policy.compile import translate
    from migrator.policy.emit import CiliumVersions
    checked = 0
    for seed in range(140):
        store = store_with(*PODS, *_objects(seed))
        translation = translate(_inventory(store), CiliumVersions(end_port=True))
        if any(c != "exact" for c in translation.classes.values()):
            continue
        _enforced_like_felix(store, seed)
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize("ns", ["x", None])
def test_a_translated_not_selector_peer_keeps_felixs_namespace_scope(ns: str | None) -> None:
    """A lone notSelector peer (ingress and egress): in a namespaced policy Felix confines it to the
    policy's namespace, in a global one it reaches every namespace and the world; the translation
    (approximate only for network sets and host endpoints, which these flows do not involve) agrees."""
    spec = {"selector": "all()", "types": ["Ingress", "Egress"],
            "ingress": [{"action": "Allow", "source": {"notSelector": "role == 'fe'"}}],
            "egress": [{"action": "Allow", "destination": {"notSelector": "app == 'db'"}}]}
    obj = policy("NetworkPolicy", "not-sel", spec, ns=ns) if ns else policy("GlobalNetworkPolicy", "not-sel", spec)
    _enforced_like_felix(store_with(*PODS, obj), ns)
