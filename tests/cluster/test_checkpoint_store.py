"""CheckpointStore against the simulated cluster: first save creates the ConfigMap, saves
are compare-and-swap (a stale resourceVersion is a Conflict and changes nothing), a lost
creation race is a Conflict, load round-trips, and an unreadable ConfigMap is reported.
"""

from __future__ import annotations

import pytest

from migrator.cluster.errors import Conflict
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
