"""Server-side defaulting and validation, as a real API server applies them on writes.

Defaulting fills the fields clients read back (``kubectl rollout status`` needs a DaemonSet's
``updateStrategy``; drains read a Pod's ``terminationGracePeriodSeconds``...). It runs for
every object created in the store, whether through HTTP or by a simulated controller.

Validation runs on HTTP writes:
* built-in kinds against the Kubernetes OpenAPI definitions shipped by ``kubernetes-validate``;
  each schema is compiled to Python once (``fastjsonschema``: 80 µs for a Pod), and only an
  object that check refuses goes through ``jsonschema`` (0.85 ms for a Pod), whose errors are
  the ones answered, so the answer to a bad object does not depend on the fast check;
* custom resources against their CRD's ``openAPIV3Schema`` (``nullable``,
  ``x-kubernetes-int-or-string`` and ``x-kubernetes-preserve-unknown-fields`` honoured), after
  pruning unknown fields as a structural-schema server does; field errors name the Kubernetes field
  path (``spec.bgpInstances[0].localASN``) and a wrong type reads as kube-openapi words it;
* DNS-1123 names, and the Pod update rules (only container images, ``activeDeadlineSeconds``
  and added tolerations may change).
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable
from typing import Any

import fastjsonschema
import jsonschema

from migrator.sim.errors import Invalid
from migrator.sim.patch import definition_for, definitions
from migrator.sim.registry import ApiResource
from migrator.sim.store import ResourceType

Obj = dict[str, Any]
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1123_LABEL_KINDS = {"Namespace", "Service"}


# ------------------------------------------------------------------ defaults
def _default_pod_spec(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    if not spec.get("serviceAccountName"):
        spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        image = str(c.get("image", ""))
        c.setdefault("imagePullPolicy", "Always" if image.endswith(":latest") or ":" not in image else "IfNotPresent")
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault("resources", {})
        for p in c.get("ports") or []:
            p.setdefault("protocol", "TCP")


def _default_template(obj: Obj) -> None:
    template = obj.setdefault("spec", {}).setdefault("template", {})
    template.setdefault("metadata", {})
    _default_pod_spec(template.setdefault("spec", {}))


def apply_defaults(rtype: ResourceType, obj: Obj) -> None:
    """Fill server-side defaults in place (called by the store on create)."""
    kind = rtype.kind
    spec = obj.get("spec")
    if kind == "Pod":
        spec = obj.setdefault("spec", {})
        _default_pod_spec(spec)
        spec.setdefault("priority", 0)
        tolerations = spec.setdefault("tolerations", [])
        for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
            if not any(t.get("key") == key or (t.get("operator") == "Exists" and not t.get("key")) for t in tolerations):
                tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
        status = obj.setdefault("status", {})
        status.setdefault("phase", "Pending")
        status.setdefault("qosClass", "BestEffort")
    elif kind == "DaemonSet":
        _default_template(obj)
        spec = obj["spec"]
        strategy = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            strategy.setdefault("type", "RollingUpdate")
            strategy.setdefault("rollingUpdate", {}).setdefault("maxUnavailable", 1)
            strategy["rollingUpdate"].setdefault("maxSurge", 0)
        spec.setdefault("revisionHistoryLimit", 10)
    elif kind in ("Deployment", "ReplicaSet"):
        _default_template(obj)
        spec = obj["spec"]
        spec.setdefault("replicas", 1)
        if kind == "Deployment":
            strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
            if strategy.get("type", "RollingUpdate") == "RollingUpdate":
                strategy.setdefault("type", "RollingUpdate")
                strategy.setdefault("rollingUpdate", {"maxUnavailable": "25%", "maxSurge": "25%"})
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
    elif kind == "Job":
        _default_template(obj)
        spec = obj["spec"]
        spec["template"]["spec"]["restartPolicy"] = spec["template"]["spec"].get("restartPolicy", "Never") \
            if spec["template"]["spec"].get("restartPolicy") != "Always" else "Never"
        spec.setdefault("completions", 1)
        spec.setdefault("parallelism", 1)
        spec.setdefault("backoffLimit", 6)
    elif kind == "Service" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for p in spec.get("ports") or []:
            p.setdefault("protocol", "TCP")
            p.setdefault("targetPort", p.get("port"))
    elif kind == "Namespace":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
        name = obj.get("metadata", {}).get("name")
        if name:
            obj["metadata"].setdefault("labels", {}).setdefault("kubernetes.io/metadata.name", name)
    elif kind == "ServiceAccount":
        pass


# ------------------------------------------------------------------ validation
Check = Callable[[Any], Any]


@functools.cache
def _builtin_schema(group: str, version: str, kind: str) -> Obj | None:
    name = definition_for(group, version, kind)
    return None if name is None else {"$defs": definitions(), "$ref": f"#/$defs/{name}"}


@functools.cache
def _builtin_validator(group: str, version: str, kind: str) -> jsonschema.Draft202012Validator | None:
    schema = _builtin_schema(group, version, kind)
    return None if schema is None else jsonschema.Draft202012Validator(schema)


def _compiled(schema: Obj) -> Check | None:
    """``schema`` compiled by fastjsonschema: raises on an object it refuses, never fills in a
    ``default`` and checks no ``format`` (jsonschema does neither); None when it cannot compile
    the schema (jsonschema alone checks then)."""
    try:
        return fastjsonschema.compile(schema, use_default=False, use_formats=False)
    except (fastjsonschema.JsonSchemaDefinitionException, re.error, RecursionError):
        return None


@functools.cache
def _builtin_check(group: str, version: str, kind: str) -> Check | None:
    schema = _builtin_schema(group, version, kind)
    return None if schema is None else _compiled(schema)


def _errors(validator: jsonschema.protocols.Validator, check: Check | None, obj: Obj) -> list[jsonschema.ValidationError]:
    """jsonschema's errors for ``obj``, sorted by path; none without asking it when the compiled
    check passes (both read the same schema)."""
    if check is not None:
        try:
            check(obj)
            return []
        except fastjsonschema.JsonSchemaValueException:
            pass
    return sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))


def _openapi_to_jsonschema(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_openapi_to_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {k: _openapi_to_jsonschema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = _openapi_to_jsonschema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_openapi_to_jsonschema(v) for v in value]
        elif key == "pattern":
            try:
                re.compile(value)
                out[key] = value
            except re.error:
                pass  # Go RE2 syntax Python cannot read: the real server would check it
        elif key == "format":
            continue
        else:
            out[key] = value
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else list(out["type"]) + ["null"]
    return out


@functools.cache
def _crd_schema(res: ApiResource) -> Obj:
    schema: Obj = _openapi_to_jsonschema(res.crd_schema or {})
    return schema


@functools.cache
def _crd_validator(res: ApiResource) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(_crd_schema(res))


@functools.cache
def _crd_check(res: ApiResource) -> Check | None:
    return _compiled(dict(_crd_schema(res), **{"$schema": "http://json-schema.org/draft-07/schema#"}))


def prune(obj: Any, schema: dict[str, Any] | None, top: bool = True) -> Any:
    """Drop fields the structural schema does not know (metadata/apiVersion/kind kept)."""
    if not isinstance(schema, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
        return obj
    if isinstance(obj, dict):
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        if props is None and addl is None:
            return obj if schema.get("type") != "object" or not top else obj
        out = {}
        for k, v in obj.items():
            if top and k in ("apiVersion", "kind", "metadata"):
                out[k] = v
            elif props is not None and k in props:
                out[k] = prune(v, props[k], False)
            elif isinstance(addl, dict):
                out[k] = prune(v, addl, False)
            elif addl is True:
                out[k] = v
        return out
    if isinstance(obj, list) and isinstance(schema.get("items"), dict):
        return [prune(v, schema["items"], False) for v in obj]
    return obj


#: The names kube-openapi gives a JSON value's type in its errors.
_JSON_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (list, "array"),
               (dict, "object"), (type(None), "null"))


def field_path(path: Any) -> str:
    """A Kubernetes field path: ``spec.bgpInstances[0].localASN`` (k8s.io/apimachinery field.Path)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _causes(errors: list[jsonschema.ValidationError]) -> list[dict[str, str]]:
    """Field errors as apiextensions-apiserver reports them; a wrong type reads
    ``Invalid value: "string": spec.x in body must be of type integer: "string"`` (kube-openapi)."""
    causes = []
    for err in errors[:10]:
        path = field_path(err.absolute_path)
        message = err.message[:300]
        if err.validator == "type":
            actual = next(name for t, name in _JSON_TYPES if isinstance(err.instance, t))
            types = err.validator_value
            wanted = ",".join(str(t) for t in types) if isinstance(types, list) else str(types)
            message = f'Invalid value: "{actual}": {path} in body must be of type {wanted}: "{actual}"'
        causes.append({"reason": "FieldValueInvalid", "message": message, "field": path})
    return causes


def validate(res: ApiResource, obj: Obj) -> Obj:
    """Validate (and for custom resources prune) an object about to be stored."""
    meta = obj.get("metadata") or {}
    name = meta.get("name") or meta.get("generateName") or ""
    if meta.get("name") and (len(meta["name"]) > 253 or not _DNS1123_SUBDOMAIN.match(meta["name"])
                             or (res.kind in _DNS1123_LABEL_KINDS and ("." in meta["name"] or len(meta["name"]) > 63))):
        raise Invalid.of(res.kind, meta["name"], [{
            "reason": "FieldValueInvalid", "field": "metadata.name",
            "message": f"Invalid value: {meta['name']!r}: a lowercase RFC 1123 subdomain must consist of lower case "
                       "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"}],
            res.group)
    for key in (meta.get("labels") or {}):
        if not isinstance(key, str) or not key or len(key.split("/")[-1]) > 63:
            raise Invalid.of(res.kind, name, [{"reason": "FieldValueInvalid", "field": "metadata.labels",
                                               "message": f"Invalid value: {key!r}: invalid label key"}], res.group)
    if res.is_custom:
        obj = prune(obj, res.crd_schema)
        errors = _errors(_crd_validator(res), _crd_check(res), obj)
    else:
        validator = _builtin_validator(res.group, res.version, res.kind)
        errors = _errors(validator, _builtin_check(res.group, res.version, res.kind), obj) if validator else []
    if errors:
        raise Invalid.of(res.kind, name, _causes(errors), res.group)
    return obj


def check_pod_update(old: Obj, new: Obj) -> None:
    """A running pod's spec is immutable but for images, activeDeadlineSeconds and new tolerations."""
    before, after = copy.deepcopy(old.get("spec") or {}), copy.deepcopy(new.get("spec") or {})
    for spec in (before, after):
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            c.pop("image", None)
        spec.pop("activeDeadlineSeconds", None)
    old_tol = before.pop("tolerations", None) or []
    new_tol = after.pop("tolerations", None) or []
    if "nodeName" not in after and before.get("nodeName"):
        after["nodeName"] = before["nodeName"]
    if before != after or any(t not in new_tol for t in old_tol):
        name = (old.get("metadata") or {}).get("name", "")
        raise Invalid.of("Pod", name, [{
            "reason": "FieldValueForbidden", "field": "spec",
            "message": "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, "
                       "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` "
                       "(only additions to existing tolerations), `spec.terminationGracePeriodSeconds`"}])
