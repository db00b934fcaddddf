"""Policy continuity (``policy.mode: continuous``): what the run's steps do about network policy.

- prepare: the translation and the shims (``PolicyFacts.wanted``) are applied with the
  CiliumNodeConfig, and the run is PREPARED only once all of them are observed, so they exist
  before the first node switches (inert until a node enforces: ``enable-policy`` is ``default``
  only on nodes the CiliumNodeConfig selects);
- the switch (the node's ``label`` row): the node's gap report is recorded in its record and sent
  as an Event before the label, and the label waits until the report is observed;
- finalize: the shims are removed, then ``policy verify`` over the live translation must pass,
  then the Calico policy objects are deleted — each a row of ``engine.finalize``;
- rollback of the whole run, or an abort: every object carrying the run's policy label is deleted
  before the run ends. A node's rollback removes nothing: unlabelled, the node leaves the
  CiliumNodeConfig, so its agent stops enforcing and Calico's policies apply to it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from migrator.engine.actions import Action, ApplyObject, DeleteObject
from migrator.model.observation import ClusterObservation, GapFacts, PolicyObjectFacts
from migrator.model.plan import MigrationPlan
from migrator.policy.shims import SHIM_LABEL

GAP_LIMIT = 600
#: Policy objects are not watched: after applying or deleting them, look again this soon (the
#: sends themselves still wait ``RESEND_AFTER`` before a resend).
POLL = timedelta(seconds=2)
PLURALS = {"CiliumNetworkPolicy": "ciliumnetworkpolicies",
           "CiliumClusterwideNetworkPolicy": "ciliumclusterwidenetworkpolicies",
           "CiliumCIDRGroup": "ciliumcidrgroups"}


def is_shim(manifest: Mapping[str, Any]) -> bool:
    """A wanted manifest that is a migration shim (not part of the translation)."""
    return ((manifest.get("metadata") or {}).get("labels") or {}).get(SHIM_LABEL) == "true"


def continuous(plan: MigrationPlan) -> bool:
    return plan.policy.mode == "continuous"


def to_apply(plan: MigrationPlan, obs: ClusterObservation) -> tuple[list[Action], str | None]:
    """(the apply actions, what is awaited) before the run may be PREPARED; (…, None) when every
    wanted object is observed or the plan does not carry policy."""
    if not continuous(plan):
        return [], None
    if obs.policy is None:
        return [], "waiting for the policy translation to be observed"
    if obs.policy.error is not None:
        return [], f"the cluster's policies cannot be translated ({obs.policy.error}): fix that object"
    if obs.policy.present is None:
        return [], "waiting for the run's policy objects to be listed"
    missing = obs.policy.missing
    if not missing:
        return [], None
    shims = sum(1 for m in missing if is_shim(m))
    return ([ApplyObject(manifest=m) for m in missing],
            f"applying {len(missing) - shims} translated policy object(s) and {shims} shim(s)")


def delete(o: PolicyObjectFacts) -> DeleteObject:
    group, version = o.api_version.split("/", 1)
    return DeleteObject(group=group, version=version, plural=PLURALS[o.kind], namespace=o.namespace, name=o.name)


def removals(obs: ClusterObservation, *, shims_only: bool = False) -> list[Action]:
    """Deletions of the objects the run applied (only the shims with ``shims_only``)."""
    if obs.policy is None:
        return []
    return [delete(o) for o in obs.policy.present or () if o.shim or not shims_only]


def left_behind(plan: MigrationPlan, obs: ClusterObservation) -> str | None:
    """Why a rollback of the whole run or an abort may not end yet: objects it applied remain."""
    if not continuous(plan):
        return None
    if obs.policy is None or obs.policy.present is None:
        return "waiting for the run's policy objects to be observed"
    if obs.policy.present:
        return f"removing {len(obs.policy.present)} policy object(s) the run applied"
    return None


def node_gap(plan: MigrationPlan, obs: ClusterObservation, node: str) -> GapFacts | None:
    """The node's gap report (None until observed, or when the plan does not carry policy)."""
    if not continuous(plan) or obs.policy is None:
        return None
    return obs.policy.gaps.get(node)


def gap_wait(obs: ClusterObservation) -> str:
    """What the switch waits for while the node's gap report is not observed."""
    error = obs.policy.error if obs.policy is not None else None
    return (f"waiting for the node's policy gap report: the cluster's policies cannot be translated ({error})"
            if error else "waiting for the node's policy gap report")


def gap_text(gap: GapFacts) -> str:
    """The report as kept in the node's record and Event: bounded."""
    if gap.flows == 0:
        return "no flow enforced differently from before the run during this node's window"
    text = (f"{gap.flows} flow(s) enforced differently from before the run during this node's window: "
            + "; ".join(gap.lines))
    return text if len(text) <= GAP_LIMIT else text[:GAP_LIMIT - 1] + "…"
