"""The checkpoint spread over ConfigMaps of bounded size: one run ConfigMap and node shards.

A node's transition rewrites only the shard holding it, so the bytes a run writes per node do
not grow with the cluster (a single ConfigMap of every node's line grows with N, and rewriting
it at each of N nodes' transitions pushes O(N²) bytes through etcd and its watchers).

Layout, for a checkpoint named ``cni-migration-state``:

- ``cni-migration-state`` (the run ConfigMap): ``summary`` for humans and ``run.json`` (every
  run-level field, plus ``shards``: how many node shards there are and ``shard_nodes``: nodes
  per shard). A ConfigMap written by an earlier release holds a ``nodes`` key instead of
  ``shards``: that single-object layout is still read (``from_configmap_data``), and the next
  save moves its nodes into shards.
- ``cni-migration-state-nodes-000`` … : ``run`` (the run id that wrote the shard, so a stale
  shard of an earlier run is never taken for this one's), ``index`` and ``nodes``, the node
  lines of ``SHARD_NODES`` consecutive nodes in run order (``model/checkpoint.py`` encodes a line).

Every object carries ``app.kubernetes.io/name=migrator``:
``kubectl -n kube-system get cm -l app.kubernetes.io/name=migrator`` lists the run ConfigMap
first, then its shards.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from migrator.model.checkpoint import (
    READABLE_VERSIONS,
    Checkpoint,
    NodeRecord,
    encode_node_lines,
    from_configmap_data,
    parse_node_lines,
    render_summary,
    run_epoch,
)

#: Nodes per shard for a new run (a run keeps the size it started with: ``CheckpointStore.load``).
#: Nodes in flight carry their step's intent (pod uids, checks passed, a refused eviction's
#: error), so a shard of nodes in flight is several times a shard of finished ones, and most
#: writes change one node: the bytes per node follow the shard's size. In the engine
#: benchmark's 1,000-node run, 16 wrote 9.0 KiB per node (target 8) and 8 wrote 6.6-7.6 KiB,
#: until the simulated scheduler searched a window of nodes as kube-scheduler does: the
#: PodDisruptionBudget then refused more evictions, nodes waited longer in the recycle step
#: with their intent and the refusal in their line, and 8 wrote 9.5 KiB. At 4 it writes
#: 6.7 KiB. A run of 5,000 nodes keeps 1,250 shards (a LIST of them is one request).
SHARD_NODES = 4
SHARD_INFIX = "-nodes-"


def shard_name(base: str, index: int) -> str:
    """The name of shard ``index`` of checkpoint ``base``."""
    return f"{base}{SHARD_INFIX}{index:03d}"


def shard_count(nodes: int, per_shard: int = SHARD_NODES) -> int:
    return -(-nodes // per_shard)


def partition(records: Sequence[NodeRecord], per_shard: int = SHARD_NODES) -> list[tuple[NodeRecord, ...]]:
    """The node records of each shard, in run order."""
    return [shard_records(records, index, per_shard) for index in range(shard_count(len(records), per_shard))]


def shard_records(records: Sequence[NodeRecord], index: int, per_shard: int = SHARD_NODES) -> tuple[NodeRecord, ...]:
    """The node records shard ``index`` holds."""
    return tuple(records[index * per_shard:(index + 1) * per_shard])


def run_record(cp: Checkpoint) -> dict[str, Any]:
    """Every run-level field, as ``run.json`` holds it (no nodes, no shard layout). ``steered``
    names nodes: each shard records its own (a node taken in or out rewrites its shard, not the
    run's list of up to every node); ``run.json`` keeps only names that are not the run's nodes."""
    run = cp.model_dump(mode="json", exclude={"nodes", "steered"}, exclude_none=True, exclude_defaults=True)
    run["schema_version"] = cp.schema_version
    names = set(cp.order)
    elsewhere = [name for name in cp.steered if name not in names]
    if elsewhere:
        run["steered"] = elsewhere
    return run


def encode_run(cp: Checkpoint, base: str, per_shard: int = SHARD_NODES) -> dict[str, str]:
    """The run ConfigMap's data (``base``: its name)."""
    count = shard_count(len(cp.nodes), per_shard)
    run = {**run_record(cp), "shards": count, "shard_nodes": per_shard}
    where = f"{shard_name(base, 0)} … {shard_name(base, count - 1)}" if count else "none (no nodes)"
    return {"summary": render_summary(cp, shards=where),
            "run.json": json.dumps(run, separators=(",", ":"), sort_keys=True)}


def encode_shard(cp: Checkpoint, index: int, records: Sequence[NodeRecord],
                 steered: frozenset[str] | None = None) -> dict[str, str]:
    """Shard ``index``'s data: the node lines of ``records`` and, under ``steered``, which of
    them may carry the placement taint (``steered``: ``cp.steered`` as a set, when the caller
    has it already)."""
    data = {"run": cp.run_id, "index": str(index), "nodes": encode_node_lines(records, cp.started_at)}
    marked = steered_of(records, frozenset(cp.steered) if steered is None else steered)
    if marked:
        data["steered"] = marked
    return data


def steered_of(records: Sequence[NodeRecord], steered: frozenset[str]) -> str:
    """The names of ``records`` in ``steered``, as a shard writes them."""
    return " ".join(record.name for record in records if record.name in steered)


def is_sharded(run_data: Mapping[str, str]) -> bool:
    """The run ConfigMap keeps its nodes in shards (else inline, under ``nodes``)."""
    return "shards" in _run_json(run_data)


def expected_shards(run_data: Mapping[str, str]) -> tuple[str, int, int]:
    """(run id, shard count, nodes per shard) the run ConfigMap names."""
    run = _run_json(run_data)
    return str(run.get("run_id")), int(run["shards"]), int(run.get("shard_nodes", SHARD_NODES))


def decode(run_data: Mapping[str, str], shards: Mapping[int, Mapping[str, str]]) -> Checkpoint:
    """The checkpoint from its run ConfigMap's data and its shards' data by index. Raises
    ``ValueError`` naming what is missing or malformed."""
    run = _run_json(run_data)
    run_id, count, per_shard = expected_shards(run_data)
    epoch = run_epoch(run)
    records: list[NodeRecord] = []
    steered: list[str] = []
    for index in range(count):
        shard = shards.get(index)
        if shard is None:
            raise ValueError(f"node shard {index} of {count} is missing")
        if shard.get("run") != run_id:
            raise ValueError(f"node shard {index} belongs to run {shard.get('run')!r}, not {run_id!r}")
        lines = parse_node_lines(shard.get("nodes", ""), epoch)
        if len(lines) > per_shard or (index < count - 1 and len(lines) != per_shard):   # the last may hold fewer
            raise ValueError(f"node shard {index} of {count} holds {len(lines)} node(s), not the "
                             f"{per_shard} the run ConfigMap names")
        records.extend(lines)
        steered.extend(shard.get("steered", "").split())
    run = {k: v for k, v in run.items() if k not in ("shards", "shard_nodes")}
    run["steered"] = steered + list(run.get("steered", ()))
    return Checkpoint.model_validate({**run, "nodes": tuple(records)})


def decode_run(run_data: Mapping[str, str]) -> Checkpoint:
    """The run-level fields of the run ConfigMap (either layout), with no nodes."""
    run = {k: v for k, v in _run_json(run_data).items() if k not in ("shards", "shard_nodes")}
    return Checkpoint.model_validate({**run, "nodes": ()})


def from_configmaps(objects: Iterable[Mapping[str, Any]], name: str) -> Checkpoint | None:
    """The checkpoint named ``name`` among ConfigMap objects as the API serves them (a namespace's
    list), in either layout; None without its run ConfigMap. Raises ``ValueError``."""
    by_name = {(obj.get("metadata") or {}).get("name"): obj.get("data") or {} for obj in objects}
    run = by_name.get(name)
    if run is None:
        return None
    if not is_sharded(run):
        return from_configmap_data(dict(run))
    run_id, count, _ = expected_shards(run)
    found = {i: by_name[shard_name(name, i)] for i in range(count) if shard_name(name, i) in by_name}
    return decode(run, found)


def _run_json(run_data: Mapping[str, str]) -> dict[str, Any]:
    if "run.json" not in run_data:
        raise ValueError("checkpoint ConfigMap has no run.json key")
    run: dict[str, Any] = json.loads(run_data["run.json"])
    version = run.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise ValueError(f"checkpoint schema_version {version!r} is not one of {READABLE_VERSIONS}; "
                         "use the migrator release that wrote it")
    return run


def volatile_free(run_json: str) -> str:
    """``run.json`` without the last decision time: two encodings that differ only there hold the
    same run-level state (the store then need not rewrite the run ConfigMap)."""
    run = json.loads(run_json)
    run.pop("updated_at", None)
    return json.dumps(run, separators=(",", ":"), sort_keys=True)


def updated_at(run_json: str) -> datetime | None:
    value = json.loads(run_json).get("updated_at")
    return datetime.fromisoformat(value) if value else None
