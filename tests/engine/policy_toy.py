"""The toy cluster with network policy: Calico policies, the Cilium objects applied to it, and the
policy facts a continuous run observes, computed by the real translation, shims, gap and verify.

The toy's pods become the policy inventory (namespace ``shop``, their labels, addresses and
nodes), so the translation, the gap of a node's window and the live verification are the
product's own answers over the toy's state, not values the tests chose.
"""

from __future__ import annotations

import copy
from typing import Any

from migrator.engine.actions import Action, ActionResult, ApplyObject, DeleteObject
from migrator.engine.policy_steps import PLURALS
from migrator.model.observation import (
    ClusterObservation,
    GapFacts,
    ObjectFacts,
    PolicyFacts,
    PolicyObjectFacts,
)
from migrator.model.plan import MIGRATION_LABEL
from migrator.policy import model
from migrator.policy.compile import translate
from migrator.policy.shims import RUN_LABEL, SHIM_LABEL, TRANSLATION, run_objects
from migrator.policy.transition import gap
from migrator.policy.verify import verify
from tests.engine.toy import ToyCluster

CALICO = ("crd.projectcalico.org", "v1")
#: web pods accept 8080/TCP from the log agents only; the log agents may reach web on 8080 only.
WEB_FROM_AGENTS = {"metadata": {"name": "web-from-agents", "namespace": "shop"},
                   "spec": {"selector": "app == 'web'", "types": ["Ingress"],
                            "ingress": [{"action": "Allow", "protocol": "TCP",
                                         "source": {"selector": "app == 'log-agent'"},
                                         "destination": {"ports": [8080]}}]}}


class PolicyToy(ToyCluster):
    """A ToyCluster holding Calico policies and the Cilium policy objects applied to it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calico_policies: dict[str, dict[str, Any]] = {"web-from-agents": WEB_FROM_AGENTS}
        self.cilium_objects: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self.deleted: list[str] = []   # names of deleted policy objects (Cilium and Calico), in order

    def inventory(self) -> model.Inventory:
        pods = tuple(model.Pod(p.namespace, p.name, dict(p.labels), p.ip, node=p.node)
                     for p in self.pods.values() if p.ip and not p.host_network and not p.deleting)
        policies = tuple(model.calico_policy("NetworkPolicy", o) for o in self.calico_policies.values())
        return model.Inventory(policies=policies, pods=pods, namespaces={"shop": {}, "kube-system": {}})

    def observe(self) -> ClusterObservation:
        obs = super().observe()
        inv = self.inventory()
        wanted = tuple(run_objects(translate(inv).objects, inv.policies))
        labelled = {n.name for n in self.nodes.values() if n.labels.get(MIGRATION_LABEL) == "true"}
        gaps = {}
        for name in self.nodes:
            if name not in labelled:
                found = gap(inv, wanted, labelled, labelled | {name})
                gaps[name] = GapFacts(flows=len(found.flows), lines=tuple(f.line() for f in found.flows))
        ours = [o for o in self.cilium_objects.values() if RUN_LABEL in o["metadata"].get("labels", {})]
        live = [o for o in ours if o["metadata"]["labels"][RUN_LABEL] == TRANSLATION]
        differences = tuple(f"{d.source} -> {d.destination} {d.probe}" for d in verify(inv, live).differences)
        present = tuple(PolicyObjectFacts(kind=o["kind"], api_version=o["apiVersion"], name=o["metadata"]["name"],
                                          namespace=o["metadata"].get("namespace"),
                                          shim=o["metadata"]["labels"].get(SHIM_LABEL) == "true") for o in ours)
        calico = tuple(ObjectFacts(group=CALICO[0], version=CALICO[1], plural="networkpolicies",
                                   namespace=o["metadata"]["namespace"], name=o["metadata"]["name"])
                       for o in self.calico_policies.values())
        return obs.model_copy(update={"policy": PolicyFacts(wanted=wanted, present=present, calico=calico,
                                                            differences=differences, gaps=gaps)})

    def apply(self, action: Action) -> ActionResult:
        if isinstance(action, ApplyObject) and action.manifest["kind"] in PLURALS:
            meta = action.manifest["metadata"]
            self.cilium_objects[(action.manifest["kind"], meta.get("namespace"), meta["name"])] = \
                copy.deepcopy(action.manifest)
            return ActionResult.success(action)
        if isinstance(action, DeleteObject) and action.plural in PLURALS.values():
            kind = next(k for k, v in PLURALS.items() if v == action.plural)
            gone = self.cilium_objects.pop((kind, action.namespace, action.name), None)
            self.deleted += [action.name] if gone is not None else []
            return ActionResult.success(action, changed=gone is not None)
        if isinstance(action, DeleteObject) and action.group == CALICO[0] and action.plural == "networkpolicies":
            if self.calico_policies.pop(action.name, None) is not None:
                self.deleted.append(f"calico:{action.name}")
            return ActionResult.success(action)
        return super().apply(action)
