"""Kubernetes label selectors as a frozen value: ``LabelSelector`` and its ``matches``.

Owned here because the plan (node selection, blocking-pod gates) and the observation (PDB
selectors) both need the same semantics: ``matchLabels`` AND every ``matchExpressions`` term,
with the four operators In, NotIn, Exists, DoesNotExist. An empty selector matches everything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SelectorRequirement(BaseModel):
    """One ``matchExpressions`` term."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(min_length=1, description="Label key the requirement tests.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How the label is tested (Kubernetes semantics).")
    values: tuple[str, ...] = Field(
        default=(), description="Values for In/NotIn; must be empty for Exists/DoesNotExist.")

    @model_validator(mode="after")
    def _values_fit_operator(self) -> SelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs at least one value")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when ``labels`` satisfy this term."""
        present = self.key in labels
        if self.operator == "Exists":
            return present
        if self.operator == "DoesNotExist":
            return not present
        if self.operator == "In":
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values


class LabelSelector(BaseModel):
    """A label selector (``matchLabels`` and ``matchExpressions`` are ANDed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    match_labels: dict[str, str] = Field(
        default_factory=dict, description="Labels that must be present with exactly these values.")
    match_expressions: tuple[SelectorRequirement, ...] = Field(
        default=(), description="Further requirements, all of which must hold.")

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when ``labels`` satisfy every term of the selector."""
        for key, value in self.match_labels.items():
            if labels.get(key) != value:
                return False
        return all(term.matches(labels) for term in self.match_expressions)

    def render(self) -> str:
        """kubectl-style text, e.g. ``app=web,tier in (a,b)``."""
        parts = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        for term in self.match_expressions:
            if term.operator == "Exists":
                parts.append(term.key)
            elif term.operator == "DoesNotExist":
                parts.append(f"!{term.key}")
            else:
                op = "in" if term.operator == "In" else "notin"
                parts.append(f"{term.key} {op} ({','.join(term.values)})")
        return ",".join(parts)
