"""What preflight reports: ``Finding`` and its ``Severity``.

Findings are part of what the engine observes (``ClusterObservation.findings``, gathered while
the run is in PREFLIGHT), so they are a model like the others: frozen, documented field by
field, with no import of the checks that produce them (``migrator/preflight_checks/``).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Severity(StrEnum):
    """How much a finding matters."""

    BLOCKING = "blocking"
    WARNING = "warning"
    INFO = "info"


class Finding(BaseModel):
    """One preflight result."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    check: str = Field(description="Dotted name of the check, e.g. calico.vxlan-port.")
    severity: Severity = Field(description="blocking stops the run; warning and info inform.")
    message: str = Field(description="What was found and why it matters.")
    fix_command: str = Field(default="", description="The command that fixes it, if any.")
