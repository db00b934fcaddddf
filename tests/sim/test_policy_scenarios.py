"""The ``calico-policies`` scenarios: what they install, and that the tool translates and verifies them
(``migrator policy translate`` / ``verify`` over the API, as an operator runs them)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import structlog

from migrator.cli import main
from tests.chaos.incli import _Capture

EXAMPLE = Path(__file__).resolve().parents[2] / "plans" / "example.yaml"


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = _Capture(), _Capture()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):  # type: ignore[type-var]
        code = main(list(args))
    structlog.contextvars.clear_contextvars()
    return code, out.getvalue(), err.getvalue()


def _classes(err: str) -> dict[str, set[str]]:
    rows: dict[str, set[str]] = {}
    for line in err.splitlines()[1:-1]:
        name, klass = line.split()[:2]
        rows.setdefault(name, set()).add(klass)
    return rows


def test_calico_policies_scenario_translates_exactly_and_verifies(sim_factory: Any, tmp_path: Path) -> None:
    sim = sim_factory(nodes=3, scenario="calico-policies")
    ns = {n["metadata"]["name"]: n["metadata"]["labels"] for n in sim.store.list("namespaces")}
    assert {ns[n]["tenant"] for n in ("tenant-a", "tenant-b", "shared")} == {"a", "b", "shared"}
    servers = [p for p in sim.store.list("pods") if (p["metadata"].get("labels") or {}).get("app") == "server"]
    assert len(servers) == 6 and all(p["status"].get("podIP") for p in servers)
    assert sim.store.try_get("crd.projectcalico.org/tiers", None, "security")["spec"]["order"] == 100

    kc = str(sim.write_kubeconfig(tmp_path / "kc"))
    code, out, err = _cli("policy", "translate", "--plan", str(EXAMPLE), "--kubeconfig", kc)
    assert code == 0, err
    classes = _classes(err)
    assert {"gnp/security.quarantine", "gnp/security.isolate-tenant-a", "gnp/security.isolate-tenant-b",
            "np/tenant-a/default.deny-shared-81", "np/tenant-a/default.allow-shared",
            "np/shared/default.egress-control"} <= set(classes)
    assert all(k <= {"exact", "approximate"} for k in classes.values()), classes

    code, out, err = _cli("policy", "verify", "--plan", str(EXAMPLE), "--kubeconfig", kc)
    assert code == 0, out + err
    assert " 0 differ" in out


def test_untranslatable_scenario_names_the_do_not_track_policy(sim_factory: Any, tmp_path: Path) -> None:
    sim = sim_factory(nodes=2, scenario="calico-policies-untranslatable")
    kc = str(sim.write_kubeconfig(tmp_path / "kc"))
    code, _out, err = _cli("policy", "translate", "--plan", str(EXAMPLE), "--kubeconfig", kc)
    assert code == 1
    assert _classes(err)["gnp/security.no-track"] == {"untranslatable"} and "doNotTrack" in err
    assert "host endpoints only" in err
    # Felix never applies a doNotTrack policy to a pod: the pods' verdicts are the translation's
    code, out, err = _cli("policy", "verify", "--plan", str(EXAMPLE), "--kubeconfig", kc)
    assert code == 0 and " 0 differ" in out, out[-2000:] + err[-2000:]


# The verdicts the scenario's description promises, per (source namespace/app, destination namespace/app):
# the ports that pass, of 80/TCP, 81/TCP, 80/UDP, 81/UDP.
ALL, NONE = {"80/tcp", "81/tcp", "80/udp", "81/udp"}, set()
EXTERNAL = ("203.0.113.10", "198.51.100.5", "198.51.100.200")   # in, in, outside the partners' set
EXPECTED = {
    ("tenant-a", "tenant-a"): ALL, ("tenant-a", "tenant-b"): NONE, ("tenant-a", "shared"): ALL,
    ("tenant-b", "tenant-a"): NONE, ("tenant-b", "tenant-b"): ALL, ("tenant-b", "shared"): ALL,
    ("shared", "tenant-a"): ALL - {"81/tcp"}, ("shared", "tenant-b"): {"80/tcp"}, ("shared", "shared"): ALL,
}


def _servers(sim: Any) -> dict[str, Any]:
    out = {}
    for p in sim.store.list("pods"):
        if (p["metadata"].get("labels") or {}).get("app") == "server":
            out.setdefault(p["metadata"]["namespace"], p)
    return out


def test_the_scenario_enforces_what_its_description_says(sim_factory: Any) -> None:
    sim = sim_factory(nodes=3, scenario="calico-policies")
    net, servers = sim.fleet.network, _servers(sim)
    quarantined = next(p for p in sim.store.list("pods", "tenant-b") if p["metadata"]["labels"]["app"] == "quarantined")
    for (src, dst), ports in EXPECTED.items():
        got = {f"{port}/{proto}" for port in (80, 81) for proto in ("tcp", "udp")
               if net.reachable(servers[src]["status"]["podIP"], servers[dst]["status"]["podIP"], port, proto)[0]}
        assert got == ports, (src, dst)
    for other in servers.values():
        assert not net.reachable(other["status"]["podIP"], quarantined["status"]["podIP"], 80)[0]
        assert not net.reachable(quarantined["status"]["podIP"], other["status"]["podIP"], 80)[0]
    shared = servers["shared"]["status"]["podIP"]
    assert [net.reachable(shared, ext, 443)[0] for ext in EXTERNAL] == [True, True, False]   # the partners' set
    assert not net.reachable(shared, EXTERNAL[0], 80)[0]
    assert all(net.reachable(servers["tenant-a"]["status"]["podIP"], ext, 80)[0] for ext in EXTERNAL)
    web = next(p for p in sim.store.list("pods", "shop") if p["metadata"]["labels"].get("app") == "web")
    ok, why = net.reachable(servers["shared"]["status"]["podIP"], web["status"]["podIP"], 80)
    assert not ok and "egress of shared/" in why and "end of tier default" in why


def test_sim_verdicts_agree_with_the_tools_calico_evaluator(sim_factory: Any) -> None:
    """A cross-check, not a fit: the sim's Felix model and the tool's Calico evaluator were written
    apart; on the scenario's flows (every server and the quarantined pod, both ways, four probes)
    they must agree."""
    from migrator.policy import model as pm
    from migrator.policy.calico_eval import CalicoModel
    from migrator.policy.endpoints import Endpoint, Probe
    sim = sim_factory(nodes=3, scenario="calico-policies")
    store, net = sim.store, sim.fleet.network
    live = [p for p in store.list("pods") if p["status"].get("podIP") and not p["spec"].get("hostNetwork")]
    inv = _inventory(store)
    tool = CalicoModel(inv)
    chosen = [*_servers(sim).values(), next(p for p in live if p["metadata"]["labels"].get("app") == "quarantined")]
    flows = 0
    for src in chosen:
        for dst in chosen:
            if src is dst:
                continue
            a = Endpoint(key=src["metadata"]["name"], ip=src["status"]["podIP"], pod=pm.pod(src))
            b = Endpoint(key=dst["metadata"]["name"], ip=dst["status"]["podIP"], pod=pm.pod(dst))
            for port in (80, 81):
                for proto in ("TCP", "UDP"):
                    sim_ok, why = net.reachable(a.ip, b.ip, port, proto.lower())
                    tool_ok, tool_why = tool.verdict(a, b, Probe(proto, port))
                    assert sim_ok == tool_ok, (a.key, b.key, port, proto, why, tool_why)
                    flows += 1
    assert flows == 4 * 3 * 4


def _inventory(store: Any) -> Any:
    from migrator.policy import model as pm
    calico = "crd.projectcalico.org"
    live = [p for p in store.list("pods") if p["status"].get("podIP") and not p["spec"].get("hostNetwork")]
    return pm.Inventory(
        policies=tuple([pm.calico_policy("NetworkPolicy", o) for o in store.list(f"{calico}/networkpolicies")]
                       + [pm.calico_policy("GlobalNetworkPolicy", o) for o in store.list(f"{calico}/globalnetworkpolicies")]
                       + [pm.kubernetes_policy(o) for o in store.list("networking.k8s.io/networkpolicies")]),
        network_sets=tuple(pm.network_set(o, global_=True) for o in store.list(f"{calico}/globalnetworksets")),
        tiers=tuple(pm.tier(o) for o in store.list(f"{calico}/tiers")),
        pods=tuple(pm.pod(p) for p in live),
        namespaces={n["metadata"]["name"]: dict(n["metadata"].get("labels") or {}) for n in store.list("namespaces")})


def test_the_translation_enforced_by_the_simulated_cilium_keeps_the_truth_table(sim_factory: Any) -> None:
    """The tool's translation applied, nodes switched with enable-policy default (and the Cilium CIDR
    as a disabled Calico pool): mid-migration only flows across the overlays differ (the gap Cilium's
    `unmanaged` identity leaves); once every worker is on Cilium the table is the one Calico enforced."""
    import yaml

    from migrator.policy.compile import translate
    from migrator.policy.emit import CiliumVersions
    from tests.sim.test_guide_steps import CNC, migrate_node
    sim = sim_factory(nodes=3, scenario="calico-policies")
    store, net = sim.store, sim.fleet.network
    namespaces = ("tenant-a", "tenant-b", "shared")

    def table() -> tuple[dict[tuple[Any, ...], bool], dict[tuple[str, str], str]]:
        rep: dict[tuple[str, str], Any] = {}
        for p in store.list("pods"):
            if p["metadata"]["namespace"] in namespaces and p["status"].get("podIP") \
                    and not p["metadata"].get("deletionTimestamp"):
                rep.setdefault((p["metadata"]["namespace"], p["metadata"]["labels"]["app"]), p)
        ip = {k: p["status"]["podIP"] for k, p in rep.items()}
        verdicts = {(s, d, port, proto): net.reachable(ip[s], ip[d], port, proto)[0]
                    for s in rep for d in rep for port in (80, 81) for proto in ("tcp", "udp")}
        verdicts.update({(s, (ext,), 443, "tcp"): net.reachable(ip[s], ext, 443)[0] for s in rep for ext in EXTERNAL})
        networks = {k: net.endpoint(v).network for k, v in ip.items()}
        networks.update({(ext,): "external" for ext in EXTERNAL})
        return verdicts, networks

    before, _ = table()
    kinds = {"CiliumNetworkPolicy": "ciliumnetworkpolicies", "CiliumCIDRGroup": "ciliumcidrgroups",
             "CiliumClusterwideNetworkPolicy": "ciliumclusterwidenetworkpolicies"}
    for obj in translate(_inventory(store), CiliumVersions(end_port=False)).objects:
        store.create(f"cilium.io/{kinds[obj['kind']]}", dict(obj))
    cnc = yaml.safe_load(CNC)
    cnc["spec"]["defaults"]["enable-policy"] = "default"
    store.create("cilium.io/ciliumnodeconfigs", cnc)
    store.create("crd.projectcalico.org/ippools", {
        "apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": "cilium-pool"},
        "spec": {"cidr": sim.config.cilium_pool, "disabled": True}})
    assert table()[0] == before          # translations are inert while no pod is on Cilium
    for node in ("node-1", "node-2"):
        migrate_node(sim, node)
        for p in list(store.list("pods")):
            if p["metadata"]["namespace"] in namespaces:
                store.delete("pods", p["metadata"]["namespace"], p["metadata"]["name"])
        assert sim.settle(timeout=20)
        after, networks = table()
        assert after.keys() == before.keys()
        for (src, dst, port, proto), allowed in after.items():
            if allowed != before[(src, dst, port, proto)]:
                assert networks[src] != networks[dst], (src, dst, port, proto, allowed)
    assert set(networks.values()) == {"cilium", "external"} and after == before
    assert [before[(("shared", "server"), (ext,), 443, "tcp")] for ext in EXTERNAL] == [True, True, False]
