"""What lives on a simulated node outside the API: CNI config files, interfaces, agents.

A real node keeps state the API server never sees: the files in ``/etc/cni/net.d`` (which
decide the network of every new pod sandbox), network interfaces (``vxlan.calico``,
``cilium_host``...), and what each CNI agent resolved when it started. The migration works
on exactly this state, so the simulator models it per node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CNI_CONFIG_SUFFIXES = (".conf", ".conflist", ".json")


@dataclass
class CalicoState:
    """calico-node on one node."""

    running: bool = False            # the calico-node pod's container is up
    healthy: bool = False            # Felix up and programming routes
    crashloop: bool = False          # injected fault
    autodetect: str = "kubernetes-internal-ip"
    address: str | None = None       # the node address calico autodetected
    address_interface: str = "eth0"  # the interface it took the address from


@dataclass
class CiliumState:
    """The cilium agent on one node, with the configuration it resolved at its last start."""

    running: bool = False
    healthy: bool = False
    crashloop: bool = False
    # BPF programs, routes and the tunnel device a healthy agent set up. They stay in the kernel
    # while the agent process stops and starts again (the next agent restores its endpoints), so
    # existing pods keep forwarding through an agent restart; node clean-up removes them.
    datapath: bool = False
    pod_uid: str | None = None
    config: dict[str, str] = field(default_factory=dict)   # cilium-config + matching CiliumNodeConfigs
    config_sources: list[str] = field(default_factory=list)
    restarts: int = 0
    stopped_at: float | None = None   # monotonic seconds when the agent process last stopped

    @property
    def manages_cni(self) -> bool:
        return self.config.get("custom-cni-conf", "false") != "true" and bool(self.config.get("write-cni-conf-when-ready"))

    def flag(self, key: str, default: str = "false") -> bool:
        return self.config.get(key, default).lower() == "true"


@dataclass
class NodeRuntime:
    """Node-local state of one simulated node."""

    name: str
    ip: str
    cni_dir: dict[str, str] = field(default_factory=dict)     # /etc/cni/net.d: file name -> content
    interfaces: set[str] = field(default_factory=lambda: {"lo", "eth0"})
    forced_not_ready: bool = False
    calico: CalicoState = field(default_factory=CalicoState)
    cilium: CiliumState = field(default_factory=CiliumState)

    def cni_files(self) -> list[str]:
        return sorted(self.cni_dir)

    def active_cni(self) -> str | None:
        """The config a new sandbox gets: the first config file by name (``*.cilium_bak`` is not one)."""
        for name in sorted(self.cni_dir):
            if name.endswith(CNI_CONFIG_SUFFIXES):
                return name
        return None

    def network_of(self, conf: str | None) -> str | None:
        if conf is None:
            return None
        content = self.cni_dir.get(conf, "")
        if "cilium" in conf or '"cilium-cni"' in content:
            return "cilium"
        if "calico" in conf or '"calico"' in content:
            return "calico"
        return None
