"""Finalize decisions: after every node is DONE, make Cilium the only CNI (guide §1.7, §3 #14).

Steps, each journaled in ``checkpoint.finalize`` before its actions run:
1. ``helm-values``: write the final Helm values (unmanaged-pod watcher restarts on, custom CNI
   config off, policy enforcement default, eBPF host routing) for the operator's ``helm upgrade``;
2. ``configmap`` (only with ``finalize.apply_configmap``): patch ``cilium-config`` with the
   same settings, for clusters where Helm does not own Cilium;
3. ``restart-agents``: rollout-restart the agent DaemonSet once (the ``restartedAt`` value is
   fixed in the checkpoint) and wait for the rollout;
4. ``delete-node-config``: delete the CiliumNodeConfig;
5. ``remove-calico``: delete the Calico objects the plan lists — the point of no return;
6. ``node-cleanup``: on each node, a pod with ``sim.migrator.io/node-action: cleanup-calico``
   removes Calico's leftovers (CNI files, binaries, state, tunnel devices, bird routes).
Finalize is refused until every selected node is DONE.
"""

from __future__ import annotations

from datetime import datetime

import yaml

from migrator.engine.actions import (
    Action,
    CreatePod,
    DeleteNodeConfig,
    DeleteObject,
    DeletePod,
    PatchConfigMap,
    RestartDaemonSet,
    WriteFile,
)
from migrator.engine.decide import Decision, PlanMismatch, node_config_version
from migrator.engine.node_steps import RESEND_AFTER
from migrator.engine.pods import cleanup_pod_name
from migrator.engine.probes import fleet_removal
from migrator.engine.states import NodePhase, RunPhase
from migrator.engine.table import check_run_move
from migrator.model.checkpoint import Checkpoint, FinalizeProgress, FinalizeStep, truncate_error, utc
from migrator.model.observation import NODE_ACTION_ANNOTATION, ClusterObservation
from migrator.model.plan import MigrationPlan, format_duration, plan_hash

STEPS: tuple[FinalizeStep, ...] = ("helm-values", "configmap", "restart-agents",
                                   "delete-node-config", "remove-probes", "remove-calico", "node-cleanup", "done")
FINAL_CONFIG = {"write-cni-conf-when-ready": "/host/etc/cni/net.d/05-cilium.conflist",
                "cni-exclusive": "true", "custom-cni-conf": "false", "enable-policy": "default",
                "enable-host-legacy-routing": "false", "unmanaged-pod-watcher-interval": "15s"}
CLEANUP_SCRIPT = """set -u
rm -f /host/etc/cni/net.d/10-calico.conflist /host/etc/cni/net.d/10-calico.conflist.cilium_bak
rm -f /host/etc/cni/net.d/calico-kubeconfig /host/opt/cni/bin/calico /host/opt/cni/bin/calico-ipam
rm -rf /host/var/lib/calico /host/var/run/calico
for dev in vxlan.calico tunl0; do ip link delete "$dev" 2>/dev/null || true; done
for dev in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep '^cali'); do
  ip link delete "$dev" 2>/dev/null || true
done
ip route flush proto bird 2>/dev/null || true
for table in filter nat mangle raw; do
  iptables-save -t "$table" | grep -v -e '-j cali-' -e '^:cali-' -e '^-A cali-' | iptables-restore -T "$table" || true
done
"""


def helm_values() -> str:
    """The final Helm values (guide §1.7), to merge over the migration values."""
    values = {"operator": {"unmanagedPodWatcher": {"restart": True}},
              "cni": {"customConf": False, "uninstall": False},
              "policyEnforcementMode": "default",
              "bpf": {"hostLegacyRouting": False}}
    header = ("# Final Cilium Helm values after the migration (docs: 'Migrating a cluster to Cilium',\n"
              "# post-migration). Apply with: helm upgrade cilium cilium/cilium -n kube-system \\\n"
              "#   --reuse-values -f THIS_FILE && kubectl -n kube-system rollout restart ds/cilium\n")
    return header + yaml.safe_dump(values, sort_keys=True)


def finalize_blockers(checkpoint: Checkpoint) -> list[str]:
    """Why finalize may not start (empty when it may)."""
    blockers = [f"{r.name} is {r.phase.value}" for r in checkpoint.nodes if r.phase is not NodePhase.DONE]
    if checkpoint.run_phase not in (RunPhase.NODES_DONE, RunPhase.FINALIZING, RunPhase.FINALIZED):
        blockers.insert(0, f"run is {checkpoint.run_phase.value}, not NODES_DONE")
    if checkpoint.halted:
        blockers.insert(0, f"run is halted: {checkpoint.halted}")
    return blockers


def _next(step: FinalizeStep, plan: MigrationPlan) -> FinalizeStep:
    following = STEPS[STEPS.index(step) + 1]
    if following == "configmap" and not plan.finalize.apply_configmap:
        return "restart-agents"
    if following == "node-cleanup" and not plan.finalize.node_cleanup:
        return "done"
    return following


def _due(progress: FinalizeProgress, now: datetime) -> bool:
    return progress.sent_at is None or now >= progress.sent_at + RESEND_AFTER


def _same_time(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    try:
        return datetime.fromisoformat(a.replace("Z", "+00:00")) == datetime.fromisoformat(b.replace("Z", "+00:00"))
    except ValueError:
        return a == b


class _Step:
    """Mutable scratch for one finalize decision."""

    def __init__(self, plan: MigrationPlan, cp: Checkpoint, obs: ClusterObservation, now: datetime):
        self.plan, self.obs, self.now = plan, obs, now
        assert cp.finalize is not None
        self.progress = cp.finalize
        self.actions: list[Action] = []
        self.note = ""
        self.halt: str | None = None
        self.advance = False

    def send(self, *actions: Action, **changes: object) -> None:
        self.actions.extend(actions)
        self.progress = self.progress.model_copy(update={"sent_at": self.now, **changes})


def _step(s: _Step, cp: Checkpoint) -> None:  # noqa: C901 - one branch per step, flat
    plan, obs, now, progress = s.plan, s.obs, s.now, s.progress
    step = progress.step
    started = progress.step_started_at or now
    if step == "helm-values":
        if plan.finalize.helm_values_path in obs.files:
            s.advance = True
        elif _due(progress, now):
            s.send(WriteFile(path=plan.finalize.helm_values_path, content=helm_values()))
        s.note = f"writing {plan.finalize.helm_values_path}"
    elif step == "configmap":
        agent = plan.cilium.agent
        current = obs.cilium_config
        if not plan.finalize.apply_configmap or (
                current is not None and all(current.get(k) == v for k, v in FINAL_CONFIG.items())):
            s.advance = True
        elif _due(progress, now):
            s.send(PatchConfigMap(namespace=agent.namespace, name=agent.config_map, data=dict(FINAL_CONFIG)))
        s.note = f"patching {agent.namespace}/{agent.config_map}"
    elif step == "restart-agents":
        agent = plan.cilium.agent
        ds = obs.cilium_daemonset
        stamp = progress.restarted_at or now.strftime("%Y-%m-%dT%H:%M:%SZ")
        if ds is not None and _same_time(ds.restarted_at, stamp) and ds.rolled_out:
            s.advance = True
        elif now >= started + plan.finalize.timeout:
            s.halt = f"finalize: DaemonSet {agent.namespace}/{agent.daemonset} did not roll out within {format_duration(plan.finalize.timeout)}"
        elif progress.restarted_at is None or (
                _due(progress, now) and (ds is None or not _same_time(ds.restarted_at, stamp))):
            s.send(RestartDaemonSet(namespace=agent.namespace, name=agent.daemonset, restarted_at=stamp),
                   restarted_at=stamp)
        s.note = f"restarting DaemonSet {agent.namespace}/{agent.daemonset}"
    elif step == "delete-node-config":
        ref = plan.cilium.node_config
        if obs.node_config is None:
            s.advance = True
        elif _due(progress, now):
            version = (cp.node_config_version or obs.node_config.api_version
                       or node_config_version(plan, obs.served_cnc_versions) or "cilium.io/v2")
            s.send(DeleteNodeConfig(namespace=ref.namespace, name=ref.name, api_version=version))
        s.note = f"deleting CiliumNodeConfig {ref.namespace}/{ref.name}"
    elif step == "remove-probes":
        fleet = [p for p in obs.probe_pods if not p.deleting]
        if not plan.probes.enabled or not fleet:
            s.advance = True
        elif _due(progress, now):
            s.send(fleet_removal(plan))
        s.note = f"removing the probe fleet (namespace {plan.probes.namespace})"
    elif step == "remove-calico":
        if not obs.calico_objects:
            s.advance = True
        elif _due(progress, now):
            s.send(*(DeleteObject(group=o.group, version=o.version, plural=o.plural,
                                  namespace=o.namespace, name=o.name) for o in obs.calico_objects))
        s.note = f"removing {len(obs.calico_objects)} Calico objects"
    elif step == "node-cleanup":
        _cleanup(s, cp)


def _cleanup(s: _Step, cp: Checkpoint) -> None:
    plan, obs, progress = s.plan, s.obs, s.progress
    namespace = plan.verify.namespace
    cleaned, active = list(progress.cleaned), list(progress.active)
    actions: list[Action] = []
    for name in list(active):
        pod = obs.pod(namespace, cleanup_pod_name(name))
        if pod is not None and pod.phase == "Succeeded":
            cleaned.append(name)
            active.remove(name)
            actions.append(DeletePod(node=name, namespace=namespace, name=pod.name, uid=pod.uid,
                                     reason="node-action-cleanup"))
        elif pod is not None and pod.phase == "Failed":
            s.halt = f"finalize: clean-up pod {namespace}/{pod.name} failed on node {name}"
        elif pod is None and _due(progress, s.now):
            actions.append(_cleanup_pod(plan, name))
    done = set(cleaned) | set(active)
    room = plan.concurrency.limit(len(cp.nodes)) - len(active)
    for name in cp.order:
        if room <= 0:
            break
        if name in done:
            continue
        actions.append(_cleanup_pod(plan, name))
        active.append(name)
        room -= 1
    if s.halt is None:
        s.actions.extend(actions)
        changes: dict[str, object] = {"cleaned": tuple(cleaned), "active": tuple(active)}
        if actions:
            changes["sent_at"] = s.now
        s.progress = s.progress.model_copy(update=changes)
    s.advance = len(cleaned) == len(cp.nodes)
    s.note = f"node clean-up: {len(cleaned)}/{len(cp.nodes)} done, {len(active)} running"


def _cleanup_pod(plan: MigrationPlan, name: str) -> CreatePod:
    """The node-local Calico clean-up pod for node ``name``."""
    return CreatePod(
        node=name, purpose="node-action", pod=dict(
            node_name=name, namespace=plan.verify.namespace, name=cleanup_pod_name(name),
            image=plan.finalize.cleanup_image, command=("/bin/sh", "-c", CLEANUP_SCRIPT),
            annotations={NODE_ACTION_ANNOTATION: "cleanup-calico", "migrator.io/node": name},
            labels={"app.kubernetes.io/name": "migrator-cleanup",
                    "app.kubernetes.io/managed-by": "migrator"},
            host_network=True, privileged=True,
            host_path_mounts=(("/etc/cni/net.d", "/host/etc/cni/net.d"),
                              ("/opt/cni/bin", "/host/opt/cni/bin"),
                              ("/var/lib/calico", "/host/var/lib/calico"),
                              ("/var/run/calico", "/host/var/run/calico"))))


def decide_finalize(plan: MigrationPlan, checkpoint: Checkpoint, observation: ClusterObservation,
                    now: datetime) -> Decision:
    """The next finalize checkpoint and actions (refused while a node is not DONE)."""
    if checkpoint.plan_hash != plan_hash(plan):
        raise PlanMismatch(f"checkpoint was written for plan {checkpoint.plan_name}; "
                           "finalize with the plan that ran")
    now = utc(now)
    cp = checkpoint
    if cp.run_phase is RunPhase.FINALIZED:
        return Decision(cp, (), "finalized", False)
    blockers = finalize_blockers(cp)
    if blockers:
        return Decision(cp, (), "finalize refused: " + "; ".join(blockers[:5]), False)
    if cp.run_phase is RunPhase.NODES_DONE:
        check_run_move(cp.run_phase, RunPhase.FINALIZING)
        cp = cp.model_copy(update={"run_phase": RunPhase.FINALIZING, "run_phase_started_at": now,
                                   "finalize": FinalizeProgress(step="helm-values", step_started_at=now)})
    notes: list[str] = []
    actions: list[Action] = []
    for _ in range(len(STEPS)):
        assert cp.finalize is not None
        if cp.finalize.step == "done":
            check_run_move(cp.run_phase, RunPhase.FINALIZED)
            cp = cp.model_copy(update={"run_phase": RunPhase.FINALIZED, "run_phase_started_at": now})
            notes.append("finalized: Cilium is the only CNI")
            break
        s = _Step(plan, cp, observation, now)
        _step(s, cp)
        notes.append(s.note)
        if s.halt is not None:
            cp = cp.model_copy(update={"halted": s.halt, "finalize": s.progress.model_copy(
                update={"last_error": truncate_error(s.halt)})})
            notes.insert(0, s.halt)
            break
        actions.extend(s.actions)
        if not s.advance:
            cp = cp.model_copy(update={"finalize": s.progress})
            break
        following = _next(s.progress.step, plan)
        cp = cp.model_copy(update={"finalize": FinalizeProgress(
            step=following, step_started_at=now, cleaned=s.progress.cleaned)})
    changed = cp != checkpoint
    if changed:
        cp = cp.model_copy(update={"updated_at": now})
    wake = now + RESEND_AFTER if actions or not changed else None
    return Decision(cp, tuple(actions), "; ".join(n for n in notes if n), changed, wake)
