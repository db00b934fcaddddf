"""API faults and outages of the simulated API server, as a client meets them.

Mixed error codes at a seeded rate on chosen verbs (pods/proxy and watches included), decided
before anything is executed; outages that refuse connections or answer 503; the request log's
users and its n-th-write hook; the cluster's own controllers untouched by any of it; and
``migrator sim serve`` refusing bad fault options with exit 2 and one line.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrator.sim.apiserver import ApiServer
from migrator.sim.faults import ApiFaults, Outage, parse_outage
from migrator.sim.registry import install_api
from migrator.sim.store import Store

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "faults-test"
CM = "/api/v1/namespaces/default/configmaps"


@pytest.fixture
def api() -> Iterator[ApiServer]:
    store = Store()
    install_api(store)
    store.create("configmaps", {"metadata": {"name": "cm", "namespace": "default"}, "data": {"k": "v"}})
    server = ApiServer(store, token=TOKEN, faults=ApiFaults(seed=3)).start()
    yield server
    server.stop()


def call(api: ApiServer, method: str, path: str, body: object = None, *, token: str = TOKEN,
         content_type: str = "application/merge-patch+json", timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    ctx = ssl.create_default_context(cadata=(api.ca_pem or b"").decode())
    host, port = api.url.removeprefix("https://").split(":")
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {token}", "User-Agent": "faults-test/1"}
        if data is not None:
            headers["Content-Type"] = content_type
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_mixed_codes_at_a_seeded_rate_replay_from_the_seed(api):
    api.faults.add_mixed(0.3, (503, 500, 429))
    first = [call(api, "GET", f"{CM}/cm")[0] for _ in range(120)]
    seen = Counter(first)
    assert set(seen) == {200, 503, 500, 429}, seen
    assert 15 <= 120 - seen[200] <= 60, seen          # about 30 % of 120, from this seed
    api.faults = ApiFaults(seed=3)
    api.faults.add_mixed(0.3, (503, 500, 429))
    assert [call(api, "GET", f"{CM}/cm")[0] for _ in range(120)] == first


def test_429_and_503_carry_retry_after(api):
    api.faults.add_mixed(1.0, (429,))
    code, headers, body = call(api, "GET", f"{CM}/cm")
    assert code == 429 and headers["retry-after"] == "1"
    assert json.loads(body)["reason"] == "TooManyRequests"


def test_a_faulted_write_is_not_executed(api):
    api.faults.add_mixed(1.0, (503, 500), verbs=("patch",))
    before = api.store.get("configmaps", "default", "cm")["metadata"]["resourceVersion"]
    for _ in range(10):
        code, _, _ = call(api, "PATCH", f"{CM}/cm", {"data": {"k": "changed"}})
        assert code in (503, 500)
    cm = api.store.get("configmaps", "default", "cm")
    assert cm["data"] == {"k": "v"} and cm["metadata"]["resourceVersion"] == before
    assert call(api, "GET", f"{CM}/cm")[0] == 200        # other verbs are not faulted


def test_watches_and_discovery_are_faulted_too(api):
    api.faults.add_mixed(1.0, (503,), verbs=("watch", "get"))
    assert call(api, "GET", f"{CM}?watch=true&timeoutSeconds=1")[0] == 503
    assert call(api, "GET", "/version")[0] == 503
    assert call(api, "GET", "/apis")[0] == 503
    assert call(api, "GET", CM)[0] == 200                   # a list is not a get
    assert [e.verb for e in api.requests.entries][:3] == ["watch", "get", "get"]


def test_pods_proxy_answers_are_faulted(sim_factory):
    sim = sim_factory(nodes=2)
    pod = next(p for p in sim.store.list("pods", "kube-system") if p["status"].get("phase") == "Running")
    path = f"/api/v1/namespaces/kube-system/pods/{pod['metadata']['name']}:8080/proxy/hostname"
    sim.faults.add_mixed(1.0, (500,), verbs=("get",))
    code, _, _ = call(sim.server, "GET", path, token=sim.token)
    assert code == 500
    assert sim.requests.entries[-1].resource == "pods/proxy"


def test_the_clusters_own_controllers_are_not_faulted(sim_factory):
    sim = sim_factory(nodes=3)
    sim.faults.add_mixed(1.0, (503, 500, 429))
    pod = next(p for p in sim.store.list("pods", "shop") if p["metadata"].get("ownerReferences"))
    sim.store.delete("pods", "shop", pod["metadata"]["name"])
    assert sim.settle(timeout=30), sim.convergence_report()  # the ReplicaSet replaced it, through the store
    assert call(sim.server, "GET", "/api/v1/nodes", token=sim.token)[0] in (503, 500, 429)


def test_refuse_outage_cuts_open_connections_refuses_new_ones_then_serves(api):
    watch_ended = threading.Event()

    def watch() -> None:
        try:
            call(api, "GET", f"{CM}?watch=true&timeoutSeconds=60", timeout=30)
        except (OSError, http.client.HTTPException):
            pass
        watch_ended.set()

    threading.Thread(target=watch, daemon=True).start()
    deadline = time.monotonic() + 10
    while not any(e.verb == "watch" for e in api.requests.entries):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    api.outage(1.5, "refuse")
    assert api.unavailable == "refuse"
    assert watch_ended.wait(5), "an open watch must be cut when the server goes down"
    host, port = api.url.removeprefix("https://").split(":")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=2).close()
    deadline = time.monotonic() + 10
    while api.unavailable is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert call(api, "GET", f"{CM}/cm")[0] == 200          # same port, serving again


def test_503_outage_answers_everything_503_then_serves(api):
    api.schedule_outage(Outage(after=0.0, duration=1.0, mode="503"))
    deadline = time.monotonic() + 5
    while api.unavailable is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    code, headers, _ = call(api, "PATCH", f"{CM}/cm", {"data": {"k": "changed"}})
    assert code == 503 and headers["retry-after"] == "1"
    assert call(api, "GET", "/healthz")[0] == 503
    assert api.store.get("configmaps", "default", "cm")["data"] == {"k": "v"}
    deadline = time.monotonic() + 10
    while api.unavailable is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert call(api, "GET", f"{CM}/cm")[0] == 200


def test_the_request_log_names_the_user_of_each_token(api):
    other = api.add_user("second", groups=("system:masters",))   # RBAC: the admins' group
    call(api, "GET", f"{CM}/cm")
    assert call(api, "GET", f"{CM}/cm", token=other)[0] == 200
    assert call(api, "GET", f"{CM}/cm", token="wrong")[0] == 401
    assert [e.user for e in api.requests.entries] == ["sim-admin", "second", ""]
    assert {e.user_agent for e in api.requests.entries} == {"faults-test/1"}


def test_on_nth_calls_back_at_the_nth_write_before_it_is_answered(api):
    seen: list[tuple[str, int, list[str]]] = []
    api.requests.on_nth(3, lambda e: seen.append((e.verb, len(api.requests.entries), sorted(
        o["metadata"]["name"] for o in api.store.list("configmaps", "default")))))
    call(api, "GET", f"{CM}/cm")
    for i in range(5):
        call(api, "POST", CM, {"metadata": {"name": f"made-{i}"}}, content_type="application/json")
    # once, at the third write, which was executed by then
    assert seen == [("create", 4, ["cm", "made-0", "made-1", "made-2"])]


@pytest.mark.parametrize("args", [
    ["--fault-rate", "1.5"], ["--fault-rate", "often"], ["--fault-codes", "503,404"],
    ["--fault-verbs", "get,fetch"], ["--outage", "30s"], ["--outage", "10s:0s"], ["--outage-mode", "down"],
], ids=lambda a: " ".join(a))
def test_serve_refuses_bad_fault_options_with_exit_2_and_one_line(tmp_path, args):
    done = subprocess.run([sys.executable, "-m", "migrator", "sim", "serve", "--kubeconfig", str(tmp_path / "kc"),
                           *args], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and args[0] in lines[0], done.stderr
    assert not (tmp_path / "kc").exists()


def test_outage_option_parses_durations():
    assert parse_outage("30s:2m") == Outage(after=30.0, duration=120.0, mode="refuse")
    assert parse_outage("0:500ms", "503") == Outage(after=0.0, duration=0.5, mode="503")


def test_serve_applies_fault_options_to_its_clients(tmp_path):
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    from tests.sim.test_sim_serve import migrator, read_line

    kubeconfig = tmp_path / "kc"
    proc = migrator("sim", "serve", "--nodes", "2", "--seed", "5", "--time-scale", "10", "--kubeconfig",
                    str(kubeconfig), "--fault-rate", "1", "--fault-verbs", "list", "--fault-codes", "429",
                    "--outage", "1h:1m")
    try:
        line = read_line(proc, timeout=90)
        assert "faults 1 of list requests (429)" in line and "outage (refuse) 60s from 3600s" in line
        api = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
        with pytest.raises(ApiException) as refused:
            api.list_node()
        assert refused.value.status == 429
        assert api.read_node("node-1").metadata.name == "node-1"     # a get is not a list
    finally:
        proc.terminate()
        proc.wait(timeout=15)
