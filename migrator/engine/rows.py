"""Steps as rows, and the one interpreter that runs them.

Every sub-machine of the engine — a node's forward steps, its rollback stages, finalize — is a
table of ``Row`` values: the step, the observation that says it is done, the actions it sends
(or, for a step that paces its own actions, the work it does), the observation that says it
cannot succeed, its timeout and where each way out leads. ``advance`` runs one row once and
answers which way out was taken, if any; each machine's driver applies that answer (moves the
node, starts the next stage, halts the run). ``validate`` checks a table when its module is
imported (every step reachable from the first, every step has a way out, every way out leads to
a step or an end of the machine), and ``render`` writes it into ``runbooks/state-table.md``.

The interpreter owns the three things every step used to repeat: "effect observed → move on",
"deadline passed → the timeout's way out", "due → send, then wait ``RESEND_AFTER``".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, Literal, Protocol, TypeVar

from migrator.engine.actions import Action
from migrator.engine.pending import Pending
from migrator.engine.table import reaching
from migrator.model.plan import MigrationPlan

C = TypeVar("C", bound="Cursor")
WayKind = Literal["done", "skipped", "failed", "timeout"]


class RowError(RuntimeError):
    """A malformed table (a bug in the engine, found at import)."""


class Cursor(Protocol):
    """What the interpreter needs from the machine it runs a row for."""

    @property
    def plan(self) -> MigrationPlan:
        """The plan being run."""

    @property
    def now(self) -> datetime:
        """The decision's time."""

    @property
    def pending(self) -> Pending:
        """When the row's single batch was last sent."""

    @property
    def started_at(self) -> datetime:
        """When the row's step began (its deadline counts from here)."""

    def sent(self, actions: Sequence[Action]) -> None:
        """Emit ``actions`` and record that they were sent now."""

    def wake(self, moment: datetime | None) -> None:
        """Look again at ``moment`` even if nothing changes."""

    def emit(self, actions: Sequence[Action]) -> None:
        """Emit ``actions`` without recording a send (actions that go with a move on)."""

    def say(self, note: str) -> None:
        """Set the note that says what the step is doing."""


@dataclass(kw_only=True)
class Gathered:
    """What a run-level row (finalize, the canary soak) gathers in one decision: its actions,
    the note saying what it does, and when to look again."""

    actions: list[Action] = field(default_factory=list)
    note: str = ""
    wake_at: datetime | None = None

    def emit(self, actions: Sequence[Action]) -> None:
        self.actions.extend(actions)

    def wake(self, moment: datetime | None) -> None:
        if moment is not None and (self.wake_at is None or moment < self.wake_at):
            self.wake_at = moment

    def say(self, note: str) -> None:
        self.note = note


class _Progress(Protocol):
    @property
    def sent_at(self) -> datetime | None: ...

    @property
    def step_started_at(self) -> datetime | None: ...


@dataclass(kw_only=True)
class ProgressCursor(Gathered):
    """A run-level machine whose checkpoint record (``progress``) holds when its step began and
    when its step's actions were last sent (finalize, the routing hand-over)."""

    now: datetime
    progress: Any

    @property
    def pending(self) -> Pending:
        progress: _Progress = self.progress
        return Pending(progress.sent_at)

    @property
    def started_at(self) -> datetime:
        progress: _Progress = self.progress
        return progress.step_started_at or self.now


@dataclass(frozen=True)
class Way:
    """The way out of a row that was taken: where it leads and why."""

    kind: WayKind
    to: str
    why: str


@dataclass(frozen=True)
class Row(Generic[C]):
    """One step of a sub-machine.

    Exactly one of ``send`` (one idempotent batch, resent through ``Pending`` until ``done``
    shows; ``hold`` may say why it must wait first) and ``work`` (a step that paces its own
    actions: evictions, probe rounds) is set. ``skip`` says the row does not apply (the plan
    turned it off, or the node needs no such stage); ``failed`` is an observation that the step
    cannot succeed; ``timeout`` returns the step's time limit for this decision (None: no
    deadline now). ``on_done`` actions go out with the move on (a finished helper pod is
    removed). ``doing`` is the note while a ``send`` row waits. The ``*_doc`` strings render
    the row in the runbook.
    """

    step: str
    done: Callable[[C], str | None]
    then: str
    done_doc: str
    send: Callable[[C], Sequence[Action]] | None = None
    work: Callable[[C], None] | None = None
    sends: tuple[str, ...] = ()
    failed: Callable[[C], str | None] | None = None
    on_failed: str | None = None
    failed_doc: str = ""
    timeout: Callable[[C], timedelta | None] | None = None
    on_timeout: str | None = None
    timeout_doc: str = ""
    timeout_error: Callable[[C], str] | None = None
    hold: Callable[[C], str | None] | None = None
    hold_doc: str = ""
    skip: Callable[[C], str | None] | None = None
    skip_doc: str = ""
    on_done: Callable[[C], Sequence[Action]] | None = None
    doing: str | Callable[[C], str] = ""
    runs_in: str = ""

    @property
    def ways(self) -> dict[WayKind, str]:
        """Where each way out of this row leads."""
        ways: dict[WayKind, str] = {"done": self.then}
        if self.on_failed is not None:
            ways["failed"] = self.on_failed
        if self.on_timeout is not None:
            ways["timeout"] = self.on_timeout
        return ways


def advance(row: Row[C], cursor: C) -> Way | None:
    """Run ``row`` once for ``cursor``: the way out taken, or None while the step goes on."""
    if row.skip is not None:
        skipped = row.skip(cursor)
        if skipped is not None:
            return Way("skipped", row.then, skipped)
    note = row.done(cursor)
    if note is not None:
        if row.on_done is not None:
            cursor.emit(row.on_done(cursor))
        return Way("done", row.then, note)
    if row.failed is not None:
        why = row.failed(cursor)
        if why is not None:
            assert row.on_failed is not None
            return Way("failed", row.on_failed, why)
    if row.timeout is not None:
        limit = row.timeout(cursor)
        if limit is not None:
            deadline = cursor.started_at + limit
            if cursor.now >= deadline:
                assert row.on_timeout is not None
                why = row.timeout_error(cursor) if row.timeout_error else f"{row.step} not done in time"
                return Way("timeout", row.on_timeout, why)
            cursor.wake(deadline)
    if row.send is not None:
        held = row.hold(cursor) if row.hold is not None else None
        if held is not None:
            cursor.say(held)
            return None
        pending = cursor.pending
        cursor.say(row.doing(cursor) if callable(row.doing) else row.doing)
        if pending.due(cursor.now):
            actions = row.send(cursor)
            if actions:
                cursor.sent(actions)
        cursor.wake(pending.wake_at(cursor.now))
    elif row.work is not None:
        row.work(cursor)
    return None


def validate(name: str, rows: Mapping[str, Row[Any]], first: str | Sequence[str], ends: frozenset[str],
             follow: Mapping[str, str] | None = None) -> None:
    """Raise ``RowError`` unless the table ``rows`` is well formed.

    ``first`` is where the machine starts, ``ends`` the targets that leave it (phases the
    driver moves to, or the end of the machine). Every row must do something (send or work),
    every way out must lead to a row or an end, every row must be reachable from ``first`` and
    reach an end, and a row with a timeout or an observed failure must say where it leads.
    ``follow`` maps a target that is not a row key (a node phase) to the row that runs next."""
    firsts = [first] if isinstance(first, str) else list(first)
    follow = follow or {}

    def nexts(row: Row[Any]) -> list[str]:
        return [follow.get(t, t) for t in row.ways.values()]

    for key, row in rows.items():
        if key != row.step:
            raise RowError(f"{name}: row {key!r} is declared as {row.step!r}")
        if (row.send is None) == (row.work is None):
            raise RowError(f"{name}: row {key!r} needs exactly one of send or work")
        if row.hold is not None and row.send is None:
            raise RowError(f"{name}: row {key!r} holds a send it does not have")
        if (row.timeout is None) != (row.on_timeout is None):
            raise RowError(f"{name}: row {key!r} has a timeout without a way out, or the reverse")
        if (row.failed is None) != (row.on_failed is None):
            raise RowError(f"{name}: row {key!r} has a failure without a way out, or the reverse")
        for kind, target in row.ways.items():
            if follow.get(target, target) not in rows and target not in ends:
                raise RowError(f"{name}: row {key!r} {kind} leads to unknown {target!r}")
    seen: set[str] = set()
    todo = [f for f in firsts if f in rows]
    while todo:
        key = todo.pop()
        if key in seen:
            continue
        seen.add(key)
        todo.extend(t for t in nexts(rows[key]) if t in rows)
    unreachable = sorted(set(rows) - seen)
    if unreachable:
        raise RowError(f"{name}: rows {unreachable} are unreachable from {firsts}")
    reaches = reaching(ends, {key: nexts(row) for key, row in rows.items()})
    stuck = sorted(set(rows) - reaches)
    if stuck:
        raise RowError(f"{name}: rows {stuck} never reach an end")


def render(title: str, intro: str, rows: Mapping[str, Row[Any]], runs_in: str = "—") -> list[str]:
    """The table as Markdown lines."""
    lines = [f"### {title}", "", intro, "",
             "| Step | Runs in | Done when | Sends | Fails when | Timeout | Leads to |", "|---|---|---|---|---|---|---|"]
    for row in rows.values():
        ways = row.ways
        leads = [f"done → `{ways['done']}`"]
        if "failed" in ways:
            leads.append(f"failed → `{ways['failed']}`")
        if "timeout" in ways:
            leads.append(f"timeout → `{ways['timeout']}`")
        sends = ", ".join(f"`{k}`" for k in row.sends) or "—"
        done = row.done_doc + (f" (skipped when {row.skip_doc})" if row.skip_doc else "") + (
            f"; waits while {row.hold_doc}" if row.hold_doc else "")
        lines.append(f"| `{row.step}` | {row.runs_in or runs_in} | {done} | {sends} | "
                     f"{row.failed_doc or '—'} | {row.timeout_doc or '—'} | {'; '.join(leads)} |")
    return lines + [""]
