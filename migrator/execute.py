"""Apply the engine's actions through the cluster port; report outcomes, decide nothing.

Each action maps to one idempotent port call, retried here (and only here, through
``retry.py``) when the API server is briefly unavailable or throttling. Every other failure
becomes an ``ActionResult`` the engine folds into the checkpoint; nothing is raised past this
module except a lost lock. ``WriteFile`` writes into the output directory (the Helm values).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from migrator.cluster import errors as E
from migrator.cluster.port import ClusterPort, ObjectRef
from migrator.engine import actions as A
from migrator.engine.probes import passed
from migrator.metrics import Metrics
from migrator.retry import RetrySettings, retrying

log = structlog.get_logger("migrator.execute")
#: Nodes whose actions run at once; one node's actions always run in order.
PARALLEL_NODES = 8
KNOWN_ERRORS = {"NotFound", "Conflict", "AlreadyExists", "Throttled", "Forbidden", "Invalid", "Unavailable",
                "DisruptionBudgetBlocked"}


def _version(api_version: str) -> str:
    return api_version.split("/", 1)[1] if "/" in api_version else api_version


class Executor:
    """Runs actions against one cluster."""

    def __init__(self, port: ClusterPort, *, output_dir: Path | None = None, metrics: Metrics | None = None,
                 retry: RetrySettings | None = None) -> None:
        self.port = port
        self.output_dir = output_dir or Path.cwd()
        self.metrics = metrics
        self._retry = retry or RetrySettings()

    def run(self, actions: tuple[A.Action, ...] | list[A.Action]) -> list[A.ActionResult]:
        """Results in the order of ``actions``. The actions of one node (and those of the run,
        which have none) keep their order; different nodes' actions run side by side, so a
        decision over many nodes in flight costs a few round trips, not one per action."""
        groups: dict[str | None, list[int]] = {}
        for index, action in enumerate(actions):
            groups.setdefault(action.node, []).append(index)
        if len(groups) < 2:
            return [self.run_one(a) for a in actions]
        def run_group(indexes: list[int]) -> list[tuple[int, A.ActionResult]]:
            return [(i, self.run_one(actions[i])) for i in indexes]

        with ThreadPoolExecutor(max_workers=min(PARALLEL_NODES, len(groups)),
                                thread_name_prefix="execute") as pool:
            done = [pair for future in [pool.submit(run_group, idx) for idx in groups.values()]
                    for pair in future.result()]
        return [result for _, result in sorted(done, key=lambda pair: pair[0])]

    def run_one(self, action: A.Action) -> A.ActionResult:
        if isinstance(action, A.RunProbes):
            return self._probes(action)
        try:
            changed = self._call(action)
            result = A.ActionResult.success(action, changed=bool(changed) if changed is not None else True)
        except E.ClusterError as exc:
            kind = type(exc).__name__
            result = A.ActionResult.failure(action, kind if kind in KNOWN_ERRORS else "Error",  # type: ignore[arg-type]
                                            str(exc), getattr(exc, "retry_after", None))
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
        """One round of checks; a check that cannot even be sent counts as failed, never raises."""
        detail: dict[str, str] = {}
        for check in action.checks:
            detail[check.name] = self._dial(check, action.threshold)
            if self.metrics is not None:
                self.metrics.probes.labels(purpose=action.purpose,
                                           outcome=detail[check.name].split(" ", 1)[0]).inc()
        return A.ActionResult.success(action, changed=False, detail=detail)

    def _dial(self, check: A.ProbeCheck, threshold: float) -> str:
        query = {"host": check.host, "port": str(check.port), "request": "hostname",
                 "protocol": "http", "tries": str(check.tries)}
        try:
            body = self.port.proxy_get(check.namespace, check.pod, check.pod_port, "dial", query)
        except E.ClusterError as exc:
            return f"fail 0/{check.tries}: proxy to {check.namespace}/{check.pod}: {str(exc)[:160]}"
        try:
            answer = json.loads(body)
            responses, errors = list(answer.get("responses") or []), list(answer.get("errors") or [])
        except (ValueError, AttributeError):
            return f"fail 0/{check.tries}: unreadable /dial answer {body[:80]!r}"
        got = len(responses)
        if passed(got, check.tries, threshold):
            return f"ok {got}/{check.tries}"
        return f"fail {got}/{check.tries}: {(errors or ['no answer'])[0][:160]}"

    def _retrying(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        attempts = {"n": 0}

        def counted(*a: Any, **k: Any) -> Any:
            attempts["n"] += 1
            if attempts["n"] > 1 and self.metrics is not None:
                self.metrics.retries.inc()
            return fn(*a, **k)
        return retrying(self._retry)(counted, *args, **kwargs)

    def _call(self, a: A.Action) -> Any:  # noqa: C901 - one branch per action kind, flat
        p, r = self.port, self._retrying
        if isinstance(a, A.EnsureNodeConfig):
            return r(p.ensure_node_config, a.namespace, a.name, version=_version(a.api_version),
                     node_selector=dict(a.node_selector), defaults=dict(a.defaults))
        if isinstance(a, A.DeleteNodeConfig):
            return r(p.delete_node_config, a.namespace, a.name, version=_version(a.api_version))
        if isinstance(a, A.Cordon):
            return r(p.cordon_node, a.node)
        if isinstance(a, A.Uncordon):
            return r(p.uncordon_node, a.node)
        if isinstance(a, A.RestoreNodeState):
            changed = r(p.cordon_node if a.unschedulable else p.uncordon_node, a.node)
            return r(p.set_node_label, a.node, a.label_key, a.label_value) or changed
        if isinstance(a, A.EvictPod):
            return r(p.evict_pod, a.namespace, a.name, uid=a.uid, grace_period_seconds=a.grace_period_seconds)
        if isinstance(a, A.DeletePod):
            return r(p.delete_pod, a.namespace, a.name, uid=a.uid, grace_period_seconds=a.grace_period_seconds)
        if isinstance(a, A.LabelNode):
            return r(p.set_node_label, a.node, a.key, a.value)
        if isinstance(a, A.SetTaint):
            return r(p.set_node_taint, a.node, a.key, a.effect, a.present)
        if isinstance(a, A.UnlabelNode):
            return r(p.set_node_label, a.node, a.key, None)
        if isinstance(a, A.CreatePod):
            try:
                r(p.create_pod, a.pod)
            except E.AlreadyExists:
                return False
            return True
        if isinstance(a, A.EmitEvent):
            return r(p.emit_node_event, a.node, reason=a.reason, message=a.message, type=a.type)
        if isinstance(a, A.PatchConfigMap):
            return r(p.patch_configmap, a.namespace, a.name, dict(a.data))
        if isinstance(a, A.RestartDaemonSet):
            when = datetime.fromisoformat(a.restarted_at.replace("Z", "+00:00"))
            return r(p.restart_daemonset, a.namespace, a.name, restarted_at=when)
        if isinstance(a, A.DeleteObject):
            return r(p.delete_object, ObjectRef(a.group, a.version, a.plural, a.name, a.namespace))
        if isinstance(a, A.ApplyObject):
            return r(p.apply_object, dict(a.manifest))
        if isinstance(a, A.WriteFile):
            target = self.output_dir / a.path
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_text(a.content, encoding="utf-8")
            os.replace(tmp, target)
            return True
        raise E.ClusterError(f"no executor for action {a.kind}")
