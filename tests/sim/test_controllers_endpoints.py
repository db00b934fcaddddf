"""The endpoints controller keeps each Service's subsets and places only the pods that changed:
after every one of many random pod and Service changes, each Endpoints object equals what a
fresh controller renders from every pod."""

from __future__ import annotations

import random
from typing import Any

import pytest

from migrator.sim.controllers.endpoints import _Kept, _placement
from migrator.sim.controllers.matching import selector_matches
from tests.sim.controller_harness import Harness

Obj = dict[str, Any]


@pytest.fixture
def h():
    harness = Harness()
    yield harness
    harness.stop()


def _pod(name: str, app: str, port_name: str = "http") -> Obj:
    return {"metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx",
                                                       "ports": [{"name": port_name, "containerPort": 8080}]}]}}


def _service(name: str, app: str, *, publish: bool = False) -> Obj:
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"app": app}, "publishNotReadyAddresses": publish,
                     "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}}


def _fresh(h: Harness, name: str) -> list[Obj]:
    """What a controller that kept nothing renders for Service ``name`` now."""
    svc = h.store.get("services", "default", name)
    spec = svc["spec"]
    kept = _Kept((svc["metadata"]["uid"], svc["metadata"]["resourceVersion"]))
    for pod in h.store.list("pods", "default"):
        if selector_matches(spec["selector"], pod["metadata"].get("labels")):
            kept.place(pod["metadata"]["name"], pod["metadata"]["resourceVersion"],
                       _placement(spec, "default", pod, bool(spec.get("publishNotReadyAddresses"))))
    return kept.render()


def test_endpoints_after_random_changes_match_a_fresh_render(h):
    rng = random.Random(11)
    h.node("n1")
    h.store.create("services", _service("web", "web"))
    h.store.create("services", _service("all", "api", publish=True))
    for i in range(12):
        h.store.create("pods", _pod(f"p{i:02}", rng.choice(["web", "api"]), rng.choice(["http", "other"])))
    h.settle()
    created = 12
    moves = []
    for _ in range(60):
        pods = h.pods("default")
        op = rng.choice(["delete", "graceful", "unready", "ready", "relabel", "create", "service"])
        pod = rng.choice(pods) if pods else None
        if op == "create" or pod is None:
            h.store.create("pods", _pod(f"p{created:02}", rng.choice(["web", "api"])))
            created += 1
        elif op in ("delete", "graceful"):
            h.store.delete("pods", "default", pod["metadata"]["name"], graceful=op == "graceful")
        elif op in ("unready", "ready"):
            h.set_ready(pod["metadata"]["name"], op == "ready")
        elif op == "relabel":
            app = "api" if pod["metadata"]["labels"]["app"] == "web" else "web"
            h.store.mutate("pods", "default", pod["metadata"]["name"], lambda o, a=app: o["metadata"]["labels"].update(app=a))
        else:
            h.store.mutate("services", "default", "all", lambda o: o["spec"].update(
                publishNotReadyAddresses=not o["spec"]["publishNotReadyAddresses"]))
        moves.append(op)
        h.settle()
        for name in ("web", "all"):
            stored = (h.store.try_get("endpoints", "default", name) or {}).get("subsets", [])
            assert stored == _fresh(h, name), f"Endpoints {name} after {moves}"
    assert {"relabel", "graceful", "unready", "service"} <= set(moves)
    web = h.store.get("endpoints", "default", "web")["subsets"]
    assert any(s.get("addresses") for s in web), "the comparison covered Services with addresses"
