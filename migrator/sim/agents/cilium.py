"""Simulated cilium agent: configuration resolved at pod start, its CNI file, its CiliumNode.

Follows the agent as the migration guide describes it (cilium-migration.md §2):
* the ``config`` init container resolves ``cilium-config`` plus every CiliumNodeConfig in the
  agent's namespace whose ``nodeSelector`` matches the node's labels (lexicographic order,
  later names override; an empty selector matches every node) — **only when the pod starts**,
  so labelling a node has no effect until its agent pod is recreated;
* with ``write-cni-conf-when-ready`` (and ``custom-cni-conf`` false) the agent writes
  ``05-cilium.conflist`` once it is up, and with ``cni-exclusive: "true"`` renames every other
  config to ``<name>.cilium_bak``;
* on shutdown it removes its file only when ``cni-uninstall`` is ``"true"``;
* it creates ``cilium_host``/``cilium_vxlan`` and its CiliumNode with a per-node podCIDR from
  the cluster pool.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from migrator.sim.node import CNI_CONFIG_SUFFIXES, NodeRuntime
from migrator.sim.selectors import label_selector_matches

CONFLIST = "05-cilium.conflist"


def conflist() -> str:
    return json.dumps({"cniVersion": "0.3.1", "name": "cilium",
                       "plugins": [{"type": "cilium-cni", "enable-debug": False, "log-file": "/var/run/cilium/cilium-cni.log"}]},
                      indent=2)


def resolve_config(base: dict[str, str], node_labels: dict[str, str], cncs: list[dict[str, Any]],
                   namespace: str) -> tuple[dict[str, str], list[str]]:
    """cilium-config + matching CiliumNodeConfigs, as ``cilium-dbg build-config`` does."""
    config = dict(base)
    sources = []
    for cnc in sorted(cncs, key=lambda o: o["metadata"]["name"]):
        spec = cnc.get("spec") or {}
        if "nodeSelector" not in spec or not label_selector_matches(spec.get("nodeSelector"), node_labels):
            continue
        config.update({k: str(v) for k, v in (spec.get("defaults") or {}).items()})
        sources.append(f"cilium-node-config:{namespace}/{cnc['metadata']['name']}")
    sources.append(f"config-map:{namespace}/cilium-config")
    config["config-sources"] = ",".join(sources)
    return config, sources


def start(rt: NodeRuntime, pod_uid: str, config: dict[str, str], sources: list[str]) -> None:
    """The agent pod's init container ran: config resolved, devices created."""
    st = rt.cilium
    st.running, st.healthy, st.pod_uid = True, False, pod_uid
    st.config, st.config_sources = config, sources
    rt.interfaces.add("cilium_host")
    if config.get("routing-mode", "tunnel") == "tunnel":
        rt.interfaces.add("cilium_vxlan" if config.get("tunnel-protocol", "vxlan") == "vxlan" else "cilium_geneve")


def become_healthy(rt: NodeRuntime, pod_uid: str) -> bool:
    st = rt.cilium
    if not st.running or st.pod_uid != pod_uid or st.crashloop:
        return False
    st.healthy = st.datapath = True
    if st.manages_cni:
        rt.cni_dir[os.path.basename(st.config["write-cni-conf-when-ready"]) or CONFLIST] = conflist()
        if st.flag("cni-exclusive"):
            written = os.path.basename(st.config["write-cni-conf-when-ready"])
            for name in sorted(rt.cni_dir):
                if name != written and name.endswith(CNI_CONFIG_SUFFIXES):
                    rt.cni_dir[name + ".cilium_bak"] = rt.cni_dir.pop(name)
    return True


def stop(rt: NodeRuntime, pod_uid: str) -> None:
    st = rt.cilium
    if st.pod_uid != pod_uid:
        return
    if st.manages_cni and st.flag("cni-uninstall"):
        rt.cni_dir.pop(os.path.basename(st.config.get("write-cni-conf-when-ready", CONFLIST)), None)
    st.running, st.healthy = False, False
    st.stopped_at = time.monotonic()


def tunnel_port(rt: NodeRuntime) -> int | None:
    cfg = rt.cilium.config
    if not (rt.cilium.running or rt.cilium.datapath) or cfg.get("routing-mode", "tunnel") != "tunnel":
        return None
    default = 8472 if cfg.get("tunnel-protocol", "vxlan") == "vxlan" else 6081
    try:
        return int(cfg.get("tunnel-port") or default)
    except ValueError:
        return default
