"""What a run applies for ``policy.mode: continuous``: the translation, and the migration shims.

While nodes are migrated one by one, Cilium sees every pod still on Calico as the reserved
identity ``unmanaged`` (its pod watcher gives unmanaged pods no labels), so a rule of a migrated
endpoint that allows a labelled peer drops that peer while it is still on Calico. For every
such allow rule — of a translated policy or of a Kubernetes NetworkPolicy, which Cilium enforces
natively — a shim CiliumClusterwideNetworkPolicy allows ``unmanaged`` on the same ports for the
same endpoints, with ``enableDefaultDeny`` off in both directions so a shim never isolates an
endpoint by itself. Shims are coarse on the peer by construction; ``policy.transition`` names the
flows that coarseness lets through (the node's gap report). Finalize removes them: by then no pod is unmanaged.

Every object the run applies carries ``RUN_LABEL`` (``translation`` or ``shim``), so the run
finds and removes exactly what it added; shims also carry ``migrator.io/shim=true``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from migrator.policy.cilium_eval import knp_spec
from migrator.policy.emit import ISOLATE, MANAGED
from migrator.policy.identity import NAMESPACE
from migrator.policy.model import Policy

RUN_LABEL = "migrator.io/policy"
SHIM_LABEL = "migrator.io/shim"
SOURCE = "policy.migrator.io/source"
TRANSLATION, SHIM = "translation", "shim"
POLICY_KINDS = ("CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy")


@dataclass(frozen=True)
class ShimRule:
    """One allow rule naming peers by label, which a shim widens to ``unmanaged``."""

    shim: str                              # the shim's name
    source: str                            # the policy the rule belongs to
    direction: str                         # Ingress | Egress
    subject: Mapping[str, Any]             # endpointSelector (namespace pinned for a namespaced policy)
    entry: Mapping[str, Any]               # the rule's L4 part (toPorts / icmps), as Cilium reads it


def labelled(obj: Mapping[str, Any], role: str) -> dict[str, Any]:
    """``obj`` with the run's labels (``role``: translation or shim)."""
    out = copy.deepcopy(dict(obj))
    meta = out.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), **MANAGED, RUN_LABEL: role,
                      **({SHIM_LABEL: "true"} if role == SHIM else {})}
    return out


def _pinned(selector: Mapping[str, Any], namespace: str | None) -> dict[str, Any]:
    out = copy.deepcopy(dict(selector))
    if namespace is not None:
        out["matchLabels"] = {**(out.get("matchLabels") or {}), f"k8s:{NAMESPACE}": namespace}
    return out


def _l4(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(entry[k]) for k in ("toPorts", "icmps") if k in entry}


def _rules(name: str, source: str, namespace: str | None, specs: Iterable[Mapping[str, Any]]) -> list[ShimRule]:
    out = []
    for spec in specs:
        subject = _pinned(spec.get("endpointSelector") or {}, namespace)
        for direction, section, side in (("Ingress", "ingress", "from"), ("Egress", "egress", "to")):
            for entry in spec.get(section) or ():
                if any(s != ISOLATE for s in entry.get(f"{side}Endpoints") or ()):
                    out.append(ShimRule(shim=name, source=source, direction=direction, subject=subject,
                                        entry=_l4(entry)))
    return out


def shim_rules(translation: Iterable[Mapping[str, Any]], policies: Iterable[Policy]) -> list[ShimRule]:
    """The rules needing a shim: allows naming peers by label, translated or Kubernetes-native."""
    out: list[ShimRule] = []
    for obj in translation:
        if obj.get("kind") not in POLICY_KINDS:
            continue
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") if obj.get("kind") == "CiliumNetworkPolicy" else None
        specs = ([obj["spec"]] if obj.get("spec") else []) + list(obj.get("specs") or ())
        source = (meta.get("annotations") or {}).get(SOURCE) or str(meta.get("name"))
        out += _rules(f"migrator-shim.{meta.get('name')}", source, namespace, specs)
    for p in policies:
        if p.native and p.source is not None and p.namespace:
            out += _rules(f"migrator-shim.knp.{p.namespace}.{p.name}", p.ident, p.namespace, [knp_spec(p.source)])
    return out


def shim_objects(rules: Iterable[ShimRule]) -> list[dict[str, Any]]:
    """One shim CCNP per policy, one spec per widened rule."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    sources: dict[str, str] = {}
    for r in rules:
        side = "from" if r.direction == "Ingress" else "to"
        section = "ingress" if r.direction == "Ingress" else "egress"
        spec = {"endpointSelector": copy.deepcopy(dict(r.subject)),
                section: [{f"{side}Entities": ["unmanaged"], **copy.deepcopy(dict(r.entry))}],
                "enableDefaultDeny": {"ingress": False, "egress": False}}
        if spec not in by_name.setdefault(r.shim, []):
            by_name[r.shim].append(spec)
        sources[r.shim] = r.source
    out = []
    for name, specs in by_name.items():
        body: dict[str, Any] = {"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy",
                                "metadata": {"name": name, "annotations": {SOURCE: sources[name]}}}
        if len(specs) == 1:
            body["spec"] = specs[0]
        else:
            body["specs"] = specs
        out.append(labelled(body, SHIM))
    return out


def run_objects(translation: Iterable[Mapping[str, Any]], policies: Iterable[Policy]) -> list[dict[str, Any]]:
    """Everything the run applies before the first node switches: the translation, then the shims."""
    objs = list(translation)
    return [labelled(o, TRANSLATION) for o in objs] + shim_objects(shim_rules(objs, policies))
