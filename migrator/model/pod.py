"""``PodRequest``: a pod the migrator creates, as the cluster port takes it.

The engine's ``CreatePod`` action carries one, and the executor hands it to
``ClusterPort.create_pod`` as it is, so no field can get lost between deciding and creating.
It lives among the models because both sides need it: the pure engine builds it and
``cluster/`` turns it into a Pod manifest.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PodRequest(BaseModel):
    """A pod the migrator creates (verification pods, node-local action pods)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Pod name (deterministic, so a retry finds the same pod).")
    namespace: str = Field(description="Pod namespace.")
    image: str = Field(description="Container image.")
    node_name: str | None = Field(default=None, description="spec.nodeName: the node the pod is pinned to.")
    args: tuple[str, ...] = Field(default=(), description="Container args.")
    command: tuple[str, ...] = Field(default=(), description="Container command.")
    labels: dict[str, str] = Field(default_factory=dict, description="Pod labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Pod annotations.")
    tolerate_all: bool = Field(default=True, description="tolerations: [{operator: Exists}].")
    restart_policy: str = Field(default="Never", description="spec.restartPolicy.")
    host_network: bool = Field(default=False, description="spec.hostNetwork.")
    privileged: bool = Field(default=False, description="Run the container privileged.")
    host_path_mounts: tuple[tuple[str, str], ...] = Field(
        default=(), description="(host path, mount path) pairs.")
