"""Server-side apply and field ownership (``metadata.managedFields``), as the Kubernetes
documentation describes them (https://kubernetes.io/docs/reference/using-api/server-side-apply/).

Every field of an object is owned by the managers that set it. A write that is not an apply
(create, update, patch) is an ``Update`` by its ``fieldManager`` (by default the client's
User-Agent up to the first ``/``): it takes the fields it changes from everyone else, without
conflict. An apply (PATCH ``application/apply-patch+yaml``) declares the whole set of fields its
manager wants: a field another manager owns with a different value is a conflict, answered 409
(``Apply failed with 1 conflict: conflict with "kubectl" using apps/v1: .spec.replicas``)
unless ``force=true``, which takes the field over. Fields the manager applied before and no
longer applies are removed from the object unless someone else owns them too.

Fields are paths as structured-merge-diff names them: ``f:<field>``; ``k:{"name":"c"}`` for an
item of an associative list (``x-kubernetes-list-type: map``, or a strategic-merge key),
``v:<value>`` for an item of a set; other lists and ``x-kubernetes-map-type: atomic`` maps are
owned whole. ``managedFields`` keeps them as FieldsV1 tries. The status subresource's writes
are not tracked.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from migrator.sim.errors import ApiError, Conflict
from migrator.sim.fields import root_schema
from migrator.sim.patch import resolve
from migrator.sim.registry import ApiResource
from migrator.sim.store import now_rfc3339

Obj = dict[str, Any]
Schema = dict[str, Any]
Element = tuple[str, str]          # ("f", name) | ("k", '{"name":"c"}') | ("v", '"x"')
Path = tuple[Element, ...]
_MISSING = object()
# Never owned: identity and bookkeeping the server sets (fieldmanager's stripMeta), and status
# on the main resource.
_STRIPPED_META = ("name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
                  "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink")


class TypedPatchError(ApiError):
    """An applied configuration the schema cannot hold: kube-apiserver answers with the field
    manager's error as is (a 500 without a reason)."""

    code = 500
    reason = ""

    def status(self) -> dict[str, Any]:
        body = super().status()
        body.pop("reason")
        return body


# ------------------------------------------------------------------ field sets
def _list_kind(schema: Schema) -> tuple[str, list[str]]:
    kind = schema.get("x-kubernetes-list-type")
    if kind == "map":
        return "map", list(schema.get("x-kubernetes-list-map-keys") or [])
    if kind in ("set", "atomic"):
        return kind, []
    if "merge" in str(schema.get("x-kubernetes-patch-strategy", "")):
        key = schema.get("x-kubernetes-patch-merge-key")
        return ("map", [key]) if key else ("set", [])
    return "atomic", []


# Defaults of associative-list keys, which kube-openapi publishes in the schemas and
# structured-merge-diff fills in before matching items (the definitions kubernetes-validate
# ships have dropped them): a port applied without ``protocol`` is the live ``TCP`` one.
_KEY_DEFAULTS = {"protocol": "TCP"}


def _key(item: Any, keys: list[str]) -> str:
    fields = {k: item.get(k, _KEY_DEFAULTS.get(k)) for k in keys
              if isinstance(item, dict) and (k in item or k in _KEY_DEFAULTS)}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def _value(item: Any) -> str:
    return json.dumps(item, sort_keys=True, separators=(",", ":"))


def _walk(value: Any, schema: Schema | None, path: Path, out: dict[Path, Any], unknown: list[Path] | None) -> None:
    schema = resolve(schema) if schema else {}
    if schema.get("x-kubernetes-map-type") == "atomic" or schema.get("x-kubernetes-preserve-unknown-fields") \
            and not isinstance(value, dict):
        out[path] = value
        return
    if isinstance(value, dict):
        if not value:
            out[path] = value
            return
        props, addl = schema.get("properties"), schema.get("additionalProperties")
        for k, v in value.items():
            if props is not None and k in props:
                sub = props[k]
            elif isinstance(addl, dict):
                sub = addl
            elif props is not None and addl is not True and not schema.get("x-kubernetes-preserve-unknown-fields"):
                if unknown is not None:
                    unknown.append(path + (("f", k),))
                continue
            else:
                sub = {}
            _walk(v, sub, path + (("f", k),), out, unknown)
        return
    if isinstance(value, list) and value:
        kind, keys = _list_kind(schema)
        if kind == "map":
            for item in value:
                here = path + (("k", _key(item, keys)),)
                out[here] = item
                if isinstance(item, dict):
                    _walk(item, schema.get("items"), here, out, unknown)
            return
        if kind == "set":
            out.update((path + (("v", _value(item)),), item) for item in value)
            return
    out[path] = value


def _owned_view(obj: Obj) -> Obj:
    """The part of an object that fields are owned in."""
    view = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status")}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _STRIPPED_META}
    view.pop("metadata", None)
    if meta:
        view["metadata"] = meta
    return view


def field_values(res: ApiResource, obj: Obj, unknown: list[Path] | None = None) -> dict[Path, Any]:
    """Every owned field of ``obj`` (leaves, associative-list items and set members) -> its value."""
    out: dict[Path, Any] = {}
    _walk(_owned_view(obj), root_schema(res), (), out, unknown)
    out.pop((), None)
    return out


def field_set(res: ApiResource, obj: Obj, unknown: list[Path] | None = None) -> set[Path]:
    """Every owned field of ``obj``."""
    return set(field_values(res, obj, unknown))


def path_string(path: Path) -> str:
    """A path as structured-merge-diff prints it: ``.spec.containers[name="c"].image``."""
    parts = []
    for kind, x in path:
        if kind == "f":
            parts.append(f".{x}")
        elif kind == "k":
            parts.append("[" + ",".join(f"{k}={json.dumps(v)}" for k, v in json.loads(x).items()) + "]")
        else:
            parts.append(f"[={x}]")
    return "".join(parts)


# ------------------------------------------------------------------ FieldsV1
def encode(paths: set[Path]) -> Obj:
    root: Obj = {}
    for path in sorted(paths):
        node = root
        for kind, x in path:
            node = node.setdefault(f"{kind}:{x}", {})
    for path in paths:
        node = root
        for kind, x in path:
            node = node[f"{kind}:{x}"]
        if node and "." not in node:
            node["."] = {}
    return root


def decode(tree: Any, prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for key, sub in (tree or {}).items():
        if key == ".":
            out.add(prefix)
            continue
        kind, _, x = key.partition(":")
        if kind in ("k", "v"):
            x = json.dumps(json.loads(x), sort_keys=True, separators=(",", ":"))
        here = prefix + ((kind, x),)
        if sub:
            out |= decode(sub, here)
        else:
            out.add(here)
    return out


def _managers(obj: Obj | None) -> list[tuple[Obj, set[Path]]]:
    entries = ((obj or {}).get("metadata") or {}).get("managedFields") or []
    return [(e, decode(e.get("fieldsV1"))) for e in entries if isinstance(e, dict)]


def _entries(owned: list[tuple[Obj, set[Path]]]) -> list[Obj]:
    out = []
    for entry, paths in owned:
        if paths:
            out.append(dict(entry, fieldsV1=encode(paths), fieldsType="FieldsV1"))
    return out


# ------------------------------------------------------------------ values
def value_at(obj: Any, path: Path) -> Any:
    cur = _owned_view(obj) if isinstance(obj, dict) else obj
    for kind, x in path:
        if kind == "f":
            if not isinstance(cur, dict) or x not in cur:
                return _MISSING
            cur = cur[x]
        elif isinstance(cur, list):
            keys = list(json.loads(x)) if kind == "k" else []
            match = [i for i in cur if (_key(i, keys) if kind == "k" else _value(i)) == x]
            if not match:
                return _MISSING
            cur = match[0]
        else:
            return _MISSING
    return cur


def _remove(obj: Any, path: Path) -> None:
    cur = obj
    for n, (kind, x) in enumerate(path):
        last = n == len(path) - 1
        if kind == "f":
            if not isinstance(cur, dict) or x not in cur:
                return
            if last:
                del cur[x]
                return
            cur = cur[x]
        elif isinstance(cur, list):
            keys = list(json.loads(x)) if kind == "k" else []
            idx = next((i for i, item in enumerate(cur)
                        if (_key(item, keys) if kind == "k" else _value(item)) == x), None)
            if idx is None:
                return
            if last:
                cur.pop(idx)
                return
            cur = cur[idx]
        else:
            return


def merge(live: Any, applied: Any, schema: Schema | None) -> Any:
    """``applied`` merged into ``live`` field by field (associative lists by key, sets by value)."""
    schema = resolve(schema) if schema else {}
    if schema.get("x-kubernetes-map-type") == "atomic":
        return copy.deepcopy(applied)
    if isinstance(live, dict) and isinstance(applied, dict):
        out = copy.deepcopy(live)
        props, addl = schema.get("properties") or {}, schema.get("additionalProperties")
        for k, v in applied.items():
            sub = props.get(k) or (addl if isinstance(addl, dict) else {})
            out[k] = merge(live.get(k), v, sub)
        return out
    if isinstance(live, list) and isinstance(applied, list):
        kind, keys = _list_kind(schema)
        if kind == "map":
            result = copy.deepcopy(live)
            for item in applied:
                idx = next((i for i, old in enumerate(result) if _key(old, keys) == _key(item, keys)), None)
                if idx is None:
                    result.append(copy.deepcopy(item))
                else:
                    result[idx] = merge(result[idx], item, schema.get("items"))
            return result
        if kind == "set":
            return copy.deepcopy(live) + [copy.deepcopy(i) for i in applied if i not in live]
    return copy.deepcopy(applied)


# ------------------------------------------------------------------ operations
def _conflict_message(conflicts: list[tuple[str, Path]]) -> str:
    if len(conflicts) == 1:
        who, path = conflicts[0]
        return f"Apply failed with 1 conflict: conflict with {who}: {path_string(path)}"
    lines = []
    for who in sorted({w for w, _ in conflicts}):
        lines.append(f"conflicts with {who}:")
        lines.extend(f"- {path_string(p)}" for w, p in conflicts if w == who)
    return f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)


def _who(entry: Obj) -> str:
    name = json.dumps(entry.get("manager", ""))
    return f"{name} using {entry.get('apiVersion', '')}" if entry.get("operation") == "Update" else name


def check_applied(res: ApiResource, applied: Obj, namespace: str | None, name: str) -> set[Path]:
    """The fields an applied configuration sets; a field the schema does not declare is the
    field manager's error."""
    unknown: list[Path] = []
    paths = field_set(res, applied, unknown)
    if unknown:
        gvk = f"{res.group}/{res.version}, Kind={res.kind}" if res.group else f"/{res.version}, Kind={res.kind}"
        raise TypedPatchError(f"failed to create typed patch object ({namespace or ''}/{name}; {gvk}): "
                              f"{path_string(unknown[0])}: field not declared in schema")
    return paths


def apply(res: ApiResource, live: Obj | None, applied: Obj, manager: str, force: bool, *,
          namespace: str | None, name: str) -> Obj:
    """The object after ``manager`` applies ``applied`` to ``live`` (None: it is created)."""
    paths = check_applied(res, applied, namespace, name)
    mine = {"manager": manager, "operation": "Apply", "apiVersion": res.group_version, "time": now_rfc3339()}
    if live is None:
        result = copy.deepcopy(applied)
        result.setdefault("metadata", {})["managedFields"] = _entries([(mine, paths)])
        return result
    owned = _managers(live)
    previous: set[Path] = set()
    others: list[tuple[Obj, set[Path]]] = []
    for entry, fields in owned:
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            previous = fields
        else:
            others.append((entry, fields))
    conflicts = []
    for entry, fields in others:
        for path in sorted(paths & fields):
            if path[-1][0] == "k":
                continue
            if value_at(live, path) != value_at(applied, path):
                conflicts.append((entry, path))
    if conflicts and not force:
        found = [(_who(e), p) for e, p in conflicts]
        raise Conflict(_conflict_message(found), details={"causes": [
            {"type": "FieldManagerConflict", "message": f"conflict with {w}", "field": path_string(p)}
            for w, p in found]})
    taken = {p for _, p in conflicts}
    others = [(e, f - taken) for e, f in others]
    result = merge(live, applied, root_schema(res))
    still_owned = set().union(*(f for _, f in others)) if others else set()
    for path in sorted(previous - paths - still_owned, key=len, reverse=True):
        _remove(result, path)
    result.setdefault("metadata", {})["managedFields"] = _entries([*others, (mine, paths)])
    return result


def _requested(new: Obj) -> list[tuple[Obj, set[Path]]] | None:
    """The managedFields a write sets itself (a client may edit them: kubectl does when it moves
    an object from client-side to server-side apply); None when it sets none that decode, and
    then the live object's are kept. ``[{}]`` clears them, as documented."""
    entries = (new.get("metadata") or {}).get("managedFields")
    if not entries or not isinstance(entries, list):
        return None
    if entries == [{}]:
        return []
    try:
        return [(e, decode(e.get("fieldsV1"))) for e in entries if isinstance(e, dict)]
    except (ValueError, AttributeError, TypeError):
        return None


def record_update(res: ApiResource, old: Obj | None, new: Obj, manager: str) -> None:
    """Set ``new``'s managedFields after a non-apply write by ``manager``: it owns what it changed."""
    meta = new.setdefault("metadata", {})
    requested = _requested(new)
    base = requested if requested is not None else _managers(old)
    if old is not None and _owned_view(old) == _owned_view(new):
        meta["managedFields"] = _entries(base)
        if not meta["managedFields"]:
            meta.pop("managedFields")
        return
    now = field_values(res, new)
    before = field_values(res, old) if old is not None else {}
    changed = {p for p, v in now.items() if before.get(p, _MISSING) != v}
    gone = set(before) - set(now)
    owned = []
    mine: tuple[Obj, set[Path]] | None = None
    for entry, fields in base:
        if entry.get("manager") == manager and entry.get("operation") == "Update" \
                and entry.get("apiVersion") == res.group_version and not entry.get("subresource"):
            mine = (entry, fields)
            continue
        owned.append((entry, fields - changed - gone))
    entry = {"manager": manager, "operation": "Update", "apiVersion": res.group_version, "time": now_rfc3339()}
    fields = ((mine[1] - gone) if mine else set()) | changed
    owned.append((entry, fields))
    meta["managedFields"] = _entries(owned)
    if not meta["managedFields"]:
        meta.pop("managedFields")
