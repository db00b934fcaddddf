"""The cluster builder: what a freshly installed Calico cluster with Cilium latent holds.

``build_cluster(store, config, scenario=..., seed=...)`` writes the objects a real
kubeadm cluster would have once Calico runs and Cilium was installed with the migration
guide's values (custom CNI conf, a distinct VXLAN port, a disjoint cluster pool, policy
enforcement off, legacy host routing), before any node was migrated:

* nodes ``cp-1..cp-K`` (control-plane label and NoSchedule taint) and ``node-1..node-N``,
  with hostname/os/arch/zone labels, InternalIPs from ``config.node_cidr`` (.0.10 up),
  capacity, allocatable and node info; the node runtime maintains their Ready condition;
* ``kube-system``: kube-proxy, CoreDNS (+ Service ``kube-dns`` on the 10th service IP and
  a PDB), calico-node, calico-kube-controllers, the Calico IPPool and FelixConfiguration,
  ``cilium-config``, the cilium DaemonSet and cilium-operator, and no CiliumNodeConfig;
* ``shop``: the workloads a migration must carry across (see ``workloads``), and with
  ``pods_per_node`` a ``filler`` Deployment in its own namespace to reach that density;
* with ``tenants``, three tenants' namespaces under Calico policy (see ``tenants``).

Everything the scenarios vary comes in through ``ClusterShape``; the objects are written
straight into the store, as a restored etcd would hold them.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field
from typing import Any

import structlog

from migrator.sim import tenants
from migrator.sim import workloads as w
from migrator.sim.config import SimConfig
from migrator.sim.errors import AlreadyExists
from migrator.sim.store import Store

Obj = dict[str, Any]
log = structlog.get_logger("migrator.sim.builder")

CALICO_VERSION = "v3.29.1"
CILIUM_VERSION = "v1.16.5"
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"


@dataclass(frozen=True)
class ClusterShape:
    """What a scenario changes in the installed cluster (the defaults are the healthy case)."""

    ip_autodetection_method: str = "kubernetes-internal-ip"
    cilium_config_overrides: dict[str, str] = field(default_factory=dict)
    pdb_blocked: bool = False
    pods_per_node: int = 0
    tenants: bool = False          # the calico-policies workloads and policies (``tenants``)
    do_not_track: bool = False     # ... plus a doNotTrack policy (untranslatable)


def node_names(config: SimConfig) -> tuple[list[str], list[str]]:
    """``(control_plane, workers)`` names for ``config``."""
    cp = max(0, min(config.control_plane_nodes, config.nodes))
    return ([f"cp-{i}" for i in range(1, cp + 1)],
            [f"node-{i}" for i in range(1, config.nodes - cp + 1)])


def node_ip(config: SimConfig, index: int) -> str:
    net = ipaddress.ip_network(config.node_cidr, strict=False)
    return str(net.network_address + 10 + index)


def service_ip(config: SimConfig, offset: int) -> str:
    net = ipaddress.ip_network(config.service_cidr, strict=False)
    return str(net.network_address + offset)


def build_cluster(store: Store, config: SimConfig, *, scenario: str = "default", seed: int,
                  shape: ClusterShape | None = None) -> dict[str, int]:
    """Write the whole cluster into ``store``; returns object counts by resource.

    ``shape`` overrides what the named scenario would choose (the scenario registry in
    ``scenarios`` passes it); ``seed`` picks the per-node details (boot IDs, machine IDs).
    """
    if shape is None:
        from migrator.sim.scenarios import get_scenario
        shape = get_scenario(scenario).shape
    rng = random.Random(seed)
    counts: dict[str, int] = {}

    def put(resource: str, obj: Obj) -> None:
        try:
            store.create(resource, obj)
        except AlreadyExists:
            return
        counts[resource] = counts.get(resource, 0) + 1

    for ns in ("kube-system", "kube-public", "kube-node-lease", "default", "shop"):
        put("namespaces", w.namespace(ns))
    control_plane, workers = node_names(config)
    for index, name in enumerate(control_plane + workers):
        put("nodes", _node(config, name, index, rng, control_plane=name in control_plane))
    for resource, obj in _system(config, shape):
        put(resource, obj)
    for resource, obj in w.shop(config, pdb_blocked=shape.pdb_blocked,
                                service_ip=lambda n: service_ip(config, 0x6400 + n)):
        put(resource, obj)
    if shape.tenants:
        for resource, obj in tenants.objects(untranslatable=shape.do_not_track):
            put(resource, obj)
    if shape.pods_per_node:
        filler = w.filler_replicas(config, workers=len(workers), pods_per_node=shape.pods_per_node)
        if filler:
            put("namespaces", w.namespace("filler"))
            put("apps/deployments", w.deployment("filler", "filler", {"app": "filler"}, filler, [
                w.container("pause", "registry.k8s.io/pause:3.10")]))
    log.info("sim.builder.built", scenario=scenario, nodes=config.nodes, objects=sum(counts.values()))
    return counts


def _node(config: SimConfig, name: str, index: int, rng: random.Random, *, control_plane: bool) -> Obj:
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        "topology.kubernetes.io/zone": config.zones[index % len(config.zones)] if config.zones else "zone-a",
    }
    spec: Obj = {}
    if control_plane:
        labels[CONTROL_PLANE_LABEL] = ""
        labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
        spec["taints"] = [{"key": CONTROL_PLANE_LABEL, "effect": "NoSchedule"}]
    resources = {"cpu": "8" if control_plane else "16", "memory": "32833628Ki", "ephemeral-storage": "102203820Ki",
                 "hugepages-1Gi": "0", "hugepages-2Mi": "0", "pods": str(config.max_pods_per_node)}
    ident = f"{rng.getrandbits(128):032x}"
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {
            "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///run/containerd/containerd.sock",
            "node.alpha.kubernetes.io/ttl": "0",
            "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": spec,
        "status": {
            "addresses": [{"type": "InternalIP", "address": node_ip(config, index)},
                          {"type": "Hostname", "address": name}],
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "conditions": [
                _condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                _condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                _condition("PIDPressure", "False", "KubeletHasSufficientPID"),
                _condition("Ready", "False", "KubeletNotReady",
                           "container runtime network not ready: NetworkReady=false "
                           "reason:NetworkPluginNotReady message:Network plugin returns error: "
                           "cni plugin not initialized"),
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64", "operatingSystem": "linux",
                "osImage": "Ubuntu 24.04.1 LTS", "kernelVersion": "6.8.0-51-generic",
                "kubeletVersion": config.kubernetes_version, "kubeProxyVersion": config.kubernetes_version,
                "containerRuntimeVersion": "containerd://1.7.24",
                "machineID": ident, "systemUUID": f"{ident[:8]}-{ident[8:12]}-{ident[12:16]}-{ident[16:20]}-{ident[20:]}",
                "bootID": f"{rng.getrandbits(128):032x}",
            },
        },
    }


def _condition(ctype: str, status: str, reason: str, message: str = "") -> Obj:
    stamp = "2026-01-01T00:00:00Z"
    return {"type": ctype, "status": status, "reason": reason, "message": message or reason,
            "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}


def cilium_config_data(config: SimConfig, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """``cilium-config`` as the chart renders it from the migration values."""
    data = {
        "cluster-name": "default",
        "cluster-id": "0",
        "identity-allocation-mode": "crd",
        "routing-mode": "tunnel",
        "tunnel-protocol": "vxlan",
        "tunnel-port": str(config.cilium_tunnel_port),
        "custom-cni-conf": "true",
        "cni-chaining-mode": "none",
        "ipam": "cluster-pool",
        "cluster-pool-ipv4-cidr": config.cilium_pool,
        "cluster-pool-ipv4-mask-size": str(config.cilium_mask_size),
        "enable-policy": "never",
        "enable-host-legacy-routing": "true",
        "unmanaged-pod-watcher-interval": "0",
        "enable-ipv4": "true",
        "enable-ipv6": "false",
        "kube-proxy-replacement": "false",
        "enable-ipv4-masquerade": "true",
        "enable-bpf-masquerade": "false",
        "enable-l7-proxy": "true",
        "enable-health-checking": "true",
        "operator-api-serve-addr": "127.0.0.1:9234",
    }
    data.update(overrides or {})
    return data


def _system(config: SimConfig, shape: ClusterShape) -> list[tuple[str, Obj]]:
    ks = "kube-system"
    dns_ip = service_ip(config, 10)
    out: list[tuple[str, Obj]] = [
        ("configmaps", w.configmap(ks, "kube-proxy", {"config.conf": (
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
            f"clusterCIDR: {config.calico_pool}\nmode: iptables\n")})),
        ("apps/daemonsets", w.daemonset(ks, "kube-proxy", {"k8s-app": "kube-proxy"}, [w.container(
            "kube-proxy", f"registry.k8s.io/kube-proxy:{config.kubernetes_version}",
            command=["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf",
                     "--hostname-override=$(NODE_NAME)"], privileged=True)],
            host_network=True, tolerate_all=True, critical=True, service_account="kube-proxy")),
        ("configmaps", w.configmap(ks, "coredns", {"Corefile": (
            ".:53 {\n    errors\n    health\n    ready\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n"
            "       pods insecure\n       fallthrough in-addr.arpa ip6.arpa\n    }\n    prometheus :9153\n"
            "    forward . /etc/resolv.conf\n    cache 30\n    loop\n    reload\n    loadbalance\n}\n")})),
        ("apps/deployments", w.deployment(ks, "coredns", {"k8s-app": "kube-dns"}, 2, [w.container(
            "coredns", "registry.k8s.io/coredns/coredns:v1.11.3", args=["-conf", "/etc/coredns/Corefile"],
            ports=[("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")],
            readiness=("/ready", 8181))],
            tolerations=[{"key": "CriticalAddonsOnly", "operator": "Exists"},
                         {"key": CONTROL_PLANE_LABEL, "effect": "NoSchedule"}],
            critical=True, service_account="coredns", max_unavailable=1)),
        ("services", w.service(ks, "kube-dns", {"k8s-app": "kube-dns"}, dns_ip,
                               [("dns", 53, "UDP", 53), ("dns-tcp", 53, "TCP", 53), ("metrics", 9153, "TCP", 9153)],
                               labels={"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"})),
        ("policy/poddisruptionbudgets", w.pdb(ks, "coredns", {"k8s-app": "kube-dns"}, max_unavailable=1)),
        # Calico, manifest install with VXLAN
        ("configmaps", w.configmap(ks, "calico-config", {
            "calico_backend": "vxlan", "typha_service_name": "none", "veth_mtu": "0",
            "cni_network_config": '{"name": "k8s-pod-network", "cniVersion": "0.3.1", "plugins": '
                                  '[{"type": "calico", "ipam": {"type": "calico-ipam"}}, {"type": "portmap"}]}'})),
        ("apps/daemonsets", w.daemonset(ks, "calico-node", {"k8s-app": "calico-node"}, [w.container(
            "calico-node", f"docker.io/calico/node:{CALICO_VERSION}", privileged=True, env={
                "DATASTORE_TYPE": "kubernetes", "WAIT_FOR_DATASTORE": "true",
                "NODENAME": ("fieldRef", "spec.nodeName"),
                "CALICO_NETWORKING_BACKEND": "vxlan", "CLUSTER_TYPE": "k8s",
                "IP": "autodetect", "IP_AUTODETECTION_METHOD": shape.ip_autodetection_method,
                "CALICO_IPV4POOL_CIDR": config.calico_pool, "CALICO_IPV4POOL_VXLAN": "Always",
                "CALICO_IPV4POOL_IPIP": "Never", "FELIX_IPINIPENABLED": "false",
                "CALICO_DISABLE_FILE_LOGGING": "true", "FELIX_DEFAULTENDPOINTTOHOSTACTION": "ACCEPT",
                "FELIX_IPV6SUPPORT": "false", "FELIX_HEALTHENABLED": "true"},
            readiness=None)],
            init=[w.container("install-cni", f"docker.io/calico/cni:{CALICO_VERSION}",
                              command=["/opt/cni/bin/install"], privileged=True,
                              env={"CNI_CONF_NAME": "10-calico.conflist"})],
            host_network=True, tolerate_all=True, critical=True, service_account="calico-node")),
        ("apps/deployments", w.deployment(ks, "calico-kube-controllers", {"k8s-app": "calico-kube-controllers"}, 1,
                                          [w.container("calico-kube-controllers",
                                                       f"docker.io/calico/kube-controllers:{CALICO_VERSION}",
                                                       env={"ENABLED_CONTROLLERS": "node",
                                                            "DATASTORE_TYPE": "kubernetes"})],
                                          tolerations=[{"key": "CriticalAddonsOnly", "operator": "Exists"},
                                                       {"key": CONTROL_PLANE_LABEL, "effect": "NoSchedule"}],
                                          critical=True, service_account="calico-kube-controllers",
                                          recreate=True)),
        ("crd.projectcalico.org/ippools", {
            "apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
            "metadata": {"name": "default-ipv4-ippool"},
            "spec": {"cidr": config.calico_pool, "blockSize": config.calico_block_size, "vxlanMode": "Always",
                     "ipipMode": "Never", "natOutgoing": True, "nodeSelector": "all()",
                     "allowedUses": ["Workload", "Tunnel"]}}),
        ("crd.projectcalico.org/felixconfigurations", {
            "apiVersion": "crd.projectcalico.org/v1", "kind": "FelixConfiguration",
            "metadata": {"name": "default"},
            "spec": {"vxlanEnabled": True, "vxlanPort": config.calico_vxlan_port, "vxlanVNI": 4096,
                     "bpfEnabled": False, "logSeverityScreen": "Info", "reportingInterval": "0s"}}),
        # Cilium, latent: installed with the migration values, managing no node yet
        ("configmaps", w.configmap(ks, "cilium-config", cilium_config_data(config, shape.cilium_config_overrides))),
        ("apps/daemonsets", w.daemonset(ks, "cilium", {"k8s-app": "cilium"}, [w.container(
            "cilium-agent", f"quay.io/cilium/cilium:{CILIUM_VERSION}", command=["cilium-agent"],
            args=["--config-dir=/tmp/cilium/config-map"], privileged=True,
            env={"K8S_NODE_NAME": ("fieldRef", "spec.nodeName"),
                 "CILIUM_K8S_NAMESPACE": ("fieldRef", "metadata.namespace")},
            readiness=("/healthz", 9879))],
            init=[w.container("config", f"quay.io/cilium/cilium:{CILIUM_VERSION}",
                              command=["cilium-dbg", "build-config"],
                              env={"K8S_NODE_NAME": ("fieldRef", "spec.nodeName"),
                                   "CILIUM_K8S_NAMESPACE": ("fieldRef", "metadata.namespace")})],
            host_network=True, tolerate_all=True, critical=True, service_account="cilium",
            labels={"app.kubernetes.io/name": "cilium-agent", "app.kubernetes.io/part-of": "cilium"})),
        ("apps/deployments", w.deployment(ks, "cilium-operator", {"io.cilium/app": "operator",
                                                                   "name": "cilium-operator"}, 1,
                                          [w.container("cilium-operator",
                                                       f"quay.io/cilium/operator-generic:{CILIUM_VERSION}",
                                                       command=["cilium-operator-generic"],
                                                       args=["--config-dir=/tmp/cilium/config-map"])],
                                          host_network=True, tolerations=[{"operator": "Exists"}], critical=True,
                                          service_account="cilium-operator")),
    ]
    return out
