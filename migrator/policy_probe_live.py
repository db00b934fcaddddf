"""The shell's side of the policy probe: the current policy gap report, as the ``explained``
function the engine's gates take (``Inbox.explained``).

At a node's gate the cluster is in one state of the migration: the nodes labelled for Cilium
serve their pods with Cilium (the gate runs after the node's pods were recycled), the others
with Calico. The gap of that state against Calico alone (``policy.transition.gap``) says which
flows may have changed verdict; a probe flow among them is explained. Whether Cilium enforces
is read where the agent reads it: ``enable-policy`` in the CiliumNodeConfig's defaults, else in
the agent ConfigMap (the migration's ``never`` by default). Cilium enforces the Kubernetes
NetworkPolicies natively and the Cilium policy objects given by ``objects`` (none unless the
run applies a translation).

The report is computed only while a node waits at its gate, and again only when the labelled
nodes or the enforcement change, so the policy inventory is not read on every turn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from migrator.cluster.port import ClusterPort
from migrator.engine.policy_probe import Explained, nothing_explained
from migrator.model.checkpoint import Checkpoint
from migrator.model.observation import ClusterObservation
from migrator.model.plan import MIGRATION_LABEL, MigrationPlan
from migrator.model.states import NodePhase
from migrator.policy.transition import explained_by, gap

Objects = Callable[[], Sequence[Mapping[str, Any]]]


def no_objects() -> Sequence[Mapping[str, Any]]:
    return ()


class Explainer:
    """``explainer(checkpoint, observation) -> Explained`` for the runner's inbox."""

    def __init__(self, port: ClusterPort, plan: MigrationPlan, objects: Objects = no_objects) -> None:
        self.port, self.plan, self.objects = port, plan, objects
        self._key: tuple[frozenset[str], bool] | None = None
        self._explained: Explained = nothing_explained

    def _enforcing(self, obs: ClusterObservation) -> bool:
        value = (obs.node_config.defaults.get("enable-policy") if obs.node_config is not None else None)
        if value is None:
            agent = self.plan.cilium.agent
            cm = self.port.read_configmap(agent.namespace, agent.config_map)
            value = (cm.data.get("enable-policy") if cm is not None else None) or "default"
        return value != "never"

    def __call__(self, cp: Checkpoint | None, obs: ClusterObservation) -> Explained:
        if self.plan.probes.policy is None or cp is None or cp.policy_baseline is None:
            return nothing_explained
        if not any(r.phase is NodePhase.PODS_RECYCLED for r in cp.nodes):
            return self._explained   # no forward gate now: keep what was computed
        cilium = frozenset(n.name for n in obs.nodes if n.labels.get(MIGRATION_LABEL) == "true")
        key = (cilium, self._enforcing(obs))
        if key != self._key:
            nodes = dict.fromkeys(cilium, key[1])
            report = gap(self.port.read_policy_inventory(), self.objects(), nodes, nodes, listed=False)
            self._key, self._explained = key, explained_by(report)
        return self._explained
