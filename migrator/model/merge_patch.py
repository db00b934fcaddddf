"""JSON merge patch (RFC 7386) arithmetic the hand-over needs: does an object already hold a patch,
and which patch takes a patched object back to what it was."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


def holds(current: Any, patch: Any) -> bool:
    """Applying the merge patch ``patch`` to ``current`` would change nothing (a missing key
    that the patch only deletes under is held)."""
    if not isinstance(patch, Mapping):
        return bool(current == patch)
    if not isinstance(current, Mapping):
        return False
    for key, value in patch.items():
        if value is None:
            if key in current:
                return False
        elif isinstance(value, Mapping):
            if not holds(current[key] if key in current else {}, value):
                return False
        elif key not in current or current[key] != value:
            return False
    return True


def inverse(current: Mapping[str, Any] | None, patch: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that takes ``current`` patched with ``patch`` back to ``current``: for every
    key the patch touches, the value it had (``None``, which deletes, where it had none)."""
    out: dict[str, Any] = {}
    for key, value in patch.items():
        old = current.get(key) if isinstance(current, Mapping) else None
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            out[key] = inverse(old, value)
        else:
            out[key] = copy.deepcopy(old)
    return out


def merged(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """One merge patch doing what ``first`` then ``second`` do."""
    out = copy.deepcopy(dict(first))
    for key, value in second.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
