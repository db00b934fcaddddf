"""The OpenAPI documents kubectl reads: ``/openapi/v3`` (an index and one document per
group-version) and ``/openapi/v2``.

They are built from the schemas the simulated API server validates with, so that what kubectl
is told and what the server enforces cannot drift apart: the built-in definitions shipped by
``kubernetes-validate`` (the Kubernetes version the sim reports) and every served CRD's
``openAPIV3Schema``, named and wrapped as the apiextensions-apiserver publishes them
(``io.cilium.v2.CiliumNodeConfig``, with ``apiVersion``, ``kind``, ``metadata`` and the
``x-kubernetes-group-version-kind`` extension added).

kubectl relies on three things here:
* ``components.schemas`` with ``x-kubernetes-group-version-kind`` on every top-level kind, and the
  ``x-kubernetes-patch-strategy`` / ``x-kubernetes-patch-merge-key`` / ``x-kubernetes-list-*``
  markers (``kubectl apply`` computes its strategic merge patch from them; ``kubectl explain``
  prints the descriptions);
* ``paths`` whose PATCH operations carry the GVK extension, the ``fieldValidation`` query
  parameter (kubectl then validates server-side instead of on the client) and, for built-in
  kinds only, ``application/strategic-merge-patch+json`` among their request bodies;
* the index's ``serverRelativeURL`` with ``?hash=`` (the hex SHA-512 of the document, as
  kube-openapi computes it): kubectl caches each document under its hash.

Documents are built on first request and cached (the served resources do not change while
the server runs), so serving OpenAPI costs the sim's boot nothing. ``/openapi/v2`` is served as
JSON; kube-apiserver also serves it as protobuf (gnostic's ``OpenAPIv2.proto``), which the sim
does not, so a client asking for protobuf only gets 406 Not Acceptable.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from typing import Any

from migrator.sim import wire
from migrator.sim.patch import definition_for, definitions
from migrator.sim.registry import ApiResource, Registry

Schema = dict[str, Any]
META = "io.k8s.apimachinery.pkg.apis.meta.v1"
_API_VERSION_DOC = (
    "APIVersion defines the versioned schema of this representation of an object. Servers should convert "
    "recognized schemas to the latest internal value, and may reject unrecognized values. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources")
_KIND_DOC = (
    "Kind is a string value representing the REST resource this object represents. Servers may infer this "
    "from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds")
_METADATA_DOC = ("Standard object's metadata. More info: "
                 "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata")
_LIST_METADATA_DOC = ("Standard list metadata. More info: "
                      "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds")
# kubernetes-validate rewrites these two as JSON-schema ``oneOf``s; the OpenAPI documents of
# kube-apiserver declare them as strings (apimachinery's OpenAPISchemaType / OpenAPISchemaFormat).
_SCALARS: dict[str, Schema] = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "description": "IntOrString is a type that can hold an int32 or a string.  When used in JSON or YAML "
                       "marshalling and unmarshalling, it produces or consumes the inner type.  This allows you "
                       "to have, for example, a JSON field that can accept a name or number.",
        "type": "string", "format": "int-or-string"},
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "description": "Quantity is a fixed-point representation of a number. It provides convenient "
                       "marshaling/unmarshaling in JSON and YAML, in addition to String() and AsInt64() accessors.",
        "type": "string"},
}
# Meta types every group-version document refers to from its paths.
_PATH_TYPES = (f"{META}.DeleteOptions", f"{META}.Status", f"{META}.Patch", f"{META}.WatchEvent",
               f"{META}.APIResourceList")
_PATCH_TYPES = ("application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json",
                "application/strategic-merge-patch+json")


# ------------------------------------------------------------------ schemas
def _convert(schema: Any, prefix: str, v3: bool, top: bool = False) -> Any:
    """A kubernetes-validate (JSON-schema) definition as an OpenAPI schema: nullable type lists
    back to single types, ``$ref`` pointing at ``prefix``, the ``enum`` kubernetes-validate pins on
    ``apiVersion``/``kind`` dropped (kube-apiserver's documents have none)."""
    if isinstance(schema, list):
        return [_convert(s, prefix, v3) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: Schema = {}
    for key, value in schema.items():
        if key == "$ref":
            out[key] = prefix + value.rsplit("/", 1)[-1]
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            out[key] = types[0] if len(types) == 1 else value
        elif key == "properties":
            props = {}
            for name, sub in value.items():
                sub = _convert(sub, prefix, v3)
                if top and name in ("apiVersion", "kind"):
                    sub.pop("enum", None)
                props[name] = sub
            out[key] = props
        elif key in ("items", "additionalProperties"):
            out[key] = _convert(value, prefix, v3)
        else:
            out[key] = value
    if v3 and "$ref" in out and len(out) > 1:   # OpenAPI 3.0 ignores a $ref's siblings: kube-openapi wraps it
        ref = out.pop("$ref")
        out = {"allOf": [{"$ref": ref}], **out}
    return out


def _builtin_schemas(prefix: str, v3: bool) -> dict[str, Schema]:
    out = {}
    for name, d in definitions().items():
        out[name] = copy.deepcopy(_SCALARS[name]) if name in _SCALARS else _convert(d, prefix, v3, top=True)
    return out


def crd_schema_name(group: str, version: str, kind: str) -> str:
    """The component name apiextensions-apiserver gives a CRD's kind (ToRESTFriendlyName)."""
    return ".".join(reversed(group.split("."))) + f".{version}.{kind}"


def _ref(prefix: str, name: str, v3: bool, **siblings: Any) -> Schema:
    if v3 and siblings:
        return {"allOf": [{"$ref": prefix + name}], **siblings}
    return {"$ref": prefix + name, **siblings}


def _crd_schemas(res: ApiResource, prefix: str, v3: bool) -> dict[str, Schema]:
    """The kind and its List for one served CRD version, as the apiextensions-apiserver builds them."""
    gvk = [{"group": res.group, "version": res.version, "kind": res.kind}]
    schema = copy.deepcopy(res.crd_schema or {"type": "object"})
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"description": _API_VERSION_DOC, "type": "string"}
    props["kind"] = {"description": _KIND_DOC, "type": "string"}
    props["metadata"] = _ref(prefix, f"{META}.ObjectMeta", v3, description=_METADATA_DOC)
    schema["type"] = "object"
    schema["x-kubernetes-group-version-kind"] = gvk
    name = crd_schema_name(res.group, res.version, res.kind)
    listing = {
        "description": f"{res.kind}List is a list of {res.kind}", "type": "object", "required": ["items"],
        "properties": {
            "apiVersion": {"description": _API_VERSION_DOC, "type": "string"},
            "items": {"description": f"List of {res.plural}. More info: "
                                     "https://git.k8s.io/community/contributors/devel/api-conventions.md",
                      "type": "array", "items": {"$ref": prefix + name}},
            "kind": {"description": _KIND_DOC, "type": "string"},
            "metadata": _ref(prefix, f"{META}.ListMeta", v3, description=_LIST_METADATA_DOC),
        },
        "x-kubernetes-group-version-kind": [dict(gvk[0], kind=f"{res.kind}List")],
    }
    return {name: schema, f"{name}List": listing}


def _closure(names: set[str], schemas: dict[str, Schema], prefix: str) -> dict[str, Schema]:
    """``names`` and every schema they refer to, transitively."""
    out: dict[str, Schema] = {}
    todo = sorted(names)
    while todo:
        name = todo.pop()
        if name in out or name not in schemas:
            continue
        out[name] = schemas[name]
        stack: list[Any] = [schemas[name]]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                ref = node.get("$ref")
                if isinstance(ref, str) and ref.startswith(prefix):
                    todo.append(ref[len(prefix):])
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
    return dict(sorted(out.items()))


# ------------------------------------------------------------------ paths
def _query(name: str, description: str, v3: bool, kind: str = "string") -> Schema:
    if v3:
        return {"name": name, "in": "query", "description": description,
                "schema": {"type": kind, "uniqueItems": True}}
    return {"name": name, "in": "query", "description": description, "type": kind, "uniqueItems": True}


_DRY_RUN = "When present, indicates that modifications should not be persisted. Valid values are: - All"
_FIELD_MANAGER = ("fieldManager is a name associated with the actor or entity that is making these changes. "
                  "The value must be less than or 128 characters long, and only contain printable characters.")
_FIELD_VALIDATION = (
    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing "
    "unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are "
    "silently dropped from the object, and will ignore all but the last duplicate field that the decoder "
    "encounters. - Warn: This will send a warning via the standard warning response header for each unknown "
    "field that is dropped from the object, and for each duplicate field that is encountered. The request "
    "will still succeed if there are no other errors, and will only persist the last of any duplicate fields. "
    "This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown "
    "fields would be dropped from the object, or if any duplicate fields are present. The error returned from "
    "the server will contain all unknown and duplicate fields encountered.")
_FORCE = ("Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned "
          "by other people. Force flag must be unset for non-apply patch requests.")


_LIST_PARAMS = (
    ("continue", "The continue option should be set when retrieving more results from the server.", "string"),
    ("fieldSelector", "A selector to restrict the list of returned objects by their fields.", "string"),
    ("labelSelector", "A selector to restrict the list of returned objects by their labels.", "string"),
    ("limit", "limit is a maximum number of responses to return for a list call.", "integer"),
    ("resourceVersion", "resourceVersion sets a constraint on what resource versions a request may be served "
                        "from.", "string"),
    ("timeoutSeconds", "Timeout for the list/watch call.", "integer"),
    ("watch", "Watch for changes to the described resources and return them as a stream of add, update, and "
              "remove notifications.", "boolean"),
)


def _write_params(v3: bool, patch: bool = False) -> list[Schema]:
    params = [_query("dryRun", _DRY_RUN, v3), _query("fieldManager", _FIELD_MANAGER, v3),
              _query("fieldValidation", _FIELD_VALIDATION, v3)]
    if patch:
        params.append(_query("force", _FORCE, v3, "boolean"))
    return params


def _operation(res: ApiResource, action: str, op_id: str, response: str, prefix: str, v3: bool,
               params: list[Schema], body: str | None = None, body_types: tuple[str, ...] = ("*/*",)) -> Schema:
    op: Schema = {"description": f"{action} {res.kind}", "operationId": op_id,
                  "tags": [res.group_version.replace("/", "_").replace(".", "")]}
    if params:
        op["parameters"] = params
    if v3:
        if body is not None:
            op["requestBody"] = {"required": True, "content": {t: {"schema": {"$ref": prefix + body}}
                                                               for t in body_types}}
        op["responses"] = {"200": {"description": "OK", "content": {
            t: {"schema": {"$ref": prefix + response}} for t in ("application/json", "application/yaml")}},
            "401": {"description": "Unauthorized"}}
    else:
        if body is not None:
            op["parameters"] = [{"name": "body", "in": "body", "required": True,
                                 "schema": {"$ref": prefix + body}}, *params]
            op["consumes"] = list(body_types)
        op["produces"] = ["application/json", "application/yaml"]
        op["responses"] = {"200": {"description": "OK", "schema": {"$ref": prefix + response}},
                           "401": {"description": "Unauthorized"}}
        op["schemes"] = ["https"]
    op["x-kubernetes-action"] = action
    op["x-kubernetes-group-version-kind"] = {"group": res.group, "version": res.version, "kind": res.kind}
    return op


def _path_param(name: str, description: str, v3: bool) -> Schema:
    if v3:
        return {"name": name, "in": "path", "description": description, "required": True,
                "schema": {"type": "string", "uniqueItems": True}}
    return {"name": name, "in": "path", "description": description, "required": True, "type": "string",
            "uniqueItems": True}


def _resource_paths(res: ApiResource, kind_schema: str, prefix: str, v3: bool) -> dict[str, Schema]:
    """The collection and item paths (and the status subresource) of one resource; only the
    collection's POST for a create-only one."""
    base = f"/api/{res.version}" if not res.group else f"/apis/{res.group}/{res.version}"
    gv = "".join(p[:1].upper() + p[1:] for p in (res.group.split(".")[0], res.version) if p)
    scope = "Namespaced" if res.namespaced else ""
    where = f"{base}/namespaces/{{namespace}}/{res.plural}" if res.namespaced else f"{base}/{res.plural}"
    common = [_path_param("namespace", "object name and auth scope, such as for teams and projects", v3)] \
        if res.namespaced else []
    pretty = _query("pretty", "If 'true', then the output is pretty printed.", v3)
    name_param = _path_param("name", f"name of the {res.kind}", v3)
    patch_types = _PATCH_TYPES if not res.is_custom else tuple(t for t in _PATCH_TYPES if "strategic" not in t)
    list_params = [_query(n, d, v3, k) for n, d, k in _LIST_PARAMS]
    verb = f"{gv}{scope}{res.kind}"
    collection: Schema = {
        "get": _operation(res, "list", f"list{verb}", f"{kind_schema}List", prefix, v3, list_params),
        "post": _operation(res, "post", f"create{verb}", kind_schema, prefix, v3, _write_params(v3), kind_schema),
        "delete": _operation(res, "deletecollection", f"deleteCollection{verb}", f"{META}.Status", prefix, v3,
                             list_params, f"{META}.DeleteOptions"),
        "parameters": [*common, pretty],
    }
    if set(res.verbs) == {"create"}:   # answered, never stored (the self reviews): a POST and nothing else
        return {where: {"post": collection["post"], "parameters": [*common, pretty]}}
    item: Schema = {
        "get": _operation(res, "get", f"read{verb}", kind_schema, prefix, v3, []),
        "put": _operation(res, "put", f"replace{verb}", kind_schema, prefix, v3, _write_params(v3), kind_schema),
        "patch": _operation(res, "patch", f"patch{verb}", kind_schema, prefix, v3, _write_params(v3, patch=True),
                            f"{META}.Patch", patch_types),
        "delete": _operation(res, "delete", f"delete{verb}", f"{META}.Status", prefix, v3,
                             [_query("dryRun", _DRY_RUN, v3),
                              _query("gracePeriodSeconds", "The duration in seconds before the object should be "
                                     "deleted.", v3, "integer"),
                              _query("propagationPolicy", "Whether and how garbage collection will be performed: "
                                     "'Orphan', 'Background' or 'Foreground'.", v3)], f"{META}.DeleteOptions"),
        "parameters": [name_param, *common, pretty],
    }
    paths = {where: collection, f"{where}/{{name}}": item}
    if res.namespaced:
        paths[f"{base}/{res.plural}"] = {
            "get": _operation(res, "list", f"list{gv}{res.kind}ForAllNamespaces", f"{kind_schema}List", prefix, v3,
                              list_params), "parameters": [pretty]}
    if "status" in res.subresources:
        status = f"{res.kind}Status"
        paths[f"{where}/{{name}}/status"] = {
            "get": _operation(res, "get", f"read{verb}{status}", kind_schema, prefix, v3, []),
            "put": _operation(res, "put", f"replace{verb}{status}", kind_schema, prefix, v3, _write_params(v3),
                              kind_schema),
            "patch": _operation(res, "patch", f"patch{verb}{status}", kind_schema, prefix, v3,
                                _write_params(v3, patch=True), f"{META}.Patch", patch_types),
            "parameters": [name_param, *common, pretty],
        }
    return paths


# ------------------------------------------------------------------ documents
class OpenApi:
    """The OpenAPI documents of one registry, built on first use and kept."""

    def __init__(self, registry: Registry, version: str) -> None:
        self._registry = registry
        self._version = version
        self._lock = threading.Lock()
        self._v3: dict[str, tuple[bytes, str]] | None = None
        self._v2: bytes | None = None

    def _served(self) -> list[tuple[ApiResource, str]]:
        """Every served resource with a schema, and its component name."""
        out = []
        for res in sorted(self._registry.all(), key=lambda r: (r.group, r.version, r.plural)):
            name = crd_schema_name(res.group, res.version, res.kind) if res.is_custom else \
                definition_for(res.group, res.version, res.kind)
            if name is not None:
                out.append((res, name))
        return out

    def _document(self, v3: bool, resources: list[tuple[ApiResource, str]], builtin: dict[str, Schema]) -> Schema:
        prefix = "#/components/schemas/" if v3 else "#/definitions/"
        schemas = dict(builtin)
        paths: dict[str, Schema] = {}
        for res, name in resources:
            if res.is_custom:
                schemas.update(_crd_schemas(res, prefix, v3))
            paths.update(_resource_paths(res, name, prefix, v3))
        wanted = {n for _, n in resources} | {f"{n}List" for _, n in resources} | set(_PATH_TYPES)
        components = _closure(wanted, schemas, prefix)
        info = {"title": "Kubernetes", "version": self._version}
        if v3:
            return {"openapi": "3.0.0", "info": info, "paths": dict(sorted(paths.items())),
                    "components": {"schemas": components}}
        return {"swagger": "2.0", "info": info, "paths": dict(sorted(paths.items())), "definitions": components}

    def v3_documents(self) -> dict[str, tuple[bytes, str]]:
        """Group-version path (``api/v1``, ``apis/apps/v1``) -> (document bytes, hash)."""
        with self._lock:
            if self._v3 is None:
                by_gv: dict[str, list[tuple[ApiResource, str]]] = {}
                for res, name in self._served():
                    key = f"apis/{res.group}/{res.version}" if res.group else f"api/{res.version}"
                    by_gv.setdefault(key, []).append((res, name))
                docs = {}
                builtin = _builtin_schemas("#/components/schemas/", True)
                for key, resources in sorted(by_gv.items()):
                    data = wire.dumps(self._document(True, resources, builtin))
                    docs[key] = (data, hashlib.sha512(data).hexdigest().upper())
                self._v3 = docs
            return self._v3

    def v3_index(self) -> Schema:
        """The ``/openapi/v3`` discovery document."""
        return {"paths": {key: {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
                          for key, (_, digest) in self.v3_documents().items()}}

    def v2(self) -> bytes:
        """The whole Swagger 2.0 document, as JSON."""
        with self._lock:
            if self._v2 is None:
                self._v2 = wire.dumps(self._document(False, self._served(), _builtin_schemas("#/definitions/", False)))
            return self._v2
