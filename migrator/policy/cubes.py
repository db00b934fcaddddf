"""Set algebra over rule matches: the compile step's working material.

A *cube* is one product ``subject × peer × L4``: the endpoints a rule protects (a label
conjunction over Cilium identity labels), the peer (a label conjunction, a set of CIDR groups, a
CIDR with exceptions, or any peer) and the L4 part (protocol, port range or named port, ICMP type).
Calico's first-match semantics needs ``A ∧ ¬B``; ``subtract`` returns it as a list of cubes (pieces
may overlap; each is emitted as a Cilium rule) plus the notes of what could not be expressed
exactly (those pieces are kept whole, and the note says how the result over-approximates).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, replace

from migrator.policy.labelsel import Conj, conj_and, dnf_not

PROTOCOLS = ("TCP", "UDP", "SCTP", "ICMP", "ICMPv6")
MAX_PORT = 65535


@dataclass(frozen=True)
class Sel:
    """Cluster endpoints whose identity labels satisfy ``conj``."""

    conj: Conj


@dataclass(frozen=True)
class Groups:
    """External addresses in these CIDR groups (translated network sets)."""

    names: frozenset[str]


@dataclass(frozen=True)
class Net:
    """External addresses in ``cidr`` but in none of ``excepts``."""

    cidr: str
    excepts: tuple[str, ...] = ()


@dataclass(frozen=True)
class AnyPeer:
    """Every peer, in or outside the cluster."""


Peer = Sel | Groups | Net | AnyPeer


@dataclass(frozen=True)
class L4:
    """``proto`` None: every protocol (then nothing else is set). ``ports`` None: every port."""

    proto: str | None = None
    ports: tuple[int, int] | None = None
    named: str | None = None
    icmp_type: int | None = None


@dataclass(frozen=True)
class Cube:
    subject: Conj
    peer: Peer
    l4: L4


class Approx(list[str]):
    """The notes ``subtract`` collects about pieces it could not narrow exactly."""


def _net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text, strict=False)


def _nets_overlap(a: str, b: str) -> bool:
    x, y = _net(a), _net(b)
    return x.version == y.version and x.overlaps(y)


def _subnet(a: str, b: str) -> bool:
    x, y = _net(a), _net(b)
    return x.version == y.version and x.subnet_of(y)  # type: ignore[arg-type]


def _world(version: int) -> str:
    return "0.0.0.0/0" if version == 4 else "::/0"


# --------------------------------------------------------------------------------- overlap
def peers_overlap(a: Peer, b: Peer, groups: Mapping[str, tuple[str, ...]]) -> bool:
    if isinstance(a, AnyPeer) or isinstance(b, AnyPeer):
        return True
    if isinstance(a, Sel) and isinstance(b, Sel):
        return conj_and(a.conj, b.conj) is not None
    if isinstance(a, Sel) or isinstance(b, Sel):
        return False
    return any(_nets_overlap(x, y) for x in _cidrs(a, groups) for y in _cidrs(b, groups))


def _cidrs(p: Groups | Net, groups: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    return (p.cidr,) if isinstance(p, Net) else tuple(c for n in sorted(p.names) for c in groups.get(n, ()))


def l4_overlap(a: L4, b: L4) -> bool:
    if a.proto is None or b.proto is None:
        return True
    if a.proto != b.proto:
        return False
    if a.named is not None or b.named is not None:
        return True   # a name resolves per pod: assume it may overlap
    if a.ports is not None and b.ports is not None:
        if a.ports[1] < b.ports[0] or b.ports[1] < a.ports[0]:
            return False
    if a.icmp_type is not None and b.icmp_type is not None:
        return a.icmp_type == b.icmp_type
    return True


def overlap(a: Cube, b: Cube, groups: Mapping[str, tuple[str, ...]]) -> bool:
    return (conj_and(a.subject, b.subject) is not None and peers_overlap(a.peer, b.peer, groups)
            and l4_overlap(a.l4, b.l4))


# ------------------------------------------------------------------------------ difference
def conj_minus(a: Conj, b: Conj) -> list[Conj]:
    """``a ∧ ¬b`` as conjunctions (empty when ``b`` covers ``a``)."""
    if b <= a:
        return []
    return [c for n in dnf_not((b,)) if (c := conj_and(a, n)) is not None]


def peer_minus(a: Peer, b: Peer, groups: Mapping[str, tuple[str, ...]], notes: Approx) -> list[Peer]:
    if not peers_overlap(a, b, groups):
        return [a]
    if isinstance(b, AnyPeer):
        return []
    if isinstance(a, AnyPeer):
        if isinstance(b, Sel):
            return [*(Sel(c) for c in conj_minus(frozenset(), b.conj)), Net(_world(4)), Net(_world(6))]
        return [Sel(frozenset())] + [p for v in (4, 6)
                                     for p in peer_minus(Net(_world(v)), b, groups, notes)]
    if isinstance(a, Sel) and isinstance(b, Sel):
        return [Sel(c) for c in conj_minus(a.conj, b.conj)]
    if isinstance(a, Groups) and isinstance(b, Groups):
        rest = a.names - b.names
        return [Groups(rest)] if rest else []
    if isinstance(a, Groups):     # minus a CIDR that overlaps some group: expand the groups to CIDRs
        return [p for c in _cidrs(a, groups) for p in peer_minus(Net(c), b, groups, notes)]
    assert isinstance(a, Net) and isinstance(b, Groups | Net)
    nets: list[Net] = [a]
    for cut in _cidrs(b, groups):
        nets = [q for p in nets for q in _net_minus(p, cut)]
    pieces: list[Peer] = list(nets)
    if isinstance(b, Net):   # b's exceptions inside a are not in b: they stay in a − b
        for e in b.excepts:
            if not _nets_overlap(e, a.cidr) or any(_subnet(e, x) for x in a.excepts):
                continue
            inner = e if _subnet(e, a.cidr) else a.cidr      # the smaller of two overlapping CIDRs
            pieces.append(Net(inner, tuple(x for x in a.excepts if _subnet(x, inner))))
    return pieces


def _net_minus(a: Net, cut: str) -> list[Net]:
    if not _nets_overlap(a.cidr, cut):
        return [a]
    if _subnet(a.cidr, cut):
        return []
    return [Net(a.cidr, (*a.excepts, cut))]


def l4_minus(a: L4, b: L4, notes: Approx) -> list[L4]:
    if not l4_overlap(a, b):
        return [a]
    if b.proto is None:
        return []
    if a.proto is None:
        notes.append("IP protocols other than TCP, UDP, SCTP, ICMP and ICMPv6 cannot be singled out in "
                     f"Cilium: the complement of {b.proto} covers only the others of these five")
        return [L4(p) for p in PROTOCOLS if p != b.proto] + l4_minus(L4(b.proto), b, notes)
    if b.named is not None or a.named is not None:
        if a.named == b.named and a.named is not None:
            return []
        if b.ports is None and b.named is None:
            return []
        notes.append(f"named port {a.named or b.named} compared with numeric ports: kept whole")
        return [a]
    if a.proto in ("ICMP", "ICMPv6"):
        if b.icmp_type is None:
            return []
        if a.icmp_type is None:
            notes.append(f"ICMP types other than {b.icmp_type} cannot be listed exactly: kept whole")
            return [a]
        return [] if a.icmp_type == b.icmp_type else [a]
    if b.ports is None:
        return []
    lo, hi = a.ports if a.ports is not None else (1, MAX_PORT)
    out = []
    if lo < b.ports[0]:
        out.append(replace(a, ports=(lo, min(hi, b.ports[0] - 1))))
    if hi > b.ports[1]:
        out.append(replace(a, ports=(max(lo, b.ports[1] + 1), hi)))
    return out


def subtract(a: Cube, b: Cube, groups: Mapping[str, tuple[str, ...]], notes: Approx) -> list[Cube]:
    """``a ∧ ¬b`` as cubes (``[a]`` when they do not overlap)."""
    if not overlap(a, b, groups):
        return [a]
    out = [replace(a, subject=s) for s in conj_minus(a.subject, b.subject)]
    out += [replace(a, peer=p) for p in peer_minus(a.peer, b.peer, groups, notes)]
    out += [replace(a, l4=x) for x in l4_minus(a.l4, b.l4, notes)]
    return out


def subtract_all(cubes: list[Cube], cuts: list[Cube], groups: Mapping[str, tuple[str, ...]],
                 notes: Approx, limit: int = 512) -> list[Cube]:
    """Every cube minus every cut; past ``limit`` pieces the cubes are kept whole (noted)."""
    for cut in cuts:
        nxt = [piece for c in cubes for piece in subtract(c, cut, groups, notes)]
        if len(nxt) > limit:
            notes.append(f"narrowing would need more than {limit} rules: kept whole")
            return cubes
        cubes = list(dict.fromkeys(nxt))
    return cubes
