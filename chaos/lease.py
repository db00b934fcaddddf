"""Chaos around the run lock: a forced takeover of a live run, and five runs at once.

``takeover(seed)``: a ``migrator run`` (kubeconfig user ``first``, a 5 s pause between nodes) is
going; right after its n-th write a second process starts ``migrator run --force-takeover`` (user ``second``). From the
moment the second's Lease write succeeds, the request log must show no write executed for
``first``; the second must finish, with every invariant holding. Attempted writes by the first
(answered with an error) are reported too, and whether the first exited naming the new holder.

``concurrent_runs(seed)``: five ``migrator run`` started together (users ``run-1``..``run-5``):
exactly one proceeds and finishes; the four others exit 3 naming the holder (the winner's
``<host>/<pid>/<run_id>``) and have no write executed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from chaos.harness import Invocation, fast_plan, is_tool_write, scenario
from chaos.invariants import baseline, check

LEASES = "coordination.k8s.io/leases"


@dataclass
class TakeoverResult:
    seed: int
    taken_over: bool             # the second's Lease write succeeded while the first ran
    first_code: int
    first_named_holder: bool     # the first's last words name the second process
    second_code: int
    executed_after: list[str] = field(default_factory=list)   # the first's 2xx writes after the takeover
    attempted_after: int = 0     # the first's write requests after the takeover, answered or not
    problems: list[str] = field(default_factory=list)
    last_words: str = ""

    @property
    def passed(self) -> bool:
        return self.taken_over and not self.executed_after and self.second_code == 0 and not self.problems


def takeover(seed: int, nodes: int = 6, after_writes: int = 30) -> TakeoverResult:
    with scenario("takeover", nodes, seed) as (out, sim):
        base = baseline(sim)
        # a pause between nodes keeps the first alive (and due to write again) while the
        # second process starts, as a hung or slow run is when on-call takes over
        plan = fast_plan(out, {"gates.pause_between_nodes": "5s"})
        go = threading.Event()
        sim.requests.on_nth(after_writes, lambda _e: go.set(), match=lambda e: is_tool_write(e, "first"))
        first = Invocation("run", plan, sim.write_kubeconfig(out / "kc-first", user="first"), out)
        while not go.wait(0.1):
            if first.proc.poll() is not None:
                break
        second = Invocation("run", plan, sim.write_kubeconfig(out / "kc-second", user="second"), out,
                            "--force-takeover")
        second_done = second.finish()
        first_done = first.finish()
        entries = sim.requests.entries
        at = next((i for i, e in enumerate(entries) if e.user == "second" and e.resource == LEASES
                   and e.is_write and 200 <= e.code < 300), None)
        # a takeover replaces the first's live Lease; a Lease created after the first released
        # its own (the first had finished) is no takeover
        released = any(e.user == "first" and e.resource == LEASES and e.verb == "delete"
                       for e in entries[:at])
        taken = at is not None and go.is_set() and entries[at].verb != "create" and not released
        after = [e for e in entries[at + 1:] if e.user == "first" and e.is_write] \
            if taken and at is not None else []
        executed = [f"{e.verb} {e.resource}/{e.name} {e.code}" for e in after if 200 <= e.code < 300]
        return TakeoverResult(seed, taken, first_done.code,
                              f"/{second.pid}/" in first_done.stderr, second_done.code, executed, len(after),
                              check(sim, base), second_done.last_words)


@dataclass
class ConcurrencyResult:
    seed: int
    codes: list[int]
    proceeded: int               # runs that exited 0
    refused_naming_holder: int   # runs that exited 3 naming the winner
    loser_writes: list[str] = field(default_factory=list)   # writes executed for a refused run
    problems: list[str] = field(default_factory=list)
    last_words: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (self.proceeded == 1 and self.refused_naming_holder == len(self.codes) - 1
                and not self.loser_writes and not self.problems)


def concurrent_runs(seed: int, nodes: int = 4, count: int = 5) -> ConcurrencyResult:
    with scenario("concurrent", nodes, seed) as (out, sim):
        base = baseline(sim)
        # a pause between nodes keeps the winner holding the lock while the others start
        plan = fast_plan(out, {"gates.pause_between_nodes": "3s"})
        users = [f"run-{i}" for i in range(1, count + 1)]
        kubeconfigs = [sim.write_kubeconfig(out / f"kc-{u}", user=u) for u in users]
        runs = [Invocation("run", plan, kc, out) for kc in kubeconfigs]
        done = [r.finish() for r in runs]
        winners = [i for i, d in enumerate(done) if d.code == 0]
        named = 0
        loser_writes: list[str] = []
        if len(winners) == 1:
            mark = f"/{runs[winners[0]].pid}/"
            named = sum(1 for i, d in enumerate(done) if i not in winners and d.code == 3 and mark in d.stderr)
        losers = {users[i] for i, d in enumerate(done) if d.code != 0}
        loser_writes = [f"{e.user}: {e.verb} {e.resource}/{e.name}" for e in sim.requests.entries
                        if e.user in losers and e.is_write and 200 <= e.code < 300]
        return ConcurrencyResult(seed, [d.code for d in done], len(winners), named, loser_writes,
                                 check(sim, base), [d.last_words for d in done])
