"""Request bodies read as kube-apiserver reads them, and ``metadata.generation`` where it keeps one.

A body cut short (fewer bytes than its Content-Length, or a chunked body without its last,
empty chunk) is never executed: kube-apiserver's handler reads the body to the end before it
decodes anything, Go's reader reports ``unexpected EOF`` and the request fails. A client killed
mid-request (the crash tests SIGKILL the migrator) must leave the cluster exactly as it was.
An empty body on a write is refused with the decoder's error, as kube-apiserver refuses it.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from migrator.sim.apiserver import ApiServer
from migrator.sim.registry import install_api, load_crds
from migrator.sim.store import Event, Store
from tests.sim.test_http_wire import AUTH, Conn, request

CM_PATH = "/api/v1/namespaces/default/configmaps/cm"
CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "default"},
      "data": {"run.json": "{}"}}


@pytest.fixture(scope="module")
def crds() -> list[dict]:
    return load_crds()   # parsed once: the CRD files are most of a new cluster's start-up time


def _store(crds: list[dict]) -> Store:
    store = Store()
    install_api(store, crds=crds)
    return store


@pytest.fixture
def api(crds) -> Iterator[ApiServer]:
    store = _store(crds)
    store.create("configmaps", CM)
    server = ApiServer(store, token=AUTH.split()[-1]).start()
    yield server
    server.stop()


@pytest.fixture
def plain_api(crds) -> Iterator[ApiServer]:
    """Without TLS, so that a test client can half-close its side and still read the answer."""
    store = _store(crds)
    store.create("configmaps", CM)
    server = ApiServer(store, token=AUTH.split()[-1], tls=False).start()
    yield server
    server.stop()


def _events(store: Store) -> list[Event]:
    seen: list[Event] = []
    store.subscribe(seen.append)
    return seen


def _answered(api: ApiServer, before: int, timeout: float = 5.0) -> None:
    """Wait until the server has answered (and logged) one more request."""
    deadline = time.monotonic() + timeout
    while len(api.requests.entries) <= before:
        assert time.monotonic() < deadline, "the server never finished the request"
        time.sleep(0.01)


# A PUT that empties the ConfigMap: applied, it wipes ``run.json``. It parses as JSON on its own,
# so a server that executes whatever arrived before the EOF applies it.
WIPE = json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "cm", "namespace": "default"}, "data": {}}).encode()


def _put_head(length: str) -> bytes:
    return (f"PUT {CM_PATH} HTTP/1.1\r\nHost: sim\r\n{AUTH}\r\nContent-Type: application/json\r\n"
            f"{length}\r\n\r\n").encode()


CUT_SHORT = {
    "headers only": _put_head("Content-Length: 300"),
    "part of the body": _put_head("Content-Length: 300") + WIPE,
    "chunked without the last chunk": _put_head("Transfer-Encoding: chunked")
    + f"{len(WIPE):x}\r\n".encode() + WIPE + b"\r\n",
    "chunked cut inside a chunk": _put_head("Transfer-Encoding: chunked")
    + f"{len(WIPE) + 40:x}\r\n".encode() + WIPE,
    "chunked without the final CRLF": _put_head("Transfer-Encoding: chunked")
    + f"{len(WIPE):x}\r\n".encode() + WIPE + b"\r\n0\r\n",
}


@pytest.mark.parametrize("wire", list(CUT_SHORT.values()), ids=list(CUT_SHORT))
def test_a_client_that_dies_inside_its_body_changes_nothing(api, wire):
    store = api.store
    before = store.get("configmaps", "default", "cm")
    rv, events, logged = store.resource_version, _events(store), len(api.requests.entries)
    conn = Conn(api)
    conn.send(wire)
    conn.close()   # the SIGKILL: TCP closes, no TLS close_notify, no more bytes
    _answered(api, logged)
    after = store.get("configmaps", "default", "cm")
    assert after["data"] == {"run.json": "{}"}
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert store.resource_version == rv and events == []
    assert not [e for e in api.requests.entries if e.is_write and e.code < 400]


@pytest.mark.parametrize("wire", list(CUT_SHORT.values()), ids=list(CUT_SHORT))
def test_a_client_still_listening_after_a_short_body_gets_kube_apiservers_answer(plain_api, wire):
    """kube-apiserver hands the body's read error (Go's ``io.ErrUnexpectedEOF``) to its error
    writer, which turns any error that is not a Status into a 500 with the error's text and no
    reason; Go's server then closes the connection, the rest of the body being unreadable."""
    store = plain_api.store
    rv, events = store.resource_version, _events(store)
    host, port = plain_api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(wire)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 "), answer
    assert b"connection: close" in head.lower()
    status = json.loads(body)
    assert status["kind"] == "Status" and status["code"] == 500 and status["status"] == "Failure"
    assert "reason" not in status
    assert "unexpected EOF" in status["message"]
    assert store.get("configmaps", "default", "cm")["data"] == {"run.json": "{}"}
    assert store.resource_version == rv and events == []


def _decode_error(kind: str) -> str:
    # kube-apiserver's create and update handlers (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/
    # create.go, update.go) decode the body; on an empty one the JSON serializer fails to find its kind
    # and transformDecodeError (rest.go) words it with summarizeData's "<empty>".
    return (f"the object provided is unrecognized (must be of type {kind}): couldn't get version/kind; "
            "json parse error: unexpected end of JSON input (<empty>)")


EMPTY = [
    ("POST", "/api/v1/namespaces/default/configmaps", "", _decode_error("ConfigMap")),
    ("PUT", CM_PATH, "", _decode_error("ConfigMap")),
    ("POST", "/api/v1/namespaces/default/pods/p/eviction", "", _decode_error("Eviction")),
    ("PUT", "/apis/apps/v1/namespaces/default/deployments/d/scale", "", _decode_error("Scale")),
    ("PATCH", CM_PATH, "application/merge-patch+json", "error decoding patch: unexpected end of JSON input"),
    ("PATCH", CM_PATH, "application/json-patch+json", "error decoding patch: unexpected end of JSON input"),
    ("PATCH", CM_PATH, "application/strategic-merge-patch+json", "unexpected end of JSON input"),
]


@pytest.mark.parametrize("length", ["Content-Length: 0", None], ids=["length 0", "no length"])
@pytest.mark.parametrize(("method", "path", "ctype", "message"), EMPTY,
                         ids=[f"{m} {p.rsplit('/', 2)[-2]}/{p.rsplit('/', 1)[-1]} {c}" for m, p, c, _ in EMPTY])
def test_an_empty_body_on_a_write_is_a_400_status(api, method, path, ctype, message, length):
    store = api.store
    rv, events = store.resource_version, _events(store)
    headers = [AUTH, *([f"Content-Type: {ctype}"] if ctype else []), *([length] if length else [])]
    conn = Conn(api)
    try:
        code, _, body = conn.ask(request(method, path, *headers))
        status = json.loads(body)
        assert code == 400, status
        assert status == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                          "message": message, "reason": "BadRequest", "code": 400}
        code, _, _ = conn.ask(request("GET", CM_PATH, AUTH))   # the connection serves on
        assert code == 200
    finally:
        conn.close()
    assert store.get("configmaps", "default", "cm")["data"] == {"run.json": "{}"}
    assert store.resource_version == rv and events == []


# ---------------------------------------------------------------------------- generation

@pytest.mark.parametrize(("resource", "obj"), [
    ("configmaps", {"metadata": {"name": "c", "namespace": "default"}, "data": {"a": "1"}}),
    ("secrets", {"metadata": {"name": "s", "namespace": "default"}, "data": {"a": "MQ=="}}),
    ("services", {"metadata": {"name": "svc", "namespace": "default"},
                  "spec": {"ports": [{"port": 80}], "selector": {"app": "a"}}}),
    ("coordination.k8s.io/leases", {"metadata": {"name": "l", "namespace": "default"},
                                    "spec": {"holderIdentity": "a"}}),
    ("pods", {"metadata": {"name": "p", "namespace": "default"},
              "spec": {"containers": [{"name": "c", "image": "i"}]}}),
])
def test_kinds_without_generation_get_none_on_create_or_update(crds, resource, obj):
    store = _store(crds)
    created = store.create(resource, dict(obj, metadata=dict(obj["metadata"], generation=7)))
    assert "generation" not in created["metadata"]
    key = "data" if "data" in obj else "spec"

    def change(o):
        o[key] = dict(o[key], extra="x") if key == "data" else dict(o[key], changed="yes")
    updated = store.mutate(resource, "default", obj["metadata"]["name"], change)
    assert updated["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]
    assert "generation" not in updated["metadata"]


def _workload(kind: str) -> dict:
    return {"metadata": {"name": "w", "namespace": "default", "labels": {"app": "w"}},
            "spec": {"selector": {"matchLabels": {"app": "w"}},
                     "template": {"metadata": {"labels": {"app": "w"}},
                                  "spec": {"containers": [{"name": "c", "image": "i:1"}]}}}}


@pytest.mark.parametrize(("resource", "annotations_bump"), [
    ("apps/daemonsets", False),
    ("apps/deployments", True),     # deployment/strategy.go: annotations are copied to ReplicaSets
    ("apps/replicasets", False),
])
def test_workloads_have_generation_and_it_moves_on_spec_changes(crds, resource, annotations_bump):
    store = _store(crds)
    created = store.create(resource, dict(_workload(resource), metadata=dict(_workload(resource)["metadata"],
                                                                            generation=9)))
    assert created["metadata"]["generation"] == 1

    def image(tag):
        return lambda o: o["spec"]["template"]["spec"]["containers"][0].update(image=f"i:{tag}")
    assert store.mutate(resource, "default", "w", image(2))["metadata"]["generation"] == 2
    labelled = store.mutate(resource, "default", "w", lambda o: o["metadata"]["labels"].update(tier="x"))
    assert labelled["metadata"]["generation"] == 2
    status = store.mutate(resource, "default", "w", lambda o: o.update(status={"observedGeneration": 2}),
                          subresource="status")
    assert status["metadata"]["generation"] == 2
    annotated = store.mutate(resource, "default", "w", lambda o: o["metadata"].update(annotations={"a": "b"}))
    assert annotated["metadata"]["generation"] == (3 if annotations_bump else 2)

    def forge(o):
        o["metadata"]["generation"] = 40   # clients cannot set it
    assert store.mutate(resource, "default", "w", forge)["metadata"]["generation"] == annotated["metadata"]["generation"]


def test_custom_resources_bump_generation_on_anything_but_metadata(crds):
    store = _store(crds)
    created = store.create("cilium.io/ciliumnodeconfigs", {
        "apiVersion": "cilium.io/v2", "kind": "CiliumNodeConfig",
        "metadata": {"name": "n", "namespace": "kube-system"},
        "spec": {"nodeSelector": {"matchLabels": {"a": "b"}}, "defaults": {"x": "1"}}})
    assert created["metadata"]["generation"] == 1
    relabelled = store.mutate("cilium.io/ciliumnodeconfigs", "kube-system", "n",
                              lambda o: o["metadata"].update(labels={"l": "1"}))
    assert relabelled["metadata"]["generation"] == 1
    changed = store.mutate("cilium.io/ciliumnodeconfigs", "kube-system", "n",
                           lambda o: o["spec"]["defaults"].update(x="2"))
    assert changed["metadata"]["generation"] == 2


def test_a_configmap_written_over_http_has_no_generation(api):
    conn = Conn(api)
    try:
        body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "fresh", "namespace": "default"}, "data": {"a": "1"}}).encode()
        code, _, out = conn.ask(request("POST", "/api/v1/namespaces/default/configmaps", AUTH,
                                        "Content-Type: application/json", body=body))
        assert code == 201 and "generation" not in json.loads(out)["metadata"], out
        patch = b'{"data":{"a":"2"}}'
        code, _, out = conn.ask(request("PATCH", "/api/v1/namespaces/default/configmaps/fresh", AUTH,
                                        "Content-Type: application/merge-patch+json", body=patch))
        assert code == 200 and json.loads(out)["data"] == {"a": "2"}
        assert "generation" not in json.loads(out)["metadata"], out
    finally:
        conn.close()
