"""The policy translation of the live cluster, and the policy facts a continuous run decides on.

``read_translation(port)`` reads the policy inventory and the served Cilium versions through the
cluster port and translates (``migrator policy translate``, preflight and the run share it).
``PolicyObserver`` builds ``PolicyFacts`` for the engine when the plan's ``policy.mode`` is
``continuous``: the manifests to apply (translation and shims, computed once per process), the
objects the run applied that exist (listed by the run's label on every observation), the Calico
policy objects and the live verification (only while finalizing), and the gap report of each
node about to switch (``policy.transition``: the flows whose verdict, with the translation and
shims in place, differs from Calico's before the run; computed once per node and process over a
fresh inventory, off the decision loop's thread: ``background``; the verdicts of earlier nodes'
reports are kept for the next ones: ``transition.Verdicts``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from migrator.background import Background
from migrator.cluster.port import ClusterPort
from migrator.model.observation import GapFacts, NodeFacts, ObjectFacts, PolicyFacts, PolicyObjectFacts
from migrator.model.plan import MIGRATION_LABEL
from migrator.policy.compile import Translation, translate
from migrator.policy.emit import CiliumVersions, served
from migrator.policy.model import Inventory, PolicyInputError
from migrator.policy.shims import RUN_LABEL, SHIM, SHIM_LABEL, TRANSLATION, run_objects
from migrator.policy.transition import GapReport, Verdicts, gap
from migrator.policy.verify import verify

CILIUM_CRDS = ("ciliumnetworkpolicies.cilium.io", "ciliumclusterwidenetworkpolicies.cilium.io",
               "ciliumcidrgroups.cilium.io")
CALICO_POLICY_PLURALS = ("networkpolicies", "globalnetworkpolicies", "networksets", "globalnetworksets")
DIFFERENCES_KEPT = 5
GAP_LINES = 10


def cilium_versions(port: ClusterPort) -> CiliumVersions:
    """The Cilium versions to write (defaults when Cilium's CRDs are absent); ``ValueError`` when a
    CRD serves none the translation can write."""
    versions = {crd: port.served_versions(crd) for crd in CILIUM_CRDS}
    if not any(versions.values()):
        return CiliumVersions()
    chosen = served(versions)
    return replace(chosen, end_port=port.crd_has_field(CILIUM_CRDS[0], chosen.policy,
                                                       "spec.ingress.toPorts.ports.endPort"))


def read_translation(port: ClusterPort) -> tuple[Inventory, Translation]:
    """The live inventory and its translation (raises ``PolicyInputError`` / ``ValueError``)."""
    inv = port.read_policy_inventory()
    return inv, translate(inv, cilium_versions(port))


def calico_group(port: ClusterPort) -> tuple[str, str]:
    """Where Calico's policy objects are read and deleted: the v3 API when served, else the CRDs."""
    return (("projectcalico.org", "v3") if port.served_versions("networkpolicies.projectcalico.org")
            else ("crd.projectcalico.org", "v1"))


def _facts(report: GapReport) -> GapFacts:
    return GapFacts(flows=len(report.flows), lines=tuple(f.line() for f in report.flows[:GAP_LINES]))


class PolicyObserver:
    """Policy facts for one continuous run, in one process."""

    def __init__(self, port: ClusterPort) -> None:
        self.port = port
        self._wanted: tuple[dict[str, Any], ...] | None = None
        self._reports: Background[GapReport] = Background("policy-gap")
        self._verdicts = Verdicts()   # only the background thread touches it
        self._verified: tuple[object, tuple[str, ...]] | None = None

    def wanted(self) -> tuple[dict[str, Any], ...]:
        if self._wanted is None:
            inv, t = read_translation(self.port)
            self._wanted = tuple(run_objects(t.objects, inv.policies))
        return self._wanted

    def present(self) -> tuple[PolicyObjectFacts, ...]:
        return tuple(PolicyObjectFacts(
            kind=o["kind"], api_version=o["apiVersion"], name=o["metadata"]["name"],
            namespace=o["metadata"].get("namespace"),
            shim=(o["metadata"].get("labels") or {}).get(SHIM_LABEL) == "true",
            digest=hashlib.sha256(json.dumps([o.get("spec"), o.get("specs")], sort_keys=True).encode()).hexdigest()[:16])
            for o in self.port.list_policy_objects(RUN_LABEL))

    def calico(self) -> tuple[ObjectFacts, ...]:
        group, version = calico_group(self.port)
        return tuple(ref.as_facts() for plural in CALICO_POLICY_PLURALS
                     for ref in self.port.list_objects(group, version, plural))

    def differences(self, present: tuple[PolicyObjectFacts, ...] | None,
                    calico: tuple[ObjectFacts, ...]) -> tuple[str, ...]:
        """``policy verify`` of the live inventory against the translation as it exists now; kept
        while the same objects exist (finalize observes every turn, the check is the costly part)."""
        key = (tuple(sorted(f"{o.ref}@{o.digest}" for o in present or ())),
               tuple(sorted(f"{o.plural}/{o.namespace}/{o.name}" for o in calico)))
        if self._verified is None or self._verified[0] != key:
            self._verified = (key, self._verify())
        return self._verified[1]

    def _verify(self) -> tuple[str, ...]:
        inv = self.port.read_policy_inventory()
        live = self.port.list_policy_objects(f"{RUN_LABEL}={TRANSLATION}")
        result = verify(inv, live)
        lines = tuple(f"{d.source} -> {d.destination} {d.probe}: Calico {'allows' if d.calico else 'denies'}, "
                      f"Cilium {'allows' if d.cilium else 'denies'}" for d in result.differences[:DIFFERENCES_KEPT])
        more = len(result.differences) - len(lines)
        return lines + ((f"... and {more} more (migrator policy verify lists them)",) if more > 0 else ())

    def gap(self, node: str, nodes: tuple[NodeFacts, ...]) -> GapFacts | None:
        """The gap of ``node``'s switch (``policy.transition``), once per node and process: from
        the other labelled nodes to them and ``node``, with the translation and shims in place.
        None while it is computed: the inventory is read here, the translation and the report
        (seconds on a large cluster) run in the background so the loop keeps turning."""
        def job() -> Callable[[], GapReport]:
            inv, versions = self.port.read_policy_inventory(), cilium_versions(self.port)
            others = {n.name for n in nodes if n.labels.get(MIGRATION_LABEL) == "true"} - {node}
            return lambda: gap(inv, run_objects(translate(inv, versions).objects, inv.policies), others,
                               others | {node}, verdicts=self._verdicts)
        report = self._reports.result(node, job)
        return _facts(report) if report is not None else None

    def wave_gaps(self, waves: tuple[tuple[str, ...], ...], limit: int = 10) -> dict[str, GapFacts]:
        """For the forecast: the gap of each of the first ``limit`` waves, after the waves before it,
        keyed by each node of the wave (one translation for all)."""
        inv, t = read_translation(self.port)
        objects = run_objects(t.objects, inv.policies)
        out: dict[str, GapFacts] = {}
        done: set[str] = set()
        verdicts = Verdicts()
        for wave in waves[:limit]:
            found = _facts(gap(inv, objects, done, done | set(wave), verdicts=verdicts))
            done |= set(wave)
            out.update({name: found for name in wave})
        return out

    def facts(self, nodes: tuple[NodeFacts, ...], pod_nodes: frozenset[str] | None, *,
              finalizing: bool, listing: bool = True) -> PolicyFacts:
        """``listing``: list the objects the run applied (three LISTs; skipped while nodes migrate)."""
        in_flight = sorted((pod_nodes or frozenset()) & {n.name for n in nodes})
        present = self.present() if listing else None
        try:
            calico = self.calico() if finalizing else ()
            return PolicyFacts(
                wanted=self.wanted(), present=present, calico=calico,
                differences=self.differences(present, calico) if finalizing else None,
                gaps={name: found for name in in_flight if (found := self.gap(name, nodes)) is not None})
        except (PolicyInputError, ValueError) as exc:   # e.g. a policy edited mid-run into one we cannot read
            return PolicyFacts(present=present, error=str(exc))


__all__ = ["CALICO_POLICY_PLURALS", "CILIUM_CRDS", "SHIM", "PolicyObserver", "calico_group", "cilium_versions",
           "read_translation"]
