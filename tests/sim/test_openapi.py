"""The OpenAPI documents, field validation and server-side apply of the simulated API server.

Documents: every served kind carries ``x-kubernetes-group-version-kind`` in its group-version's
document and a PATCH operation that lists ``fieldValidation`` (what kubectl checks before it
validates server-side); every ``$ref`` resolves; containers merge by ``name``; documents are built
on first request, cached by hash as kube-openapi serves them.

Field validation and apply follow the Kubernetes documentation ("Field validation" and
"Server-Side Apply" in the API reference) and kube-apiserver's messages.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import ssl
from collections.abc import Iterator
from typing import Any

import pytest

from migrator.sim import apply
from migrator.sim.apiserver import ApiServer
from migrator.sim.openapi import OpenApi
from migrator.sim.registry import build_registry, install_api, load_crds
from migrator.sim.store import Store

TOKEN = "openapi-test-token"


@pytest.fixture(scope="module")
def crds() -> list[dict]:
    return load_crds()


@pytest.fixture(scope="module")
def documents(crds) -> OpenApi:
    return OpenApi(build_registry(crds), "v1.32.4")


@pytest.fixture
def api(crds) -> Iterator[ApiServer]:
    store = Store()
    install_api(store, crds=crds)
    server = ApiServer(store, token=TOKEN).start()
    yield server
    server.stop()


def call(api: ApiServer, method: str, path: str, body: Any = None, content_type: str = "application/json",
         accept: str = "application/json") -> tuple[int, http.client.HTTPMessage, Any]:
    host, port = api.url.removeprefix("https://").split(":")
    ctx = ssl.create_default_context(cadata=(api.ca_pem or b"").decode())
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": accept, "Content-Type": content_type,
               "User-Agent": "tester/1.0"}
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            payload: Any = json.loads(raw) if raw else None
        except ValueError:
            payload = raw
        return resp.status, resp.headers, payload
    finally:
        conn.close()


def warnings(headers: http.client.HTTPMessage) -> list[str]:
    """The texts of the ``Warning: 299 - "..."`` headers."""
    return [json.loads(w.split(" ", 2)[2]) for w in headers.get_all("Warning") or []]


# ------------------------------------------------------------------ documents
def test_every_served_kind_has_its_gvk_and_a_patch_operation_that_takes_field_validation(documents, crds):
    registry = build_registry(crds)
    docs = {key: json.loads(data) for key, (data, _) in documents.v3_documents().items()}
    for res in registry.all():
        key = f"apis/{res.group}/{res.version}" if res.group else f"api/{res.version}"
        doc = docs[key]
        gvk = {"group": res.group, "version": res.version, "kind": res.kind}
        assert any(gvk in s.get("x-kubernetes-group-version-kind", []) for s in doc["components"]["schemas"].values()), gvk
        if set(res.verbs) == {"create"}:   # the self reviews: kube-apiserver serves a POST and nothing else
            ops = [(m, item[m]) for item in doc["paths"].values() for m in ("get", "put", "patch", "delete", "post")
                   if m in item and item[m]["x-kubernetes-group-version-kind"] == gvk]
            assert [m for m, _ in ops] == ["post"], gvk
            continue
        patches = [item["patch"] for item in doc["paths"].values()
                   if "patch" in item and item["patch"]["x-kubernetes-group-version-kind"] == gvk]
        assert patches, gvk
        assert all(any(p["name"] == "fieldValidation" and p["in"] == "query" for p in op["parameters"])
                   for op in patches)
        smp = "application/strategic-merge-patch+json" in patches[0]["requestBody"]["content"]
        assert smp is not res.is_custom   # custom resources take no strategic merge patch


def test_containers_merge_by_name_and_crds_are_named_as_the_apiextensions_server_names_them(documents):
    core = json.loads(documents.v3_documents()["api/v1"][0])["components"]["schemas"]
    containers = core["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["x-kubernetes-list-type"] == "map"
    assert core["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"] == "int-or-string"
    cilium = json.loads(documents.v3_documents()["apis/cilium.io/v2"][0])["components"]["schemas"]
    cnc = cilium["io.cilium.v2.CiliumNodeConfig"]
    assert cnc["x-kubernetes-group-version-kind"] == [{"group": "cilium.io", "version": "v2",
                                                       "kind": "CiliumNodeConfig"}]
    assert cnc["properties"]["metadata"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]
    assert set(cnc["properties"]["spec"]["required"]) == {"defaults", "nodeSelector"}


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_every_ref_resolves_in_its_own_document(documents):
    for key, (data, _) in documents.v3_documents().items():
        doc = json.loads(data)
        refs = set(_refs(doc))
        assert refs, key
        for ref in refs:
            assert ref.startswith("#/components/schemas/"), ref
            assert ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"], (key, ref)
    v2 = json.loads(documents.v2())
    assert v2["swagger"] == "2.0"
    for ref in set(_refs(v2)):
        assert ref.removeprefix("#/definitions/") in v2["definitions"], ref


def test_documents_are_built_on_first_request_and_served_by_hash(api):
    assert api.openapi._v3 is None   # nothing built at start-up
    code, _, index = call(api, "GET", "/openapi/v3")
    assert code == 200
    url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/apps/v1?hash=")
    code, headers, doc = call(api, "GET", url)
    assert code == 200 and doc["openapi"] == "3.0.0"
    assert headers["Cache-Control"] == "public, immutable"
    digest = url.split("hash=")[1]
    assert hashlib.sha512(api.openapi.v3_documents()["apis/apps/v1"][0]).hexdigest().upper() == digest
    code, headers, _ = call(api, "GET", "/openapi/v3/apis/apps/v1?hash=0123")
    assert code == 301 and headers["Location"] == url
    assert call(api, "GET", "/openapi/v3/apis/nothing/v1")[0] == 404


def test_openapi_v2_is_json_only(api):
    code, _, doc = call(api, "GET", "/openapi/v2")
    assert code == 200 and doc["swagger"] == "2.0"
    assert "io.k8s.api.core.v1.Pod" in doc["definitions"]
    code, _, status = call(api, "GET", "/openapi/v2", accept="application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
    assert code == 406 and status["reason"] == "NotAcceptable"


# ------------------------------------------------------------------ field validation
CM_BODY = (b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"first","name":"cm"},'
           b'"colour":"blue","data":{"k":"v"}}')
CMS = "/api/v1/namespaces/default/configmaps"


def test_warn_is_the_default_drops_unknown_fields_and_keeps_the_last_duplicate(api):
    code, headers, obj = call(api, "POST", CMS, CM_BODY)
    assert code == 201, obj
    assert warnings(headers) == ['duplicate field "metadata.name"', 'unknown field "colour"']
    assert obj["metadata"]["name"] == "cm" and "colour" not in obj
    assert "colour" not in api.store.get("configmaps", "default", "cm")


def test_strict_refuses_with_every_problem_and_ignore_says_nothing(api):
    code, _, status = call(api, "POST", CMS + "?fieldValidation=Strict", CM_BODY)
    assert code == 400 and status["reason"] == "BadRequest"
    assert status["message"] == ('ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: '
                                 'duplicate field "metadata.name", unknown field "colour"')
    assert api.store.try_get("configmaps", "default", "cm") is None
    code, headers, obj = call(api, "POST", CMS + "?fieldValidation=Ignore", CM_BODY)
    assert code == 201 and warnings(headers) == [] and "colour" not in obj
    code, _, status = call(api, "POST", CMS + "?fieldValidation=Loose", CM_BODY)
    assert code == 400 and "fieldValidation" in status["message"]


def test_a_strict_patch_names_the_patch_duplicates_then_the_unknown_fields_sorted(api):
    assert call(api, "POST", CMS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}})[0] == 201
    patch = b'{"zeta":1,"data":{"k":"1","k":"2"},"alpha":{"x":1}}'
    code, _, status = call(api, "PATCH", f"{CMS}/cm?fieldValidation=Strict", patch, "application/merge-patch+json")
    assert code == 400
    assert status["message"] == ('strict decoding error: duplicate field "data.k", unknown field "alpha", '
                                 'unknown field "zeta"')
    code, headers, obj = call(api, "PATCH", f"{CMS}/cm", patch, "application/strategic-merge-patch+json")
    assert code == 200 and obj["data"] == {"k": "2"} and "zeta" not in obj
    assert warnings(headers) == ['duplicate field "data.k"', 'unknown field "alpha"', 'unknown field "zeta"']


def test_custom_resources_are_checked_against_their_crd_schema(api):
    body = {"apiVersion": "cilium.io/v2", "kind": "CiliumNodeConfig",
            "metadata": {"name": "c", "namespace": "kube-system"},
            "spec": {"nodeSelector": {}, "defaults": {"a": "b"}, "colour": "blue"}}
    code, _, status = call(api, "POST", "/apis/cilium.io/v2/namespaces/kube-system/ciliumnodeconfigs"
                                        "?fieldValidation=Strict", body)
    assert code == 400 and status["message"].endswith('strict decoding error: unknown field "spec.colour"')


# ------------------------------------------------------------------ field ownership and apply
def _managers(obj: dict) -> dict[tuple[str, str], set]:
    return {(e["manager"], e["operation"]): apply.decode(e["fieldsV1"]) for e in obj["metadata"]["managedFields"]}


def test_an_update_takes_the_fields_it_changes_from_their_previous_manager(api):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "1", "b": "1"}}
    assert call(api, "POST", CMS + "?fieldManager=installer", cm)[0] == 201
    code, _, obj = call(api, "PATCH", f"{CMS}/cm", {"data": {"b": "2"}}, "application/merge-patch+json")
    assert code == 200
    owners = _managers(obj)
    assert owners[("installer", "Update")] == {(("f", "data"), ("f", "a"))}
    assert owners[("tester", "Update")] == {(("f", "data"), ("f", "b"))}   # named after its User-Agent
    # an apply of b with another value conflicts with that updater, named with its API version
    code, _, status = call(api, "PATCH", f"{CMS}/cm?fieldManager=gitops", b"apiVersion: v1\nkind: ConfigMap\n"
                           b"metadata: {name: cm}\ndata: {b: '3'}\n", "application/apply-patch+yaml")
    assert code == 409
    assert status["message"] == 'Apply failed with 1 conflict: conflict with "tester" using v1: .data.b'
    assert status["details"]["causes"] == [{"type": "FieldManagerConflict", "message": 'conflict with "tester" using v1',
                                            "field": ".data.b"}]


def test_apply_removes_what_it_no_longer_applies_unless_someone_else_owns_it(api):
    def applied(data: str, manager: str = "gitops") -> dict:
        code, _, obj = call(api, "PATCH", f"{CMS}/cm?fieldManager={manager}",
                            f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm}}\ndata: {data}\n".encode(),
                            "application/apply-patch+yaml")
        assert code in (200, 201), obj
        return obj

    applied("{a: '1', b: '1', c: '1'}")
    applied("{c: '1'}", manager="other")   # the same value: shared, no conflict
    obj = applied("{a: '1'}")
    assert obj["data"] == {"a": "1", "c": "1"}   # b went; c stays, other still owns it
    owners = _managers(obj)
    assert owners[("gitops", "Apply")] == {(("f", "data"), ("f", "a"))}
    assert owners[("other", "Apply")] == {(("f", "data"), ("f", "c"))}


def test_fields_v1_keys_associative_lists_by_their_merge_key():
    reg = build_registry([])
    pods = next(r for r in reg.all() if r.kind == "Pod")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "x"}},
           "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}],
                    "finalizers": None}}
    paths = apply.field_set(pods, pod)
    web = (("f", "spec"), ("f", "containers"), ("k", '{"name":"web"}'))
    assert web in paths and web + (("f", "image"),) in paths
    # ports are keyed by port and protocol, the protocol's default filled in as managedFields show it
    port = web + (("f", "ports"), ("k", '{"containerPort":80,"protocol":"TCP"}'))
    assert port + (("f", "containerPort"),) in paths
    assert apply.decode(apply.encode(paths)) == paths
    tree = apply.encode(paths)
    assert tree["f:spec"]["f:containers"]['k:{"name":"web"}']["."] == {}
    assert apply.path_string(web + (("f", "image"),)) == '.spec.containers[name="web"].image'


def test_an_apply_that_sets_a_key_twice_is_refused_when_strict_and_warned_about_otherwise(api):
    body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  a: '1'\n  a: '2'\n"
    code, _, status = call(api, "PATCH", f"{CMS}/cm?fieldManager=gitops&fieldValidation=Strict", body,
                           "application/apply-patch+yaml")
    assert code == 400
    assert status["message"] == ("error strict decoding YAML: error converting YAML to JSON: yaml: unmarshal errors:\n"
                                 '  line 7: key "a" already set in map')
    assert api.store.try_get("configmaps", "default", "cm") is None
    code, headers, obj = call(api, "PATCH", f"{CMS}/cm?fieldManager=gitops", body, "application/apply-patch+yaml")
    assert code == 201 and obj["data"] == {"a": "2"}
    assert warnings(headers) == ['line 7: key "a" already set in map']
