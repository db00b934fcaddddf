"""What a Calico cluster routed without an overlay holds beyond the default cluster.

Two shapes, as the field runs them (see the bare-metal reference, §1 and §3):

* **BIRD** (``backend="bird"``): calico-node runs BIRD, pools have ``vxlanMode``/``ipipMode``
  ``Never``, and each node announces its IPAM blocks over BGP: to every other node through the
  node-to-node mesh (``BGPConfiguration.spec.nodeToNodeMeshEnabled``, on by default) or, with the
  mesh off, through route reflectors (nodes with a ``routeReflectorClusterID``) and
  ``BGPPeer`` resources.
* **Node router** (``backend="none"``, metal-stack): Calico programs no inter-node routes at all.
  Pods get addresses from the node's ``spec.podCIDR`` (CNI ``host-local`` IPAM with
  ``usePodCidr``), a ``node-init`` DaemonSet puts that CIDR as a route on ``lo``, and the
  machine's FRR (outside Kubernetes) redistributes it to the leaf switches, which accept only
  prefixes inside the network's announceable CIDRs (``SimConfig.fabric_announceable``).

MetalLB in BGP mode announces LoadBalancer IPs: one IPAddressPool, a BGPAdvertisement and
BGPPeers (one ToR router for BIRD clusters; one per node towards the node's own FRR, iBGP with
the node's ASN, on metal-stack). The Service ``shop/web-public`` is of type LoadBalancer; on
metal-stack its IP is pinned in ``spec.loadBalancerIP`` as metal-ccm writes it.

``RoutedShape`` is what a scenario chooses; ``calico_overrides`` bends the default Calico
objects; ``objects`` yields the extra ones.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from migrator.sim import workloads as w
from migrator.sim.config import SimConfig

Obj = dict[str, Any]

METALLB_NS = "metallb-system"
METALLB_VERSION = "v0.14.9"
NODE_INIT_IMAGE = "ghcr.io/metal-stack/node-init:v0.1.6"
ASN_LABEL = "machine.metal-stack.io/network.primary.asn"
#: The node annotation where Calico (Kubernetes datastore) keeps a node's route reflector cluster ID.
RR_ANNOTATION = "projectcalico.org/RouteReflectorClusterID"
#: The ToR router the BIRD cluster's MetalLB peers with (outside the node range's first hosts).
TOR_ROUTER_IP = "172.18.255.1"
CLUSTER_ASN = 64512
TOR_ASN = 65000
NODE_ASN_BASE = 4200000000


@dataclass(frozen=True)
class RoutedShape:
    """A routed (no-overlay) Calico cluster."""

    backend: Literal["bird", "none"]
    mesh: bool = True                         # BGPConfiguration nodeToNodeMeshEnabled
    route_reflectors: tuple[int, ...] = ()    # node indexes carrying a routeReflectorClusterID
    node_init: bool = False                   # node-init puts spec.podCIDR on lo (metal-stack)
    metallb: bool = True                      # MetalLB in BGP mode
    pinned_lb_ip: bool = False                # the LoadBalancer Service pins spec.loadBalancerIP
    tor_peer: bool = False                    # every node's BIRD peers the ToR (a global Calico BGPPeer)


def node_pod_cidr(config: SimConfig, index: int) -> str:
    """``spec.podCIDR`` of the ``index``-th node: the controller-manager's /24 cut of the pod range."""
    net = ipaddress.ip_network(config.calico_pool, strict=False)
    return str(next(s for i, s in enumerate(net.subnets(new_prefix=24)) if i == index))


def calico_overrides(shape: RoutedShape) -> dict[str, Any]:
    """How the default Calico objects change: backend, pool modes, CNI IPAM."""
    ipam = ('{"type": "host-local", "subnet": "usePodCidr"}' if shape.backend == "none"
            else '{"type": "calico-ipam"}')
    return {
        "backend": shape.backend,
        "vxlan_mode": "Never",
        "cni_network_config": '{"name": "k8s-pod-network", "cniVersion": "0.3.1", "plugins": '
                              f'[{{"type": "calico", "ipam": {ipam}}}, {{"type": "portmap"}}]}}',
    }


def node_labels(shape: RoutedShape, index: int) -> dict[str, str]:
    labels = {ASN_LABEL: str(NODE_ASN_BASE + index)} if shape.backend == "none" else {}
    if index in shape.route_reflectors:
        labels["route-reflector"] = "true"
    return labels


def node_annotations(shape: RoutedShape, index: int) -> dict[str, str]:
    return {RR_ANNOTATION: "244.0.0.1"} if index in shape.route_reflectors else {}


def objects(config: SimConfig, shape: RoutedShape, nodes: list[tuple[str, str]],
            service_ip: str) -> Iterator[tuple[str, Obj]]:
    """The extra objects; ``nodes`` is ``[(name, InternalIP)]`` in build order."""
    ks = "kube-system"
    if shape.backend == "bird":
        yield "crd.projectcalico.org/bgpconfigurations", {
            "apiVersion": "crd.projectcalico.org/v1", "kind": "BGPConfiguration",
            "metadata": {"name": "default"},
            "spec": {"asNumber": CLUSTER_ASN, "nodeToNodeMeshEnabled": shape.mesh, "logSeverityScreen": "Info"}}
        if shape.tor_peer:
            yield "crd.projectcalico.org/bgppeers", {
                "apiVersion": "crd.projectcalico.org/v1", "kind": "BGPPeer", "metadata": {"name": "tor"},
                "spec": {"peerIP": TOR_ROUTER_IP, "asNumber": TOR_ASN}}
        if shape.route_reflectors:
            yield "crd.projectcalico.org/bgppeers", {
                "apiVersion": "crd.projectcalico.org/v1", "kind": "BGPPeer",
                "metadata": {"name": "peer-with-route-reflectors"},
                "spec": {"nodeSelector": "all()", "peerSelector": "has(route-reflector)"}}
    if shape.node_init:
        yield "apps/daemonsets", w.daemonset(ks, "node-init", {"app": "node-init"}, [w.container(
            "node-init", NODE_INIT_IMAGE, privileged=True,
            env={"NODE_NAME": ("fieldRef", "spec.nodeName")})],
            host_network=True, tolerate_all=True, critical=True, service_account="node-init")
    if not shape.metallb:
        return
    yield "namespaces", w.namespace(METALLB_NS)
    yield "apps/deployments", w.deployment(METALLB_NS, "controller", {"app": "metallb", "component": "controller"}, 1,
                                           [w.container("controller", f"quay.io/metallb/controller:{METALLB_VERSION}",
                                                        args=["--port=7472"])], service_account="controller")
    yield "apps/daemonsets", w.daemonset(METALLB_NS, "speaker", {"app": "metallb", "component": "speaker"}, [
        w.container("speaker", f"quay.io/metallb/speaker:{METALLB_VERSION}", args=["--port=7472"],
                    env={"METALLB_NODE_NAME": ("fieldRef", "spec.nodeName")})],
        host_network=True, tolerate_all=True, service_account="speaker")
    yield "metallb.io/ipaddresspools", {
        "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
        "metadata": {"name": "default", "namespace": METALLB_NS},
        "spec": {"addresses": [config.lb_pool], "autoAssign": not shape.pinned_lb_ip}}
    yield "metallb.io/bgpadvertisements", {
        "apiVersion": "metallb.io/v1beta1", "kind": "BGPAdvertisement",
        "metadata": {"name": "default", "namespace": METALLB_NS},
        "spec": {"ipAddressPools": ["default"]}}
    if shape.backend == "none":     # metal-ccm: one iBGP peer per node, the node's own FRR
        for index, (name, ip) in enumerate(nodes):
            asn = NODE_ASN_BASE + index
            yield "metallb.io/bgppeers", {
                "apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer",
                "metadata": {"name": f"peer-{name}", "namespace": METALLB_NS},
                "spec": {"myASN": asn, "peerASN": asn, "peerAddress": ip, "holdTime": "1m30s",
                         "nodeSelectors": [{"matchLabels": {"kubernetes.io/hostname": name}}]}}
    else:
        yield "metallb.io/bgppeers", {
            "apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer",
            "metadata": {"name": "tor", "namespace": METALLB_NS},
            "spec": {"myASN": CLUSTER_ASN, "peerASN": TOR_ASN, "peerAddress": TOR_ROUTER_IP}}
    lb_ip = str(next(ipaddress.ip_network(config.lb_pool, strict=False).hosts()))
    svc = w.service("shop", "web-public", {"app": "web"}, service_ip, [("http", 80, "TCP", "http")])
    svc["spec"].update(type="LoadBalancer", externalTrafficPolicy="Cluster", allocateLoadBalancerNodePorts=True)
    svc["spec"]["ports"][0]["nodePort"] = 30080
    if shape.pinned_lb_ip:
        svc["spec"]["loadBalancerIP"] = lb_ip
    svc["metadata"]["annotations"] = {"metallb.universe.tf/ip-allocated-from-pool": "default"}
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": lb_ip, "ipMode": "VIP"}]}}
    yield "services", svc
