"""The CiliumNodeConfig the migration writes: its spec (the guide's, plus per-node policy
enforcement under ``policy.mode: continuous``) and the served apiVersion to write it with.

Enforcement is switched per node through the same object: its defaults override the agent's
``cilium-config`` keys on the nodes it selects (Cilium's per-node configuration), and
``enable-policy`` is the agent key behind the Helm value ``policyEnforcementMode`` (values
``default``, ``always``, ``never``; docs.cilium.io security/policy/intro, "Policy Enforcement
Modes"). The guide's migration values set ``never`` cluster-wide; a continuous run sets
``default`` on each node as it switches, so only migrated nodes enforce, and un-migrated ones
stay under Calico's enforcement."""

from __future__ import annotations

from migrator.model.plan import MIGRATION_LABEL, MigrationPlan

ENFORCEMENT_KEY = "enable-policy"
#: The agent key behind the Helm value ``bgpControlPlane.enabled``: with ``routing.handover`` the
#: migrated agents run Cilium's BGP control plane, which does nothing on a node until a
#: CiliumBGPClusterConfig selects it (the hand-over's node label), so handing a node over needs no
#: agent restart.
BGP_KEY = "enable-bgp-control-plane"


def node_config_spec(plan: MigrationPlan) -> tuple[dict[str, str], dict[str, str]]:
    """(nodeSelector.matchLabels, defaults) of the CiliumNodeConfig: the guide's, and with
    ``policy.mode: continuous`` also ``enable-policy: default`` on the nodes it selects, and with
    ``routing.handover`` ``enable-bgp-control-plane: "true"``."""
    defaults = {"write-cni-conf-when-ready": "/host/etc/cni/net.d/05-cilium.conflist",
                "custom-cni-conf": "false", "cni-chaining-mode": "none", "cni-exclusive": "true"}
    if plan.policy.mode == "continuous":
        defaults[ENFORCEMENT_KEY] = "default"
    if plan.routing.handover:
        defaults[BGP_KEY] = "true"
    return ({MIGRATION_LABEL: "true"}, defaults)


def node_config_version(plan: MigrationPlan, served: tuple[str, ...]) -> str | None:
    """The apiVersion to write: the plan's choice if served, or v2 preferred over v2alpha1."""
    wanted = plan.cilium.node_config.api_version
    if wanted != "auto":
        return wanted if wanted.split("/", 1)[1] in served else None
    for version in ("v2", "v2alpha1"):
        if version in served:
            return f"cilium.io/{version}"
    return None
