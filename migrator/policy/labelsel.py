"""Calico selector ASTs as Kubernetes label selectors.

A Kubernetes label selector is a conjunction of requirements (``In``, ``NotIn``, ``Exists``,
``DoesNotExist``). A Calico selector is mapped to a disjunction of such conjunctions (DNF):
``!`` is pushed down by De Morgan (``!(k == v)`` is ``k NotIn [v]``, which in Kubernetes also
matches objects without ``k``, exactly as Calico's ``!=``), ``&&`` stays in one selector and
``||`` becomes several selectors (several Cilium peers or rules). ``all()`` is the empty selector,
``!all()`` selects nothing (an empty disjunction). ``contains``/``starts with``/``ends with`` have
no Kubernetes equivalent and ``global()`` is not a label test: both raise ``Inexpressible``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from migrator.policy.selector import All, And, Global, Match, Node, Not

MAX_TERMS = 64   # a selector expanding to more label selectors than this is refused


class Inexpressible(ValueError):
    """A selector (or a negation of one) that no set of Kubernetes label selectors expresses."""


@dataclass(frozen=True, order=True)
class Req:
    """One Kubernetes label requirement."""

    key: str
    op: str                              # In | NotIn | Exists | DoesNotExist
    values: tuple[str, ...] = ()

    def negate(self) -> Req:
        flip = {"In": "NotIn", "NotIn": "In", "Exists": "DoesNotExist", "DoesNotExist": "Exists"}
        return Req(self.key, flip[self.op], self.values)

    def holds(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        if self.op == "In":
            return value in self.values
        if self.op == "NotIn":
            return value not in self.values
        if self.op == "Exists":
            return value is not None
        return value is None


Conj = frozenset[Req]          # requirements that must all hold; frozenset() selects everything
DNF = tuple[Conj, ...]         # any of the conjunctions; () selects nothing
EVERYTHING: DNF = (frozenset(),)


def satisfiable(conj: Conj) -> bool:
    """False when two requirements on one key cannot both hold (checked per key, exactly)."""
    by_key: dict[str, list[Req]] = {}
    for r in conj:
        by_key.setdefault(r.key, []).append(r)
    for reqs in by_key.values():
        allowed: set[str] | None = None     # None: any value
        excluded: set[str] = set()
        present = absent = False
        for r in reqs:
            if r.op == "In":
                allowed = set(r.values) if allowed is None else allowed & set(r.values)
                present = True
            elif r.op == "NotIn":
                excluded |= set(r.values)
            elif r.op == "Exists":
                present = True
            else:
                absent = True
        if absent and present:
            return False
        if allowed is not None and not (allowed - excluded):
            return False
    return True


def conj_and(a: Conj, b: Conj) -> Conj | None:
    both = a | b
    return both if satisfiable(both) else None


def dnf_and(a: DNF, b: DNF) -> DNF:
    out = [c for x in a for y in b if (c := conj_and(x, y)) is not None]
    return _capped(_dedupe(out))


def dnf_not(terms: DNF) -> DNF:
    """The complement of a disjunction, by De Morgan, as a disjunction."""
    result: DNF = EVERYTHING
    for conj in terms:
        result = dnf_and(result, tuple(frozenset({r.negate()}) for r in sorted(conj)))
    return result


def _dedupe(terms: Iterable[Conj]) -> DNF:
    seen = list(dict.fromkeys(terms))
    return tuple(c for c in seen if not any(o < c for o in seen))   # drop conjunctions a weaker one covers


def _capped(terms: DNF) -> DNF:
    if len(terms) > MAX_TERMS:
        raise Inexpressible(f"expands to {len(terms)} label selectors (more than {MAX_TERMS})")
    return terms


def to_dnf(node: Node, key_map: Mapping[str, str] | None = None) -> DNF:
    """The selector as a disjunction of conjunctions; ``key_map`` renames keys (e.g. Calico's
    ``projectcalico.org/namespace`` to Cilium's namespace label)."""
    return _dnf(node, False, key_map or {})


def _literal(m: Match, negated: bool, key_map: Mapping[str, str]) -> Req:
    key = key_map.get(m.key, m.key)
    op = {"==": "In", "in": "In", "!=": "NotIn", "not in": "NotIn", "has": "Exists"}.get(m.op)
    if op is None:
        raise Inexpressible(f"operator {m.op!r} on {m.key!r} has no Kubernetes label-selector equivalent")
    req = Req(key, op, tuple(sorted(set(m.values))))
    return req.negate() if negated else req


def _dnf(node: Node, negated: bool, key_map: Mapping[str, str]) -> DNF:
    if isinstance(node, All):
        return () if negated else EVERYTHING
    if isinstance(node, Global):
        raise Inexpressible("global() is not a label test")
    if isinstance(node, Match):
        if node.op in ("in", "not in") and not node.values:      # `k in {}` selects nothing
            return EVERYTHING if (node.op == "in") == negated else ()
        req = _literal(node, negated, key_map)
        return (frozenset({req}),) if satisfiable(frozenset({req})) else ()
    if isinstance(node, Not):
        return _dnf(node.term, not negated, key_map)
    conjunctive = isinstance(node, And) != negated
    parts = [_dnf(t, negated, key_map) for t in node.terms]
    if conjunctive:
        result: DNF = EVERYTHING
        for p in parts:
            result = dnf_and(result, p)
        return result
    return _capped(_dedupe(c for p in parts for c in p))


def as_label_selector(conj: Conj, *, prefix: str = "") -> dict[str, Any]:
    """One conjunction as a Kubernetes LabelSelector dict (``In`` with one value as matchLabels)."""
    match_labels: dict[str, str] = {}
    exprs: list[dict[str, Any]] = []
    for r in sorted(conj):
        if r.op == "In" and len(r.values) == 1 and prefix + r.key not in match_labels:
            match_labels[prefix + r.key] = r.values[0]
            continue
        expr: dict[str, Any] = {"key": prefix + r.key, "operator": r.op}
        if r.op in ("In", "NotIn"):
            expr["values"] = list(r.values)
        exprs.append(expr)
    out: dict[str, Any] = {}
    if match_labels:
        out["matchLabels"] = match_labels
    if exprs:
        out["matchExpressions"] = exprs
    return out


def conj_holds(conj: Conj, labels: Mapping[str, str]) -> bool:
    return all(r.holds(labels) for r in conj)
