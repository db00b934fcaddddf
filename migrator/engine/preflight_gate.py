"""The run's PREFLIGHT gate: no write to the cluster while preflight has a blocking finding.

``decide`` calls ``preflight_gate`` on every turn the run spends in PREFLIGHT, before anything
else of that phase (the CiliumNodeConfig, the probe fleet, any taint or label). The findings
come from the observation (``ClusterObservation.findings``), gathered once per process by the
shell, so ``migrator resume`` after a halt here checks a fresh cluster and goes on once the
findings are fixed.

An operator may run past a check with ``--skip-check ID``: ``request_skips`` records the
request in the checkpoint (``skipped_checks``, who and when) before the first decision, and the
gate writes one audit line per skipped check the first time it lets one of that check's
blocking findings through, and one per policy approximation the plan accepts (``policy.accept``).
Warnings and infos never stop a run. Without findings (not
gathered) the gate halts: a run is never let through unchecked.

A canary halted here (``end_canary``) ends ABORTED with the outcome ``failed`` instead of
rolling back, since nothing was changed; the next ``migrator canary`` starts anew and checks
again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from migrator.engine.table import check_run_move
from migrator.model.checkpoint import CanaryState, Checkpoint, SkippedCheck, truncate_error, utc
from migrator.model.findings import Finding, Severity
from migrator.model.states import RunPhase

AUDIT_LIMIT = 20
ACCEPTED = "policy.accepted"   # an approximation the plan accepts: audited once when the gate lets the run on
NOT_GATHERED = "preflight findings were not gathered, so nothing was changed"


def request_skips(checkpoint: Checkpoint, checks: Iterable[str], by: str, now: datetime) -> Checkpoint:
    """Record ``--skip-check`` IDs not yet recorded (only while the run is in PREFLIGHT)."""
    if checkpoint.run_phase is not RunPhase.PREFLIGHT:
        return checkpoint
    known = {s.check for s in checkpoint.skipped_checks}
    new = tuple(SkippedCheck(check=check, by=by, at=utc(now))
                for check in dict.fromkeys(checks) if check not in known)
    if not new:
        return checkpoint
    return checkpoint.model_copy(update={"skipped_checks": checkpoint.skipped_checks + new})


def blocking(findings: Sequence[Finding], skipped: Iterable[str] = ()) -> list[Finding]:
    """The blocking findings whose check is not in ``skipped``."""
    skip = set(skipped)
    return [f for f in findings if f.severity is Severity.BLOCKING and f.check not in skip]


def _halt_reason(open_findings: list[Finding]) -> str:
    checks = list(dict.fromkeys(f.check for f in open_findings))
    first = open_findings[0]
    return truncate_error(
        f"preflight: blocking finding(s) from {', '.join(checks)}; nothing was changed. "
        f"{first.check}: {first.message}. Fix them (`migrator preflight` shows each fix) or "
        "run past a check with --skip-check ID")


def preflight_gate(checkpoint: Checkpoint, findings: Sequence[Finding] | None,
                   now: datetime) -> tuple[Checkpoint, bool]:
    """The checkpoint after the gate, and whether the run may go on with PREFLIGHT's work.

    Not clear: ``checkpoint.halted`` names the blocking checks. Clear: skips that let a
    blocking finding through are marked applied and audited (once each).
    """
    if findings is None:
        return checkpoint.model_copy(update={"halted": NOT_GATHERED}), False
    cp = checkpoint
    skips = {s.check: s for s in cp.skipped_checks}
    notes: list[str] = []
    applied: list[SkippedCheck] = []
    for skip in cp.skipped_checks:
        hits = [f for f in findings if f.check == skip.check and f.severity is Severity.BLOCKING]
        if hits and not skip.applied:
            more = f" (+{len(hits) - 1} more)" if len(hits) > 1 else ""
            notes.append(truncate_error(f"check {skip.check} skipped by {skip.by} at "
                                        f"{utc(now).isoformat()}: {hits[0].message}{more}"))
            skip = skip.model_copy(update={"applied": True})
        applied.append(skip)
    if notes:
        cp = cp.model_copy(update={"skipped_checks": tuple(applied),
                                   "audit": (*cp.audit, *notes)[-AUDIT_LIMIT:]})
    open_findings = blocking(findings, skips)
    if open_findings:
        return cp.model_copy(update={"halted": _halt_reason(open_findings)}), False
    waived = [truncate_error(f"policy approximation accepted by the plan: {f.message}") for f in findings
              if f.check == ACCEPTED]
    waived = [w for w in dict.fromkeys(waived) if w not in cp.audit]
    if waived:
        cp = cp.model_copy(update={"audit": (*cp.audit, *waived)[-AUDIT_LIMIT:]})
    return cp, True


def halted_in_preflight(checkpoint: Checkpoint) -> bool:
    """The run stopped before PREFLIGHT's first write (so there is nothing to undo)."""
    return checkpoint.halted is not None and checkpoint.run_phase is RunPhase.PREFLIGHT


def end_canary(checkpoint: Checkpoint, now: datetime) -> Checkpoint:
    """A canary halted in PREFLIGHT: ABORTED with the outcome ``failed`` (no rollback needed)."""
    reason = checkpoint.halted or "halted before any change"
    check_run_move(checkpoint.run_phase, RunPhase.ABORTED)
    canary = (checkpoint.canary or CanaryState()).model_copy(update={
        "outcome": "failed", "reason": truncate_error(f"stopped before any change: {reason}")})
    return checkpoint.model_copy(update={"run_phase": RunPhase.ABORTED, "run_phase_started_at": utc(now),
                                         "canary": canary})
