"""The checkpoint: lossless ConfigMap round trip, readable encoding, size at 5,000 nodes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from migrator.model.checkpoint import (
    SCHEMA_VERSION,
    Checkpoint,
    FinalizeProgress,
    Intent,
    NodeRecord,
    PriorNodeState,
    configmap_size,
    from_configmap_data,
    to_configmap_data,
    truncate_error,
)
from migrator.model.states import NodePhase, RunPhase

T0 = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)


def rich() -> Checkpoint:
    return Checkpoint(
        plan_name="example", plan_hash="26b59e7840ea3024", run_id="run-7", run_phase=RunPhase.MIGRATING,
        run_phase_started_at=T0, requested="pause", started_at=T0, updated_at=T0 + timedelta(seconds=90),
        node_config_version="cilium.io/v2", last_node_done_at=T0 + timedelta(seconds=60),
        audit=("run started",),
        nodes=(
            NodeRecord(name="node-1", phase=NodePhase.DONE, attempt=1, phase_started_at=T0 + timedelta(seconds=60),
                       prior=PriorNodeState(unschedulable=False)),
            NodeRecord(name="node-2", phase=NodePhase.CORDONED, attempt=2,
                       phase_started_at=T0 + timedelta(seconds=70),
                       intent=Intent(step="drain", pods=("u1", "u2"), not_before=T0 + timedelta(seconds=95),
                                     blocked_since=T0 + timedelta(seconds=71), sent_at=T0 + timedelta(seconds=80)),
                       last_error="evict-pod: DisruptionBudgetBlocked: Cannot evict pod | web",
                       prior=PriorNodeState(unschedulable=True, label="", taints=("x:NoSchedule",)),
                       audit=("2026-11-22T10:01:00+00:00 pdb-override delete shop/web-1",)),
            NodeRecord(name="node-3", phase=NodePhase.LABELED, attempt=1, phase_started_at=T0 + timedelta(seconds=80),
                       intent=Intent(step="restart-agent", agent_uid="agent-uid"),
                       prior=PriorNodeState(unschedulable=False, label="false")),
            NodeRecord(name="cp-1"),
        ),
        finalize=FinalizeProgress(step="remove-calico", step_started_at=T0, cleaned=("node-1",)))


def test_round_trip_is_lossless() -> None:
    cp = rich()
    assert from_configmap_data(to_configmap_data(cp)) == cp


def test_encoding_is_readable() -> None:
    data = to_configmap_data(rich())
    assert set(data) == {"summary", "run.json", "nodes"}
    lines = data["nodes"].splitlines()
    assert lines[0] == "node-1 DONE a=1 t=60 u=0"
    assert lines[2] == "node-3 LABELED a=1 t=80 u=0 l=false | {\"intent\":{\"step\":\"restart-agent\",\"agent_uid\":\"agent-uid\"}}"
    assert lines[3] == "cp-1 PENDING a=0 t=-"
    assert "phase: MIGRATING" in data["summary"] and "requested: pause" in data["summary"]


def test_timestamps_are_whole_utc_seconds() -> None:
    local = datetime(2026, 11, 22, 11, 0, 0, 999999, tzinfo=timezone(timedelta(hours=1)))
    record = NodeRecord(name="n", phase_started_at=local)
    assert record.phase_started_at == datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
    with pytest.raises(ValueError):
        NodeRecord(name="n", phase_started_at=datetime(2026, 1, 1))


def test_size_at_5000_nodes_is_below_256_kib() -> None:
    done = tuple(NodeRecord(name=f"node-{i:05d}", phase=NodePhase.DONE, attempt=1,
                            phase_started_at=T0 + timedelta(seconds=40 * i),
                            prior=PriorNodeState(unschedulable=False)) for i in range(4990))
    flying = tuple(NodeRecord(name=f"node-{i:05d}", phase=NodePhase.CNI_VERIFIED, attempt=2,
                              phase_started_at=T0 + timedelta(days=2),
                              intent=Intent(step="recycle", pods=tuple(f"{i:08d}-aaaa-bbbb-cccc-dddddddddddd"
                                                                        for i in range(20)),
                                            owners=("DaemonSet/shop/log-agent",), sent_at=T0 + timedelta(days=2)),
                              last_error="x" * 500, prior=PriorNodeState(unschedulable=False))
                   for i in range(4990, 5000))
    cp = rich().model_copy(update={"nodes": done + flying})
    data = to_configmap_data(cp)
    size = configmap_size(data)
    print(f"checkpoint bytes at 5000 nodes: {size}")
    assert size <= 256 * 1024
    assert from_configmap_data(data) == cp


def test_fully_qualified_names_write_their_shared_domain_once() -> None:
    names = [f"ip-10-0-{i // 250}-{i % 250}.eu-west-1.compute.internal" for i in range(5000)]
    cp = rich().model_copy(update={"nodes": tuple(
        NodeRecord(name=n, phase=NodePhase.DONE, attempt=1, phase_started_at=T0 + timedelta(seconds=40 * i),
                   prior=PriorNodeState(unschedulable=False)) for i, n in enumerate(names))})
    data = to_configmap_data(cp)
    lines = data["nodes"].splitlines()
    assert lines[0] == "@names-end-with .eu-west-1.compute.internal"
    assert lines[1] == "ip-10-0-0-0 DONE a=1 t=0 u=0"
    assert configmap_size(data) <= 256 * 1024
    assert from_configmap_data(data) == cp
    mixed = rich().model_copy(update={"nodes": (NodeRecord(name="a.one.example"), NodeRecord(name="b.two.example"),
                                                NodeRecord(name="c"))})
    assert not to_configmap_data(mixed)["nodes"].startswith("@")
    assert from_configmap_data(to_configmap_data(mixed)) == mixed
    shared = mixed.model_copy(update={"nodes": mixed.nodes[:2]})
    assert to_configmap_data(shared)["nodes"].startswith("@names-end-with .example\n")
    assert from_configmap_data(to_configmap_data(shared)) == shared


def test_errors_are_truncated() -> None:
    text = truncate_error("boom " * 200)
    assert len(text) == 240 and text.endswith("…")


def test_unknown_schema_version_is_refused() -> None:
    data = to_configmap_data(rich())
    data["run.json"] = data["run.json"].replace(f'"schema_version":{SCHEMA_VERSION}', '"schema_version":99')
    with pytest.raises(ValueError, match="schema_version 99"):
        from_configmap_data(data)
    with pytest.raises(ValueError, match="run.json"):
        from_configmap_data({"summary": "x"})


def test_with_nodes_replaces_records_and_reindexes() -> None:
    cp = rich()
    assert cp.node("node-2").phase is NodePhase.CORDONED
    moved = cp.with_nodes({"node-2": cp.node("node-2").model_copy(update={"phase": NodePhase.DRAINED})})
    assert moved.node("node-2").phase is NodePhase.DRAINED
    assert cp.node("node-2").phase is NodePhase.CORDONED
    assert moved.order == cp.order
