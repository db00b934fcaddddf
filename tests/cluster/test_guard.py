"""GuardedPort: which calls are retried and which never are, Retry-After, the bound per call, no
blind re-send of an unknown outcome, the fence on writes, and that every command gets it.

The wrapped port is a scripted stand-in for our own ``ClusterPort`` (never the ``kubernetes``
package); no real time passes (FakeClock).
"""

from __future__ import annotations

import ast
import inspect
import random
from pathlib import Path
from typing import Any, cast

import pytest

from migrator.cluster.errors import (
    AlreadyExists,
    Conflict,
    DisruptionBudgetBlocked,
    LeaseExpired,
    NotFound,
    Throttled,
    Unavailable,
)
from migrator.cluster.guard import CALLS, UNGUARDED, GuardedPort
from migrator.cluster.lease import Fence, LockLost
from migrator.cluster.port import ClusterPort, LeaseRecord, ObjectRef, PodRequest
from migrator.retry import RetrySettings

from .fakeclock import FakeClock

ROOT = Path(__file__).resolve().parents[2]

INTERNAL_500 = Unavailable("internal error", status=500)
BUSY_503 = Unavailable("unavailable", status=503, retry_after=1)
REFUSED = Unavailable("connection to the API server refused", sent=False)
READ_TIMEOUT = Unavailable("the API server did not answer in time", sent=True)


class Scripted:
    """Each method raises the errors scripted for it, in order, then returns ``result``."""

    def __init__(self, **results: Any) -> None:
        self.results = results
        self.script: dict[str, list[BaseException]] = {}
        self.calls: list[str] = []

    def fail(self, method: str, *errors: BaseException) -> Scripted:
        self.script.setdefault(method, []).extend(errors)
        return self

    def __getattr__(self, method: str) -> Any:
        if method.startswith("__"):
            raise AttributeError(method)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(method)
            pending = self.script.get(method)
            if pending:
                raise pending.pop(0)
            return self.results.get(method, True)
        return call

    def count(self, method: str) -> int:
        return self.calls.count(method)


def guarded(inner: Scripted, clock: FakeClock | None = None, **settings: Any) -> GuardedPort:
    return GuardedPort(cast(Any, inner), clock=clock or FakeClock(), rng=random.Random(3),
                       settings=RetrySettings(**settings))


LEASE = LeaseRecord("kube-system", "lock", "h/1/r", 30, None, None, resource_version="5")

# one representative call per behaviour: (method, how to call it on the port)
CALLERS: dict[str, Any] = {
    "list_nodes": lambda p: p.list_nodes(),
    "read_configmap": lambda p: p.read_configmap("kube-system", "state"),
    "cordon_node": lambda p: p.cordon_node("node-1"),
    "set_node_taint": lambda p: p.set_node_taint("node-1", "k", "NoSchedule", True),
    "restart_daemonset": lambda p: p.restart_daemonset("kube-system", "cilium", restarted_at=None),
    "delete_object": lambda p: p.delete_object(ObjectRef("", "v1", "configmaps", "x", "kube-system")),
    "replace_configmap": lambda p: p.replace_configmap("kube-system", "state", {}, resource_version="1"),
    "evict_pod (uid)": lambda p: p.evict_pod("default", "web-1", uid="u-1"),
    "delete_pod (uid)": lambda p: p.delete_pod("default", "web-1", uid="u-1"),
    "evict_pod (no uid)": lambda p: p.evict_pod("default", "web-1"),
    "delete_pod (no uid)": lambda p: p.delete_pod("default", "web-1"),
    "emit_node_event": lambda p: p.emit_node_event("node-1", reason="R", message="m"),
    "proxy_get": lambda p: p.proxy_get("probes", "probe-1", 8080, "dial", {}),
    "replace_lease": lambda p: p.replace_lease(LEASE),
}


def method_of(label: str) -> str:
    return label.split(" ")[0]


# the matrix: label -> retried after (500, 503, refused, read timeout)
MATRIX = {
    "list_nodes": (True, True, True, True),
    "read_configmap": (True, True, True, True),
    "cordon_node": (True, True, True, True),
    "set_node_taint": (True, True, True, True),
    "restart_daemonset": (True, True, True, True),
    "delete_object": (True, True, True, True),
    "replace_configmap": (True, True, True, True),
    "evict_pod (uid)": (True, True, True, True),
    "delete_pod (uid)": (True, True, True, True),
    "evict_pod (no uid)": (False, True, True, False),
    "delete_pod (no uid)": (False, True, True, False),
    "emit_node_event": (False, True, True, False),
    "proxy_get": (False, False, True, False),
    "replace_lease": (True, True, True, True),
}


@pytest.mark.parametrize("label", sorted(MATRIX))
@pytest.mark.parametrize("which", range(4), ids=["500", "503", "refused", "read-timeout"])
def test_retry_matrix(label: str, which: int) -> None:
    error = (INTERNAL_500, BUSY_503, REFUSED, READ_TIMEOUT)[which]
    inner = Scripted().fail(method_of(label), error)
    port = guarded(inner)
    if MATRIX[label][which]:
        CALLERS[label](port)
        assert inner.count(method_of(label)) == 2
    else:
        with pytest.raises(Unavailable):
            CALLERS[label](port)
        assert inner.count(method_of(label)) == 1, "an outcome that may have happened is not re-sent"


@pytest.mark.parametrize("label", sorted(CALLERS))
def test_429_is_retried_for_every_call_honouring_retry_after(label: str) -> None:
    clock = FakeClock()
    inner = Scripted().fail(method_of(label), Throttled("too many requests", retry_after=4))
    CALLERS[label](guarded(inner, clock))
    assert inner.count(method_of(label)) == 2
    assert clock.sleeps == [4.0]


@pytest.mark.parametrize("error", [
    Conflict("the object has been modified", status=409),
    AlreadyExists("exists", status=409),
    NotFound("gone", status=404),
    DisruptionBudgetBlocked("pdb", retry_after=5),
])
def test_never_retried(error: Exception) -> None:
    inner = Scripted().fail("replace_configmap", error).fail("evict_pod", error)
    port = guarded(inner)
    with pytest.raises(type(error)):
        port.replace_configmap("kube-system", "state", {}, resource_version="1")
    with pytest.raises(type(error)):
        port.evict_pod("default", "web-1", uid="u-1")
    assert inner.calls == ["replace_configmap", "evict_pod"]


def test_each_call_is_bounded_and_a_long_outage_surfaces_as_unavailable() -> None:
    clock = FakeClock()
    inner = Scripted().fail("cordon_node", *[REFUSED] * 1000)
    with pytest.raises(Unavailable, match="refused"):
        guarded(inner, clock).cordon_node("node-1")
    assert 5 < inner.count("cordon_node") <= RetrySettings().attempts
    assert clock.monotonic() <= RetrySettings().deadline


def test_lease_calls_have_a_shorter_bound_so_the_keepalive_tries_afresh() -> None:
    clock = FakeClock()
    inner = Scripted().fail("replace_lease", *[REFUSED] * 1000)
    with pytest.raises(Unavailable):
        guarded(inner, clock).replace_lease(LEASE)
    assert clock.monotonic() <= 5.0


def test_retries_are_counted() -> None:
    seen: list[BaseException] = []
    inner = Scripted().fail("list_nodes", BUSY_503, REFUSED)
    GuardedPort(cast(Any, inner), clock=FakeClock(), on_retry=seen.append).list_nodes()
    assert seen == [BUSY_503, REFUSED]


# -- creates ---------------------------------------------------------------------------------

def pod_request() -> PodRequest:
    return PodRequest(namespace="default", name="migrator-verify-node-1", image="agnhost", node_name="node-1")


def test_pod_create_retried_after_an_unknown_outcome_reads_the_created_pod_back() -> None:
    created = object()
    inner = Scripted(get_pod=created).fail("create_pod", READ_TIMEOUT, AlreadyExists("exists", status=409))
    assert guarded(inner).create_pod(pod_request()) is created
    assert inner.calls == ["create_pod", "create_pod", "get_pod"]


def test_pod_create_that_meets_an_existing_pod_first_still_says_so() -> None:
    inner = Scripted(get_pod=object()).fail("create_pod", AlreadyExists("exists", status=409))
    with pytest.raises(AlreadyExists):
        guarded(inner).create_pod(pod_request())
    assert inner.calls == ["create_pod"]


def test_pod_create_refused_by_the_server_is_simply_sent_again() -> None:
    inner = Scripted(create_pod="pod").fail("create_pod", BUSY_503)
    assert guarded(inner).create_pod(pod_request()) == "pod"
    assert inner.calls == ["create_pod", "create_pod"]


# -- fencing ---------------------------------------------------------------------------------

def test_writes_stop_once_our_lease_expired_on_the_monotonic_clock() -> None:
    clock = FakeClock()
    inner = Scripted()
    port = guarded(inner, clock)
    port.fence.arm(clock.monotonic(), 10)
    assert port.cordon_node("node-1") is True
    clock.advance(10.5)
    with pytest.raises(LeaseExpired, match="expired"):
        port.cordon_node("node-1")
    with pytest.raises(LeaseExpired):
        port.evict_pod("default", "web-1", uid="u-1")
    assert inner.calls == ["cordon_node"]  # nothing was sent
    port.list_nodes()                      # reads stay allowed
    port.replace_lease(LEASE)              # and so does renewing the lease
    port.fence.arm(clock.monotonic(), 10)  # a renewal succeeded
    assert port.cordon_node("node-1") is True


def test_a_write_retrying_across_the_expiry_is_not_sent_again() -> None:
    clock = FakeClock()
    inner = Scripted().fail("cordon_node", Throttled("slow down", retry_after=8))
    port = guarded(inner, clock)
    port.fence.arm(clock.monotonic(), 5)
    with pytest.raises(LeaseExpired):
        port.cordon_node("node-1")
    assert inner.count("cordon_node") == 1


def test_once_another_holder_is_seen_no_write_is_sent_ever_again() -> None:
    clock = FakeClock()
    inner = Scripted()
    port = guarded(inner, clock)
    port.fence.arm(clock.monotonic(), 30)
    port.fence.lose("lease kube-system/cni-migration-lock is now held by other/7/run-b")
    with pytest.raises(LockLost, match="other/7/run-b"):
        port.set_node_label("node-1", "k", "v")
    port.fence.arm(clock.monotonic(), 30)  # a late renewal cannot undo it
    with pytest.raises(LockLost):
        port.apply_object({"kind": "ConfigMap"})
    assert "set_node_label" not in inner.calls and "apply_object" not in inner.calls
    port.list_pods()


def test_an_unarmed_fence_allows_everything() -> None:
    """On-call commands (pause, abort, status) hold no lease: their writes are compare-and-swap."""
    inner = Scripted()
    port = guarded(inner)
    assert isinstance(port.fence, Fence) and port.fence.valid_until is None
    port.patch_configmap("kube-system", "state", {"k": "v"})
    assert inner.calls == ["patch_configmap"]


# -- completeness and wiring -------------------------------------------------------------------

def port_methods() -> set[str]:
    return {name for name, value in vars(ClusterPort).items()
            if callable(value) and not name.startswith("_")}


def test_every_port_method_has_a_rule_and_the_wrapper_is_a_port() -> None:
    assert port_methods() == set(CALLS) | set(UNGUARDED)
    assert isinstance(GuardedPort(cast(Any, Scripted())), ClusterPort)
    for name in port_methods():
        mine = inspect.signature(getattr(GuardedPort, name))
        theirs = inspect.signature(getattr(ClusterPort, name))
        assert list(mine.parameters) == list(theirs.parameters), name


def test_every_command_connects_through_the_one_guarded_port() -> None:
    """Only ``commands._connect`` builds a KubeCluster, and it wraps it; no module retries on its own."""
    builders = []
    for path in sorted((ROOT / "migrator").rglob("*.py")):
        if "sim" in path.relative_to(ROOT / "migrator").parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "from_kubeconfig":
                builders.append(path.name)
            if isinstance(node, ast.Name) and node.id in ("retrying", "Retrying"):
                assert path.name in ("retry.py", "guard.py"), f"{path.name} retries on its own"
            if isinstance(node, ast.Attribute) and node.attr in ("retrying", "Retrying", "retry"):
                assert path.name in ("retry.py", "guard.py"), f"{path.name} retries on its own"
    assert builders == ["commands.py"]
    from migrator import commands
    source = inspect.getsource(commands._connect)
    assert "GuardedPort(KubeCluster.from_kubeconfig" in source
