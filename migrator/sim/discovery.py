"""API discovery documents: what kubectl and the clients read to learn the served resources.

``/version``, ``/api``, ``/apis``, ``/api/v1`` and ``/apis/<group>/<version>`` in the legacy
(non-aggregated) format; kubectl falls back to it when the server does not answer the
aggregated ``apidiscovery.k8s.io`` form. Subresources are listed as real servers list them;
``pods/eviction`` is advertised with group ``policy``, version ``v1`` and kind ``Eviction``,
without which ``kubectl drain`` would fall back to DELETE.
"""

from __future__ import annotations

from typing import Any

from migrator.sim.registry import SUBRESOURCE_KINDS, Registry

_SUB_VERBS = {"status": ["get", "patch", "update"], "eviction": ["create"], "binding": ["create"],
              "proxy": ["create", "delete", "get", "patch", "update"], "log": ["get"],
              "scale": ["get", "patch", "update"], "token": ["create"]}


def version_doc(version: str) -> dict[str, Any]:
    major, minor = version.lstrip("v").split(".")[:2]
    return {"major": major, "minor": minor, "gitVersion": version, "gitCommit": "simulated",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23",
            "compiler": "gc", "platform": "linux/amd64"}


def core_versions(host: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]}


def group_list(reg: Registry) -> dict[str, Any]:
    groups = []
    for group, versions in sorted(reg.group_versions().items()):
        if not group:
            continue
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        groups.append({"name": group, "versions": entries, "preferredVersion": entries[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def group_doc(reg: Registry, group: str) -> dict[str, Any] | None:
    versions = reg.group_versions().get(group)
    if not versions:
        return None
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": entries,
            "preferredVersion": entries[0]}


def resource_list(reg: Registry, group: str, version: str) -> dict[str, Any] | None:
    resources = reg.in_group_version(group, version)
    if not resources:
        return None
    out: list[dict[str, Any]] = []
    for res in sorted(resources, key=lambda r: r.plural):
        entry: dict[str, Any] = {"name": res.plural, "singularName": res.singular or res.kind.lower(),
                                 "namespaced": res.namespaced, "kind": res.kind, "verbs": list(res.verbs)}
        if res.short_names:
            entry["shortNames"] = list(res.short_names)
        if res.categories:
            entry["categories"] = list(res.categories)
        out.append(entry)
        for sub in res.subresources:
            sub_entry: dict[str, Any] = {"name": f"{res.plural}/{sub}", "singularName": "",
                                         "namespaced": res.namespaced, "kind": res.kind,
                                         "verbs": _SUB_VERBS.get(sub, ["get"])}
            special = SUBRESOURCE_KINDS.get((res.plural, sub))
            if special:
                g, v, k = special
                sub_entry.update(kind=k)
                if (g, v) != (group, version):
                    sub_entry.update(group=g, version=v)
            out.append(sub_entry)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}
