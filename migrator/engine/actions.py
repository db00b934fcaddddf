"""What the engine asks the shell to do: the ``Action`` union and ``ActionResult``.

Actions are data (kopf's patch-as-data): small frozen models with a ``kind`` discriminator,
produced by ``engine.decide`` and executed by the shell through the cluster port. Each action
is idempotent when executed: cordoning a cordoned node, deleting a pod that is gone (the uid
precondition makes a same-named replacement safe), ensuring a CiliumNodeConfig that already
has the right spec are all no-ops. Every action that concerns one node carries ``node`` so the
result can be folded back into that node's record (``engine.results.record_results``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from migrator.model.pod import PodRequest

ErrorKind = Literal["NotFound", "Conflict", "AlreadyExists", "Throttled", "Forbidden", "Invalid",
                    "Unavailable", "DisruptionBudgetBlocked", "Timeout", "Error"]
DeleteReason = Literal["recycle", "agent-restart", "verify-cleanup", "pdb-override", "rollback",
                       "node-action-cleanup"]


class _Action(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    node: str | None = Field(default=None, description="Node this action is about, if any.")

    def describe(self) -> str:
        """One line for logs and the dry-run forecast."""
        fields = self.model_dump(exclude={"kind"}, exclude_none=True)
        args = " ".join(f"{k}={v}" for k, v in fields.items() if not isinstance(v, (dict, list)))
        return f"{type(self).model_fields['kind'].default} {args}".strip()


class EnsureNodeConfig(_Action):
    """Create the CiliumNodeConfig or replace its spec if it differs."""

    kind: Literal["ensure-node-config"] = "ensure-node-config"
    namespace: str = Field(description="CiliumNodeConfig namespace.")
    name: str = Field(description="CiliumNodeConfig name.")
    api_version: str = Field(description="Served apiVersion to write, e.g. cilium.io/v2.")
    node_selector: dict[str, str] = Field(description="spec.nodeSelector.matchLabels.")
    defaults: dict[str, str] = Field(description="spec.defaults.")


class DeleteNodeConfig(_Action):
    """Delete the CiliumNodeConfig (finalize)."""

    kind: Literal["delete-node-config"] = "delete-node-config"
    namespace: str = Field(description="CiliumNodeConfig namespace.")
    name: str = Field(description="CiliumNodeConfig name.")
    api_version: str = Field(description="Served apiVersion, e.g. cilium.io/v2.")


class Cordon(_Action):
    """Mark the node unschedulable."""

    kind: Literal["cordon"] = "cordon"
    node: str = Field(description="Node to cordon.")


class Uncordon(_Action):
    """Mark the node schedulable again (only emitted for nodes the migrator cordoned)."""

    kind: Literal["uncordon"] = "uncordon"
    node: str = Field(description="Node to uncordon.")


class RestoreNodeState(_Action):
    """Put a node back as it was before the migrator touched it (skip / give up)."""

    kind: Literal["restore-node-state"] = "restore-node-state"
    node: str = Field(description="Node to restore.")
    unschedulable: bool = Field(description="spec.unschedulable to restore.")
    label_key: str = Field(description="Migration label key.")
    label_value: str | None = Field(description="Prior label value; None removes the label.")


class EvictPod(_Action):
    """Evict a pod through the Eviction API (honours PDBs) with a uid precondition."""

    kind: Literal["evict-pod"] = "evict-pod"
    namespace: str = Field(description="Pod namespace.")
    name: str = Field(description="Pod name.")
    uid: str = Field(description="Pod uid the eviction is meant for.")
    grace_period_seconds: int | None = Field(default=None, description="Override grace period.")


class DeletePod(_Action):
    """Delete a pod with a uid precondition."""

    kind: Literal["delete-pod"] = "delete-pod"
    namespace: str = Field(description="Pod namespace.")
    name: str = Field(description="Pod name.")
    uid: str = Field(description="Pod uid the deletion is meant for.")
    reason: DeleteReason = Field(description="Why the pod is deleted (audit and metrics).")
    grace_period_seconds: int | None = Field(default=None, description="Override grace period.")


class LabelNode(_Action):
    """Set one label on a node."""

    kind: Literal["label-node"] = "label-node"
    node: str = Field(description="Node to label.")
    key: str = Field(description="Label key.")
    value: str = Field(description="Label value.")


class SetTaint(_Action):
    """Add or remove one taint on a node (placement steering)."""

    kind: Literal["set-taint"] = "set-taint"
    node: str = Field(description="Node to taint or untaint.")
    key: str = Field(description="Taint key.")
    effect: Literal["NoSchedule", "PreferNoSchedule"] = Field(description="Taint effect.")
    present: bool = Field(description="True adds the taint, False removes it.")


class UnlabelNode(_Action):
    """Remove one label from a node."""

    kind: Literal["unlabel-node"] = "unlabel-node"
    node: str = Field(description="Node to unlabel.")
    key: str = Field(description="Label key.")


class CreatePod(_Action):
    """Create a pod pinned to a node (verification pod or node-local action pod)."""

    kind: Literal["create-pod"] = "create-pod"
    node: str = Field(description="Node the pod is pinned to (the pod's node_name).")
    purpose: Literal["verify", "node-action"] = Field(description="What the pod is for.")
    pod: PodRequest = Field(description="The pod, exactly as the cluster port creates it.")

    @model_validator(mode="after")
    def _pinned_to_node(self) -> CreatePod:
        if self.pod.node_name != self.node:
            raise ValueError(f"pod {self.pod.name} is pinned to {self.pod.node_name!r}, not to node {self.node!r}")
        return self

    def describe(self) -> str:
        return f"create-pod purpose={self.purpose} node={self.node} pod={self.pod.namespace}/{self.pod.name}"


class EmitEvent(_Action):
    """Record a Kubernetes Event about a node (source component ``migrator``)."""

    kind: Literal["emit-event"] = "emit-event"
    node: str = Field(description="Node the event is about.")
    reason: str = Field(description="CamelCase reason, e.g. MigrationCordoned.")
    message: str = Field(description="Human-readable message.")
    type: Literal["Normal", "Warning"] = Field(default="Normal", description="Event type.")


class PatchConfigMap(_Action):
    """Merge keys into a ConfigMap's data."""

    kind: Literal["patch-configmap"] = "patch-configmap"
    namespace: str = Field(description="ConfigMap namespace.")
    name: str = Field(description="ConfigMap name.")
    data: dict[str, str] = Field(description="Keys to set.")


class RestartDaemonSet(_Action):
    """Rollout-restart a DaemonSet (template annotation kubectl.kubernetes.io/restartedAt)."""

    kind: Literal["restart-daemonset"] = "restart-daemonset"
    namespace: str = Field(description="DaemonSet namespace.")
    name: str = Field(description="DaemonSet name.")
    restarted_at: str = Field(
        description="RFC 3339 timestamp for the annotation; fixed in the checkpoint so a retry "
                    "does not restart twice.")


class DeleteObject(_Action):
    """Delete any API object (Calico removal)."""

    kind: Literal["delete-object"] = "delete-object"
    group: str = Field(description="API group ('' for core).")
    version: str = Field(description="API version, e.g. v1.")
    plural: str = Field(description="Resource plural, e.g. daemonsets.")
    namespace: str | None = Field(default=None, description="Namespace; None if cluster-scoped.")
    name: str = Field(description="Object name.")


class ApplyObject(_Action):
    """Create an object, or replace its spec/labels when they differ (the probe fleet)."""

    kind: Literal["apply-object"] = "apply-object"
    manifest: dict[str, Any] = Field(description="The complete object (apiVersion, kind, metadata, spec).")

    def describe(self) -> str:
        meta = self.manifest.get("metadata") or {}
        where = f"{meta['namespace']}/" if meta.get("namespace") else ""
        return f"apply-object {self.manifest.get('kind')} {where}{meta.get('name')}"


class PatchObject(_Action):
    """JSON merge patch (RFC 7386) of any API object: ``null`` removes a key (the routing hand-over's
    writes and their undos)."""

    kind: Literal["patch-object"] = "patch-object"
    api_version: str = Field(description="apiVersion of the object, e.g. v1 or metallb.io/v1beta1.")
    plural: str = Field(description="Resource plural, e.g. services.")
    namespace: str | None = Field(default=None, description="Namespace; None if cluster-scoped.")
    name: str = Field(description="Object name.")
    patch: dict[str, Any] = Field(description="The merge patch.")

    def describe(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"patch-object {self.plural} {where}{self.name}"


class ProbeCheck(BaseModel):
    """One connectivity check: from a netexec pod (through pods/proxy) ``/dial`` to host:port."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Check name, e.g. to-calico:node-3, service, dns, node-1->node-4.")
    namespace: str = Field(description="Source pod namespace.")
    pod: str = Field(description="Source pod name (runs agnhost netexec).")
    pod_port: int = Field(description="Source pod's netexec HTTP port.")
    host: str = Field(description="Target IP or DNS name.")
    port: int = Field(description="Target port.")
    tries: int = Field(default=3, description="Connections in this round.")
    protocol: Literal["http", "udp"] = Field(default="http", description="netexec /dial protocol.")
    expect: Literal["answer", "allow", "deny", "observe"] = Field(
        default="answer", description="answer: the target must answer (connectivity); allow / deny: the "
                                      "policy verdict before the run, which must hold; observe: record the "
                                      "verdict (the policy probe's baseline).")
    target: str | None = Field(default=None, description="What the target is (shown in a policy check's outcome).")


class RunProbes(_Action):
    """Run one round of connectivity checks; the result's ``detail`` maps check name → outcome."""

    kind: Literal["run-probes"] = "run-probes"
    purpose: Literal["gate", "sample", "policy"] = Field(
        description="A node's gate, continuous sampling, or the policy probe's baseline.")
    checks: tuple[ProbeCheck, ...] = Field(description="The checks of this round.")
    threshold: float = Field(description="Fraction of tries that must answer.")

    def describe(self) -> str:
        return f"run-probes purpose={self.purpose} node={self.node} checks={len(self.checks)}"


class WriteFile(_Action):
    """Write a local file (the final Helm values)."""

    kind: Literal["write-file"] = "write-file"
    path: str = Field(description="File path, relative to the working directory unless absolute.")
    content: str = Field(description="Complete file content.")


Action = Annotated[
    EnsureNodeConfig | DeleteNodeConfig | Cordon | Uncordon | RestoreNodeState | EvictPod | DeletePod | LabelNode | UnlabelNode | CreatePod | EmitEvent | PatchConfigMap | RestartDaemonSet | DeleteObject | WriteFile | ApplyObject | PatchObject | RunProbes | SetTaint,
    Field(discriminator="kind"),
]
ACTION_ADAPTER: TypeAdapter[Action] = TypeAdapter(Action)


class ActionResult(BaseModel):
    """The outcome of executing one action."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Action = Field(description="The action that was executed.")
    ok: bool = Field(description="True when the desired state now holds (including no-ops).")
    changed: bool = Field(default=True, description="False when the action was a no-op.")
    error_kind: ErrorKind | None = Field(
        default=None, description="Class of the failure (cluster error name) when not ok.")
    message: str = Field(default="", description="Error message (or a note) for humans.")
    retry_after: float | None = Field(
        default=None, description="Seconds to wait before retrying (429 / Retry-After).")
    detail: dict[str, str] = Field(
        default_factory=dict, description="Per-item outcomes (run-probes: check name → 'ok ...' or 'fail ...').")

    @classmethod
    def success(cls, action: Action, *, changed: bool = True,
                detail: dict[str, str] | None = None) -> ActionResult:
        """A successful outcome."""
        return cls(action=action, ok=True, changed=changed, detail=detail or {})

    @classmethod
    def failure(cls, action: Action, error_kind: ErrorKind, message: str = "",
                retry_after: float | None = None) -> ActionResult:
        """A failed outcome."""
        return cls(action=action, ok=False, error_kind=error_kind, message=message,
                   retry_after=retry_after)
