"""A DaemonSet's ControllerRevisions: the history ``kubectl rollout history|undo ds/NAME`` reads.

As the real DaemonSet controller keeps it (``pkg/controller/daemon/update.go``): one
``apps/v1`` ControllerRevision per pod template the DaemonSet has had, named
``<daemonset>-<hash>`` after the same template hash its pods carry as the
``controller-revision-hash`` label, labelled like the template plus that hash, annotated like
the DaemonSet, owned by it (``controller: true``), with ``data`` the strategic merge patch that
puts the template back (``{"spec": {"template": {..., "$patch": "replace"}}}``: what
``kubectl rollout undo`` sends) and ``revision`` one more than the highest before it. Going back
to an earlier template renumbers that template's revision instead of making a new one. Revisions
beyond ``revisionHistoryLimit`` (default 10) that no live pod still runs are deleted, oldest first.

The controller only looks at the history when a DaemonSet's template hash changed since it
last did, or while it keeps more revisions than its limit because pods still run them, so a
sync that changes nothing costs no listing.
"""

from __future__ import annotations

import copy
from typing import Any

import structlog

from migrator.sim.controllers.matching import owner_reference
from migrator.sim.errors import AlreadyExists, NotFound
from migrator.sim.store import Store

Obj = dict[str, Any]
log = structlog.get_logger("migrator.sim.history")
RESOURCE = "apps/controllerrevisions"
HASH_LABEL = "controller-revision-hash"
DEFAULT_HISTORY_LIMIT = 10


def revision_name(owner: str, template_hash: str) -> str:
    return f"{owner}-{template_hash}"


def template_patch(ds: Obj) -> Obj:
    """The ``data`` of a DaemonSet revision: a patch that replaces the pod template, laid out as
    the controller's Go encoder writes it (keys sorted, the template's zero ``creationTimestamp``
    as null), since ``kubectl rollout undo`` compares it byte for byte with the live template's."""
    template = copy.deepcopy(ds["spec"]["template"])
    template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    return _sorted({"spec": {"template": {**template, "$patch": "replace"}}})


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


class DaemonSetHistory:
    """Keeps the ControllerRevisions of every DaemonSet current with its template."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._seen: dict[str, str] = {}   # DaemonSet uid -> the template hash last recorded
        self._over_limit: set[str] = set()  # DaemonSets keeping too many revisions for their live pods

    def is_current(self, ds: Obj, template_hash: str) -> bool:
        """Whether ``record`` has nothing to do (the revision is recorded, none kept past the limit)."""
        uid = ds["metadata"]["uid"]
        return self._seen.get(uid) == template_hash and uid not in self._over_limit

    def record(self, ds: Obj, template_hash: str, live_hashes: set[str]) -> None:
        """Make ``template_hash`` the DaemonSet's newest revision and trim the old ones."""
        meta = ds["metadata"]
        if self.is_current(ds, template_hash):
            return
        owned = [r for r in self.store.list(RESOURCE, meta["namespace"], index=("controller-uid", meta["uid"]))]
        name = revision_name(meta["name"], template_hash)
        current = next((r for r in owned if r["metadata"]["name"] == name), None)
        old = [r for r in owned if r is not current]
        next_revision = 1 + max((int(r.get("revision") or 0) for r in old), default=0)
        if current is None:
            self._create(ds, name, template_hash, next_revision)
        elif int(current.get("revision") or 0) < next_revision:
            self._renumber(current, next_revision)
        if self._trim(ds, old, live_hashes | {template_hash}):
            self._over_limit.add(meta["uid"])
        else:
            self._over_limit.discard(meta["uid"])
        self._seen[meta["uid"]] = template_hash

    def forget(self, uid: str) -> None:
        self._seen.pop(uid, None)
        self._over_limit.discard(uid)

    def _create(self, ds: Obj, name: str, template_hash: str, revision: int) -> None:
        meta = ds["metadata"]
        labels = {**((ds["spec"]["template"].get("metadata") or {}).get("labels") or {}), HASH_LABEL: template_hash}
        rev_meta: Obj = {"name": name, "namespace": meta["namespace"], "labels": labels,
                         "ownerReferences": [owner_reference(ds, api_version="apps/v1", kind="DaemonSet")]}
        if meta.get("annotations"):
            rev_meta["annotations"] = dict(meta["annotations"])
        try:
            self.store.create(RESOURCE, {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": rev_meta,
                                         "data": template_patch(ds), "revision": revision})
        except AlreadyExists:   # a revision of that name left by an earlier owner: renumber it
            self._renumber(self.store.get(RESOURCE, meta["namespace"], name), revision)
            return
        log.info("sim.daemonset.revision_created", daemonset=f"{meta['namespace']}/{meta['name']}",
                 revision=revision, name=name)

    def _renumber(self, rev: Obj, revision: int) -> None:
        def write(draft: Obj) -> Obj:
            draft["revision"] = revision
            return draft
        try:
            self.store.mutate(RESOURCE, rev["metadata"]["namespace"], rev["metadata"]["name"], write)
        except NotFound:
            return

    def _trim(self, ds: Obj, old: list[Obj], live_hashes: set[str]) -> bool:
        """Delete the oldest revisions beyond the limit that no live pod runs; True when more than
        the limit are left (kept for their pods), so that the next syncs look again."""
        limit = ds["spec"].get("revisionHistoryLimit")
        limit = DEFAULT_HISTORY_LIMIT if limit is None else int(limit)
        removable = sorted((r for r in old if (r["metadata"].get("labels") or {}).get(HASH_LABEL) not in live_hashes),
                           key=lambda r: int(r.get("revision") or 0))
        excess = max(0, len(old) - limit)
        for rev in removable[:excess]:
            try:
                self.store.delete(RESOURCE, rev["metadata"]["namespace"], rev["metadata"]["name"])
            except NotFound:
                continue
        return excess > len(removable)
