"""Field validation of write requests: the ``fieldValidation`` query parameter (``Strict``,
``Warn``, the default, or ``Ignore``) as kube-apiserver honours it on create, update and patch.

kube-apiserver decodes a request body into its Go type: a field the type does not declare is
dropped, and a field that appears twice keeps its last value. With ``Warn`` each such field
becomes a ``Warning`` header (``unknown field "spec.foo"``, ``duplicate field "metadata.name"``);
with ``Strict`` the request fails with 400 and all of them, in one message:
``strict decoding error: unknown field "spec.foo", ...``, prefixed on create and update by
``Deployment in version "v1" cannot be handled as a Deployment:`` (apiserver's
transformDecodeError). On a patch, duplicate fields of the patch body come first, then the
unknown fields of the patched object in sorted order (the unstructured converter's). Paths
read ``spec.template.spec.containers[0].foo`` (sigs.k8s.io/json).

Schemas are the ones the server validates with (``kubernetes-validate`` for built-in kinds,
``openAPIV3Schema`` for custom resources); ``x-kubernetes-preserve-unknown-fields`` keeps
everything below it.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from migrator.sim.errors import BadRequest
from migrator.sim.patch import definition_for, resolve
from migrator.sim.registry import ApiResource

Obj = dict[str, Any]
Schema = dict[str, Any]
DIRECTIVES = ("Ignore", "Warn", "Strict")
_OBJECT_META = {"$ref": "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}


class _Duplicates(dict[str, Any]):
    """A decoded JSON object that held some keys more than once (the last value kept)."""

    __slots__ = ("duplicates",)
    duplicates: list[str]


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) == len(pairs):
        return out
    seen: set[str] = set()
    dups = []
    for key, _ in pairs:
        if key in seen and key not in dups:
            dups.append(key)
        seen.add(key)
    marked = _Duplicates(out)
    marked.duplicates = dups
    return marked


def loads(body: bytes) -> Any:
    """JSON as kube-apiserver reads it, remembering which objects held a key twice."""
    return json.loads(body, object_pairs_hook=_pairs)


class _ApplyLoader(yaml.SafeLoader):
    """YAML that notes each key set twice in a map, in the words of the Go YAML decoder."""

    duplicates: list[str]


def _yaml_map(loader: _ApplyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        try:
            key = loader.construct_object(key_node, deep=True)
            if key in seen:
                loader.duplicates.append(f"line {key_node.start_mark.line + 1}: key {json.dumps(str(key))} "
                                         "already set in map")
            seen.add(key)
        except TypeError:   # an unhashable key: the constructor below reports it
            pass
    return loader.construct_mapping(node, deep=True)


_ApplyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _yaml_map)


def load_applied(body: bytes) -> tuple[Any, list[str]]:
    """An apply body (YAML or JSON) and the keys it sets twice."""
    loader = _ApplyLoader(body)
    loader.duplicates = []
    try:
        return loader.get_single_data(), loader.duplicates
    finally:
        loader.dispose()


def check_applied_yaml(duplicates: list[str], query: dict[str, str], warnings: list[str] | None) -> None:
    """An apply whose YAML sets a key twice: refused with Strict, warned about with Warn
    (kube-apiserver's applyPatcher strict-decodes the YAML once the apply has succeeded)."""
    mode = directive(query)
    if not duplicates or mode == "Ignore":
        return
    if mode == "Strict":
        raise BadRequest("error strict decoding YAML: error converting YAML to JSON: yaml: unmarshal errors:\n"
                         + "\n".join(f"  {d}" for d in duplicates))
    if warnings is not None:
        warnings.extend(duplicates)


def directive(query: dict[str, str]) -> str:
    """The request's field validation directive (``Warn`` when absent)."""
    value = query.get("fieldValidation", "")
    if value == "":
        return "Warn"
    if value not in DIRECTIVES:
        raise BadRequest(f'fieldValidation: Unsupported value: "{value}": supported values: '
                         '"Ignore", "Strict", "Warn"')
    return value


def root_schema(res: ApiResource) -> Schema | None:
    """The schema an object of ``res`` is decoded with (None: accept anything)."""
    if res.is_custom:
        schema = dict(res.crd_schema or {})
        props = dict(schema.get("properties") or {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props["metadata"] = _OBJECT_META
        schema["properties"] = props
        return schema
    name = definition_for(res.group, res.version, res.kind)
    return {"$ref": f"#/$defs/{name}"} if name else None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def problems(value: Any, schema: Schema | None, path: str = "", *, drop: bool = True,
             duplicates: bool = True) -> list[str]:
    """Unknown and duplicate fields of ``value`` in document order; unknown ones are removed
    from ``value`` when ``drop``."""
    out: list[str] = []
    schema = resolve(schema) if schema else None
    if not schema or schema.get("x-kubernetes-preserve-unknown-fields"):
        return out
    if isinstance(value, dict):
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        dups = getattr(value, "duplicates", ()) if duplicates else ()
        unknown = []
        for key in list(value):
            here = _join(path, key)
            if props is not None and key in props:
                out.extend(problems(value[key], props[key], here, drop=drop, duplicates=duplicates))
            elif isinstance(addl, dict):
                out.extend(problems(value[key], addl, here, drop=drop, duplicates=duplicates))
            elif props is not None and addl is not True:
                out.append(f'unknown field "{here}"')
                unknown.append(key)
                continue
            if key in dups:
                out.append(f'duplicate field "{here}"')
        if drop:
            for key in unknown:
                del value[key]
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            out.extend(problems(item, schema["items"], f"{path}[{i}]", drop=drop, duplicates=duplicates))
    return out


def plain(value: Any) -> Any:
    """``value`` with every JSON object a plain dict again."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def check_body(res: ApiResource, obj: Any, query: dict[str, str], warnings: list[str] | None) -> Any:
    """Create and update: the object with unknown fields dropped; they are warned about, or
    refuse the request."""
    mode = directive(query)
    if not isinstance(obj, dict):
        return obj
    found = problems(obj, root_schema(res))
    if any(p.startswith("duplicate") for p in found):
        obj = plain(obj)
    if not found or mode == "Ignore":
        return obj
    if mode == "Strict":
        version = str(obj.get("apiVersion") or res.group_version).rsplit("/", 1)[-1]
        kind = obj.get("kind") or res.kind
        raise BadRequest(f'{kind} in version "{version}" cannot be handled as a {res.kind}: '
                         f"strict decoding error: {', '.join(found)}")
    if warnings is not None:
        warnings.extend(found)
    return obj


def patch_duplicates(patch: Any, path: str = "") -> list[str]:
    """The duplicate fields of a merge or strategic merge patch body, in document order."""
    out: list[str] = []
    if isinstance(patch, dict):
        dups = getattr(patch, "duplicates", ())
        for key, value in patch.items():
            out.extend(patch_duplicates(value, _join(path, key)))
            if key in dups:
                out.append(f'duplicate field "{_join(path, key)}"')
    elif isinstance(patch, list):
        for i, item in enumerate(patch):
            out.extend(patch_duplicates(item, f"{path}[{i}]"))
    return out


def check_patched(res: ApiResource, current: Obj, patched: Obj, body_duplicates: list[str],
                  query: dict[str, str], warnings: list[str] | None) -> None:
    """A patch: the fields the patch made unknown (those already in the object are not its
    doing) are dropped; warned about or refused with the patch body's duplicates."""
    mode = directive(query)
    schema = root_schema(res)
    found = problems(patched, schema, drop=False, duplicates=False)
    if found:   # rare: only then is the object before the patch walked too
        before = set(problems(current, schema, drop=False, duplicates=False))
        found = [p for p in problems(patched, schema, duplicates=False) if p not in before]
    found = body_duplicates + sorted(found)
    if not found or mode == "Ignore":
        return
    if mode == "Strict":
        raise BadRequest(f"strict decoding error: {', '.join(found)}")
    if warnings is not None:
        warnings.extend(found)
