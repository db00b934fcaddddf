"""A small inventory for policy tests: two tenants' namespaces, a handful of labelled pods, network sets."""

from __future__ import annotations

from typing import Any

from migrator.policy import model

NAMESPACES = {"shop": {"tenant": "a"}, "other": {"tenant": "b"}, "ops": {"tenant": "a", "team": "ops"}}
POD_LABELS = [
    {"app": "web"}, {"role": "lb"}, {"role": "fe"}, {"app": "db"}, {"app": "db", "role": "fe"}, {},
]


def pods() -> tuple[model.Pod, ...]:
    out = []
    for n, ns in enumerate(NAMESPACES):
        for i, labels in enumerate(POD_LABELS):
            named = (("http", 8080, "TCP"),) if labels.get("app") == "web" else ()
            sa = "db-sa" if labels.get("app") == "db" else "default"
            out.append(model.Pod(ns, f"p{i}", labels, f"10.0.{n}.{i + 10}", service_account=sa, named_ports=named))
    return tuple(out)


def gnp(name: str, **spec: Any) -> model.Policy:
    return model.calico_policy("GlobalNetworkPolicy", {"metadata": {"name": name}, "spec": spec})


def np(name: str, namespace: str = "shop", **spec: Any) -> model.Policy:
    return model.calico_policy("NetworkPolicy", {"metadata": {"name": name, "namespace": namespace}, "spec": spec})


def knp(name: str, namespace: str = "shop", **spec: Any) -> model.Policy:
    return model.kubernetes_policy({"metadata": {"name": name, "namespace": namespace}, "spec": spec})


def netsets() -> tuple[model.NetworkSet, ...]:
    return (model.network_set({"metadata": {"name": "partners", "labels": {"kind": "partner"}},
                               "spec": {"nets": ["203.0.113.0/24"]}}, global_=True),
            model.network_set({"metadata": {"name": "backup", "namespace": "shop", "labels": {"kind": "backup"}},
                               "spec": {"nets": ["198.51.100.0/25"]}}, global_=False))


def inventory(*policies: model.Policy, tiers: tuple[model.Tier, ...] = (),
              host_endpoints: tuple[model.HostEndpoint, ...] = ()) -> model.Inventory:
    return model.Inventory(policies=policies, network_sets=netsets(), host_endpoints=host_endpoints,
                           tiers=tiers, pods=pods(), namespaces=NAMESPACES)
