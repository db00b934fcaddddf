"""The simulated API server on the wire: request parsing, whole responses, errors as clients see them.

Raw HTTPS on one socket, so what is asserted is what a client receives byte for byte.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import time
from collections.abc import Iterator

import pytest

from migrator.sim import wire
from migrator.sim.apiserver import ApiServer
from migrator.sim.faults import ApiFaults
from migrator.sim.registry import install_api
from migrator.sim.store import Store

TOKEN = "wire-test"


@pytest.fixture(scope="module")
def server() -> Iterator[ApiServer]:
    store = Store()
    install_api(store)
    store.create("configmaps", {"metadata": {"name": "cm", "namespace": "default"}, "data": {"k": "v"}})
    api = ApiServer(store, token=TOKEN).start()
    yield api
    api.stop()


class Conn:
    """One TLS connection; ``ask`` sends raw bytes and reads one response."""

    def __init__(self, api: ApiServer) -> None:
        ctx = ssl.create_default_context(cadata=(api.ca_pem or b"").decode())
        host, port = api.url.removeprefix("https://").split(":")
        raw = socket.create_connection((host, int(port)), timeout=10)
        self.sock = ctx.wrap_socket(raw, server_hostname=host)
        self.buf = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_head(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self.buf:
            assert self._fill(), f"connection closed before the headers: {self.buf!r}"
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status, *lines = head.decode("iso-8859-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
        return int(status.split()[1]), headers

    def ask(self, data: bytes) -> tuple[int, dict[str, str], bytes]:
        self.send(data)
        code, headers = self.read_head()
        length = int(headers["content-length"])
        while len(self.buf) < length:
            assert self._fill(), "connection closed inside the body"
        body, self.buf = self.buf[:length], self.buf[length:]
        return code, headers, body

    def closed_by_peer(self) -> bool:
        try:
            return not self._fill()
        except (ConnectionError, ssl.SSLError):
            return True

    def close(self) -> None:
        self.sock.close()


def request(method: str, path: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: sim", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


AUTH = f"Authorization: Bearer {TOKEN}"


def test_headers_are_case_insensitive_and_keep_alive_serves_requests_in_turn(server):
    conn = Conn(server)
    try:
        for auth in (AUTH, f"aUtHoRiZaTiOn:   Bearer {TOKEN}  "):
            code, headers, body = conn.ask(request("GET", "/api/v1/namespaces/default/configmaps/cm", auth))
            assert code == 200, body
            assert json.loads(body)["data"] == {"k": "v"}
            assert headers["content-type"] == "application/json"
    finally:
        conn.close()


def test_a_folded_header_continues_the_previous_value(server):
    conn = Conn(server)
    try:
        code, _, body = conn.ask(request("GET", "/api/v1/namespaces/default/configmaps/cm",
                                         "Authorization: Bearer", f"  {TOKEN}"))
        assert code == 200, body
    finally:
        conn.close()


def test_malformed_json_is_a_400_status_and_the_connection_stays_usable(server):
    conn = Conn(server)
    try:
        code, _, body = conn.ask(request("POST", "/api/v1/namespaces/default/configmaps", AUTH,
                                         "Content-Type: application/json", body=b"{not json"))
        status = json.loads(body)
        assert code == 400 and status["kind"] == "Status" and status["code"] == 400, status
        code, _, _ = conn.ask(request("GET", "/api/v1/namespaces/default/configmaps/cm", AUTH))
        assert code == 200
    finally:
        conn.close()


@pytest.mark.parametrize(("line", "code"), [
    ("GET /api HTTP/2.0", 505),
    ("GET /api HTTP/one", 400),
    ("GET /api", 400),
    ("GET /api HTTP/1.1 extra", 400),
    ("BREW /api HTTP/1.1", 501),
])
def test_bad_request_lines_are_refused_with_a_status_and_the_connection_closes(server, line, code):
    conn = Conn(server)
    try:
        got, _, body = conn.ask(f"{line}\r\nHost: sim\r\n\r\n".encode())
        status = json.loads(body)
        assert got == code and status["kind"] == "Status" and status["code"] == code, status
        assert conn.closed_by_peer()
    finally:
        conn.close()


@pytest.mark.parametrize("headers", [
    [f"X-Long: {'a' * 70000}"],
    [f"X-Many-{i}: v" for i in range(101)],
])
def test_oversized_headers_are_refused_with_431(server, headers):
    conn = Conn(server)
    try:
        code, _, body = conn.ask(request("GET", "/api", AUTH, *headers))
        status = json.loads(body)
        assert code == 431 and status["reason"] == "RequestHeaderFieldsTooLarge", status
    finally:
        conn.close()


def test_connection_close_is_honoured(server):
    conn = Conn(server)
    try:
        code, _, _ = conn.ask(request("GET", "/api", AUTH, "Connection: close"))
        assert code == 200
        assert conn.closed_by_peer()
    finally:
        conn.close()


def test_a_watch_sends_its_headers_before_any_event(server):
    conn = Conn(server)
    try:
        rv = server.store.resource_version
        conn.send(request("GET", f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}"
                                 "&timeoutSeconds=5", AUTH))
        code, headers = conn.read_head()   # nothing changes meanwhile: the headers must come alone
        assert code == 200 and headers["transfer-encoding"] == "chunked"
        server.store.create("configmaps", {"metadata": {"name": "later", "namespace": "default"}})
        while b"\r\n" not in conn.buf:
            assert conn._fill()
        size, rest = conn.buf.split(b"\r\n", 1)
        while len(rest) < int(size, 16):
            assert conn._fill()
            rest = conn.buf.split(b"\r\n", 1)[1]
        event = json.loads(rest[:int(size, 16)])
        assert event["type"] == "ADDED" and event["object"]["metadata"]["name"] == "later"
    finally:
        conn.close()


def test_a_client_that_resets_before_its_answer_costs_no_traceback_and_the_server_serves_on(capfd):
    """The answer stays in the write buffer when the peer is gone; closing the connection must not
    raise again (the standard library then prints a traceback per connection)."""
    store = Store()
    install_api(store)
    store.create("configmaps", {"metadata": {"name": "big", "namespace": "default"}, "data": {"k": "x" * 60_000}})
    faults = ApiFaults()
    faults.add(verb="get", resource="configmaps", latency=0.2)  # the client is gone before the answer
    api = ApiServer(store, token=TOKEN, faults=faults).start()
    try:
        for _ in range(3):
            conn = Conn(api)
            conn.send(request("GET", "/api/v1/namespaces/default/configmaps/big", AUTH))
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
            time.sleep(0.05)
            conn.close()
        time.sleep(0.5)
        faults.clear()
        conn = Conn(api)
        code, _, body = conn.ask(request("GET", "/api/v1/namespaces/default/configmaps/big", AUTH))
        conn.close()
    finally:
        api.stop()
    assert code == 200 and len(json.loads(body)["data"]["k"]) == 60_000
    assert "Traceback" not in capfd.readouterr().err


def test_wire_encoding_is_compact_utf8_and_falls_back_for_what_orjson_refuses():
    assert wire.dumps({"a": [1, "ü", None, True]}) == '{"a":[1,"ü",null,true]}'.encode()
    huge = {"n": 2**70, 3: "int key"}
    assert json.loads(wire.dumps(huge)) == {"n": 2**70, "3": "int key"}
