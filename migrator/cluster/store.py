"""The checkpoint lives in ConfigMaps, each written with compare-and-swap.

``load`` returns the checkpoint with the ``Versions`` (resourceVersions) it was read at;
``save`` writes only the objects whose content changed, each only if nobody wrote it since
(``Conflict`` otherwise: the caller reloads, observes and decides again; it never overwrites
blindly). The layout (a run ConfigMap and node shards of ``SHARD_NODES`` nodes) belongs to
``model/shards.py``; this module only moves it. A run keeps the shard size it started with: a
store that loads a checkpoint writes it back in the size its run ConfigMap names, so a release
with another default never rewrites a run's shards in a new size (a crash halfway through such
a rewrite would leave shards the run ConfigMap does not describe).

Order of a save: the changed shards first (concurrently: one round trip per save rather than
one per shard, at 50 nodes in flight several shards change each turn), then the run ConfigMap,
only once every shard write went through. No action of a turn runs
before every write of its save went through, so a crash between two writes leaves records
that are at most one turn apart and no action taken on the newer ones; the next process
observes and decides again. The run ConfigMap is rewritten when a run-level field changes;
when only its summary's counts and the decision time moved, at most every ``SUMMARY_EVERY``.
A run ConfigMap written by an earlier release (nodes inline under ``nodes``) is read as it is,
and the next save moves its nodes into shards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

import structlog

from migrator.cluster.errors import AlreadyExists, ClusterError, Conflict, NotFound
from migrator.cluster.port import ClusterPort, ConfigMapSnapshot
from migrator.model import shards
from migrator.model.checkpoint import Checkpoint, NodeRecord, configmap_size, from_configmap_data

log = structlog.get_logger(__name__)

DEFAULT_NAMESPACE = "kube-system"
DEFAULT_NAME = "cni-migration-state"
OBJECT_LIMIT = 1024 * 1024  # etcd's per-object limit; we must stay far below it
PART_OF = "app.kubernetes.io/part-of"
COMPONENT = "app.kubernetes.io/component"
LABELS = {"app.kubernetes.io/name": "migrator", "app.kubernetes.io/managed-by": "migrator",
          COMPONENT: "checkpoint"}
#: How stale the run ConfigMap's summary (counts, last decision time) may get while only node
#: shards change.
SUMMARY_EVERY = timedelta(seconds=30)
#: Shard writes of one save in flight at once.
PARALLEL_WRITES = 8


class CheckpointUnreadable(ClusterError):
    """The ConfigMaps exist but do not hold a checkpoint this version understands."""


@dataclass(frozen=True)
class Versions:
    """The resourceVersions a checkpoint was read or written at: its run ConfigMap's and each
    shard's (by name). A compare-and-swap token: hand it back to ``save``."""

    run: str
    shards: tuple[tuple[str, str], ...] = ()

    def shard(self, name: str) -> str | None:
        return dict(self.shards).get(name)


@dataclass
class _Known:
    """What an object held at a resourceVersion (to tell whether a save changes it)."""

    resource_version: str
    data: dict[str, str]
    records: tuple[NodeRecord, ...] | None = None


@dataclass(frozen=True)
class _Saved:
    """What the last save left written: its node records and steered names, at the shard versions
    it returned (the next save from those versions looks only at the shards that differ)."""

    nodes: tuple[NodeRecord, ...]
    steered: frozenset[str]
    shards: tuple[tuple[str, str], ...]
    per_shard: int


@dataclass
class SaveStats:
    """What the last save wrote."""

    objects: int = 0
    bytes: int = 0
    largest: int = 0
    names: list[str] = field(default_factory=list)

    def add(self, name: str, data: dict[str, str]) -> None:
        size = configmap_size(data)
        self.objects, self.bytes, self.largest = self.objects + 1, self.bytes + size, max(self.largest, size)
        self.names.append(name)


class CheckpointStore:
    """Load and save the ``Checkpoint`` in a run ConfigMap and its node shards."""

    def __init__(self, port: ClusterPort, *, namespace: str = DEFAULT_NAMESPACE,
                 name: str = DEFAULT_NAME, per_shard: int = shards.SHARD_NODES) -> None:
        self.port = port
        self.namespace = namespace
        self.name = name
        self.per_shard = per_shard
        self.last_size = 0          # bytes of data in the largest object the last save wrote
        self.last_save = SaveStats()
        self.written = SaveStats()  # everything this store wrote, for benchmarks and the run's account
        self._known: dict[str, _Known] = {}
        self._saved: _Saved | None = None

    @property
    def where(self) -> str:
        return f"configmap {self.namespace}/{self.name}"

    @property
    def shard_selector(self) -> str:
        return f"{PART_OF}={self.name},{COMPONENT}=checkpoint-shard"

    def labels(self, *, shard: bool) -> dict[str, str]:
        return {**LABELS, PART_OF: self.name, **({COMPONENT: "checkpoint-shard"} if shard else {})}

    # ------------------------------------------------------------------ read
    def load(self) -> tuple[Checkpoint | None, Versions | None]:
        """The stored checkpoint and its versions, or ``(None, None)`` if there is none."""
        self._saved = None
        run = self.port.read_configmap(self.namespace, self.name)
        if run is None:
            return None, None
        # every shard, this run's or not: a save replaces a stale one at its version
        found = self.port.list_configmaps(self.namespace, self.shard_selector)
        try:
            if shards.is_sharded(run.data):
                checkpoint, by_index = self._decode(run, found)
            else:   # nodes inline, as earlier releases wrote them: the next save moves them
                checkpoint, by_index = from_configmap_data(run.data), {}
        except Exception as exc:  # noqa: BLE001 - any parse failure means the same to the caller
            raise CheckpointUnreadable(
                f"{self.where} does not hold a readable checkpoint; inspect it with kubectl -n {self.namespace} "
                f"get cm -l {PART_OF}={self.name} -o yaml ({str(exc)[:90]})") from exc
        self._remember(run, None)
        if by_index:   # the run keeps the shard size it started with, whatever this release's default
            self.per_shard = shards.expected_shards(run.data)[2]
        records = shards.partition(checkpoint.nodes, self.per_shard) if by_index else []
        for snapshot in found:
            self._known.pop(snapshot.name, None)
        for index, snapshot in by_index.items():
            self._remember(snapshot, records[index] if index < len(records) else None)
        return checkpoint, Versions(run.resource_version, tuple(sorted(
            (snapshot.name, snapshot.resource_version) for snapshot in found)))

    def read_run(self) -> Checkpoint | None:
        """The run-level fields only (``nodes`` empty): one GET, to notice an operator's request."""
        run = self.port.read_configmap(self.namespace, self.name)
        if run is None:
            return None
        try:
            return shards.decode_run(run.data)
        except Exception as exc:  # noqa: BLE001 - any parse failure means the same to the caller
            raise CheckpointUnreadable(f"{self.where} does not hold a readable checkpoint ({exc})") from exc

    def _decode(self, run: ConfigMapSnapshot,
                found: Sequence[ConfigMapSnapshot]) -> tuple[Checkpoint, dict[int, ConfigMapSnapshot]]:
        run_id, count, _ = shards.expected_shards(run.data)
        by_index = {int(s.data.get("index", "-1")): s for s in found if s.data.get("run") == run_id
                    and s.name == shards.shard_name(self.name, int(s.data.get("index", "-1")))}
        checkpoint = shards.decode(run.data, {i: s.data for i, s in by_index.items()})
        return checkpoint, {i: s for i, s in by_index.items() if i < count}

    def _remember(self, snapshot: ConfigMapSnapshot, records: tuple[NodeRecord, ...] | None) -> None:
        self._known[snapshot.name] = _Known(snapshot.resource_version, snapshot.data, records)

    # ------------------------------------------------------------------ write
    def save(self, checkpoint: Checkpoint, versions: Versions | None) -> Versions:
        """Write what changed in ``checkpoint`` since ``versions`` (``None``: nothing may exist
        yet). Returns the new versions; raises ``Conflict`` when an object moved meanwhile."""
        stats = SaveStats()
        shard_versions = dict(versions.shards) if versions else {}
        steered = frozenset(checkpoint.steered)
        nodes, per = checkpoint.nodes, self.per_shard
        candidates = self._candidates(nodes, steered, versions)
        self._saved = None   # until this save has gone through
        writes: list[tuple[str, dict[str, str], str | None, tuple[NodeRecord, ...]]] = []
        for index in range(shards.shard_count(len(nodes), per)) if candidates is None else candidates:
            records = shards.shard_records(nodes, index, per)
            name = shards.shard_name(self.name, index)
            rv = shard_versions.get(name)
            known = self._known.get(name)
            if rv is not None and known is not None and known.resource_version == rv \
                    and known.records is not None and _same(known.records, records) \
                    and known.data.get("steered", "") == shards.steered_of(records, steered):
                continue
            writes.append((name, shards.encode_shard(checkpoint, index, records, steered), rv, records))
        for (name, data, _, records), snapshot in zip(writes, self._write_shards(writes, checkpoint.run_id),
                                                       strict=True):
            self._remember(snapshot, records)
            shard_versions[name] = snapshot.resource_version
            stats.add(name, data)
        run_rv = versions.run if versions else None
        data = shards.encode_run(checkpoint, self.name, self.per_shard)
        if self._run_changed(run_rv, data):
            snapshot = self._write(self.name, data, run_rv, shard=False, run_id=checkpoint.run_id)
            self._remember(snapshot, None)
            run_rv = snapshot.resource_version
            stats.add(self.name, data)
        assert run_rv is not None
        done = Versions(run_rv, tuple(sorted(shard_versions.items())))
        self._saved = _Saved(nodes, steered, done.shards, per)
        self.last_save = stats
        self.last_size = stats.largest
        self.written.objects += stats.objects
        self.written.bytes += stats.bytes
        if stats.objects:
            log.debug("checkpoint.saved", where=self.where, objects=stats.objects, bytes=stats.bytes)
        return done

    def _candidates(self, nodes: tuple[NodeRecord, ...], steered: frozenset[str],
                    versions: Versions | None) -> list[int] | None:
        """The shards a save from ``versions`` may have to write: those holding a record that is
        not the very one the last save wrote, or a node whose steered mark moved; None (every
        shard) unless ``versions`` are what the last save returned (a load, a conflict or a failed
        write since: the full comparison decides). Unchanged records are shared between
        checkpoints, so this costs an identity check per node, not a shard's encoding."""
        saved = self._saved
        if saved is None or versions is None or versions.shards != saved.shards or saved.per_shard != self.per_shard \
                or len(saved.nodes) != len(nodes):
            return None
        per = self.per_shard
        found = {i // per for i, (before, now) in enumerate(zip(saved.nodes, nodes, strict=True)) if before is not now}
        moved = saved.steered ^ steered
        if moved:
            found |= {i // per for i, record in enumerate(nodes) if record.name in moved}
        return sorted(found)

    def _write_shards(self, writes: list[tuple[str, dict[str, str], str | None, tuple[NodeRecord, ...]]],
                      run_id: str) -> list[ConfigMapSnapshot]:
        """Write the shards at once; every write is waited for, then the first failure (in shard
        order) is raised. Shards that went through are remembered either way: their new
        versions make the next save's compare-and-swap fail and reload, as after a crash."""
        if len(writes) <= 1:
            return [self._write(name, data, rv, shard=True, run_id=run_id) for name, data, rv, _ in writes]
        futures = [_WRITER.submit(self._write, name, data, rv, shard=True, run_id=run_id)
                   for name, data, rv, _ in writes]
        failures = [error for future in futures if (error := future.exception()) is not None]
        if failures:
            for (_, _, _, records), future in zip(writes, futures, strict=True):
                if future.exception() is None:
                    self._remember(future.result(), records)
            raise failures[0]
        return [future.result() for future in futures]

    def _run_changed(self, rv: str | None, data: dict[str, str]) -> bool:
        """Whether the run ConfigMap must be written: it does not exist or holds nodes inline, a
        run-level field changed, or its summary is older than ``SUMMARY_EVERY`` and stale."""
        known = self._known.get(self.name)
        if rv is None or known is None or known.resource_version != rv or "run.json" not in known.data \
                or not shards.is_sharded(known.data):
            return True
        if shards.volatile_free(known.data["run.json"]) != shards.volatile_free(data["run.json"]):
            return True
        if known.data.get("summary") == data["summary"]:
            return False
        before, now = shards.updated_at(known.data["run.json"]), shards.updated_at(data["run.json"])
        return before is None or now is None or now - before >= SUMMARY_EVERY

    def _write(self, name: str, data: dict[str, str], rv: str | None, *, shard: bool,
               run_id: str) -> ConfigMapSnapshot:
        size = configmap_size(data)
        if size > OBJECT_LIMIT - 16 * 1024:
            raise ClusterError(f"checkpoint object {name} is {size} bytes, too close to the 1 MiB object limit")
        where = f"configmap {self.namespace}/{name}"
        labels = self.labels(shard=shard)
        if rv is None:
            try:
                return self.port.create_configmap(self.namespace, name, data, labels=labels)
            except AlreadyExists as exc:
                if shard:
                    stale = self.port.read_configmap(self.namespace, name)
                    if stale is not None and stale.data.get("run") != run_id:
                        # a shard an earlier run left behind (its run ConfigMap was deleted)
                        return self._replace(where, name, data, stale.resource_version, labels)
                log.info("checkpoint.conflict", where=where, expected=None)
                raise Conflict(f"{where} was created by someone else; reload it",
                               status=409, reason="AlreadyExists") from exc
        return self._replace(where, name, data, rv, labels)

    def _replace(self, where: str, name: str, data: dict[str, str], rv: str,
                 labels: dict[str, str]) -> ConfigMapSnapshot:
        try:
            return self.port.replace_configmap(self.namespace, name, data, resource_version=rv, labels=labels)
        except Conflict:
            log.info("checkpoint.conflict", where=where, expected=rv)
            raise

    def update(self, change: Callable[[Checkpoint], Checkpoint], checkpoint: Checkpoint,
               versions: Versions | None, *, attempts: int = 10) -> Checkpoint:
        """Save ``change(checkpoint)``; on a ``Conflict`` reload and apply ``change`` to the fresh
        copy, up to ``attempts`` times. Returns what was saved; raises ``ClusterError`` when the
        checkpoint vanished meanwhile or kept changing."""
        current: Checkpoint | None = checkpoint
        for _ in range(attempts):
            if current is None:
                raise ClusterError(f"{self.where} was deleted meanwhile")
            wanted = change(current)
            try:
                self.save(wanted, versions)
                return wanted
            except NotFound:
                current = None
            except Conflict:
                current, versions = self.load()
        raise ClusterError(f"{self.where} kept changing; try again")


#: The threads that write shards, shared by every store of the process (started on first use).
_WRITER = ThreadPoolExecutor(max_workers=PARALLEL_WRITES, thread_name_prefix="checkpoint-write")


def _same(before: tuple[NodeRecord, ...], after: tuple[NodeRecord, ...]) -> bool:
    """The two shards hold the same records (identity first: unchanged records are shared)."""
    return len(before) == len(after) and all(a is b or a == b for a, b in zip(before, after, strict=True))
