"""Simulated calico-node: the CNI config it installs, its VXLAN device, its node address.

When its pod starts on a node, calico-node's ``install-cni`` writes ``10-calico.conflist`` and
``calico-kubeconfig`` into ``/etc/cni/net.d`` (on every start, as the real init container
does) and Felix brings up ``vxlan.calico`` on the FelixConfiguration's ``vxlanPort``.

Node-address autodetection (pitfall #1 of the migration guide): with
``IP_AUTODETECTION_METHOD`` unset or ``first-found``, Calico takes the first interface with an
address — ``cilium_host`` once Cilium is installed — and cross-node Calico routing breaks.
``kubernetes-internal-ip``, ``interface=...`` or ``skip-interface=cilium_host`` avoid it. The
simulator re-evaluates the address whenever it is asked (real calico-node does so at each
restart), so installing Cilium under ``first-found`` breaks Calico as in the field reports.
"""

from __future__ import annotations

import json
from typing import Any

from migrator.sim.node import NodeRuntime

CONFLIST = "10-calico.conflist"
KUBECONFIG = "calico-kubeconfig"


def conflist() -> str:
    return json.dumps({"name": "k8s-pod-network", "cniVersion": "0.3.1", "plugins": [
        {"type": "calico", "log_level": "info", "datastore_type": "kubernetes", "mtu": 1450,
         "ipam": {"type": "calico-ipam"}, "policy": {"type": "k8s"},
         "kubernetes": {"kubeconfig": f"/etc/cni/net.d/{KUBECONFIG}"}},
        {"type": "portmap", "snat": True, "capabilities": {"portMappings": True}}]}, indent=2)


def autodetect_method(pod: dict[str, Any]) -> str:
    for c in (pod.get("spec") or {}).get("containers") or []:
        for env in c.get("env") or []:
            if env.get("name") == "IP_AUTODETECTION_METHOD":
                return str(env.get("value") or "first-found")
    return "first-found"


def start(rt: NodeRuntime, pod: dict[str, Any]) -> None:
    """The calico-node container started (its readiness comes after ``calico_start``)."""
    rt.calico.running = True
    rt.calico.autodetect = autodetect_method(pod)
    rt.cni_dir[CONFLIST] = conflist()
    rt.cni_dir[KUBECONFIG] = "# kubeconfig for the calico CNI plugin\n"


def become_healthy(rt: NodeRuntime) -> None:
    if rt.calico.running and not rt.calico.crashloop:
        rt.interfaces.add("vxlan.calico")
        rt.calico.healthy = True


def stop(rt: NodeRuntime) -> None:
    rt.calico.running = False
    rt.calico.healthy = False


def address(rt: NodeRuntime, cilium_host_ip: str | None) -> tuple[str, str]:
    """(address, interface) calico-node detects on this node now."""
    method = rt.calico.autodetect
    if method.startswith("first-found") and "cilium_host" in rt.interfaces and cilium_host_ip:
        return cilium_host_ip, "cilium_host"
    if method.startswith("skip-interface=") and "cilium_host" in rt.interfaces and cilium_host_ip:
        skipped = method.split("=", 1)[1]
        if "cilium" not in skipped:
            return cilium_host_ip, "cilium_host"
    return rt.ip, "eth0"
