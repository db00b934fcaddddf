"""Exactly what the tool may do to the API: the rules of its least-privilege ClusterRole.

One row per (API group, resource) with the verbs and the steps that need them. A test runs every
flow of the tool against the simulated cluster and checks that the requests it made (from the
sim's request log) are exactly these grants: nothing missing, nothing extra. The Calico rows
follow the plan's default ``finalize.remove_calico`` list; a plan removing other kinds needs
matching rows.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rule:
    group: str
    resource: str
    verbs: tuple[str, ...]
    why: str


RULES: tuple[Rule, ...] = (
    Rule("", "nodes", ("list", "watch", "patch"), "watch cache; cordon, label, taint, restore prior state"),
    Rule("", "pods", ("list", "watch", "create", "delete"),
         "watch cache; verification and node-local action pods; agent restart, recycling"),
    Rule("", "pods/eviction", ("create",), "drain and recycle through the Eviction API"),
    Rule("", "pods/proxy", ("get",), "connectivity checks: netexec /dial on probe pods"),
    Rule("", "configmaps", ("get", "list", "create", "update", "patch"),
         "the checkpoint: its run ConfigMap and node shards (listed by label, compare-and-swap); "
         "cilium-config at finalize"),
    Rule("", "events", ("create",), "an Event per node transition"),
    Rule("", "namespaces", ("get", "list", "create", "patch", "delete"),
         "the probe fleet's namespace; namespaces' labels for the policy translation (policy.mode continuous)"),
    Rule("", "services", ("get", "list", "create", "patch"),
         "ClusterIPs of kubernetes and the probe Service; LoadBalancer Services for the routing inventory "
         "and the hand-over (labels, LB IPAM annotations)"),
    Rule("apps", "daemonsets", ("get", "list", "watch", "create", "patch", "delete"),
         "agent rollout; the probe fleet; restart at finalize; calico-node removal"),
    Rule("apps", "deployments", ("list", "delete"), "preflight inventory; calico-kube-controllers removal"),
    Rule("policy", "poddisruptionbudgets", ("list", "watch"), "drain planning and preflight"),
    Rule("coordination.k8s.io", "leases", ("get", "watch", "create", "update", "delete"),
         "the run lock, followed by a watch so a takeover is seen at once"),
    Rule("apiextensions.k8s.io", "customresourcedefinitions", ("get",), "served CiliumNodeConfig versions"),
    Rule("networking.k8s.io", "networkpolicies", ("list",), "preflight policy inventory"),
    Rule("cilium.io", "ciliumnodeconfigs", ("get", "list", "watch", "create", "delete"),
         "the per-node migration config"),
    *(Rule("cilium.io", plural, ("get", "list", "create", "delete"),
           "policy inventory; policy.mode continuous applies the translation (with CIDR groups) and shims, "
           "removes the shims at finalize and everything it applied on abort or rollback")
      for plural in ("ciliumnetworkpolicies", "ciliumclusterwidenetworkpolicies", "ciliumcidrgroups")),
    Rule("crd.projectcalico.org", "ippools", ("list", "delete"), "preflight; Calico removal"),
    Rule("crd.projectcalico.org", "felixconfigurations", ("get", "list", "delete"), "preflight; Calico removal"),
    *(Rule("crd.projectcalico.org", plural, ("list", "delete"),
           "policy inventory; policy.mode continuous removes Calico's policies and network sets at finalize")
      for plural in ("networkpolicies", "globalnetworkpolicies", "globalnetworksets")),
    *(Rule("crd.projectcalico.org", plural, ("list",), "policy inventory: network sets, tiers and host "
                                                       "endpoints for the translation")
      for plural in ("networksets", "tiers", "hostendpoints")),
    Rule("crd.projectcalico.org", "bgpconfigurations", ("get",), "routing inventory: Calico's BGP defaults"),
    Rule("crd.projectcalico.org", "bgppeers", ("get", "list", "patch"), "routing inventory: Calico's BGP peers; "
         "the hand-over narrows a peer Cilium takes over (and restores it on rollback)"),
    *(Rule("metallb.io", plural, ("list",), "routing inventory: MetalLB's pools, peers and advertisements")
      for plural in ("bgpadvertisements", "l2advertisements")),
    *(Rule("metallb.io", plural, ("get", "list", "patch"), "routing inventory; the hand-over narrows MetalLB's "
                                                            "pools and peers (and restores them on rollback)")
      for plural in ("ipaddresspools", "bgppeers")),
    *(Rule("cilium.io", plural, ("get", "list", "create", "delete"),
           "the hand-over's Cilium BGP and LB IPAM objects (an object changed by hand since is refused "
           "a patch: delete it and run the hand-over again)")
      for plural in ("ciliumbgpclusterconfigs", "ciliumbgppeerconfigs", "ciliumbgpadvertisements",
                     "ciliumloadbalancerippools")),
    Rule("cilium.io", "ciliumbgpnodeconfigs", ("list",), "the hand-over: each node's BGP sessions as Cilium "
                                                         "reports them"),
)


def grants() -> set[tuple[str, str, str]]:
    """Every (group, resource, verb) the ClusterRole grants."""
    return {(r.group, r.resource, verb) for r in RULES for verb in r.verbs}


def cluster_role_rules() -> list[dict[str, Any]]:
    """The rules as a ClusterRole lists them (one per row, in the order above)."""
    return [{"apiGroups": [r.group], "resources": [r.resource], "verbs": list(r.verbs)} for r in RULES]


#: kube-apiserver's 403 for a resource request (``responsewriters.Forbidden``, RBAC authorizer).
_DENIED = re.compile(r'cannot (?P<verb>[a-z]+) resource "(?P<resource>[^"]+)" in API group "(?P<group>[^"]*)"')


def missing_rule(message: str) -> str | None:
    """The ClusterRole rule a 403 ``message`` asks for, as YAML flow text (``{apiGroups: [""],
    resources: [pods/eviction], verbs: [create]}``) with what the tool needs it for, or None when
    the message is not kube-apiserver's RBAC denial of a resource request."""
    found = _DENIED.search(message)
    if found is None:
        return None
    group, resource, verb = found["group"], found["resource"], found["verb"]
    rule = (f"{{apiGroups: [{json.dumps(group)}], resources: [{resource}], verbs: [{verb}]}}")
    why = next((r.why for r in RULES if (r.group, r.resource) == (group, resource) and verb in r.verbs), None)
    return f"{rule} ({why})" if why else rule
