"""CheckpointStore against the simulated cluster: first save creates the ConfigMap, saves
are compare-and-swap (a stale resourceVersion is a Conflict and changes nothing), a lost
creation race is a Conflict, load round-trips, and an unreadable ConfigMap is reported.
"""

from __future__ import annotations

import pytest

from migrator.cluster.errors import ClusterError, Conflict
from migrator.cluster.store import CheckpointStore, CheckpointUnreadable

from .checkpoints import sample_checkpoint


def test_load_without_checkpoint(port) -> None:
    assert CheckpointStore(port).load() == (None, None)


def test_save_creates_then_cas(sim, port) -> None:
    store = CheckpointStore(port)
    cp = sample_checkpoint()
    rv1 = store.save(cp, None)
    loaded, rv = store.load()
    assert loaded == cp and rv == rv1
    stored = sim.store.get("configmaps", "kube-system", "cni-migration-state")
    assert stored["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "migrator"
    assert store.save(cp, rv1) == rv1  # an unchanged checkpoint is a no-op write
    rv2 = store.save(cp.model_copy(update={"halted": "operator asked"}), rv1)
    assert rv2 != rv1
    with pytest.raises(Conflict):
        store.save(cp, rv1)
    with pytest.raises(Conflict):
        CheckpointStore(port).save(cp, None)  # someone else created it first
    assert store.load()[1] == rv2


def test_unreadable_checkpoint(port) -> None:
    port.create_configmap("kube-system", "cni-migration-state", {"garbage": "yes"})
    with pytest.raises(CheckpointUnreadable, match="kubectl -n kube-system get cm"):
        CheckpointStore(port).load()


def test_update_reapplies_the_change_to_a_fresh_copy_after_a_conflict(sim, port) -> None:
    store = CheckpointStore(port)
    cp = sample_checkpoint()
    stale = store.save(cp, None)
    store.save(cp.model_copy(update={"halted": "someone else"}), stale)   # a concurrent writer
    saved = store.update(lambda current: current.model_copy(update={"requested": "pause"}), cp, stale)
    loaded, _ = store.load()
    assert loaded == saved and loaded.requested == "pause" and loaded.halted == "someone else"
    sim.store.delete("configmaps", "kube-system", "cni-migration-state")
    with pytest.raises(ClusterError, match="deleted meanwhile"):
        store.update(lambda current: current, cp, stale)


def test_update_gives_up_when_the_checkpoint_keeps_changing(port) -> None:
    store = CheckpointStore(port)
    cp = sample_checkpoint()
    rv = store.save(cp, None)
    other = CheckpointStore(port)
    writes = iter(range(100))

    def meddle(current):
        other.save(current.model_copy(update={"halted": f"write {next(writes)}"}), other.load()[1])
        return current.model_copy(update={"requested": "pause"})
    with pytest.raises(ClusterError, match="kept changing"):
        store.update(meddle, cp, rv, attempts=3)
    assert store.load()[0].requested is None
