"""Policy verdicts while the cluster is half migrated, and the gap a node's switch opens.

During the migration each pod is served by the network plugin of its node. A flow is checked at
both ends, each by its own engine: egress at the source, ingress at the destination (Felix
enforces a workload's policy on its own interface; Cilium enforces egress at the source endpoint
and ingress at the destination endpoint).
- Calico sees every pod by its labels, Cilium-served ones included (Felix makes a workload
  endpoint of every scheduled pod from ``status.podIPs``), so a Calico end is exact
  (``calico_eval``).
- Cilium sees a pod it does not manage only as the entity ``unmanaged``; a Cilium node whose agent
  runs with ``enable-policy=never`` enforces nothing (``cilium_eval`` over the translation, shim
  CCNPs included when given, and the Kubernetes NetworkPolicies Cilium enforces natively).
- An address outside the cluster enforces nothing.

The baseline is the cluster before the run: Calico alone. The gap of a step (a set of nodes
switched to Cilium, before and after the step) is every flow whose predicted verdict, before or
after the step, differs from the baseline: the flows one side no longer enforces as Calico did
(or enforces where Calico did not). It is computed over verify's endpoint groups, split by which
engine serves the group's pods before and after, so its cost grows with groups, not pods; flows
whose two ends stay on Calico are skipped (their verdict is the baseline's). ``GapReport.covers``
judges one concrete flow (any port) by the same prediction.

A verdict depends only on each end's group (what the policies read) and on which engine serves
it, so ``Verdicts`` keeps them by (group, engine) pair and probe across the steps of one run:
the steps after the first evaluate only the pairs no earlier step met, as long as the policies,
namespaces and Cilium objects are those it was filled over (their digest; pods may move).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from migrator.engine.policy_probe import Flow
from migrator.model.observation import PodFacts
from migrator.policy.calico_eval import CalicoModel
from migrator.policy.cilium_eval import CiliumModel
from migrator.policy.endpoints import Endpoint, Grouping, Probe, boundary_addresses, cidrs, pod_groups, probes
from migrator.policy.model import Inventory, Pod

CALICO, CILIUM, UNENFORCED = "calico", "cilium", "cilium-unenforced"
SUMMARY_FLOWS = 10

#: Nodes served by Cilium, each with whether its agent enforces policy; a plain set of names means
#: every one enforces.
CiliumNodes = Mapping[str, bool] | Iterable[str]


def _nodes(nodes: CiliumNodes) -> dict[str, bool]:
    return dict(nodes) if isinstance(nodes, Mapping) else {n: True for n in nodes}


class Placement:
    """Which engine serves each pod in one state of the migration, and its verdicts in that state."""

    def __init__(self, inv: Inventory, objects: Iterable[Mapping[str, Any]], calico: CalicoModel,
                 cilium_nodes: CiliumNodes) -> None:
        self.nodes = _nodes(cilium_nodes)
        self.calico = calico
        self.cilium = CiliumModel(objects, inv, native=[p for p in inv.policies if p.native],
                                  managed=lambda pod: pod.node in self.nodes)

    def engine(self, pod: Pod) -> str:
        if pod.node not in self.nodes:
            return CALICO
        return CILIUM if self.nodes[pod.node] else UNENFORCED

    def verdict(self, src: Endpoint, dst: Endpoint, probe: Probe) -> tuple[bool, list[str]]:
        """(allowed?, the rules that decided): the source's egress, then the destination's ingress."""
        why: list[str] = []
        for ep, direction in ((src, "Egress"), (dst, "Ingress")):
            if ep.pod is None:
                continue
            engine = self.engine(ep.pod)
            if engine == UNENFORCED:
                continue
            if engine == CALICO:
                ok, by = self.calico.direction_verdict(ep, direction, src, dst, probe)
            else:
                ok, by = self.cilium.direction_verdict(ep, direction, dst if direction == "Egress" else src,
                                                       dst, probe)
            if by:
                why.append(f"{engine}: {by}")
            if not ok:
                return False, why
        return True, why


@dataclass(frozen=True)
class GapFlow:
    """A flow whose verdict during the step differs from the baseline."""

    source: str                     # endpoint group (engine before→after in brackets) or address
    destination: str
    probe: str                      # e.g. 80/TCP
    baseline: bool                  # Calico alone
    before: bool
    after: bool
    responsible: tuple[str, ...]    # the rules that decided, per engine

    def line(self) -> str:
        def word(v: bool) -> str:
            return "allow" if v else "deny"
        return (f"{self.source} -> {self.destination} {self.probe}: {word(self.baseline)} before the run, "
                f"{word(self.before)} before the step, {word(self.after)} after"
                + (f" ({'; '.join(self.responsible[:3])})" if self.responsible else ""))


@dataclass(frozen=True)
class GapReport:
    """The flows a step leaves enforced differently from the baseline, over endpoint groups."""

    flows: tuple[GapFlow, ...]
    groups: int
    probes: int
    evaluated: int                  # flows evaluated (pairs whose ends stay on Calico are skipped)
    _judge: _Judge | None = field(default=None, repr=False, compare=False)

    def covers(self, src: Pod, dst: Pod, port: int, protocol: str) -> bool:
        """Whether the step may change this flow's verdict from the baseline (predicted, any port)."""
        return self._judge is not None and self._judge.differs(src, dst, Probe(protocol.upper(), port))

    def group(self, pod: Pod) -> str | None:
        """The endpoint group ``pod`` falls in, as the flows name it (None: a pod without an address)."""
        ep = self._judge.endpoint(pod) if self._judge is not None else None
        return ep.key if ep is not None else None

    def summary(self, limit: int = SUMMARY_FLOWS) -> str:
        """A bounded human summary: the count, then the first ``limit`` flows."""
        head = (f"policy gap: {len(self.flows)} flow(s) enforced differently from before the run "
                f"({self.groups} endpoint groups x {self.probes} probes, {self.evaluated} flows evaluated)")
        lines = [head, *(f"  {f.line()}" for f in self.flows[:limit])]
        if len(self.flows) > limit:
            lines.append(f"  (+{len(self.flows) - limit} more)")
        return "\n".join(lines)


class _Judge:
    """Baseline and both states' verdicts for concrete pods, by their group's representative."""

    def __init__(self, inv: Inventory, calico: CalicoModel, before: Placement, after: Placement) -> None:
        self.grouping = Grouping(inv)
        self.calico, self.before, self.after = calico, before, after
        self.reps: dict[tuple, Endpoint] = {}

    def split(self, pod: Pod) -> str:
        a, b = self.before.engine(pod), self.after.engine(pod)
        return "" if a == b == CALICO else f"{a}→{b}"

    def endpoint(self, pod: Pod) -> Endpoint | None:
        key = self.grouping.key(pod)
        if key is None:
            return None
        key = (*key, self.split(pod))
        if key not in self.reps:
            self.reps[key] = Endpoint(key=f"pod {pod.namespace}/{pod.name} {key}", ip=pod.ip or "", pod=pod)
        return self.reps[key]

    def differs(self, src_pod: Pod, dst_pod: Pod, probe: Probe) -> bool:
        src, dst = self.endpoint(src_pod), self.endpoint(dst_pod)
        if src is None or dst is None or not (self.split(src_pod) or self.split(dst_pod)):
            return False
        base, _ = self.calico.verdict(src, dst, probe)
        states = (self.before,) if self.after is self.before else (self.before, self.after)
        return any(state.verdict(src, dst, probe)[0] != base for state in states)


UNKNOWN, DENIED, ALLOWED = 0, 1, 2
#: An end's engine in a ``Verdicts`` key: the baseline's (Calico alone), then a state's.
ENGINE_CODES = {"baseline": 0, "": 1, CALICO: 2, CILIUM: 3, UNENFORCED: 4}


class Verdicts:
    """Verdicts kept across a run's steps, while the policies, namespaces, probes and Cilium
    objects stay those of ``digest`` (a change empties it): per (source group, its engine,
    destination group, its engine), one byte per probe (``UNKNOWN``, ``DENIED``, ``ALLOWED``),
    groups by their key without the engine split. The rules that decided are not kept (they are
    evaluated again for the few flows a report lists), so 1,000 policies over 5,000 pods keep
    about 100k small rows."""

    def __init__(self) -> None:
        self.digest = ""
        self.width = 0                 # probes per row
        self.groups: dict[Any, int] = {}
        self.rows: dict[tuple[int, int, int, int], bytearray] = {}

    def over(self, inv: Inventory, objects: list[Mapping[str, Any]], probe_list: list[Probe]) -> Verdicts:
        digest = _digest(inv, objects, probe_list)
        if digest != self.digest:
            self.digest, self.width, self.groups, self.rows = digest, len(probe_list), {}, {}
        return self

    def group(self, key: Any) -> int:
        return self.groups.setdefault(key, len(self.groups))

    def row(self, src: int, src_engine: str, dst: int, dst_engine: str) -> bytearray:
        key = (src, ENGINE_CODES[src_engine], dst, ENGINE_CODES[dst_engine])
        found = self.rows.get(key)
        if found is None:
            found = self.rows[key] = bytearray(self.width)
        return found


def _digest(inv: Inventory, objects: list[Mapping[str, Any]], probe_list: list[Probe]) -> str:
    """Everything a verdict reads but the pods (a group stands for the pods' part)."""
    text = repr((inv.policies, inv.network_sets, inv.host_endpoints, inv.tiers, probe_list, sorted(
        (ns, sorted(labels.items())) for ns, labels in inv.namespaces.items())))
    return hashlib.sha256((text + json.dumps(objects, sort_keys=True, default=str)).encode()).hexdigest()


def gap(inv: Inventory, objects: Iterable[Mapping[str, Any]], cilium_nodes_before: CiliumNodes,
        cilium_nodes_after: CiliumNodes, *, listed: bool = True, verdicts: Verdicts | None = None) -> GapReport:
    """The gap of the step from ``cilium_nodes_before`` to ``cilium_nodes_after``.

    ``objects`` are the Cilium objects in place during the step (the translation, and the shim
    CCNPs when applied); Kubernetes NetworkPolicies come from ``inv``. ``listed=False`` leaves
    the flows unlisted (``covers`` alone judges them, one flow at a time): for a caller that
    only asks about a few flows, such as the policy probe's gates. ``verdicts``: those kept from
    the run's earlier steps (filled with this one's; a change of policies or objects empties it).
    """
    objects = list(objects)
    calico = CalicoModel(inv)
    before = Placement(inv, objects, calico, cilium_nodes_before)
    same = _nodes(cilium_nodes_before) == _nodes(cilium_nodes_after)
    after = before if same else Placement(inv, objects, calico, cilium_nodes_after)
    judge = _Judge(inv, calico, before, after)
    groups = pod_groups(inv, judge.split)
    pods = sorted(groups.values(), key=lambda e: e.key)
    judge.reps.update(groups)
    external = [Endpoint(key=a, ip=a) for a in boundary_addresses(cidrs(inv))]
    probe_list = probes(inv)
    moving = {e.key for e in pods if e.pod is not None and judge.split(e.pod)}
    kept = (verdicts or Verdicts()).over(inv, objects, probe_list) if listed else Verdicts()
    # a verdict reads the ends' groups and engines only: groups split by engine share their rows
    ids = {e.key: kept.group(key[:-1]) for key, e in groups.items()} | {e.key: kept.group(e.key) for e in external}

    def engine(state: Placement, ep: Endpoint) -> str:
        return state.engine(ep.pod) if ep.pod is not None else ""

    def allowed(row: bytearray, i: int, state: Placement | None, src: Endpoint, dst: Endpoint) -> bool:
        if row[i] == UNKNOWN:
            ok = (calico if state is None else state).verdict(src, dst, probe_list[i])[0]
            row[i] = ALLOWED if ok else DENIED
        return row[i] == ALLOWED

    flows: list[GapFlow] = []
    evaluated = 0
    for src in (pods + external) if listed else ():
        for dst in pods + external:
            if src.key not in moving and dst.key not in moving:
                continue   # both ends on Calico throughout (or outside the cluster): the baseline
            s, d = ids[src.key], ids[dst.key]
            base_row = kept.row(s, "baseline", d, "baseline")
            was_row = kept.row(s, engine(before, src), d, engine(before, dst))
            now_row = kept.row(s, engine(after, src), d, engine(after, dst))
            for i, probe in enumerate(probe_list):
                evaluated += 1
                base = allowed(base_row, i, None, src, dst)
                was = allowed(was_row, i, before, src, dst)
                now = allowed(now_row, i, after, src, dst)
                if was != base or now != base:   # listed: the rules that decided, evaluated again
                    why = calico.verdict(src, dst, probe)[1] + (before.verdict(src, dst, probe)[1] if was != base else []) \
                        + (after.verdict(src, dst, probe)[1] if now != base else [])
                    flows.append(GapFlow(source=src.key, destination=dst.key, probe=str(probe), baseline=base,
                                         before=was, after=now, responsible=tuple(dict.fromkeys(why))))
    return GapReport(flows=tuple(flows), groups=len(pods) + len(external), probes=len(probe_list),
                     evaluated=evaluated, _judge=judge)


def explained_by(report: GapReport) -> Callable[[Flow], bool]:
    """The policy probe's ``explained`` for ``report``: a flow between two probe pods is explained
    when the step may change its verdict (``GapReport.covers``)."""
    def pod(facts: PodFacts) -> Pod:
        return Pod(namespace=facts.namespace, name=facts.name, labels=dict(facts.labels), ip=facts.ip,
                   node=facts.node)

    return lambda flow: report.covers(pod(flow.src), pod(flow.dst), flow.port, flow.protocol)
