"""The CiliumNodeConfig the migration writes: its spec (exactly as the guide) and the served
apiVersion to write it with."""

from __future__ import annotations

from migrator.model.plan import MIGRATION_LABEL, MigrationPlan


def node_config_spec() -> tuple[dict[str, str], dict[str, str]]:
    """(nodeSelector.matchLabels, defaults) of the CiliumNodeConfig, exactly as the guide."""
    return ({MIGRATION_LABEL: "true"},
            {"write-cni-conf-when-ready": "/host/etc/cni/net.d/05-cilium.conflist",
             "custom-cni-conf": "false", "cni-chaining-mode": "none", "cni-exclusive": "true"})


def node_config_version(plan: MigrationPlan, served: tuple[str, ...]) -> str | None:
    """The apiVersion to write: the plan's choice if served, or v2 preferred over v2alpha1."""
    wanted = plan.cilium.node_config.api_version
    if wanted != "auto":
        return wanted if wanted.split("/", 1)[1] in served else None
    for version in ("v2", "v2alpha1"):
        if version in served:
            return f"cilium.io/{version}"
    return None
