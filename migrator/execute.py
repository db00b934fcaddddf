"""Apply the engine's actions through the cluster port; report outcomes, decide nothing.

Each action type has one handler (``Executor._apply``, registered per type) making its
idempotent port call with the action's own values. Retrying a briefly unavailable or
throttling API server is the port's job (``cluster/guard.py``, wired once), not this module's.
Every failure becomes an ``ActionResult`` the engine folds into the checkpoint; nothing is
raised past this module except a lost lock, a ``Forbidden`` (403), or a ``TypeError`` for an
action type without a handler (a member of ``Action`` without one already fails at import).
A 403 means the credentials lack a permission the run needs (RBAC): waiting will not grant it, and
its absence says nothing about the nodes or the network, so it ends the command (which names the
missing rule, exit 2) instead of being retried until a timeout or counted as a failed probe;
the saved intent lets ``migrator resume`` go on once it is granted. Events alone are best effort:
a refused one is logged and the run goes on; nothing waits for them either (``Executor.run`` sends
them beside the turn's actions, so a node's next step never queues behind a courtesy).
``WriteFile`` writes into the output directory (the Helm values).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from functools import singledispatchmethod
from pathlib import Path
from typing import get_args

import structlog

from migrator.cluster import errors as E
from migrator.cluster.port import ClusterPort, ObjectRef
from migrator.engine import actions as A
from migrator.engine.probes import UNKNOWN, passed
from migrator.metrics import Metrics

log = structlog.get_logger("migrator.execute")
#: Nodes whose actions run at once; one node's actions always run in order.
PARALLEL_NODES = 16
#: Events sent at once beside the turn's actions, and checks of one probe round dialled at once.
EVENT_SENDERS = 2
DIALS = 8
#: Our cluster errors by class name, as the engine reads them in a result (others are "Error").
KNOWN_ERRORS: dict[str, A.ErrorKind] = {kind: kind for kind in get_args(A.ErrorKind)}


#: How kube-apiserver's proxy says it could not reach the pod (a network answer, not an API error).
UNREACHABLE = "error trying to reach service"


def api_error(exc: E.ClusterError) -> bool:
    """True when a pods/proxy request failed in the API server rather than at the probe pod:
    throttled, a 5xx other than the proxy's "could not reach the pod", a timeout or a broken
    connection to the API server (see ``Executor._dial``). A 403 is neither: ``_dial`` raises it."""
    if isinstance(exc, E.Throttled):
        return True
    return isinstance(exc, E.Unavailable) and UNREACHABLE not in exc.message.lower()


#: Actions whose refusal does not stop the run (an Event is a courtesy to whoever watches the node).
BEST_EFFORT = (A.EmitEvent,)


def _version(api_version: str) -> str:
    return api_version.split("/", 1)[1] if "/" in api_version else api_version


def _policy_outcome(check: A.ProbeCheck, got: int, allowed: bool, errors: list[str]) -> str:
    """A policy probe's flow, judged from a /dial answer: ``observe`` records ``allow`` or
    ``deny``; ``allow``/``deny`` pass (``ok``) when the verdict is still the one before the run,
    else fail naming the flow's pods and both verdicts. A round only partly answered is neither."""
    tries = f"{got}/{check.tries}"
    flow = f"pods {check.pod} -> {check.target or check.host}"
    if not allowed and got:
        return f"fail {tries}: partly answered, dialled again: {flow}"
    if check.expect == "observe":
        return f"allow {tries}" if allowed else f"deny {tries}: {(errors or ['no answer'])[0][:80]}"
    if (check.expect == "allow") == allowed:
        return f"ok {tries}: {'allowed' if allowed else 'denied'} as before the run"
    now, before = ("allowed", "denied") if allowed else ("denied", "allowed")
    return f"fail {tries}: {now} now, {before} before the run ({flow})"


class Executor:
    """Runs actions against one cluster."""

    def __init__(self, port: ClusterPort, *, output_dir: Path | None = None,
                 metrics: Metrics | None = None) -> None:
        self.port = port
        self.output_dir = output_dir or Path.cwd()
        self.metrics = metrics
        self._nodes = ThreadPoolExecutor(max_workers=PARALLEL_NODES, thread_name_prefix="execute")
        self._courtesy = ThreadPoolExecutor(max_workers=EVENT_SENDERS, thread_name_prefix="events")
        self._dialer = ThreadPoolExecutor(max_workers=DIALS, thread_name_prefix="dial")

    def close(self) -> None:
        """Send the Events still queued, then stop the threads (idempotent)."""
        self._courtesy.shutdown(wait=True)
        self._nodes.shutdown(wait=True)
        self._dialer.shutdown(wait=True)

    def run(self, actions: tuple[A.Action, ...] | list[A.Action]) -> list[A.ActionResult]:
        """The results of ``actions`` but the Events, in their order. The actions of one node (and
        those of the run, which have none) keep their order; different nodes' actions run side by
        side, so a decision over many nodes in flight costs a few round trips, not one per action.
        Events go to threads of their own and the turn does not wait for them: the engine never
        reads their outcome, and a refused one is logged and counted when it is known."""
        for action in actions:
            if isinstance(action, BEST_EFFORT):
                self._courtesy.submit(self.run_one, action).add_done_callback(_log_unexpected)
        actions = [a for a in actions if not isinstance(a, BEST_EFFORT)]
        groups: dict[str | None, list[int]] = {}
        for index, action in enumerate(actions):
            groups.setdefault(action.node, []).append(index)
        if len(groups) < 2:
            return [self.run_one(a) for a in actions]
        def run_group(indexes: list[int]) -> list[tuple[int, A.ActionResult]]:
            return [(i, self.run_one(actions[i])) for i in indexes]

        futures = [self._nodes.submit(run_group, indexes) for indexes in groups.values()]
        done = [pair for future in futures for pair in future.result()]
        return [result for _, result in sorted(done, key=lambda pair: pair[0])]

    def run_one(self, action: A.Action) -> A.ActionResult:
        if isinstance(action, A.RunProbes):
            return self._probes(action)
        try:
            changed = self._apply(action)
            result = A.ActionResult.success(action, changed=bool(changed) if changed is not None else True)
        except E.Forbidden as exc:
            if not isinstance(action, BEST_EFFORT):
                log.error("action.forbidden", action=action.kind, node=getattr(action, "node", None),
                          message=str(exc)[:300])
                raise
            result = A.ActionResult.failure(action, "Forbidden", str(exc))
        except E.ClusterError as exc:
            result = A.ActionResult.failure(action, KNOWN_ERRORS.get(exc.kind, "Error"), str(exc),
                                            getattr(exc, "retry_after", None))
        except OSError as exc:
            result = A.ActionResult.failure(action, "Error", f"{type(exc).__name__}: {exc}")
        outcome = "ok" if result.ok else (result.error_kind or "error")
        if self.metrics is not None:
            self.metrics.actions.labels(kind=action.kind, outcome=outcome).inc()
            if action.kind == "evict-pod":
                self.metrics.evictions.labels(outcome=outcome).inc()
        if not result.ok:
            log.info("action.failed", action=action.kind, node=getattr(action, "node", None),
                     error=result.error_kind, message=result.message[:200])
        return result

    def _probes(self, action: A.RunProbes) -> A.ActionResult:
        """One round of checks, dialled side by side, each ``ok``, ``fail`` or ``unknown`` (see
        ``_dial``); never raises but a 403."""
        detail: dict[str, str] = {}
        outcomes = self._dialer.map(lambda check: self._dial(check, action.threshold), action.checks)
        for check, outcome in zip(action.checks, outcomes, strict=True):
            detail[check.name] = outcome
            if self.metrics is not None:
                self.metrics.probes.labels(purpose=action.purpose,
                                           outcome=detail[check.name].split(" ", 1)[0]).inc()
        return A.ActionResult.success(action, changed=False, detail=detail)

    def _dial(self, check: A.ProbeCheck, threshold: float) -> str:
        """One check through pods/proxy: ``ok n/t``, ``fail n/t: why`` or ``unknown 0/t: why``.

        Who answered decides. kube-apiserver relays the probe pod's own answer, status and body
        as the pod sent them: netexec's ``/dial`` answers 200 with the tries that connected and
        the errors of those that did not, or 400 when the target's name does not resolve — both
        are evidence about the network. When the API server cannot reach the probe pod itself,
        its proxy transport answers ``503 ServiceUnavailable`` with a message starting "error
        trying to reach service:" (k8s.io/apimachinery ``pkg/util/proxy``): the pod is not
        reachable on the pod network, also evidence (``fail``). Anything else that fails is
        the API server's (or a load balancer's in front of it) own trouble and says nothing
        about the network — 429 (API Priority and Fairness), any other 5xx, a timeout, a
        refused or reset connection: the check is ``unknown``, dialled again later, and never
        counts toward a failed gate, a rollback or a sampling pause. A 403 (the credentials may
        not use pods/proxy) is raised: no check can be made until RBAC grants it.
        """
        query = {"host": check.host, "port": str(check.port), "request": "hostname",
                 "protocol": check.protocol, "tries": str(check.tries)}
        try:
            body = self.port.proxy_get(check.namespace, check.pod, check.pod_port, "dial", query)
        except E.Forbidden as exc:
            log.error("action.forbidden", action="run-probes", check=check.name, message=str(exc)[:300])
            raise
        except E.ClusterError as exc:
            if api_error(exc):
                return f"{UNKNOWN} 0/{check.tries}: the API server did not relay it: {str(exc)[:140]}"
            return f"fail 0/{check.tries}: proxy to {check.namespace}/{check.pod}: {str(exc)[:160]}"
        try:
            answer = json.loads(body)
            responses, errors = list(answer.get("responses") or []), list(answer.get("errors") or [])
        except (ValueError, AttributeError):
            return f"fail 0/{check.tries}: unreadable /dial answer {body[:80]!r}"
        got = len(responses)
        if check.expect != "answer":
            return _policy_outcome(check, got, passed(got, check.tries, threshold), errors)
        if passed(got, check.tries, threshold):
            return f"ok {got}/{check.tries}"
        return f"fail {got}/{check.tries}: {(errors or ['no answer'])[0][:160]}"

    # -- one handler per action type: its port call ------------------------------------------
    @singledispatchmethod
    def _apply(self, action: A.Action) -> bool | None:
        """Make the port call ``action`` stands for; the result is whether something changed
        (None: the port does not say)."""
        raise TypeError(f"the executor has no handler for {type(action).__name__} ({action.kind}); "
                        "register one with @Executor._apply.register")

    @_apply.register
    def _(self, a: A.EnsureNodeConfig) -> bool:
        return self.port.ensure_node_config(a.namespace, a.name, version=_version(a.api_version),
                                            node_selector=dict(a.node_selector), defaults=dict(a.defaults))

    @_apply.register
    def _(self, a: A.DeleteNodeConfig) -> bool:
        return self.port.delete_node_config(a.namespace, a.name, version=_version(a.api_version))

    @_apply.register
    def _(self, a: A.Cordon) -> bool:
        return self.port.cordon_node(a.node)

    @_apply.register
    def _(self, a: A.Uncordon) -> bool:
        return self.port.uncordon_node(a.node)

    @_apply.register
    def _(self, a: A.RestoreNodeState) -> bool:
        changed = (self.port.cordon_node if a.unschedulable else self.port.uncordon_node)(a.node)
        return self.port.set_node_label(a.node, a.label_key, a.label_value) or changed

    @_apply.register
    def _(self, a: A.EvictPod) -> bool:
        return self.port.evict_pod(a.namespace, a.name, uid=a.uid,
                                   grace_period_seconds=a.grace_period_seconds)

    @_apply.register
    def _(self, a: A.DeletePod) -> bool:
        return self.port.delete_pod(a.namespace, a.name, uid=a.uid,
                                    grace_period_seconds=a.grace_period_seconds)

    @_apply.register
    def _(self, a: A.LabelNode) -> bool:
        return self.port.set_node_label(a.node, a.key, a.value)

    @_apply.register
    def _(self, a: A.UnlabelNode) -> bool:
        return self.port.set_node_label(a.node, a.key, None)

    @_apply.register
    def _(self, a: A.SetTaint) -> bool:
        return self.port.set_node_taint(a.node, a.key, a.effect, a.present)

    @_apply.register
    def _(self, a: A.CreatePod) -> bool:
        try:
            self.port.create_pod(a.pod)
        except E.AlreadyExists:
            return False
        return True

    @_apply.register
    def _(self, a: A.EmitEvent) -> None:
        self.port.emit_node_event(a.node, reason=a.reason, message=a.message, type=a.type)

    @_apply.register
    def _(self, a: A.PatchConfigMap) -> bool:
        return self.port.patch_configmap(a.namespace, a.name, dict(a.data))

    @_apply.register
    def _(self, a: A.RestartDaemonSet) -> bool:
        when = datetime.fromisoformat(a.restarted_at.replace("Z", "+00:00"))
        return self.port.restart_daemonset(a.namespace, a.name, restarted_at=when)

    @_apply.register
    def _(self, a: A.DeleteObject) -> bool:
        return self.port.delete_object(ObjectRef(a.group, a.version, a.plural, a.name, a.namespace))

    @_apply.register
    def _(self, a: A.ApplyObject) -> bool:
        return self.port.apply_object(dict(a.manifest))

    @_apply.register
    def _(self, a: A.PatchObject) -> bool:
        return self.port.patch_object(a.api_version, a.plural, a.namespace, a.name, dict(a.patch))

    @_apply.register
    def _(self, a: A.WriteFile) -> bool:
        target = self.output_dir / a.path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(a.content, encoding="utf-8")
        os.replace(tmp, target)
        return True


def _log_unexpected(future: Future[A.ActionResult]) -> None:
    """An Event sent beside the turn that failed past ``run_one``'s own handling is logged."""
    exc = future.exception()
    if exc is not None:
        log.warning("event.failed", error=f"{type(exc).__name__}: {exc}"[:200])


def _unhandled() -> list[str]:
    """Action types with no handler (``RunProbes`` is answered by ``_probes``, not the port)."""
    registry = Executor.__dict__["_apply"].dispatcher.registry
    return [t.__name__ for t in get_args(get_args(A.Action)[0]) if t not in registry and t is not A.RunProbes]


if _unhandled():  # a new action type without a handler fails at import, not mid-migration
    raise TypeError(f"the executor has no handler for {', '.join(_unhandled())}")
