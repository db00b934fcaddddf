"""``migrator manifests``: the ClusterRole it prints is exactly what the tool needs, proved by
enforcement (the objects themselves: ``tests/test_manifests*.py``).

Every flow of the tool runs inside the cluster as the ServiceAccount the manifests create, bound to
that ClusterRole, on a simulated cluster that enforces RBAC (``tests/runner/incluster.py``):

* with the whole role, no request is refused (no 403 in the request log), every command ends as it
  should, and the requests made are exactly the role's grants: nothing missing, nothing extra;
* with any one rule removed, the first command that needed it is refused (403, and only for that
  rule), names kube-apiserver's 403 message in its output, and fails or does not finish
  (``SURVIVED`` lists the rule whose absence it outlives, logging the 403; ``STOPS_AT_ONCE`` those
  whose 403 must end it at once, exit 2, naming the rule to add). Only the commands
  up to that one run (the earlier ones never used the rule), and each rule is its own test so that
  pytest-xdist spreads them.

The full run is made once per test session: the first worker to need it runs it and leaves its
record in the session's base temporary directory (the one all xdist workers share) for the others.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re

import pytest

from migrator.rbac import RULES, grants
from tests.runner.incluster import STEPS, Outcome, every_flow

#: how each command of the full run must end (1: halted, the automatic rollback of a node)
EXPECTED = {"0:run --yes": (0, 1), "0:rollback --all --yes": (0, 1)}


@pytest.fixture(scope="session")
def full_run(tmp_path_factory) -> list[Outcome]:
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base   # this session's, all workers'
    record = shared / "least-privilege-full-run.json"
    with open(shared / "least-privilege.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            outcomes = every_flow(tmp_path_factory.mktemp("full-run"))
            record.write_text(json.dumps([dataclasses.asdict(o) for o in outcomes if o is not None]))
    return [Outcome(o["step"], o["code"], o["stderr"], [tuple(u) for u in o["used"]])
            for o in json.loads(record.read_text())]


def test_the_tool_runs_in_cluster_under_its_cluster_role_with_zero_403s(full_run):
    assert [o.step for o in full_run] == [s.name for s in STEPS]
    for outcome in full_run:
        assert outcome.code in EXPECTED.get(outcome.step, (0,)), (outcome.step, outcome.stderr)
    refused = [(o.step, u) for o in full_run for u in o.used if u[3] == 403]
    assert not refused, refused


def test_cluster_role_grants_exactly_what_every_flow_uses(full_run):
    used = {(g, r, verb) for o in full_run for g, r, verb, _ in o.used}
    granted = grants()
    missing, extra = sorted(used - granted), sorted(granted - used)
    assert not missing and not extra, f"used but not granted: {missing}\ngranted but never used: {extra}"


#: Rules whose absence the tool survives: it makes the request, logs the 403 as a failed action and
#: goes on. An Event per node transition is a courtesy to whoever watches the node.
SURVIVED = {("", "events"): "Events are best effort"}
#: A 403 on an action is a missing permission: the command ends at once, exit 2, naming the rule to
#: add, and rolls nothing back. These used to be taken for something else: a refused dial for a
#: failed check (rolling the node back), a refused eviction for one to retry until the drain
#: timeout, a refused read of the probe fleet's namespace for one to pass over when it exists.
STOPS_AT_ONCE = {("", "pods/proxy"): "not a network verdict", ("", "pods/eviction"): "not worth retrying",
                 ("", "namespaces"): "the run needs it"}
#: Seconds a command may take with a rule missing: every one takes a few with the whole role; one
#: still running then is stopped here and counted as not done.
STALL_AFTER = 60


@pytest.mark.parametrize("index", range(len(RULES)), ids=[f"{r.group or 'core'}/{r.resource}" for r in RULES])
def test_without_any_one_rule_a_command_fails_with_its_403(index, full_run, tmp_path):
    rule = RULES[index]
    needs = [i for i, o in enumerate(full_run)
             if any(g == rule.group and r == rule.resource and v in rule.verbs for g, r, v, _ in o.used)]
    assert needs, f"no command used {rule}"
    first = needs[0]
    outcomes = every_flow(tmp_path, drop=index, until=first, timeout=STALL_AFTER)
    for before, now in zip(full_run[:first], outcomes[:first], strict=True):
        if now is not None:   # a step on another cluster is not run again
            assert now.code == before.code, (now.step, now.stderr[-3000:])   # they never needed the rule
    failed = outcomes[first]
    assert failed is not None
    refused = [u for u in failed.used if u[3] == 403]
    assert refused and all((g, r) == (rule.group, rule.resource) and v in rule.verbs for g, r, v, _ in refused), refused
    pattern = (r'User \\?"system:serviceaccount:[a-z0-9:-]+\\?" cannot (' + "|".join(rule.verbs) + r') resource \\?"'
               + re.escape(rule.resource) + r'\\?" in API group \\?"' + re.escape(rule.group) + r'\\?"')
    assert re.search(pattern, failed.stderr), (failed.step, pattern, failed.stderr[-3000:])
    if (rule.group, rule.resource) in STOPS_AT_ONCE:
        assert failed.code == 2, (failed.step, failed.code, failed.stderr[-3000:])
        grant = f'add the rule {{apiGroups: ["{rule.group}"], resources: [{rule.resource}], verbs: ['
        assert grant in failed.stderr, (failed.step, failed.stderr[-3000:])
        assert not re.search(r"ROLLING_BACK|ROLLED_BACK|FAILED", failed.stderr), failed.stderr[-3000:]
    if (rule.group, rule.resource) not in SURVIVED:
        assert failed.code != full_run[first].code and failed.code != 0, (failed.step, failed.stderr[-3000:])
