"""The static equivalence check: Calico's verdicts of the input against Cilium's verdicts of the
translation, over every (source group, destination group, probe) of the live inventory.

The two sides come from independent evaluators (``calico_eval``, ``cilium_eval``); flows between
two external addresses are skipped (neither side enforces them). A difference names the flow,
both verdicts and the policies each side's decision came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from migrator.policy.calico_eval import CalicoModel
from migrator.policy.cilium_eval import CiliumModel
from migrator.policy.endpoints import Endpoint, Probe, endpoint_groups, probes
from migrator.policy.model import Inventory


@dataclass(frozen=True)
class Difference:
    source: str
    destination: str
    probe: str
    calico: bool
    cilium: bool
    responsible: tuple[str, ...]


@dataclass(frozen=True)
class Verification:
    endpoints: int
    probes: int
    flows: int
    differences: tuple[Difference, ...]


def verify(inv: Inventory, objects: Iterable[Mapping[str, Any]]) -> Verification:
    eps = endpoint_groups(inv)
    probe_list = probes(inv)
    calico = CalicoModel(inv)
    cilium = CiliumModel(objects, inv, native=[p for p in inv.policies if p.native])
    diffs: list[Difference] = []
    flows = 0
    for src in eps:
        for dst in eps:
            if src.pod is None and dst.pod is None:
                continue
            for probe in probe_list:
                flows += 1
                diff = _compare(calico, cilium, src, dst, probe)
                if diff is not None:
                    diffs.append(diff)
    return Verification(endpoints=len(eps), probes=len(probe_list), flows=flows, differences=tuple(diffs))


def _compare(calico: CalicoModel, cilium: CiliumModel, src: Endpoint, dst: Endpoint,
             probe: Probe) -> Difference | None:
    a, why_a = calico.verdict(src, dst, probe)
    b, why_b = cilium.verdict(src, dst, probe)
    if a == b:
        return None
    return Difference(source=src.key, destination=dst.key, probe=str(probe), calico=a, cilium=b,
                      responsible=tuple(dict.fromkeys(w for w in (*why_a, *why_b) if w)))
