"""The request log's body sizes: request bytes read from the wire, response bytes sent, a watch's
bytes over its life, the sums by filter, and ``/sim/requests`` serving them to another process.

Raw HTTPS on one socket, so that the sizes asserted are the bytes that crossed the wire.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from migrator.sim.apiserver import ApiServer
from migrator.sim.registry import install_api
from migrator.sim.requestlog import WRITE_VERBS, RequestEntry, RequestFilter, RequestLog
from migrator.sim.store import Store
from tests.sim.test_http_wire import AUTH, TOKEN, Conn, request

NS = "kube-system"


@pytest.fixture
def api() -> Iterator[ApiServer]:
    store = Store()
    install_api(store)
    store.create("configmaps", {"metadata": {"name": "state", "namespace": NS}, "data": {"k": "v"}})
    server = ApiServer(store, token=TOKEN).start()
    yield server
    server.stop()


def _cm(name: str, value: str) -> bytes:
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NS},
                       "data": {"k": value}}).encode()


def test_a_put_is_logged_with_the_body_length_it_sent_and_the_length_it_got_back(api):
    body = _cm("state", "x" * 1000)
    conn = Conn(api)
    try:
        code, headers, answer = conn.ask(request("PUT", f"/api/v1/namespaces/{NS}/configmaps/state", AUTH,
                                                 "Content-Type: application/json", body=body))
    finally:
        conn.close()
    assert code == 200, answer
    (entry,) = api.requests.entries
    assert (entry.verb, entry.resource, entry.name) == ("update", "configmaps", "state")
    assert entry.request_bytes == len(body)
    assert entry.response_bytes == len(answer) == int(headers["content-length"])
    assert len(answer) > len(body)   # the stored object carries uid, resourceVersion, managedFields...


def test_a_chunked_body_counts_its_payload_and_an_error_counts_the_status_sent(api):
    body = _cm("chunky", "y" * 300)
    half = len(body) // 2
    chunked = b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (body[:half], body[half:]))
    conn = Conn(api)
    try:
        code, _, _ = conn.ask(("\r\n".join([f"POST /api/v1/namespaces/{NS}/configmaps HTTP/1.1", "Host: sim", AUTH,
                                            "Content-Type: application/json", "Transfer-Encoding: chunked"])
                               + "\r\n\r\n").encode() + chunked + b"0\r\n\r\n")
        assert code == 201
        code, _, status = conn.ask(request("POST", f"/api/v1/namespaces/{NS}/configmaps", AUTH,
                                           "Content-Type: application/json", body=body))
        assert code == 409
        code, _, listed = conn.ask(request("GET", f"/api/v1/namespaces/{NS}/configmaps", AUTH))
        assert code == 200
    finally:
        conn.close()
    created, refused, listing = api.requests.entries
    assert created.request_bytes == refused.request_bytes == len(body) < len(chunked)
    assert refused.response_bytes == len(status)
    assert (listing.request_bytes, listing.response_bytes) == (0, len(listed))


def test_a_watch_counts_the_event_lines_it_has_sent(api):
    conn = Conn(api)
    try:
        conn.send(request("GET", f"/api/v1/namespaces/{NS}/configmaps?watch=1&timeoutSeconds=5", AUTH))
        code, _ = conn.read_head()
        assert code == 200
        api.store.create("configmaps", {"metadata": {"name": "later", "namespace": NS}, "data": {"k": "z" * 50}})
        lines: list[bytes] = []
        while len(lines) < 2:   # the initial ADDED of "state", then the one of "later"
            while b"\r\n" not in conn.buf or len(conn.buf.split(b"\r\n", 1)[1]) < \
                    int(conn.buf.split(b"\r\n", 1)[0], 16) + 2:
                assert conn._fill()
            size, rest = conn.buf.split(b"\r\n", 1)
            lines.append(rest[:int(size, 16)])
            conn.buf = rest[int(size, 16) + 2:]
    finally:
        conn.close()
    assert [json.loads(line)["object"]["metadata"]["name"] for line in lines] == ["state", "later"]
    (watch,) = [e for e in api.requests.entries if e.verb == "watch"]
    assert watch.response_bytes == sum(len(line) for line in lines)
    assert watch.request_bytes == 0


def _entry(verb: str, name: str, request_bytes: int, namespace: str = NS, resource: str = "configmaps",
           response_bytes: int = 7) -> RequestEntry:
    return RequestEntry(verb, resource, namespace, name, 200, request_bytes=request_bytes,
                        response_bytes=response_bytes)


def test_the_sums_select_by_verb_resource_namespace_and_name_prefix():
    log = RequestLog()
    for entry in (_entry("update", "migrator-state", 100), _entry("create", "migrator-state-1", 20),
                  _entry("get", "migrator-state", 0), _entry("update", "other", 1000),
                  _entry("update", "migrator-state", 5000, namespace="default"),
                  _entry("patch", "migrator-state", 30000, resource="secrets")):
        log.add(entry)
    assert log.bytes_written(resource="configmaps", namespace=NS, name_prefix="migrator-state") == 120
    assert log.bytes_written(resource="configmaps") == 6120
    assert log.request_bytes(verbs=frozenset({"create"})) == 20
    assert log.response_bytes(resource="configmaps", namespace=NS) == 28
    assert log.response_bytes(RequestFilter(verbs=WRITE_VERBS, name_prefix="migrator")) == 28
    summary = log.summary(RequestFilter(namespace=NS, resource="configmaps"))
    assert (summary["requests"], summary["requestBytes"], summary["responseBytes"]) == (4, 1120, 28)
    assert [(r["verb"], r["requests"], r["requestBytes"]) for r in summary["byVerbResource"]] == \
        [("create", 1, 20), ("get", 1, 0), ("update", 2, 1100)]


def test_response_bytes_added_after_a_reset_do_not_land_on_another_entry():
    log = RequestLog()
    watch = log.add(_entry("watch", "", 0, response_bytes=0))
    log.add_response_bytes(watch, 40)
    assert log.response_bytes(verbs=frozenset({"watch"})) == 40
    log.reset()
    log.add(_entry("get", "x", 0, response_bytes=3))
    log.add_response_bytes(watch, 500)   # that watch's entry is gone: nothing to count it on
    assert [e.response_bytes for e in log.entries] == [3]


def test_sim_requests_serves_the_sums_to_another_client_without_logging_itself(api):
    body = _cm("migrator-state", "w" * 200)
    conn = Conn(api)
    try:
        code, _, _ = conn.ask(request("POST", f"/api/v1/namespaces/{NS}/configmaps", AUTH,
                                      "Content-Type: application/json", body=body))
        assert code == 201
        code, _, _ = conn.ask(request("GET", f"/api/v1/namespaces/{NS}/configmaps/state", AUTH))
        assert code == 200
        code, _, answer = conn.ask(request(
            "GET", f"/sim/requests?verb=write&resource=configmaps&namespace={NS}&namePrefix=migrator-", AUTH))
        assert code == 200, answer
        code, _, everything = conn.ask(request("GET", "/sim/requests", AUTH))
        assert code == 200
        code, _, bad = conn.ask(request("GET", "/sim/requests?verb=upsert", AUTH))
        assert code == 400 and "unknown verb 'upsert'" in json.loads(bad)["message"]
        code, _, _ = conn.ask(request("GET", "/sim/requests", "Authorization: Bearer wrong"))
        assert code == 401
    finally:
        conn.close()
    summary = json.loads(answer)
    assert (summary["requests"], summary["requestBytes"]) == (1, len(body))
    assert summary["byVerbResource"] == [{"verb": "create", "resource": "configmaps", "requests": 1,
                                          "requestBytes": len(body), "responseBytes": summary["responseBytes"]}]
    assert json.loads(everything)["requests"] == 2 == len(api.requests.entries)   # /sim/* never logged


def test_sim_introspect_serves_the_cluster_snapshot_with_the_body_bytes():
    from migrator.sim.cluster import SimCluster
    from migrator.sim.config import SimConfig

    with SimCluster(config=SimConfig(nodes=2), time_scale=50.0) as sim:
        conn = Conn(sim.server)
        auth = f"Authorization: Bearer {sim.token}"
        try:
            code, _, listed = conn.ask(request("GET", "/api/v1/nodes", auth))
            assert code == 200
            code, _, answer = conn.ask(request("GET", "/sim/introspect", auth))
            assert code == 200, answer
            code, _, _ = conn.ask(request("POST", "/sim/introspect", auth, body=b"{}"))
            assert code == 405
        finally:
            conn.close()
    snapshot = json.loads(answer)
    assert sorted(snapshot["nodes"]) == sorted(n["metadata"]["name"] for n in json.loads(listed)["items"])
    assert snapshot["requests"] == {"list nodes": 1}
    assert snapshot["body_bytes"] == {"list nodes": {"request": 0, "response": len(listed)}}
