"""Pod IP address management for both overlays.

* Calico IPAM: the enabled IPPool is cut into blocks of ``/blockSize`` (default /26); a node
  gets affine blocks as it needs them and allocates pod IPs from them, as ``calico-ipam`` does.
* host-local from ``spec.podCIDR`` (Calico configured without Calico IPAM, as metal-stack runs it);
* Cilium cluster-pool IPAM: each node gets one ``/cluster-pool-ipv4-mask-size`` podCIDR from
  ``cluster-pool-ipv4-cidr`` (the operator's job), recorded in its CiliumNode's
  ``spec.ipam.podCIDRs``; pod IPs come from it.

Allocation is deterministic (lowest free address, lowest free block or range) so a run replays
from its seed. Blocks and ranges are never handed back, so the search for the next one resumes
where the last one ended: at 5,000 nodes, starting over from the pool's first subnet every time
cost quadratic time.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field

Subnet = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class _Block:
    cidr: Subnet
    used: set[str] = field(default_factory=set)

    def take(self) -> str | None:
        for i, host in enumerate(self.cidr.hosts()):
            ip = str(host)
            if i == 0 and self.cidr.prefixlen <= 24:   # keep .1 of large per-node ranges for cilium_host
                continue
            if ip not in self.used:
                self.used.add(ip)
                return ip
        return None


class _Subnets:
    """The subnets of pools not handed out yet, lowest first, each pool's walked once."""

    def __init__(self) -> None:
        self.taken: set[str] = set()
        self._walks: dict[tuple[str, int], Iterator[Subnet]] = {}

    def take(self, pool_cidr: str, prefix: int) -> Subnet | None:
        walk = self._walks.get((pool_cidr, prefix))
        if walk is None:
            walk = self._walks[(pool_cidr, prefix)] = ipaddress.ip_network(pool_cidr).subnets(new_prefix=prefix)
        for candidate in walk:   # every subnet before the walk's position is taken already
            key = str(candidate)
            if key not in self.taken:
                self.taken.add(key)
                return candidate
        return None


class CalicoIpam:
    """Block-affine allocation from one IPPool."""

    def __init__(self) -> None:
        self.blocks: dict[str, list[_Block]] = {}      # node -> its blocks
        self._subnets = _Subnets()                      # block CIDRs handed out
        self.owner: dict[str, str] = {}                 # ip -> node

    def allocate(self, node: str, pool_cidr: str, block_size: int) -> str | None:
        for block in self.blocks.get(node, []):
            ip = block.take()
            if ip:
                self.owner[ip] = node
                return ip
        candidate = self._subnets.take(pool_cidr, block_size)
        if candidate is None:
            return None
        block = _Block(candidate)
        self.blocks.setdefault(node, []).append(block)
        ip = block.take()
        if ip:
            self.owner[ip] = node
        return ip

    def release(self, ip: str) -> None:
        node = self.owner.pop(ip, None)
        for block in self.blocks.get(node or "", []):
            block.used.discard(ip)

    def node_blocks(self, node: str) -> list[str]:
        return [str(b.cidr) for b in self.blocks.get(node, [])]


class _RangePerNode:
    """One address range per node, and which node each address handed out belongs to."""

    def __init__(self) -> None:
        self.ranges: dict[str, _Block] = {}
        self.owner: dict[str, str] = {}

    def _take(self, node: str) -> str | None:
        block = self.ranges.get(node)
        ip = block.take() if block else None
        if ip:
            self.owner[ip] = node
        return ip

    def release(self, ip: str) -> None:
        node = self.owner.pop(ip, None)
        block = self.ranges.get(node or "")
        if block:
            block.used.discard(ip)


class HostLocalIpam(_RangePerNode):
    """CNI ``host-local`` with ``usePodCidr`` (Calico without Calico IPAM): addresses from the
    node's ``spec.podCIDR``, the first host kept for the gateway as host-local does."""

    def allocate(self, node: str, pod_cidr: str) -> str | None:
        block = self.ranges.get(node)
        if block is None or str(block.cidr) != pod_cidr:
            self.ranges[node] = _Block(ipaddress.ip_network(pod_cidr, strict=False))
        return self._take(node)


class CiliumIpam(_RangePerNode):
    """Cluster-pool allocation: one podCIDR per node, addresses from it."""

    def __init__(self) -> None:
        super().__init__()
        self._subnets = _Subnets()

    @property
    def pod_cidrs(self) -> dict[str, _Block]:
        """Each node's podCIDR block."""
        return self.ranges

    def pod_cidr(self, node: str, pool_cidr: str, mask: int) -> str | None:
        if node in self.ranges:
            return str(self.ranges[node].cidr)
        candidate = self._subnets.take(pool_cidr, mask)
        if candidate is None:
            return None
        self.ranges[node] = _Block(candidate)
        return str(candidate)

    def allocate(self, node: str) -> str | None:
        return self._take(node)
