"""Label and field selectors as the API server parses them from query strings.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``,
comma-separated (all must hold); keys and values must be valid label keys and values. Field
selectors: ``path=value``, ``path==value``, ``path!=value`` over any dotted path
(``metadata.name``, ``spec.nodeName``, ``status.phase``...). A malformed selector is a 400, as on
a real server.

``label_selector_matches`` evaluates a structured ``LabelSelector`` (``matchLabels`` +
``matchExpressions``), which PDBs, ReplicaSets, NetworkPolicies and CiliumNodeConfigs carry,
through the same requirements as the query string: the one label-selector evaluator of the sim.
An operator other than In, NotIn, Exists and DoesNotExist is a 400 (``BadRequest``), as
apimachinery's ``LabelSelectorAsSelector`` refuses it, never a silent match or miss.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from migrator.sim.errors import BadRequest

Obj = dict[str, Any]
Requirement = tuple[str, str, tuple[str, ...]]  # key, op (= != in notin exists !exists), values

_SET = re.compile(r"^\s*(!?)\s*([A-Za-z0-9./_-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
# apimachinery's validation.IsQualifiedName (an optional DNS-subdomain prefix) and IsValidLabelValue
_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_KEY = re.compile(rf"^(?:[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*/)?{_NAME}$")
_VALUE = re.compile(rf"^(?:{_NAME})?$")
# LabelSelector operators and the requirement each becomes
_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}


def _split_top(text: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _requirement(part: str, key: str, op: str, values: tuple[str, ...]) -> Requirement:
    if len(key.rpartition("/")[0]) > 253 or not _KEY.match(key):
        raise BadRequest(f"unable to parse requirement: {part!r}: invalid label key {key!r}")
    for value in values:
        if not _VALUE.match(value):
            raise BadRequest(f"unable to parse requirement: {part!r}: invalid label value {value!r}")
    return key, op, values


def parse_label_selector(text: str | None) -> list[Requirement]:
    if not text:
        return []
    reqs: list[Requirement] = []
    for part in _split_top(text):
        for op in ("!=", "==", "="):
            if op in part and "(" not in part:
                key, value = part.split(op, 1)
                key, value = key.strip(), value.strip()
                if not key:
                    raise BadRequest(f"unable to parse requirement: {part!r}")
                reqs.append(_requirement(part, key, "!=" if op == "!=" else "=", (value,)))
                break
        else:
            m = _SET.match(part)
            if not m:
                raise BadRequest(f"unable to parse requirement: found {part!r}, expected a label selector")
            neg, key, op, values = m.groups()
            if op:
                if neg:
                    raise BadRequest(f"unable to parse requirement: {part!r}")
                reqs.append(_requirement(part, key, op, tuple(v.strip() for v in values.split(",") if v.strip())))
            else:
                reqs.append(_requirement(part, key, "!exists" if neg else "exists", ()))
    return reqs


def labels_match(reqs: list[Requirement], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    for key, op, values in reqs:
        present = key in labels
        value = labels.get(key)
        if op == "=" and value != values[0]:
            return False
        if op == "!=" and present and value == values[0]:
            return False
        if op == "in" and (not present or value not in values):
            return False
        if op == "notin" and present and value in values:
            return False
        if op == "exists" and not present:
            return False
        if op == "!exists" and present:
            return False
    return True


def parse_field_selector(text: str | None) -> list[tuple[str, str, str]]:
    if not text:
        return []
    out = []
    for part in _split_top(text):
        for op in ("!=", "==", "="):
            if op in part:
                path, value = part.split(op, 1)
                out.append((path.strip(), "!=" if op == "!=" else "=", value.strip()))
                break
        else:
            raise BadRequest(f"invalid field selector: {part!r}: expected path=value or path!=value")
    return out


def field_value(obj: Obj, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def fields_match(reqs: list[tuple[str, str, str]], obj: Obj) -> bool:
    for path, op, value in reqs:
        actual = field_value(obj, path)
        if (actual == value) != (op == "="):
            return False
    return True


def build_predicate(label_selector: str | None, field_selector: str | None) -> Callable[[Obj], bool] | None:
    """One predicate for both selectors, or None when neither restricts anything."""
    lreqs = parse_label_selector(label_selector)
    freqs = parse_field_selector(field_selector)
    if not lreqs and not freqs:
        return None

    def predicate(obj: Obj) -> bool:
        return labels_match(lreqs, obj.get("metadata", {}).get("labels")) and fields_match(freqs, obj)
    return predicate


def node_name_from_fields(field_selector: str | None) -> str | None:
    """The node of a ``spec.nodeName=X`` requirement, to use the pod index."""
    for path, op, value in parse_field_selector(field_selector):
        if path == "spec.nodeName" and op == "=":
            return value
    return None


def label_selector_requirements(selector: Obj) -> list[Requirement]:
    """A structured LabelSelector as requirements; an unknown operator is a ``BadRequest``."""
    reqs: list[Requirement] = [(key, "=", (value,)) for key, value in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        op = _OPERATORS.get(expr.get("operator"))
        if op is None:
            raise BadRequest(f"{expr.get('operator')!r} is not a valid label selector operator")
        reqs.append((expr.get("key") or "", op, tuple(expr.get("values") or ())))
    return reqs


def label_selector_matches(selector: Obj | None, labels: dict[str, str] | None) -> bool:
    """Evaluate a structured LabelSelector. ``None`` selects nothing; ``{}`` selects everything."""
    if selector is None:
        return False
    return labels_match(label_selector_requirements(selector), labels)


def selects_or_not(selector: Obj | None, labels: dict[str, str] | None) -> bool:
    """``label_selector_matches``, where a selector it refuses selects nothing: how the eviction
    subresource and the disruption controller ask which PDBs cover a pod ("this object has an
    invalid selector, it does not match the pod")."""
    try:
        return label_selector_matches(selector, labels)
    except BadRequest:
        return False
