"""The checkpoint in a run ConfigMap and node shards: a node's transition rewrites its shard
alone (bytes per transition do not grow with the cluster), the run ConfigMap only when a
run-level field changes (or its summary is ``SUMMARY_EVERY`` stale), every object is a
compare-and-swap, a checkpoint in the single-ConfigMap layout of earlier releases is read and
moved into shards by the next save (also after a crash halfway through that move), shards an
earlier run left behind are never read as this run's, a missing shard is named, a run keeps the
shard size it started with, and shards of another size than the run ConfigMap names are refused.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from migrator.cluster.errors import Conflict
from migrator.cluster.store import SUMMARY_EVERY, CheckpointStore, CheckpointUnreadable
from migrator.model.checkpoint import (
    Checkpoint,
    Intent,
    NodeRecord,
    PriorNodeState,
    in_run_order,
    to_configmap_data,
)
from migrator.model.shards import SHARD_NODES, encode_shard, from_configmaps, shard_name
from migrator.model.states import NodePhase, RunPhase

from .memport import MemoryPort

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NAME = "cni-migration-state"


def big(nodes: int, run_id: str = "run-1") -> Checkpoint:
    records = tuple(NodeRecord(name=f"worker-{i:05d}.zone-{i % 3}.example.internal", phase=NodePhase.DONE,
                               attempt=1, phase_started_at=START + timedelta(seconds=i),
                               prior=PriorNodeState(unschedulable=False)) for i in range(nodes))
    return Checkpoint(plan_name="example", plan_hash="abc", run_id=run_id, run_phase=RunPhase.MIGRATING,
                      started_at=START, updated_at=START, nodes=records)


def step(cp: Checkpoint, index: int, seconds: int = 1) -> Checkpoint:
    """Node ``index`` moves on (a new intent), one decision ``seconds`` later."""
    record = cp.nodes[index]
    moved = record.model_copy(update={"phase": NodePhase.CORDONED, "intent": Intent(step="drain", pods=("uid-a",))})
    return cp.with_nodes({record.name: moved}, updated_at=(cp.updated_at or START) + timedelta(seconds=seconds))


def loads_as(store: CheckpointStore, cp: Checkpoint, versions) -> None:
    """``store`` reads back ``cp`` at ``versions`` (the decision time aside: the run ConfigMap is
    not rewritten for it alone)."""
    loaded, at = store.load()
    assert loaded is not None and at == versions
    assert loaded.model_copy(update={"updated_at": cp.updated_at}) == cp


def written(port: MemoryPort, before: int) -> int:
    return port.writes - before


@pytest.mark.parametrize("nodes", [100, 1000, 5000])
def test_a_transition_writes_one_shard_whatever_the_cluster_size(nodes: int) -> None:
    port = MemoryPort()
    store = CheckpointStore(port)
    cp = big(nodes)
    versions = store.save(cp, None)
    assert written(port, 0) == -(-nodes // SHARD_NODES) + 1   # every shard, then the run ConfigMap
    before = port.writes
    cp = step(cp, nodes // 2)
    versions = store.save(cp, versions)
    assert written(port, before) == 1 and store.last_save.names == [shard_name(NAME, nodes // 2 // SHARD_NODES)]
    assert store.last_save.bytes < 2048, store.last_save.bytes
    loads_as(store, cp, versions)


def test_the_run_configmap_is_rewritten_for_run_fields_and_a_stale_summary_only() -> None:
    port = MemoryPort()
    store = CheckpointStore(port)
    cp = big(40)
    versions = store.save(cp, None)
    cp = step(cp, 3, seconds=5)                        # counts changed, summary 5 s old: shards only
    versions = store.save(cp, versions)
    assert NAME not in store.last_save.names
    assert "cordoned=1" not in port.configmaps[("kube-system", NAME)].data["summary"]
    cp = step(cp, 4, seconds=int(SUMMARY_EVERY.total_seconds()))   # the summary is now stale
    versions = store.save(cp, versions)
    assert NAME in store.last_save.names
    assert "cordoned=2" in port.configmaps[("kube-system", NAME)].data["summary"]
    cp = cp.model_copy(update={"requested": "pause"})     # a run-level field: written at once
    versions = store.save(cp, versions)
    assert store.last_save.names == [NAME]
    assert store.save(cp, versions) == versions and store.last_save.objects == 0   # nothing changed
    loaded, _ = store.load()
    assert loaded is not None and loaded.requested == "pause" and loaded.nodes == cp.nodes


def test_every_object_is_compare_and_swap() -> None:
    port = MemoryPort()
    store = CheckpointStore(port)
    cp = big(40)
    stale = store.save(cp, None)
    store.save(step(cp, 1), stale)                     # someone else moved node 1's shard
    with pytest.raises(Conflict):
        CheckpointStore(port).save(step(cp, 2), stale)  # the same shard, from the stale versions
    with pytest.raises(Conflict):
        CheckpointStore(port).save(big(40, run_id="run-2"), None)   # the run ConfigMap exists


def test_shards_of_one_save_are_written_together_and_one_conflict_stops_the_run_configmap() -> None:
    """A save whose shards are written at once: when one of them meets a 409, the others went
    through, the run ConfigMap is not written, and a reload reads every shard as it now is."""
    port = MemoryPort()
    store = CheckpointStore(port)
    cp = big(5 * SHARD_NODES)
    versions = store.save(cp, None)
    run_before = port.configmaps[("kube-system", NAME)].resource_version
    other = port.configmaps[("kube-system", shard_name(NAME, 2))]    # someone else moves shard 2
    port.replace_configmap("kube-system", other.name, dict(other.data, moved="yes"),
                           resource_version=other.resource_version,
                           labels=port.configmap_labels[("kube-system", other.name)])
    moved = cp
    for shard in range(5):
        moved = step(moved, shard * SHARD_NODES + 1, seconds=int(SUMMARY_EVERY.total_seconds()))
    with pytest.raises(Conflict):
        store.save(moved, versions)
    assert port.configmaps[("kube-system", NAME)].resource_version == run_before
    loaded, fresh = store.load()
    assert loaded is not None
    for shard in range(5):    # the others were written, though the save as a whole failed
        assert loaded.nodes[shard * SHARD_NODES + 1].phase is (NodePhase.DONE if shard == 2 else NodePhase.CORDONED)
    store.save(step(loaded, 2 * SHARD_NODES + 1), fresh)   # from the reloaded versions it goes through


def test_a_single_configmap_checkpoint_moves_into_shards_on_the_next_save() -> None:
    port = MemoryPort()
    cp = big(40)
    port.create_configmap("kube-system", NAME, to_configmap_data(cp))   # as an earlier release wrote it
    store = CheckpointStore(port)
    loaded, versions = store.load()
    assert loaded == cp
    cp = step(cp, 0)
    versions = store.save(cp, versions)
    run = port.configmaps[("kube-system", NAME)].data
    assert "nodes" not in run and f'"shards":{-(-40 // SHARD_NODES)}' in run["run.json"]
    loads_as(CheckpointStore(port), cp, versions)


def test_a_move_into_shards_cut_short_is_read_from_the_inline_nodes_and_finished() -> None:
    port = MemoryPort()
    cp = big(40)
    port.create_configmap("kube-system", NAME, to_configmap_data(cp))
    store = CheckpointStore(port)
    _, versions = store.load()
    moved = step(cp, 0)
    crashing = CheckpointStore(port)
    crashing._write = _fail_on(crashing._write, NAME)   # the run ConfigMap's write never happens
    with pytest.raises(RuntimeError):
        crashing.save(moved, versions)
    loaded, versions = CheckpointStore(port).load()
    assert loaded == cp                                  # the inline nodes still hold
    later = step(cp, 5)
    versions = CheckpointStore(port).save(later, versions)
    loads_as(CheckpointStore(port), later, versions)


def test_shards_left_by_an_earlier_run_are_never_this_runs() -> None:
    port = MemoryPort()
    CheckpointStore(port).save(big(40, run_id="old"), None)
    del port.configmaps[("kube-system", NAME)]          # `kubectl delete cm cni-migration-state`
    store = CheckpointStore(port)
    assert store.load() == (None, None)
    fresh = big(2 * SHARD_NODES, run_id="new")
    versions = store.save(fresh, None)                   # replaces the old shards it overlaps
    loaded, at = store.load()
    assert loaded == fresh and at is not None and set(versions.shards) < set(at.shards)
    assert port.configmaps[("kube-system", shard_name(NAME, 2))].data["run"] == "old"   # beyond the run: ignored


def test_a_missing_or_foreign_shard_is_named() -> None:
    port = MemoryPort()
    CheckpointStore(port).save(big(40), None)
    del port.configmaps[("kube-system", shard_name(NAME, 1))]
    with pytest.raises(CheckpointUnreadable, match=rf"get cm -l .* -o yaml \(node shard 1 of {-(-40 // SHARD_NODES)} is missing\)"):
        CheckpointStore(port).load()


def test_a_run_keeps_the_shard_size_it_started_with() -> None:
    """A release with another default shard size resumes a run in the size its run ConfigMap
    names: a transition rewrites that one shard, nothing is moved into the new size."""
    port = MemoryPort()
    older = 2 * SHARD_NODES
    cp = big(5 * older)
    CheckpointStore(port, per_shard=older).save(cp, None)    # as a release with twice the size wrote it
    store = CheckpointStore(port)
    loaded, versions = store.load()
    assert loaded == cp and store.per_shard == older
    before = port.writes
    cp = step(cp, 3 * older + 1)
    versions = store.save(cp, versions)
    assert written(port, before) == 1 and store.last_save.names == [shard_name(NAME, 3)]
    assert f'"shard_nodes":{older}' in port.configmaps[("kube-system", NAME)].data["run.json"]
    loads_as(CheckpointStore(port), cp, versions)


@pytest.mark.parametrize("index, first, last", [(0, 0, SHARD_NODES // 2), (3, 3 * SHARD_NODES - 1, 4 * SHARD_NODES)])
def test_a_shard_of_another_size_than_the_run_names_is_refused(index: int, first: int, last: int) -> None:
    """Shards whose node count differs from the size the run ConfigMap names (a layout change cut
    short) are refused by name rather than read as a shorter (or longer) run; only the last shard
    may hold fewer."""
    port = MemoryPort()
    cp = big(4 * SHARD_NODES)
    CheckpointStore(port).save(cp, None)
    records = cp.nodes[first:last]
    CheckpointStore(port)._write_shards(   # one shard rewritten in another size, the run ConfigMap not yet
        [(shard_name(NAME, index), encode_shard(cp, index, records), port.configmaps[
            ("kube-system", shard_name(NAME, index))].resource_version, records)], cp.run_id)
    with pytest.raises(CheckpointUnreadable,
                       match=rf"node shard {index} of 4 holds {len(records)} node\(s\), not the {SHARD_NODES}"):
        CheckpointStore(port).load()


def test_the_objects_as_kubectl_lists_them(sim, port) -> None:
    store = CheckpointStore(port)
    cp = big(40)
    store.save(cp, None)
    listed = sim.store.list("configmaps", "kube-system")
    ours = sorted(o["metadata"]["name"] for o in listed
                  if o["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "migrator")
    assert ours == [NAME] + [shard_name(NAME, i) for i in range(-(-40 // SHARD_NODES))]   # the summary first
    assert from_configmaps(listed, NAME) == cp
    assert max(len(str(o.get("data"))) for o in listed if o["metadata"]["name"] in ours) < 8 * 1024


def _fail_on(write, name: str):
    def wrapped(what: str, *args, **kwargs):
        if what == name:
            raise RuntimeError("crash before the run ConfigMap's write")
        return write(what, *args, **kwargs)
    return wrapped


def test_steered_nodes_live_in_their_shards() -> None:
    """The placement taint's bookkeeping (``steered``: up to every node not yet started) is kept
    by each shard for its own nodes: a node taken out rewrites its shard, not a list of every
    node in the run ConfigMap; names that are not the run's nodes stay in ``run.json``."""
    port = MemoryPort()
    store = CheckpointStore(port)
    cp = big(100)
    names = cp.order
    cp = cp.model_copy(update={"steered": in_run_order(names, [*names[10:], "not-in-the-run"])})
    versions = store.save(cp, None)
    assert '"steered":["not-in-the-run"]' in port.configmaps[("kube-system", NAME)].data["run.json"]
    loads_as(store, cp, versions)
    cp = cp.model_copy(update={"steered": in_run_order(names, [n for n in cp.steered if n != names[40]])})
    versions = store.save(cp, versions)
    assert store.last_save.names == [shard_name(NAME, 40 // SHARD_NODES)]
    loads_as(CheckpointStore(port), cp, versions)


@pytest.mark.parametrize("seed", range(3))
def test_a_save_from_its_own_versions_writes_what_a_full_comparison_would(seed: int) -> None:
    """A save from the versions the last save returned looks only at the shards holding a record
    that changed or a node whose steered mark moved; it must write exactly the shards (and
    bytes) that comparing every shard writes, through any mix of transitions and marks."""
    import random

    rng = random.Random(seed)
    cp = big(23 * SHARD_NODES + 1)
    names = [r.name for r in cp.nodes]
    quick, full = CheckpointStore(MemoryPort()), CheckpointStore(MemoryPort())
    at_quick, at_full = quick.save(cp, None), full.save(cp, None)
    for turn in range(80):
        for index in rng.sample(range(len(names)), rng.randint(0, 4)):
            cp = step(cp, index, seconds=turn)
        if rng.random() < 0.4:
            marked = set(cp.steered) ^ set(rng.sample(names, rng.randint(1, 3)))
            cp = cp.model_copy(update={"steered": in_run_order(names, marked)})
        at_quick = quick.save(cp, at_quick)
        full._saved = None   # as after a load: every shard compared
        at_full = full.save(cp, at_full)
        assert quick.last_save.names == full.last_save.names and quick.last_save.bytes == full.last_save.bytes
    loads_as(quick, cp, at_quick)


def test_a_shard_whose_write_failed_is_written_by_the_next_save_from_the_same_versions() -> None:
    """A save that failed part-way (an API error on one shard) is tried again from the versions
    before it, as the run loop does: the shard that did not go through must be written then,
    not taken for one the last save already wrote."""
    from migrator.cluster.errors import Unavailable

    port = MemoryPort()
    store = CheckpointStore(port)
    cp = big(6 * SHARD_NODES)
    versions = store.save(cp, None)
    cp = step(cp, 4 * SHARD_NODES + 1)
    failing = shard_name(NAME, 4)
    replace = port.replace_configmap

    def refuse_once(namespace, name, data, **kwargs):
        if name == failing:
            port.replace_configmap = replace   # type: ignore[method-assign]
            raise Unavailable("etcdserver: request timed out", status=503)
        return replace(namespace, name, data, **kwargs)

    port.replace_configmap = refuse_once   # type: ignore[method-assign]
    with pytest.raises(Unavailable):
        store.save(cp, versions)
    versions = store.save(cp, versions)
    assert store.last_save.names == [failing]
    loads_as(store, cp, versions)
