"""Policy benchmark: translate and verify times for 1,000 policies over 5,000 pods.

A generated, seeded inventory: 5 tenants x 5 namespaces, 200 pods each (8 apps in three layers,
with a per-pod ``pod-template-hash`` that no policy reads); per namespace a Kubernetes default-deny
and an allow, and Calico NetworkPolicies (layer-to-layer allows on ports, a deny-before-allow and an
allow-before-deny pair, egress to the namespace's NetworkSet); global policies in a ``platform``
tier (tenant isolation with Pass, ordered) and in the default tier (a deny of a blocked range, a
monitoring allow); GlobalNetworkSets of partner ranges. Prints the inventory's shape, the
translation's classes and object count, verify's endpoint groups, probes, flows and differences,
and both wall times. Verify's cost follows the groups (here 200 groups stand for 5,000 pods).

``--gap-nodes N`` (default 3) also times the gap report of N single-node switches, as a
continuous run computes it before each label: pods spread over ``NODES`` nodes (each node holds
pods of every app), the translation and its shims in place, the nodes before it migrated. Then the
decision loop's view of one such report: how long one observation (``PolicyObserver.facts``)
blocks, and how long until the node's report is in the facts.
"""

from __future__ import annotations

import argparse
import random
import time

from migrator.model.observation import NodeFacts
from migrator.model.plan import MIGRATION_LABEL
from migrator.policy import model
from migrator.policy.compile import translate
from migrator.policy.shims import run_objects
from migrator.policy.transition import Verdicts, gap
from migrator.policy.verify import verify
from migrator.policy_live import PolicyObserver

TENANTS, NAMESPACES_PER_TENANT, PODS_PER_NAMESPACE = 5, 5, 200
NODES = 100
APPS = (("web", "frontend", 8080), ("api", "backend", 8443), ("auth", "backend", 9000), ("cart", "backend", 7000),
        ("search", "backend", 9200), ("worker", "backend", 5000), ("db", "data", 5432), ("cache", "data", 6379))


def inventory(policies_wanted: int = 1000, seed: int = 7) -> model.Inventory:
    rnd = random.Random(seed)
    namespaces: dict[str, dict[str, str]] = {}
    pods: list[model.Pod] = []
    policies: list[model.Policy] = []
    sets: list[model.NetworkSet] = []
    for t in range(TENANTS):
        for n in range(NAMESPACES_PER_TENANT):
            ns = f"t{t}-ns{n}"
            namespaces[ns] = {"tenant": f"t{t}", "env": rnd.choice(("prod", "staging"))}
            for i in range(PODS_PER_NAMESPACE):
                app, layer, port = APPS[i % len(APPS)]
                pods.append(model.Pod(ns, f"{app}-{i}", {"app": app, "layer": layer, "pod-template-hash": f"{rnd.getrandbits(32):x}"},
                                      f"10.{t}.{n * 4 + i // 250}.{i % 250 + 1}", named_ports=(("svc", port, "TCP"),),
                                      node=f"node-{(len(pods) // len(APPS)) % NODES}"))
            sets.append(model.network_set({"metadata": {"name": "backup", "namespace": ns, "labels": {"kind": "backup"}},
                                           "spec": {"nets": [f"192.0.{t * 8 + n}.0/28"]}}, global_=False))
            policies += _namespace_policies(ns)
    sets += [model.network_set({"metadata": {"name": f"partner-{i}", "labels": {"kind": "partner", "partner": f"p{i}"}},
                                "spec": {"nets": [f"203.0.{113 + i}.0/24"]}}, global_=True) for i in range(5)]
    policies += _global_policies()
    i = 0
    while len(policies) < policies_wanted:   # fill with per-app allows across namespaces of a tenant
        ns = list(namespaces)[i % len(namespaces)]
        src, dst = APPS[i % len(APPS)], APPS[(i * 3 + 1) % len(APPS)]
        policies.append(_np(f"extra-{i}", ns, order=300 + i % 50, selector=f"app == '{dst[0]}'", ingress=[
            {"action": "Allow", "protocol": "TCP", "source": {"selector": f"app == '{src[0]}'"},
             "destination": {"ports": [dst[2]]}}]))
        i += 1
    return model.Inventory(policies=tuple(policies[:policies_wanted]), network_sets=tuple(sets),
                           tiers=(model.Tier("platform", 100.0),), pods=tuple(pods), namespaces=namespaces)


def _np(name: str, ns: str, **spec: object) -> model.Policy:
    return model.calico_policy("NetworkPolicy", {"metadata": {"name": name, "namespace": ns}, "spec": spec})


def _namespace_policies(ns: str) -> list[model.Policy]:
    out = [model.kubernetes_policy({"metadata": {"name": "default-deny", "namespace": ns},
                                    "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
           model.kubernetes_policy({"metadata": {"name": "allow-web", "namespace": ns}, "spec": {
               "podSelector": {"matchLabels": {"app": "web"}},
               "ingress": [{"ports": [{"port": 8080, "protocol": "TCP"}]}]}})]
    for app, layer, port in APPS[1:]:
        peer = "layer == 'frontend'" if layer == "backend" else "layer == 'backend'"
        out.append(_np(f"allow-{app}", ns, order=200, selector=f"app == '{app}'", ingress=[
            {"action": "Allow", "protocol": "TCP", "source": {"selector": peer}, "destination": {"ports": [port]}}]))
    out.append(_np("db-guard", ns, order=100, selector="app == 'db'", ingress=[
        {"action": "Deny", "source": {"selector": "app == 'web'"}},
        {"action": "Allow", "protocol": "TCP", "source": {"selector": "app == 'worker'"}, "destination": {"ports": [5432]}}]))
    out.append(_np("cache-only-api", ns, order=150, selector="app == 'cache'", ingress=[
        {"action": "Allow", "protocol": "TCP", "source": {"selector": "app == 'api'"}, "destination": {"ports": [6379]}},
        {"action": "Deny", "protocol": "TCP", "destination": {"ports": [6379]}}]))
    out.append(_np("backup-egress", ns, order=400, selector="app == 'db'", types=["Egress"], egress=[
        {"action": "Allow", "destination": {"selector": "kind == 'backup'"}},
        {"action": "Allow", "destination": {"selector": "all()"}}]))
    return out


def _global_policies() -> list[model.Policy]:
    def gnp(name: str, **spec: object) -> model.Policy:
        return model.calico_policy("GlobalNetworkPolicy", {"metadata": {"name": name}, "spec": spec})
    out = [gnp(f"platform.tenant-t{t}", tier="platform", order=10 + t, namespaceSelector=f"tenant == 't{t}'",
               selector="all()", types=["Ingress"], ingress=[
                   {"action": "Pass", "source": {"namespaceSelector": f"tenant == 't{t}'"}},
                   {"action": "Allow", "protocol": "TCP", "source": {"selector": "kind == 'partner'",
                                                                     "namespaceSelector": "global()"},
                    "destination": {"ports": [8080]}},
                   {"action": "Deny"}]) for t in range(TENANTS)]
    out.append(gnp("deny-blocked", order=50, selector="layer == 'frontend'", types=["Egress"], egress=[
        {"action": "Deny", "destination": {"nets": ["198.18.0.0/15"]}}]))
    return out


class _Port:
    """The cluster as the policy observer reads it: the inventory, no Cilium CRDs (default versions)."""

    def __init__(self, inv: model.Inventory) -> None:
        self.inv = inv

    def read_policy_inventory(self) -> model.Inventory:
        return self.inv

    def served_versions(self, crd_name: str) -> list[str]:
        return []


def loop_view(inv: model.Inventory, migrated: int) -> None:
    """One observation's wait and the time until the report of node-<migrated> is observed."""
    observer = PolicyObserver(_Port(inv))  # type: ignore[arg-type]
    observer.wanted()   # the translation, read once per run before any node switches
    nodes = tuple(NodeFacts(name=f"node-{i}", labels={MIGRATION_LABEL: "true"} if i < migrated else {})
                  for i in range(NODES))
    node = f"node-{migrated}"
    start = time.perf_counter()
    longest, turns = 0.0, 0
    while True:
        turn = time.perf_counter()
        found = observer.facts(nodes, frozenset({node}), finalizing=False, listing=False).gaps.get(node)
        longest, turns = max(longest, time.perf_counter() - turn), turns + 1
        if found is not None:
            break
        time.sleep(0.05)   # the loop's other work between observations
    print(f"loop: gap of {node} observed after {time.perf_counter() - start:.2f} s, {turns} observation(s), "
          f"the longest blocked the loop {longest:.2f} s", flush=True)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench policy")
    ap.add_argument("--policies", type=int, default=1000)
    ap.add_argument("--gap-nodes", type=int, default=3, help="single-node switches whose gap report is timed")
    args = ap.parse_args(argv)
    inv = inventory(args.policies)
    kinds = {k: sum(1 for p in inv.policies if p.kind == k) for k in ("NetworkPolicy", "GlobalNetworkPolicy",
                                                                      "KubernetesNetworkPolicy")}
    print(f"inventory: {len(inv.pods)} pods, {len(inv.namespaces)} namespaces, {len(inv.policies)} policies "
          f"({', '.join(f'{n} {k}' for k, n in kinds.items())}), {len(inv.network_sets)} network sets", flush=True)
    start = time.perf_counter()
    t = translate(inv)
    took = time.perf_counter() - start
    classes = {k: sum(1 for c in t.classes.values() if c == k) for k in ("exact", "approximate", "untranslatable")}
    print(f"translate: {took:.2f} s, {len(t.objects)} objects, classes {classes}", flush=True)
    start = time.perf_counter()
    v = verify(inv, t.objects)
    took = time.perf_counter() - start
    print(f"verify: {took:.2f} s, {v.endpoints} endpoints (groups + external addresses) x {v.probes} probes = "
          f"{v.flows} flows, {len(v.differences)} differences", flush=True)
    objects = run_objects(t.objects, inv.policies)
    kept = Verdicts()   # as a run keeps them from one node's report to the next
    for k in range(args.gap_nodes):
        done = {f"node-{i}" for i in range(k * 10)}
        start = time.perf_counter()
        report = gap(inv, objects, done, done | {f"node-{k * 10}"})
        took = time.perf_counter() - start
        start = time.perf_counter()
        gap(inv, objects, done, done | {f"node-{k * 10}"}, verdicts=kept)
        incremental = time.perf_counter() - start
        print(f"gap of node-{k * 10} ({len(done)} of {NODES} nodes migrated): {took:.2f} s afresh, {incremental:.2f} s "
              f"with the verdicts of the reports before it ({len(kept.rows)} rows kept), {report.groups} groups x "
              f"{report.probes} probes, {report.evaluated} flows evaluated, {len(report.flows)} in the gap", flush=True)
    loop_view(inv, migrated=10)
