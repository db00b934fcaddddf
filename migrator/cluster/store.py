"""The checkpoint lives in a ConfigMap, written with compare-and-swap.

``load`` returns the checkpoint with the resourceVersion it was read at; ``save`` replaces
the ConfigMap only if nobody wrote it since (``Conflict`` otherwise: the caller reloads,
observes and decides again; it never overwrites blindly). The first save creates the
ConfigMap; losing that race is a ``Conflict`` too. The data layout (a ``summary`` key and one
compact line per node) belongs to ``model/checkpoint.py``; this module only moves it.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from migrator.cluster.errors import AlreadyExists, ClusterError, Conflict, NotFound
from migrator.cluster.port import ClusterPort
from migrator.model.checkpoint import (
    Checkpoint,
    configmap_size,
    from_configmap_data,
    to_configmap_data,
)

log = structlog.get_logger(__name__)

DEFAULT_NAMESPACE = "kube-system"
DEFAULT_NAME = "cni-migration-state"
OBJECT_LIMIT = 1024 * 1024  # etcd's per-object limit; we must stay far below it
LABELS = {"app.kubernetes.io/managed-by": "migrator", "app.kubernetes.io/component": "checkpoint"}


class CheckpointUnreadable(ClusterError):
    """The ConfigMap exists but does not hold a checkpoint this version understands."""


class CheckpointStore:
    """Load and save the ``Checkpoint`` in one ConfigMap."""

    def __init__(self, port: ClusterPort, *, namespace: str = DEFAULT_NAMESPACE,
                 name: str = DEFAULT_NAME) -> None:
        self.port = port
        self.namespace = namespace
        self.name = name
        self.last_size = 0

    @property
    def where(self) -> str:
        return f"configmap {self.namespace}/{self.name}"

    def load(self) -> tuple[Checkpoint | None, str | None]:
        """The stored checkpoint and its resourceVersion, or ``(None, None)`` if there is none."""
        snapshot = self.port.read_configmap(self.namespace, self.name)
        if snapshot is None:
            return None, None
        try:
            checkpoint = from_configmap_data(snapshot.data)
        except Exception as exc:  # noqa: BLE001 - any parse failure means the same to the caller
            raise CheckpointUnreadable(
                f"{self.where} does not hold a readable checkpoint ({exc}); inspect it with "
                f"kubectl -n {self.namespace} get cm {self.name} -o yaml") from exc
        return checkpoint, snapshot.resource_version

    def save(self, checkpoint: Checkpoint, resource_version: str | None) -> str:
        """Write ``checkpoint`` if the ConfigMap is still at ``resource_version`` (``None``: it
        must not exist yet). Returns the new resourceVersion; raises ``Conflict`` otherwise."""
        data = to_configmap_data(checkpoint)
        size = configmap_size(data)
        if size > OBJECT_LIMIT - 16 * 1024:
            raise ClusterError(f"checkpoint is {size} bytes, too close to the 1 MiB object limit")
        self.last_size = size
        if resource_version is None:
            try:
                snapshot = self.port.create_configmap(self.namespace, self.name, data, labels=LABELS)
            except AlreadyExists as exc:
                log.info("checkpoint.conflict", where=self.where, expected=None)
                raise Conflict(f"{self.where} was created by someone else; reload it",
                               status=409, reason="AlreadyExists") from exc
        else:
            try:
                snapshot = self.port.replace_configmap(self.namespace, self.name, data,
                                                       resource_version=resource_version,
                                                       labels=LABELS)
            except Conflict:
                log.info("checkpoint.conflict", where=self.where, expected=resource_version)
                raise
        log.debug("checkpoint.saved", where=self.where, bytes=size,
                  resource_version=snapshot.resource_version)
        return snapshot.resource_version

    def update(self, change: Callable[[Checkpoint], Checkpoint], checkpoint: Checkpoint,
               resource_version: str | None, *, attempts: int = 10) -> Checkpoint:
        """Save ``change(checkpoint)``; on a ``Conflict`` reload and apply ``change`` to the fresh
        copy, up to ``attempts`` times. Returns what was saved; raises ``ClusterError`` when the
        checkpoint vanished meanwhile or kept changing."""
        current: Checkpoint | None = checkpoint
        for _ in range(attempts):
            if current is None:
                raise ClusterError(f"{self.where} was deleted meanwhile")
            wanted = change(current)
            try:
                self.save(wanted, resource_version)
                return wanted
            except NotFound:
                current = None
            except Conflict:
                current, resource_version = self.load()
        raise ClusterError(f"{self.where} kept changing; try again")

