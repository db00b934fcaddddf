"""Translate Calico's and MetalLB's announcements into Cilium BGP and LB IPAM resources (pure).

Sources for each rule:

* Cilium's BGP control plane does not program the datapath ("do not use it to establish
  reachability within the cluster", BGP control plane docs): Calico's node-to-node mesh has no
  Cilium equivalent. Cilium peers the routers the nodes already use: Calico BGPPeers with a
  ``peerIP`` outside the cluster, else the routers MetalLB peers with; on a node-routed cluster
  (metal-stack) each node's own FRR at ``127.0.0.1`` over iBGP with the node's ASN, as metal-ccm's
  Cilium path does (the ASN from MetalLB's per-node BGPPeer ``myASN`` or the node label
  ``machine.metal-stack.io/network.primary.asn``).
* The local ASN of a BIRD cluster is the BGPConfiguration's ``asNumber`` (64512 by default).
* Calico's ``serviceClusterIPs``/``serviceExternalIPs``/``serviceLoadBalancerIPs`` become a
  ``Service`` advertisement of ClusterIP/ExternalIP/LoadBalancerIP; MetalLB's BGPAdvertisement
  communities become the LoadBalancerIP advertisement's standard communities.
* MetalLB IPAddressPools become CiliumLoadBalancerIPPools with the same CIDRs and ranges; a
  Service keeps its IP through ``spec.loadBalancerIP`` (metal-ccm pins it) or LB IPAM's
  ``lbipam.cilium.io/ips`` annotation, and loses MetalLB's annotations.
* BIRD lets go of a router Cilium peers from the same node address (a Calico BGPPeer with that
  ``peerIP``) one node at a time too: the peer's ``nodeSelector`` gains ``!has(migrator.io/bgp)``.
* MetalLB lets go one Service and one node at a time: its IPAddressPools get a
  ``serviceAllocation.serviceSelectors`` that excludes Services labelled for Cilium, and a BGPPeer
  whose router Cilium also peers from the node's address (a ToR) gets ``nodeSelectors`` that
  exclude nodes labelled for Cilium, so that one label write moves a Service or a node's session.
* MetalLB in L2 mode (an L2Advertisement covering a pool with a Service's IP) blocks the hand-over:
  answering ARP for those IPs would need Cilium's L2 announcements (``CiliumL2AnnouncementPolicy``,
  ``l2announcements.enabled``), which the hand-over does not write.
* The served API: the BGPv2 kinds at ``cilium.io/v2`` (1.18+) or ``v2alpha1`` (1.16, 1.17), all
  four kinds at one version; BGPv1 (``CiliumBGPPeeringPolicy``) is not written: 1.19 removed it.
"""

from __future__ import annotations

from migrator.model.handover import (
    HANDED,
    LBIPAM_IPS,
    METALLB_ANNOTATIONS,
    NODE_LABEL,
    SERVICE_LABEL,
    Advertisement,
    BgpPeer,
    ClusterConfig,
    HandoverResources,
    LBPool,
    ServiceSwitch,
)
from migrator.model.routing import RoutingDetection, RoutingInventory

HOSTNAME = "kubernetes.io/hostname"
ASN_LABEL = "machine.metal-stack.io/network.primary.asn"
LOCAL_ROUTER = "127.0.0.1"


def _node_asns(inv: RoutingInventory, det: RoutingDetection) -> tuple[dict[str, int], list[str]]:
    asns: dict[str, int] = {}
    for peer in det.metallb.peers:
        for selector in peer.node_selectors:
            if HOSTNAME in selector and peer.my_asn:
                asns[selector[HOSTNAME]] = peer.my_asn
    missing = []
    for node in inv.nodes:
        if node.name in asns:
            continue
        try:
            asns[node.name] = int(node.labels[ASN_LABEL])
        except (KeyError, ValueError):
            missing.append(node.name)
    return asns, missing


def _unyielded(selector: str | None) -> str | None:
    """A Calico BGPPeer's nodeSelector as it was before the hand-over's yield (which wraps it as
    ``(S) && !has(NODE_LABEL)``), so that the translation is the same before and after that write."""
    suffix = f") && !has({NODE_LABEL})"
    if selector and selector.startswith("(") and selector.endswith(suffix):
        return selector[1:-len(suffix)]
    return selector


def _routers(inv: RoutingInventory, det: RoutingDetection) -> list[tuple[str, int | None]]:
    node_ips = {n.internal_ip for n in inv.nodes}
    out: list[tuple[str, int | None]] = []
    for peer in det.calico.peers:
        address = (peer.peer_ip or "").split(":")[0]
        if address and address not in node_ips and (_unyielded(peer.node_selector) in (None, "", "all()")
                                                     and not peer.node):
            out.append((address, peer.as_number))
    if not out:
        out = [(p.peer_address, p.peer_asn) for p in det.metallb.peers if not any(p.node_selectors)]
    return sorted(set(out), key=lambda r: r[0])


def translate(inv: RoutingInventory, det: RoutingDetection) -> HandoverResources:
    """What the hand-over writes for this cluster, or its blockers."""
    api = det.cilium
    blockers: list[str] = []
    notes: list[str] = []
    if api.bgp_v2 is None:
        blockers.append("the cluster serves no Cilium BGPv2 API (CiliumBGPClusterConfig): the hand-over needs "
                        "Cilium 1.16 or newer with bgpControlPlane.enabled=true")
    elif api.incomplete:
        blockers.append(f"Cilium BGP API {api.bgp_v2} lacks {', '.join(api.incomplete)}: upgrade Cilium's CRDs")
    if det.metallb.announcements and api.lb_ip_pool is None:
        blockers.append("MetalLB announces LoadBalancer IPs but the cluster serves no CiliumLoadBalancerIPPool: "
                        "enable Cilium's LB IPAM before the hand-over")
    l2 = sorted(a.service for a in det.metallb.announcements if "l2" in a.mode.split("+"))
    if l2:
        blockers.append(f"MetalLB announces {len(l2)} LoadBalancer IP(s) in L2 mode ({', '.join(l2[:3])}"
                        f"{' …' if len(l2) > 3 else ''}): the hand-over moves BGP announcements only and writes no "
                        "CiliumL2AnnouncementPolicy, so those IPs would go unanswered; keep MetalLB (routing.handover: "
                        "false) or move them to BGP advertisement first")
    handed = ((NODE_LABEL, HANDED),)
    peer_config = "migrator-handover"
    configs: list[ClusterConfig] = []
    if det.node_routed:
        asns, missing = _node_asns(inv, det)
        if missing:
            blockers.append(f"no ASN for node(s) {', '.join(missing)}: label them {ASN_LABEL}=ASN")
        for node in inv.nodes:
            if node.name in asns:
                asn = asns[node.name]
                configs.append(ClusterConfig(
                    name=f"migrator-{node.name}", node_selector=((HOSTNAME, node.name),) + handed,
                    instance="local-router", local_asn=asn,
                    peers=(BgpPeer("local-router", LOCAL_ROUTER, asn, peer_config),)))
    elif det.routed:
        routers = _routers(inv, det)
        if not routers:
            blockers.append("Calico routes over its node-to-node mesh only and no router peers the nodes: Cilium's "
                            "BGP control plane programs no routes, so add a router every node uses as gateway")
        else:
            configs.append(ClusterConfig(
                name="migrator-routers", node_selector=handed, instance="routers", local_asn=det.calico.as_number,
                peers=tuple(BgpPeer(f"router-{i}", address, asn or det.calico.as_number, peer_config)
                            for i, (address, asn) in enumerate(routers))))
    cfg = inv.bgp_config
    communities = tuple(sorted({c for a in det.metallb.advertisements if a.kind == "BGPAdvertisement"
                                for c in a.communities}))
    ads = [Advertisement("migrator-pod-cidr", pod_cidr=True),
           Advertisement("migrator-lb", pod_cidr=False, service_addresses=("LoadBalancerIP",),
                         service_selector=((SERVICE_LABEL, HANDED),), communities=communities)]
    calico_services = tuple(kind for kind, cidrs in (
        ("ClusterIP", cfg.service_cluster_ips if cfg else ()), ("ExternalIP", cfg.service_external_ips if cfg else ()),
        ("LoadBalancerIP", cfg.service_lb_ips if cfg else ())) if cidrs)
    if calico_services:
        ads.append(Advertisement("migrator-calico-services", pod_cidr=False, service_addresses=calico_services,
                                 service_selector=((SERVICE_LABEL, HANDED),)))
    if cfg and (cfg.communities or cfg.prefix_advertisements):
        notes.append("Calico's BGPConfiguration communities/prefixAdvertisements apply to Calico's pool "
                     "prefixes, which go with Calico; carry any still needed into CiliumBGPAdvertisement by hand")
    pools = tuple(LBPool(name=f"migrator-{p.name}", source=f"{p.namespace}/{p.name}",
                         cidrs=tuple(a for a in p.addresses if "-" not in a),
                         ranges=tuple((a.split("-", 1)[0].strip(), a.split("-", 1)[1].strip())
                                      for a in p.addresses if "-" in a))
                  for p in det.metallb.pools)
    services = []
    for svc in inv.lb_services:
        if svc.load_balancer_class:
            continue
        ips = svc.ips or ((svc.pinned_ip,) if svc.pinned_ip else ())
        if not ips:
            continue
        pinned = svc.pinned_ip is not None and ips == (svc.pinned_ip,)
        services.append(ServiceSwitch(
            namespace=svc.namespace, name=svc.name, ips=ips, pinned=pinned,
            annotations=() if pinned else ((LBIPAM_IPS, ",".join(ips)),), remove_annotations=METALLB_ANNOTATIONS))
    cilium_routers = {peer.address for c in configs for peer in c.peers if peer.address != LOCAL_ROUTER}
    yield_peers = tuple((p.namespace, p.name) for p in det.metallb.peers if p.peer_address in cilium_routers)
    bird_peers = tuple(sorted(p.name for p in det.calico.peers
                              if not p.node and (p.peer_ip or "").split(":")[0] in cilium_routers))
    return HandoverResources(
        bgp_api=api.bgp_v2, lb_api=api.lb_ip_pool, cluster_configs=tuple(configs), peer_config=peer_config,
        advertisements=tuple(ads), lb_pools=pools, services=tuple(services), blockers=tuple(blockers),
        metallb_pools=tuple((p.namespace, p.name) for p in det.metallb.pools), metallb_peers_yield=yield_peers,
        calico_peers_yield=bird_peers,
        notes=tuple(notes))
