"""Pod IP allocation: Calico's node-affine blocks and Cilium's per-node podCIDRs, lowest free
first, so that a cluster built from a seed gets the same addresses whatever its size."""

from __future__ import annotations

import ipaddress

from migrator.sim.ipam import CalicoIpam, CiliumIpam


def test_calico_gives_each_node_the_lowest_free_block_and_a_new_one_when_its_blocks_are_full():
    ipam = CalicoIpam()
    first = {node: ipam.allocate(node, "10.0.0.0/16", 26) for node in ("a", "b", "c")}
    assert first == {"a": "10.0.0.1", "b": "10.0.0.65", "c": "10.0.0.129"}
    assert ipam.allocate("a", "10.0.0.0/16", 26) == "10.0.0.2"   # from its own block while it has room
    taken = [ipam.allocate("b", "10.0.0.0/16", 26) for _ in range(61)]
    assert taken[-1] == "10.0.0.126" and len(set(taken)) == 61   # a /26 holds 62 hosts, .65 was the first
    assert ipam.allocate("b", "10.0.0.0/16", 26) == "10.0.0.193"   # full: the next free block
    assert ipam.node_blocks("b") == ["10.0.0.64/26", "10.0.0.192/26"]
    ipam.release("10.0.0.66")
    assert ipam.allocate("b", "10.0.0.0/16", 26) == "10.0.0.66"   # a released address is reused first


def test_calico_runs_out_of_blocks_and_says_so():
    ipam = CalicoIpam()
    assert [ipam.allocate(n, "10.1.0.0/25", 26) for n in ("a", "b")] == ["10.1.0.1", "10.1.0.65"]
    assert ipam.allocate("c", "10.1.0.0/25", 26) is None
    assert ipam.allocate("c", "10.1.0.0/24", 26) == "10.1.0.129"   # another pool: its free blocks only


def test_cilium_gives_each_node_one_pod_cidr_in_order_and_keeps_it():
    ipam = CiliumIpam()
    cidrs = [ipam.pod_cidr(f"n{i}", "10.245.0.0/16", 24) for i in range(300)]
    assert cidrs[:3] == ["10.245.0.0/24", "10.245.1.0/24", "10.245.2.0/24"]
    assert cidrs[255] == "10.245.255.0/24" and cidrs[256:] == [None] * 44   # a /16 holds 256 /24s
    assert ipam.pod_cidr("n1", "10.245.0.0/16", 24) == "10.245.1.0/24"
    assert ipam.allocate("n1") == "10.245.1.2"   # .1 stays for cilium_host
    assert ipam.allocate("n299") is None
    assert all(ipaddress.ip_network(c).prefixlen == 24 for c in cidrs[:256])
