"""Label and field selectors as the API server parses them from query strings.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``,
comma-separated (all must hold). Field selectors: ``path=value``, ``path==value``,
``path!=value`` over any dotted path (``metadata.name``, ``spec.nodeName``,
``status.phase``...). A malformed selector is a 400, as on a real server.

``label_selector_matches`` also evaluates a structured ``LabelSelector`` (``matchLabels`` +
``matchExpressions``), which PDBs, Services and CiliumNodeConfigs carry.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from migrator.sim.errors import BadRequest

Obj = dict[str, Any]
Requirement = tuple[str, str, tuple[str, ...]]  # key, op (= != in notin exists !exists), values

_SET = re.compile(r"^\s*(!?)\s*([A-Za-z0-9./_-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")


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
                reqs.append((key, "!=" if op == "!=" else "=", (value,)))
                break
        else:
            m = _SET.match(part)
            if not m:
                raise BadRequest(f"unable to parse requirement: found {part!r}, expected a label selector")
            neg, key, op, values = m.groups()
            if op:
                if neg:
                    raise BadRequest(f"unable to parse requirement: {part!r}")
                reqs.append((key, op, tuple(v.strip() for v in values.split(",") if v.strip())))
            else:
                reqs.append((key, "!exists" if neg else "exists", ()))
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


def label_selector_matches(selector: dict[str, Any] | None, labels: dict[str, str] | None) -> bool:
    """Evaluate a structured LabelSelector. ``None`` selects nothing; ``{}`` selects everything."""
    if selector is None:
        return False
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if op == "In" and (not present or labels[key] not in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True
