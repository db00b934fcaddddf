"""The REST verbs on resources: get, list, create, update, patch, delete, deletecollection.

Given a resolved request (which resource, namespace, name, subresource) these functions do
what the generic registry of a real API server does, on top of the ``Store``: namespace
existence, defaulting and validation, version conversion for custom resources, the three
patch types plus server-side apply, DeleteOptions, ClusterIP allocation for Services and the
Pod update rules. They return plain objects; the HTTP layer serialises them.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from dataclasses import dataclass
from typing import Any

import yaml

from migrator.sim import apply, fields
from migrator.sim.admission import check_pod_update, validate
from migrator.sim.errors import (
    BadRequest,
    Conflict,
    Invalid,
    MethodNotAllowed,
    NotFound,
    UnsupportedMediaType,
)
from migrator.sim.patch import json_patch, merge_patch, strategic_merge_patch
from migrator.sim.registry import ApiResource
from migrator.sim.selectors import build_predicate, node_name_from_fields
from migrator.sim.store import Store, drop_empty_metadata

Obj = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """A resolved resource request."""

    res: ApiResource
    namespace: str | None
    name: str | None
    subresource: str | None = None


def present(res: ApiResource, obj: Obj) -> Obj:
    """An object as served at ``res``'s version (kind and apiVersion set)."""
    out = dict(obj)
    out["apiVersion"] = res.group_version
    out["kind"] = res.kind
    return out


def _require_namespace(store: Store, t: Target) -> None:
    if t.res.namespaced and t.namespace and store.try_get("namespaces", None, t.namespace) is None:
        raise NotFound.of("namespaces", t.namespace)


def get(store: Store, t: Target) -> Obj:
    return present(t.res, store.get(t.res.key, t.namespace, t.name or ""))


def list_objects(store: Store, t: Target, query: dict[str, str]) -> tuple[list[Obj], str, str]:
    """(items, list resourceVersion, continue token)."""
    predicate = build_predicate(query.get("labelSelector"), query.get("fieldSelector"))
    node = node_name_from_fields(query.get("fieldSelector")) if t.res.key == "pods" else None
    with store.lock:
        rv = str(store.resource_version)
        items = store.list(t.res.key, t.namespace, predicate=predicate,
                           index=("nodeName", node) if node else None)
    start = 0
    token = query.get("continue")
    if token:
        try:
            state = json.loads(base64.urlsafe_b64decode(token.encode()).decode())
            last = tuple(state["last"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BadRequest(f"invalid continue token: {exc}") from exc
        start = next((i for i, o in enumerate(items)
                      if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > last), len(items))
    limit = int(query.get("limit") or 0)
    cont = ""
    if limit > 0 and len(items) - start > limit:
        page = items[start:start + limit]
        last_meta = page[-1]["metadata"]
        cont = base64.urlsafe_b64encode(json.dumps(
            {"last": [last_meta.get("namespace", ""), last_meta["name"]], "rv": rv}).encode()).decode()
    else:
        page = items[start:]
    if t.res.is_custom:
        page = [present(t.res, o) for o in page]
    return page, rv, cont


def _allocate_cluster_ip(store: Store, obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    if spec.get("type") == "ExternalName" or spec.get("clusterIP") == "None":
        return
    cidr = ipaddress.ip_network(store.service_cidr)
    used = {s.get("spec", {}).get("clusterIP") for s in store.list("services")}
    wanted = spec.get("clusterIP")
    if wanted:
        if ipaddress.ip_address(wanted) not in cidr:
            raise Invalid.of("Service", obj["metadata"].get("name", ""), [{
                "field": "spec.clusterIP", "reason": "FieldValueInvalid",
                "message": f"Invalid value: {wanted!r}: provided IP is not in the valid range ({cidr})"}])
        if wanted in used:
            raise Invalid.of("Service", obj["metadata"].get("name", ""), [{
                "field": "spec.clusterIP", "reason": "FieldValueInvalid",
                "message": f"Invalid value: {wanted!r}: provided IP is already allocated"}])
        spec["clusterIPs"] = [wanted]
        return
    reserved = {str(cidr.network_address + 1), str(cidr.network_address + 10)}
    for i, host in enumerate(cidr.hosts()):
        ip = str(host)
        if i > 100_000:
            break
        if ip not in used and ip not in reserved:
            spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
            return
    raise Invalid.of("Service", obj["metadata"].get("name", ""), [{
        "field": "spec.clusterIP", "reason": "FieldValueInvalid", "message": "range is full"}])


def _prepare(t: Target, obj: Any) -> Obj:
    if not isinstance(obj, dict):
        raise BadRequest("the request body must be a JSON object")
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise BadRequest("metadata must be an object")
    if t.res.namespaced:
        if meta.get("namespace") and t.namespace and meta["namespace"] != t.namespace:
            raise BadRequest("the namespace of the provided object does not match the namespace sent on the request")
        meta["namespace"] = t.namespace or meta.get("namespace") or "default"
    else:
        meta.pop("namespace", None)
    obj["apiVersion"] = f"{t.res.group}/{t.res.storage_version}" if t.res.group else t.res.storage_version
    obj["kind"] = t.res.kind
    return obj


def create(store: Store, t: Target, body: Any, query: dict[str, str], warnings: list[str] | None = None, *,
           applied: bool = False) -> Obj:
    if t.name and t.subresource is None:
        raise MethodNotAllowed(f"POST to a named {t.res.kind} is not allowed; POST to the collection")
    obj = _prepare(t, body if applied else fields.check_body(t.res, body, query, warnings))
    _require_namespace(store, t)
    ns = store.try_get("namespaces", None, t.namespace) if t.res.namespaced and t.namespace else None
    if ns is not None and ns["metadata"].get("deletionTimestamp"):
        raise _forbidden_terminating(t, obj)
    obj = validate(t.res, obj)
    if query.get("fieldManager") and not applied:
        apply.record_update(t.res, None, obj, query["fieldManager"])
    if t.res.kind == "Service":
        with store.lock:
            _allocate_cluster_ip(store, obj)
            return _create_or_dry_run(store, t, obj, query)
    return _create_or_dry_run(store, t, obj, query)


def _forbidden_terminating(t: Target, obj: Obj) -> Exception:
    from migrator.sim.errors import Forbidden
    return Forbidden(f'{t.res.plural} "{obj["metadata"].get("name", "")}" is forbidden: unable to create new '
                     f"content in namespace {t.namespace} because it is being terminated")


def _dry_run(t: Target, obj: Obj) -> Obj:
    """What a dry-run write answers: the object as it would be stored, not stored."""
    meta = dict(obj.get("metadata") or {})
    drop_empty_metadata(meta)
    return present(t.res, dict(obj, metadata=meta))


def _create_or_dry_run(store: Store, t: Target, obj: Obj, query: dict[str, str]) -> Obj:
    if query.get("dryRun") == "All":
        return _dry_run(t, obj)
    return present(t.res, store.create(t.res.key, obj))


def update(store: Store, t: Target, body: Any, query: dict[str, str], warnings: list[str] | None = None) -> Obj:
    obj = _prepare(t, fields.check_body(t.res, body, query, warnings))
    if obj["metadata"].get("name") and obj["metadata"]["name"] != t.name:
        raise BadRequest("the name of the object does not match the name on the URL")
    obj["metadata"]["name"] = t.name
    with store.lock:
        current = store.get(t.res.key, t.namespace, t.name or "")
        return _write(store, t, current, obj, query, check_version=True)


def _write(store: Store, t: Target, current: Obj, obj: Obj, query: dict[str, str], *, check_version: bool,
           applied: bool = False) -> Obj:
    sub = t.subresource if t.subresource == "status" else None
    candidate = dict(obj)
    if sub == "status":
        merged = dict(current)
        merged["status"] = obj.get("status")
        candidate = merged
    candidate = validate(t.res, candidate)
    if t.res.kind == "Pod" and sub is None:
        check_pod_update(current, candidate)
    if sub == "status":
        obj = dict(obj, status=candidate.get("status"))
        obj["metadata"] = dict(obj.get("metadata") or {}, name=t.name)
    else:
        obj = candidate
        if query.get("fieldManager") and not applied:
            apply.record_update(t.res, current, obj, query["fieldManager"])
    if query.get("dryRun") == "All":
        return _dry_run(t, obj)
    return present(t.res, store.update(t.res.key, obj, subresource=sub, check_version=check_version))


def unrecognized_body(kind: str, body: bytes) -> str:
    """kube-apiserver's answer to a create or update whose body holds no object (empty or blank):
    its JSON decoder cannot find the kind, and transformDecodeError (apiserver
    pkg/endpoints/handlers/rest.go) words it, summarising the body as summarizeData does."""
    summary = "<empty>" if not body else body[:30].hex() + (" ..." if len(body) > 30 else "")
    return (f"the object provided is unrecognized (must be of type {kind}): couldn't get version/kind; "
            f"json parse error: unexpected end of JSON input ({summary})")


# kube-apiserver's patch handler (apiserver pkg/endpoints/handlers/patch.go) with field validation
# Warn, the default, or Strict: JSON and merge patches are strict-decoded first, a strategic merge
# patch is decoded as it is applied. Each answers a patch with no JSON in it so.
_EMPTY_PATCH = {
    "application/json-patch+json": "error decoding patch: unexpected end of JSON input",
    "application/merge-patch+json": "error decoding patch: unexpected end of JSON input",
    "application/strategic-merge-patch+json": "unexpected end of JSON input",
}


def decode_patch(body: bytes, content_type: str, yaml_duplicates: list[str] | None = None) -> Any:
    """A PATCH body decoded for its content type (YAML for server-side apply, JSON otherwise);
    the keys an apply sets twice are added to ``yaml_duplicates``."""
    ctype = content_type.split(";")[0].strip()
    if not body.strip() and ctype in _EMPTY_PATCH:
        raise BadRequest(_EMPTY_PATCH[ctype])
    try:
        if ctype == "application/apply-patch+yaml":
            data, duplicates = fields.load_applied(body)
            if yaml_duplicates is not None:
                yaml_duplicates.extend(duplicates)
            return data
        return fields.loads(body or b"null")
    except (ValueError, yaml.YAMLError) as exc:
        raise BadRequest(f"error decoding patch: {exc}") from exc


def patch(store: Store, t: Target, body: bytes, content_type: str, query: dict[str, str],
          warnings: list[str] | None = None) -> tuple[Obj, bool]:
    """(the patched object, whether an apply created it: kube-apiserver then answers 201)."""
    ctype = content_type.split(";")[0].strip()
    yaml_duplicates: list[str] = []
    data = decode_patch(body, ctype, yaml_duplicates)
    fields.directive(query)
    duplicates = fields.patch_duplicates(data) if ctype != "application/json-patch+json" else []
    with store.lock:
        current = store.try_get(t.res.key, t.namespace, t.name or "")
        if ctype == "application/apply-patch+yaml":
            manager = query.get("fieldManager")
            if not manager:
                raise BadRequest("PATCH with application/apply-patch+yaml requires the fieldManager parameter")
            if not isinstance(data, dict):
                raise BadRequest("error decoding YAML: the applied configuration must be an object")
            force = query.get("force") == "true"
            if current is None:
                if t.subresource:
                    raise NotFound.of(t.res.plural, t.name or "", t.res.group)
                data = _prepare(t, data)
                data["metadata"]["name"] = t.name
                obj = apply.apply(t.res, None, data, manager, force, namespace=t.namespace, name=t.name or "")
                fields.check_applied_yaml(yaml_duplicates, query, warnings)
                return create(store, Target(t.res, t.namespace, None), obj, query, warnings, applied=True), True
            new = apply.apply(t.res, current, data, manager, force, namespace=t.namespace, name=t.name or "")
            fields.check_applied_yaml(yaml_duplicates, query, warnings)
        else:
            if current is None:
                raise NotFound.of(t.res.plural, t.name or "", t.res.group)
            if ctype == "application/json-patch+json":
                new = json_patch(current, data, t.res.kind, t.name or "")
            elif ctype == "application/merge-patch+json":
                new = merge_patch(current, data)
            elif ctype == "application/strategic-merge-patch+json":
                if t.res.is_custom:
                    raise UnsupportedMediaType(
                        f"the body of the request was in an unknown format - accepted media types include: "
                        f"application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml "
                        f"(strategic merge patch is not supported for custom resource {t.res.kind})")
                new = strategic_merge_patch(current, data, t.res.group, t.res.version, t.res.kind)
            else:
                raise UnsupportedMediaType(f"the body of the request was in an unknown format - {ctype!r}")
        if not isinstance(new, dict):
            raise BadRequest("the patch did not produce an object")
        if ctype != "application/apply-patch+yaml":
            fields.check_patched(t.res, current, new, duplicates, query, warnings)
        wanted_rv = (new.get("metadata") or {}).get("resourceVersion")
        if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
            raise Conflict.stale(t.res.plural, t.name or "", t.res.group)
        new = _prepare(t, new)
        new["metadata"]["name"] = t.name
        return _write(store, t, current, new, query, check_version=False,
                      applied=ctype == "application/apply-patch+yaml"), False


def delete(store: Store, t: Target, options: Obj, query: dict[str, str]) -> tuple[Obj, bool]:
    """(object or Status, still present?)."""
    pre = options.get("preconditions") or {}
    grace = options.get("gracePeriodSeconds", query.get("gracePeriodSeconds"))
    with store.lock:
        current = store.get(t.res.key, t.namespace, t.name or "")
        if query.get("dryRun") == "All" or options.get("dryRun") == ["All"]:
            return present(t.res, current), True
        policy = options.get("propagationPolicy") or query.get("propagationPolicy")
        finalizer = {"Foreground": "foregroundDeletion", "Orphan": "orphan"}.get(policy or "")
        if finalizer and finalizer not in (current["metadata"].get("finalizers") or []) \
                and not current["metadata"].get("deletionTimestamp"):
            current = store.mutate(t.res.key, t.namespace, t.name or "",
                                   lambda o: o["metadata"].setdefault("finalizers", []).append(finalizer))
        graceful = False
        if t.res.kind == "Pod":
            spec, status = current.get("spec") or {}, current.get("status") or {}
            grace_s = int(grace) if grace is not None else int(spec.get("terminationGracePeriodSeconds", 30))
            graceful = bool(spec.get("nodeName")) and grace_s > 0 and status.get("phase") not in ("Succeeded", "Failed")
        elif t.res.kind == "Namespace":
            graceful = True
        obj, gone = store.delete(t.res.key, t.namespace, t.name or "", graceful=graceful,
                                 uid=pre.get("uid"), resource_version=pre.get("resourceVersion"))
        if t.res.kind == "Namespace" and not gone:
            obj = store.mutate("namespaces", None, t.name or "",
                               lambda o: o.setdefault("status", {}).update(phase="Terminating"), subresource="status")
    if gone and t.res.kind != "Pod":
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": t.name, "group": t.res.group, "kind": t.res.plural,
                            "uid": obj["metadata"].get("uid")}}, False
    return present(t.res, obj), not gone


def delete_collection(store: Store, t: Target, options: Obj, query: dict[str, str]) -> Obj:
    items, rv, _ = list_objects(store, t, {k: v for k, v in query.items() if k in ("labelSelector", "fieldSelector")})
    for item in items:
        try:
            delete(store, Target(t.res, item["metadata"].get("namespace"), item["metadata"]["name"]), options, query)
        except NotFound:
            pass
    return {"kind": f"{t.res.kind}List", "apiVersion": t.res.group_version, "metadata": {"resourceVersion": rv},
            "items": []}
