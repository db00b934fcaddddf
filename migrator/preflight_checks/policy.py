"""Policy continuity checks: can the run carry the cluster's network policy across, and if the
plan says it will not, does the operator know what that means?

With ``policy.mode: continuous`` every Calico policy must translate: an untranslatable one
blocks (naming the policy, the rule and the construct), and so does an approximation the plan
does not accept by name (the finding says which ``policy.accept`` entry to add). Accepted ones
are listed, with the plan's reason, so the audit shows what was waived. With ``off``, policies
present in the cluster get a loud warning: migrated nodes enforce nothing until finalize, and
Calico's own policies stop applying when Calico is removed.
"""

from __future__ import annotations

from migrator.policy.findings import UNTRANSLATABLE
from migrator.policy.findings import blocking as blocking_findings
from migrator.preflight_checks.facts import Check, Finding, PreflightFacts, PreflightInputs, finding
from migrator.preflight_checks.facts import Severity as S

TRANSLATE = "migrator policy translate --plan PLAN   # lists every policy with its class and reason"
CALICO_KINDS = ("CalicoNetworkPolicy", "GlobalNetworkPolicy")


def check_translation(inputs: PreflightInputs, facts: PreflightFacts) -> list[Finding]:
    if inputs.policy_mode != "continuous":
        return []
    if facts.translation_error is not None:
        return [finding("policy.untranslatable", S.BLOCKING,
                        f"the policy inventory cannot be read for translation: {facts.translation_error}",
                        "kubectl get networkpolicies.crd.projectcalico.org -A -o yaml   # fix or remove that object")]
    t = facts.translation
    if t is None:
        return []
    accepted = dict(inputs.accepted)
    open_ = blocking_findings(t.findings, accepted)
    out: list[Finding] = []
    for f in open_:
        if f.klass == UNTRANSLATABLE:
            out.append(finding(
                "policy.untranslatable", S.BLOCKING,
                f"policy {f.policy} cannot be translated to Cilium: {f.line().removeprefix(f.policy).lstrip(' :')}; "
                "its enforcement would be lost on migrated nodes", TRANSLATE))
        else:
            out.append(finding(
                "policy.approximate", S.BLOCKING,
                f"policy {f.policy} translates only approximately: {f.line().removeprefix(f.policy).lstrip(' :')}; "
                f"accept it in the plan with policy.accept: [{{policy: {f.policy}, approximation: {f.construct}, "
                "reason: ...}] or change the policy", TRANSLATE))
    for f in t.findings:
        if f in open_:
            continue
        reason = accepted.get(f.name) or accepted.get(f.construct, "")
        out.append(finding("policy.accepted", S.INFO,
                           f"accepted approximation {f.name} ({f.reason}): {reason}"))
    counts = {k: sum(1 for c in t.classes.values() if c == k) for k in ("exact", "approximate", UNTRANSLATABLE)}
    if t.classes:
        out.append(finding("policy.translation", S.INFO,
                           f"{len(t.classes)} Calico policies: {counts['exact']} exact, {counts['approximate']} "
                           f"approximate, {counts[UNTRANSLATABLE]} untranslatable; translations and shims are "
                           "applied before the first node switches, each migrated node enforces them"))
    return out


def check_mode_off(inputs: PreflightInputs, facts: PreflightFacts) -> list[Finding]:
    if inputs.policy_mode != "off":
        return []
    knps = sum(1 for p in facts.policies if p.kind == "NetworkPolicy")
    calico = sum(1 for p in facts.policies if p.kind in CALICO_KINDS)
    if not knps and not calico:
        return []
    return [finding(
        "policy.mode-off", S.WARNING,
        f"POLICY ENFORCEMENT STOPS: policy.mode is off and the cluster has {knps} Kubernetes NetworkPolicy and "
        f"{calico} Calico policy object(s). Pods on migrated nodes are not isolated by any of them until "
        "finalize, and Calico's policies stop applying at finalize (they are not carried over). Set "
        "policy.mode: continuous in the plan to translate them and enforce them node by node",
        TRANSLATE)]


def check_shim_schema(inputs: PreflightInputs, facts: PreflightFacts) -> list[Finding]:
    """The shims rely on ``enableDefaultDeny`` (Cilium >= 1.16): without it in the served schema the
    API server prunes it, and each shim would put the endpoints it selects in default deny."""
    if inputs.policy_mode != "continuous" or facts.shim_schema is not False:
        return []
    return [finding(
        "policy.shim-schema", S.BLOCKING,
        "the served CiliumClusterwideNetworkPolicy schema has no spec.enableDefaultDeny (Cilium < 1.16): the "
        "migration shims would isolate the endpoints they select instead of only letting Calico pods in; "
        "upgrade Cilium (and its CRDs) to 1.16 or later, or use policy.mode: off",
        "kubectl get crd ciliumclusterwidenetworkpolicies.cilium.io -o jsonpath='{.spec.versions[*].name}'")]


CHECKS: tuple[Check, ...] = (check_translation, check_mode_off, check_shim_schema)
#: The IDs its findings carry (``--skip-check`` accepts these).
IDS: tuple[str, ...] = ("policy.untranslatable", "policy.approximate", "policy.accepted", "policy.translation",
                        "policy.mode-off", "policy.shim-schema")
