"""The three PATCH flavours of the Kubernetes API, applied to a stored object.

* JSON patch (RFC 6902, ``application/json-patch+json``) through ``jsonpatch``; a failed
  ``test`` or a bad path is a 422, as on a real server.
* JSON merge patch (RFC 7386, ``application/merge-patch+json``): maps merge, ``null`` deletes,
  lists are replaced.
* Strategic merge patch (``application/strategic-merge-patch+json``) for built-in kinds,
  driven by the ``x-kubernetes-patch-merge-key`` / ``x-kubernetes-patch-strategy`` markers in
  the OpenAPI definitions shipped by ``kubernetes-validate`` (containers merge by ``name``,
  finalizers are merged sets, tolerations and taints are atomic...). Directives:
  ``$patch: replace|delete|merge``, ``$deleteFromPrimitiveList/<field>``, ``$retainKeys``;
  ``$setElementOrder/<field>`` is accepted and ignored (order is not semantic here).
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import jsonpatch
import jsonpointer
import kubernetes_validate

from migrator.sim.errors import BadRequest, Invalid

Obj = dict[str, Any]
SCHEMA_VERSION = "v1.32.0"


@functools.cache
def definitions() -> dict[str, Any]:
    """The OpenAPI definitions (``$defs``) of the Kubernetes version the sim reports."""
    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"{SCHEMA_VERSION}-local"
    return json.loads((base / "_definitions.json").read_text(encoding="utf-8"))["$defs"]


@functools.cache
def definition_for(group: str, version: str, kind: str) -> str | None:
    for name, d in definitions().items():
        for gvk in d.get("x-kubernetes-group-version-kind", []):
            if gvk.get("group", "") == group and gvk.get("version") == version and gvk.get("kind") == kind:
                return name
    return None


def resolve(schema: dict[str, Any] | None) -> dict[str, Any]:
    seen = 0
    while schema and "$ref" in schema and seen < 20:
        schema = definitions().get(schema["$ref"].rsplit("/", 1)[-1], {})
        seen += 1
    if schema and "allOf" in schema and len(schema["allOf"]) == 1:
        return resolve(schema["allOf"][0])
    return schema or {}


def json_patch(target: Obj, ops: Any, kind: str, name: str) -> Obj:
    if not isinstance(ops, list):
        raise BadRequest("json patch body must be a list of operations")
    try:
        return jsonpatch.apply_patch(target, ops, in_place=False)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise Invalid.of(kind, name, [{"field": "", "reason": "FieldValueInvalid",
                                       "message": f"the server rejected our request due to an error in our request: {exc}"}]) from exc
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, KeyError) as exc:
        raise Invalid.of(kind, name, [{"field": "", "reason": "FieldValueInvalid", "message": str(exc)}]) from exc


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Obj, patch: Any, group: str, version: str, kind: str) -> Obj:
    if not isinstance(patch, dict):
        raise BadRequest("strategic merge patch body must be a JSON object")
    name = definition_for(group, version, kind)
    schema = {"$ref": f"#/$defs/{name}"} if name else {}
    result = _smp(target, patch, schema)
    return result if isinstance(result, dict) else {}


def _smp(target: Any, patch: Any, schema: dict[str, Any]) -> Any:
    schema = resolve(schema)
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    props = schema.get("properties") or {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [x for x in result.get(field) or [] if x not in (value or [])]
            continue
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
            continue
        prop = props.get(key) or {}
        sub = resolve(prop) if props else resolve(schema.get("additionalProperties") or {})
        if isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, prop)
        elif isinstance(value, dict):
            merged = _smp(result.get(key), value, sub)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = value
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(current: Any, patch: list[Any], prop: dict[str, Any]) -> list[Any]:
    strategy = prop.get("x-kubernetes-patch-strategy", "")
    key = prop.get("x-kubernetes-patch-merge-key")
    current = list(current) if isinstance(current, list) else []
    if "merge" not in strategy:
        return [copy.deepcopy(x) for x in patch if not (isinstance(x, dict) and x.get("$patch"))]
    if not key:  # a merged set of primitives (finalizers, podCIDRs)
        out = list(current)
        for item in patch:
            if item not in out:
                out.append(copy.deepcopy(item))
        return out
    item_schema = resolve(prop.get("items") or {})
    out = [copy.deepcopy(x) for x in current]
    for item in patch:
        if not isinstance(item, dict):
            continue
        if item.get("$patch") == "replace":
            return [copy.deepcopy({k: v for k, v in x.items() if k != "$patch"}) for x in patch if isinstance(x, dict)]
        idx = next((i for i, c in enumerate(out) if isinstance(c, dict) and c.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
        elif idx is None:
            out.append(_smp({}, {k: v for k, v in item.items() if k != "$patch"}, item_schema))
        else:
            out[idx] = _smp(out[idx], item, item_schema)
    return out
