"""What the translation says about each policy: its class and the constructs behind it.

Classes: ``exact`` (same verdicts under Cilium), ``approximate`` (the finding states how the
verdicts differ), ``untranslatable`` (a construct Cilium has no equivalent for: the finding names
the rule and the construct). ``blocking`` is what a plan calls: untranslatable findings always
block; approximate ones block unless the plan accepts them by name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

EXACT, APPROXIMATE, UNTRANSLATABLE = "exact", "approximate", "untranslatable"
RANK = {EXACT: 0, APPROXIMATE: 1, UNTRANSLATABLE: 2}


@dataclass(frozen=True)
class Finding:
    policy: str            # e.g. gnp/tenant-isolation, np/shop/allow-web
    klass: str             # approximate | untranslatable
    construct: str         # short name of the construct, e.g. doNotTrack, Log, deny-after-allow
    reason: str            # one sentence: what differs, or why it cannot be translated
    rule: str | None = None   # e.g. ingress[2]

    @property
    def name(self) -> str:
        """The name a plan uses to accept this approximation: ``policy#construct``."""
        return f"{self.policy}#{self.construct}"

    def line(self) -> str:
        where = f" {self.rule}" if self.rule else ""
        return f"{self.policy}{where}: {self.construct}: {self.reason}"


def policy_class(findings: Iterable[Finding]) -> str:
    worst = EXACT
    for f in findings:
        if RANK[f.klass] > RANK[worst]:
            worst = f.klass
    return worst


def blocking(findings: Iterable[Finding], accepted: Iterable[str] = ()) -> list[Finding]:
    """Findings that stop a migration: every untranslatable one, and each approximate one whose
    ``policy#construct`` name (or bare construct name, accepting it everywhere) is not accepted."""
    ok = set(accepted)
    return [f for f in findings
            if f.klass == UNTRANSLATABLE or (f.name not in ok and f.construct not in ok)]
