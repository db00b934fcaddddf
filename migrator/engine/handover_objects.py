"""The hand-over's resources as Kubernetes objects (Cilium BGP v2 API, LB IPAM) and Service patches.

Field names follow Cilium's BGP control plane resources (``CiliumBGPClusterConfig.spec.bgpInstances``
with ``peers[].peerConfigRef``; ``CiliumBGPPeerConfig.spec.families[].advertisements`` selecting
``CiliumBGPAdvertisement``s by label) and LB IPAM (``CiliumLoadBalancerIPPool.spec.blocks`` of
``cidr`` or ``start``/``stop``, ``serviceSelector``). The same shape is served at ``cilium.io/v2``
and ``v2alpha1``; the version comes from detection.
"""

from __future__ import annotations

from typing import Any

from migrator.model.handover import (
    ADVERTISE_LABEL,
    HANDED,
    NODE_LABEL,
    SERVICE_LABEL,
    HandoverResources,
    ServiceSwitch,
)

Raw = dict[str, Any]
GROUP = "cilium.io"
#: Graceful restart (RFC 4724) on every Cilium session: an agent restart (finalize's, an upgrade's)
#: keeps its routes at the router instead of withdrawing them, as BIRD's default (BGPPeer
#: ``maxRestartTime`` 120 s) did for Calico. Cilium's default restart time is also 120 s.
GRACEFUL_RESTART_SECONDS = 120


def _obj(api: str, kind: str, name: str, spec: Raw, labels: dict[str, str] | None = None) -> Raw:
    meta: Raw = {"name": name, "labels": {"app.kubernetes.io/managed-by": "migrator", **(labels or {})}}
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}


def bgp_objects(res: HandoverResources) -> list[tuple[str, Raw]]:
    """``(plural, object)`` for the BGP resources, peer config and advertisements first."""
    if res.bgp_api is None:
        return []
    api = res.bgp_api
    out: list[tuple[str, Raw]] = [("ciliumbgppeerconfigs", _obj(api, "CiliumBGPPeerConfig", res.peer_config, {
        "gracefulRestart": {"enabled": True, "restartTimeSeconds": GRACEFUL_RESTART_SECONDS},
        "families": [{"afi": "ipv4", "safi": "unicast",
                      "advertisements": {"matchLabels": {ADVERTISE_LABEL: "handover"}}}]}))]
    for ad in res.advertisements:
        entry: Raw = {"advertisementType": "PodCIDR"} if ad.pod_cidr else {
            "advertisementType": "Service", "service": {"addresses": list(ad.service_addresses)},
            "selector": {"matchLabels": dict(ad.service_selector)}}
        if ad.communities:
            entry["attributes"] = {"communities": {"standard": list(ad.communities)}}
        out.append(("ciliumbgpadvertisements", _obj(api, "CiliumBGPAdvertisement", ad.name,
                                                    {"advertisements": [entry]}, {ADVERTISE_LABEL: "handover"})))
    for cfg in res.cluster_configs:
        out.append(("ciliumbgpclusterconfigs", _obj(api, "CiliumBGPClusterConfig", cfg.name, {
            "nodeSelector": {"matchLabels": dict(cfg.node_selector)},
            "bgpInstances": [{"name": cfg.instance, "localASN": cfg.local_asn, "peers": [
                {"name": p.name, "peerAddress": p.address, "peerASN": p.asn, "peerConfigRef": {"name": p.peer_config}}
                for p in cfg.peers]}]})))
    return out


def lb_pool_objects(res: HandoverResources) -> list[tuple[str, Raw]]:
    if res.lb_api is None:
        return []
    return [("ciliumloadbalancerippools", _obj(res.lb_api, "CiliumLoadBalancerIPPool", pool.name, {
        "blocks": [{"cidr": c} for c in pool.cidrs] + [{"start": a, "stop": b} for a, b in pool.ranges],
        "serviceSelector": {"matchLabels": {SERVICE_LABEL: HANDED}}}))
        for pool in res.lb_pools]


def service_patch(switch: ServiceSwitch) -> Raw:
    """The merge patch that moves one Service to Cilium: its label, the IP request, MetalLB's
    annotations removed (``null`` deletes a key in a JSON merge patch)."""
    annotations: dict[str, str | None] = {k: None for k in switch.remove_annotations}
    annotations.update(dict(switch.annotations))
    return {"metadata": {"labels": {SERVICE_LABEL: HANDED}, "annotations": annotations}}


def metallb_pool_patch(existing: tuple[dict[str, Any], ...] = ()) -> Raw:
    """Merge patch of a MetalLB IPAddressPool: Services labelled for Cilium no longer take its IPs
    (each of the pool's own ``serviceSelectors`` keeps what it selects and gains the exclusion; a
    merge patch replaces the list whole)."""
    excluded = {"key": SERVICE_LABEL, "operator": "NotIn", "values": [HANDED]}

    def narrowed(selector: dict[str, Any]) -> dict[str, Any]:
        exprs = list(selector.get("matchExpressions") or [])
        return {**selector, "matchExpressions": exprs if excluded in exprs else [*exprs, excluded]}
    selectors = [narrowed(s) for s in existing] or [{"matchExpressions": [excluded]}]
    return {"spec": {"serviceAllocation": {"serviceSelectors": selectors}}}


def metallb_peer_patch(existing: tuple[dict[str, str], ...]) -> Raw:
    """Merge patch of a MetalLB BGPPeer: nodes labelled for Cilium leave it (each existing
    ``matchLabels`` selector keeps its labels and gains the exclusion)."""
    excluded = {"key": NODE_LABEL, "operator": "NotIn", "values": [HANDED]}
    selectors = [{"matchLabels": dict(m), "matchExpressions": [excluded]} for m in existing if m] or \
        [{"matchExpressions": [excluded]}]
    return {"spec": {"nodeSelectors": selectors}}


def calico_peer_patch(existing: str | None) -> Raw:
    """Merge patch of a Calico BGPPeer: nodes labelled for Cilium leave it (its ``nodeSelector``, in
    Calico's selector grammar, gains ``!has(...)``; already there, the same selector)."""
    excluded = f"!has({NODE_LABEL})"
    if existing and excluded in existing:
        return {"spec": {"nodeSelector": existing}}
    return {"spec": {"nodeSelector": f"({existing or 'all()'}) && {excluded}"}}
