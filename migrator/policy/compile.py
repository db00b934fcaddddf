"""The compile step: Calico's ordered evaluation model onto Cilium's union-of-allows, deny-wins model.

Calico, per endpoint and direction: tiers by order, policies by order (none last, ties by name),
rules in order; Allow and Deny are final, Pass leaves the tier, Log goes on; a tier that selects the
endpoint but matches nothing denies (or passes, with ``defaultAction: Pass``); an endpoint no tier
selects is allowed. Kubernetes NetworkPolicies sit in the default tier at order 1000 and stay native.

Cilium: a flow is denied if any deny rule matches, else allowed if any allow rule matches, else
denied when a rule selecting the endpoint has that direction, else allowed. So, walking Calico's
order with cube algebra (``cubes.py``):
- an Allow is emitted minus the flows an earlier Pass of its tier sent on;
- a Deny is emitted minus every earlier Allow (any tier; Kubernetes allows included) and Pass of its
  tier, since in Cilium it would otherwise beat them;
- a tier's end-of-tier deny is emitted explicitly where a *later* tier allows flows of its
  endpoints that it matched with no rule (``ingressDeny``/``egressDeny`` in a CCNP per tier);
- a Pass whose flows reach no later tier is emitted as an allow (Calico's profiles allow them).
Pieces that cannot be narrowed exactly are kept whole and the policy is ``approximate`` with the
reason stated.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from migrator.policy.constructs import constructs, pod_addresses
from migrator.policy.cubes import L4, AnyPeer, Approx, Cube, subtract_all
from migrator.policy.emit import CiliumVersions, emit_groups, emit_policy, emit_tier, range_fits
from migrator.policy.findings import APPROXIMATE, UNTRANSLATABLE, Finding, policy_class
from migrator.policy.labelsel import DNF, Inexpressible, conj_and
from migrator.policy.model import Inventory, Policy
from migrator.policy.rules import Context, policy_key, rule_cubes, subject_dnf, tier_key
from migrator.policy.selector import SelectorError

DIRECTIONS = ("Ingress", "Egress")


@dataclass
class Compiled:
    """Per policy and direction: the allow and deny cubes to emit."""

    allow: dict[tuple[str, str], list[Cube]] = field(default_factory=lambda: defaultdict(list))
    deny: dict[tuple[str, str], list[Cube]] = field(default_factory=lambda: defaultdict(list))
    tier_deny: dict[tuple[str, str], list[Cube]] = field(default_factory=lambda: defaultdict(list))
    notes: dict[str, Approx] = field(default_factory=lambda: defaultdict(Approx))


@dataclass(frozen=True)
class Translation:
    objects: tuple[dict, ...]            # CNPs, CCNPs, CiliumCIDRGroups, as manifests
    findings: tuple[Finding, ...]
    classes: Mapping[str, str]           # policy ident -> exact | approximate | untranslatable

    def summary(self) -> list[tuple[str, str, str]]:
        """(policy, class, reason) rows, one per finding, or one ``exact`` row."""
        rows = []
        for ident, klass in sorted(self.classes.items()):
            reasons = [f for f in self.findings if f.policy == ident]
            rows += [(ident, f.klass, f.line().removeprefix(ident).lstrip(" :")) for f in reasons] or [(ident, klass, "")]
        return rows


@dataclass
class _Walk:
    """State of one direction's walk through Calico's order."""

    ctx: Context
    out: Compiled
    groups: Mapping[str, tuple[str, ...]]
    allows: list[Cube] = field(default_factory=list)         # what every Allow so far really allows


def _subjects(p: Policy) -> DNF:
    return subject_dnf(p)


def compile_inventory(inv: Inventory, usable: list[Policy]) -> Compiled:
    ctx = Context(inv)
    out = Compiled()
    groups = ctx.group_cidrs()
    tiers = {t.name: t.order for t in inv.tiers}
    default_action = {t.name: t.default_action for t in inv.tiers}
    for direction in DIRECTIONS:
        chosen = [p for p in usable if direction in p.types]
        by_tier: dict[str, list[Policy]] = defaultdict(list)
        for p in chosen:
            by_tier[p.tier].append(p)
        order = sorted(by_tier, key=lambda t: tier_key(t, tiers))
        walk = _Walk(ctx, out, groups)
        matched: dict[str, list[Cube]] = {}
        subjects: dict[str, list[Cube]] = {}
        passes: dict[str, list[tuple[Policy, Cube]]] = {}
        for tier in order:
            matched[tier], passes[tier] = [], []
            subjects[tier] = [Cube(s, AnyPeer(), L4()) for p in by_tier[tier] for s in _subjects(p)]
            tier_pass: list[Cube] = []
            for p in sorted(by_tier[tier], key=policy_key):
                subject = _subjects(p)
                notes = out.notes[p.ident]
                for r in p.rules(direction):
                    cubes = rule_cubes(p, r, direction, subject, ctx, notes)
                    if r.action == "Allow":
                        eff = subtract_all(cubes, tier_pass, groups, notes)
                        walk.allows += eff        # what this rule really allows (not what it passed on)
                        if not p.native:
                            out.allow[(p.ident, direction)] += eff
                    elif r.action == "Deny":
                        before = len(notes)
                        eff = subtract_all(cubes, tier_pass + walk.allows, groups, notes)
                        if len(notes) > before:
                            notes[before:] = [f"deny narrowed by earlier allows: {n}" for n in notes[before:]]
                        out.deny[(p.ident, direction)] += eff
                    elif r.action == "Pass":
                        tier_pass += cubes
                        passes[tier] += [(p, c) for c in cubes]
                    if r.action in ("Allow", "Deny", "Pass"):
                        matched[tier] += cubes
            if default_action.get(tier, "Deny") == "Pass":
                passes[tier] += [(p, Cube(s, AnyPeer(), L4())) for p in by_tier[tier] for s in _subjects(p)]
        _tier_ends(direction, order, by_tier, matched, subjects, passes, walk, default_action)
    return out


def _tier_ends(direction: str, order: list[str], by_tier: Mapping[str, list[Policy]],
               matched: Mapping[str, list[Cube]], subjects: Mapping[str, list[Cube]],
               passes: Mapping[str, list[tuple[Policy, Cube]]], walk: _Walk,
               default_action: Mapping[str, str]) -> None:
    out, groups = walk.out, walk.groups
    all_allows_by_tier: dict[str, list[Cube]] = defaultdict(list)
    # allows of each tier (Kubernetes ones included), recomputed from the rules
    for tier in order:
        for p in by_tier[tier]:
            notes = Approx()
            for r in p.rules(direction):
                if r.action == "Allow":
                    all_allows_by_tier[tier] += rule_cubes(p, r, direction, _subjects(p), walk.ctx, notes)
    for i, tier in enumerate(order):
        later = order[i + 1:]
        notes = out.notes[f"tier/{tier}"]
        if default_action.get(tier, "Deny") != "Pass":
            for s in subjects[tier]:
                # anything a later tier may allow (its allows, and what its Pass rules or defaultAction
                # send on to profiles): T denies all of it that T does not match for its endpoints
                for a in (a for t in later for a in [*all_allows_by_tier[t], *(c for _p, c in passes[t])]):
                    subject = conj_and(a.subject, s.subject)
                    if subject is None:
                        continue
                    piece = Cube(subject, a.peer, a.l4)
                    out.tier_deny[(tier, direction)] += subtract_all([piece], matched[tier], groups, notes)
        later_subjects = [s for t in later for s in subjects[t]]
        for p, c in passes[tier]:
            pieces = subtract_all([c], later_subjects, groups, out.notes[p.ident])
            out.allow[(p.ident, direction)] += pieces
    for key, cubes in out.tier_deny.items():
        out.tier_deny[key] = list(dict.fromkeys(cubes))


def _wide_ranges(compiled: Compiled, versions: CiliumVersions) -> dict[str, tuple[int, int]]:
    """Per policy (or ``tier/<name>``), a port range the served schema cannot carry, if any."""
    out: dict[str, tuple[int, int]] = {}
    for table in (compiled.allow, compiled.deny, compiled.tier_deny):
        for (owner, _direction), cubes in table.items():
            key = owner if table is not compiled.tier_deny else f"tier/{owner}"
            for c in cubes:
                r = c.l4.ports
                if r is not None and c.l4.named is None and not range_fits(r[0], r[1], versions):
                    out.setdefault(key, r)
    return out


def translate(inv: Inventory, versions: CiliumVersions | None = None) -> Translation:
    """Translate every Calico policy of the inventory; Kubernetes NetworkPolicies stay as they are."""
    versions = versions or CiliumVersions()
    findings: list[Finding] = []
    usable: list[Policy] = []
    pod_ips = pod_addresses(inv)
    for p in inv.policies:
        if p.native:
            usable.append(p)
            continue
        found = constructs(p, inv, pod_ips)
        if any(f.klass == UNTRANSLATABLE for f in found):
            findings += found
            continue
        try:
            subject_dnf(p)
            for direction in DIRECTIONS:
                for r in p.rules(direction):
                    rule_cubes(p, r, direction, subject_dnf(p), Context(inv), Approx())
        except (Inexpressible, SelectorError) as exc:
            found.append(Finding(p.ident, UNTRANSLATABLE, "selector", str(exc)))
            findings += found
            continue
        findings += found
        usable.append(p)
    compiled = compile_inventory(inv, usable)
    objects: list[dict] = []
    wide = _wide_ranges(compiled, versions)
    for p in usable:
        if p.native:
            continue
        blocked = wide.get(p.ident) or wide.get(f"tier/{p.tier}")
        if blocked:
            findings.append(Finding(p.ident, UNTRANSLATABLE, "port-range",
                                    f"port range {blocked[0]}-{blocked[1]} needs endPort, which the served "
                                    "CiliumNetworkPolicy schema lacks (Cilium >= 1.16 has it; the API server "
                                    "would prune it and leave the first port)"))
            continue
        for note in dict.fromkeys(compiled.notes.get(p.ident, ())):
            findings.append(Finding(p.ident, APPROXIMATE, "narrowing", note))
        objects.append(emit_policy(p, subject_dnf(p), compiled.allow, compiled.deny, versions))
    tiers_done = sorted({t for (t, _d) in compiled.tier_deny if compiled.tier_deny[(t, _d)]
                         and f"tier/{t}" not in wide})
    for tier in tiers_done:
        objects.append(emit_tier(tier, compiled.tier_deny, versions))
        for note in dict.fromkeys(compiled.notes.get(f"tier/{tier}", ())):
            for p in inv.policies:
                if p.tier == tier and not p.native and p in usable:
                    findings.append(Finding(p.ident, APPROXIMATE, "end-of-tier", note))
    objects += emit_groups(inv.network_sets, versions)
    classes = {p.ident: policy_class(f for f in findings if f.policy == p.ident)
               for p in inv.policies if not p.native}
    return Translation(objects=tuple(objects), findings=tuple(dict.fromkeys(findings)), classes=classes)

