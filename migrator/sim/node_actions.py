"""Node-local actions: what a privileged pod pinned to a node does to the node's files.

Some migration steps act on the node itself (rolling a node back restores Calico's CNI
config; finalize cleans up Calico leftovers). On a real cluster the migrator runs a pod pinned
to the node (``spec.nodeName``, hostPath ``/etc/cni/net.d`` and host network, privileged) whose
command below does the work. The simulated kubelet recognises such a pod by the annotation
``sim.migrator.io/node-action: <action>`` — the only test seam — applies the same effect to
the simulated node and ends the pod ``Succeeded`` (``Failed`` with a message when the action
cannot be applied).
"""

from __future__ import annotations

from typing import Any

from migrator.sim.agents import calico as calico_agent
from migrator.sim.agents import cilium as cilium_agent
from migrator.sim.node import NodeRuntime

ANNOTATION = "sim.migrator.io/node-action"

#: action -> the shell command the real pod runs (hostPath /etc/cni/net.d at /host/etc/cni/net.d)
COMMANDS: dict[str, str] = {
    "restore-calico-cni": (
        "set -eu; cd /host/etc/cni/net.d; "
        "for f in *.cilium_bak; do [ -e \"$f\" ] && mv -f \"$f\" \"${f%.cilium_bak}\"; done; "
        "rm -f 05-cilium.conflist"),
    "cleanup-calico": (
        "set -eu; rm -f /host/etc/cni/net.d/10-calico.conflist /host/etc/cni/net.d/10-calico.conflist.cilium_bak "
        "/host/etc/cni/net.d/calico-kubeconfig; "
        "for l in vxlan.calico tunl0 $(ip -o link | awk -F': ' '/cali/{print $2}' | cut -d@ -f1); do "
        "ip link delete \"$l\" 2>/dev/null || true; done; ip route flush proto bird || true; "
        "rm -rf /host/var/lib/calico /host/var/run/calico"),
    "cleanup-cilium": (
        "set -eu; rm -f /host/etc/cni/net.d/05-cilium.conflist; "
        "for l in cilium_host cilium_net cilium_vxlan cilium_geneve; do ip link delete \"$l\" 2>/dev/null || true; done"),
}


def action_of(pod: dict[str, Any]) -> str | None:
    return (pod["metadata"].get("annotations") or {}).get(ANNOTATION)


def apply(rt: NodeRuntime, action: str) -> tuple[bool, str]:
    """Apply ``action`` to the node; (succeeded?, message)."""
    if action == "restore-calico-cni":
        restored = []
        for name in sorted(rt.cni_dir):
            if name.endswith(".cilium_bak"):
                rt.cni_dir[name[: -len(".cilium_bak")]] = rt.cni_dir.pop(name)
                restored.append(name[: -len(".cilium_bak")])
        rt.cni_dir.pop(cilium_agent.CONFLIST, None)
        if calico_agent.CONFLIST not in rt.cni_dir:
            return False, f"no Calico CNI config to restore on {rt.name} (neither {calico_agent.CONFLIST} nor its .cilium_bak)"
        return True, f"restored {', '.join(restored) or calico_agent.CONFLIST}; removed {cilium_agent.CONFLIST}"
    if action == "cleanup-calico":
        for name in [n for n in rt.cni_dir if n.startswith("10-calico") or n == calico_agent.KUBECONFIG]:
            del rt.cni_dir[name]
        rt.interfaces -= {i for i in rt.interfaces if i in ("vxlan.calico", "tunl0") or i.startswith("cali")}
        return True, f"removed Calico CNI files and interfaces on {rt.name}"
    if action == "cleanup-cilium":
        rt.cni_dir.pop(cilium_agent.CONFLIST, None)
        rt.interfaces -= {"cilium_host", "cilium_net", "cilium_vxlan", "cilium_geneve"}
        rt.cilium.datapath = False
        return True, f"removed Cilium CNI file and interfaces on {rt.name}"
    return False, f"unknown node action {action!r}; known: {', '.join(sorted(COMMANDS))}"
