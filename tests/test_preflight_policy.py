"""Preflight's policy checks over the real translation of small inventories."""

from __future__ import annotations

from migrator.cluster.port import IPPoolInfo, PolicyInfo
from migrator.policy.compile import translate
from migrator.preflight import evaluate, has_blocking
from migrator.preflight_checks.facts import PreflightFacts, PreflightInputs, Severity
from tests.policy.fixtures import gnp, inventory, np

CONTINUOUS = PreflightInputs(policy_mode="continuous")
ALLOW_WEB = np("allow-web", selector="app == 'web'", ingress=[
    {"action": "Allow", "protocol": "TCP", "source": {"selector": "role == 'lb'"}, "destination": {"ports": [80]}}])
RAW = gnp("raw-drop", selector="all()", doNotTrack=True, applyOnForward=True, ingress=[
    {"action": "Deny", "protocol": "TCP", "destination": {"ports": [22]}}])
PING = np("ping", selector="app == 'web'", ingress=[{"action": "Allow", "protocol": "ICMP"}])


def _findings(inputs: PreflightInputs, *policies, **facts) -> dict[str, list]:  # noqa: ANN002, ANN003
    out: dict[str, list] = {}
    for f in evaluate(inputs, PreflightFacts(translation=translate(inventory(*policies)), **facts)):
        out.setdefault(f.check, []).append(f)
    return out


def test_an_untranslatable_policy_blocks_naming_the_policy_and_the_construct() -> None:
    found = _findings(CONTINUOUS, ALLOW_WEB, RAW)
    untranslatable = found["policy.untranslatable"]   # one finding per construct
    assert all(f.severity is Severity.BLOCKING and "gnp/raw-drop" in f.message for f in untranslatable)
    # doNotTrack requires applyOnForward; the finding names doNotTrack, the construct in the way
    assert [c for c in ("doNotTrack", "applyOnForward") if any(c in f.message for f in untranslatable)] == \
        ["doNotTrack"]
    assert "migrator policy translate" in untranslatable[0].fix_command
    assert "2 Calico policies: 1 exact, 0 approximate, 1 untranslatable" in found["policy.translation"][0].message


def test_an_unaccepted_approximation_blocks_naming_the_accept_entry() -> None:
    [approx] = _findings(CONTINUOUS, PING)["policy.approximate"]
    assert approx.severity is Severity.BLOCKING
    assert "policy.accept: [{policy: np/shop/ping, approximation: icmp-any-type, reason: ...}]" in approx.message


def test_an_accepted_approximation_is_listed_with_its_reason_and_does_not_block() -> None:
    accepted = PreflightInputs(policy_mode="continuous",
                               accepted=(("np/shop/ping#icmp-any-type", "only echo requests cross tenants"),))
    found = _findings(accepted, PING)
    assert "policy.approximate" not in found and "policy.untranslatable" not in found
    [info] = found["policy.accepted"]
    assert info.severity is Severity.INFO and "only echo requests cross tenants" in info.message
    assert not has_blocking([f for check, fs in found.items() if check.startswith("policy.") for f in fs])


def test_mode_off_warns_loudly_when_policies_exist_and_translates_nothing() -> None:
    policies = (PolicyInfo("NetworkPolicy", "deny-all", "shop"), PolicyInfo("GlobalNetworkPolicy", "tenants", None))
    found = _findings(PreflightInputs(), RAW, policies=policies)
    [warning] = found["policy.mode-off"]
    assert warning.severity is Severity.WARNING and warning.message.startswith("POLICY ENFORCEMENT STOPS")
    assert "1 Kubernetes NetworkPolicy and 1 Calico policy" in warning.message
    assert "policy.untranslatable" not in found    # off: nothing is translated, nothing blocks on it
    assert "policy.mode-off" not in _findings(PreflightInputs(), RAW)   # no policy in the cluster: quiet


def test_nat_outgoing_without_a_disabled_pool_for_the_cilium_cidr_blocks_in_continuous_mode() -> None:
    pools = (IPPoolInfo(name="default", cidr="192.168.0.0/16", vxlan_mode="Always", ipip_mode="Never",
                        nat_outgoing=True, disabled=False),)
    [nat] = _findings(CONTINUOUS, ippools=pools)["calico.nat-outgoing"]
    assert nat.severity is Severity.BLOCKING and "disabled: true" in nat.fix_command
    assert _findings(PreflightInputs(), ippools=pools)["calico.nat-outgoing"][0].severity is Severity.WARNING
    shielded = (*pools, IPPoolInfo(name="no-nat", cidr="10.245.0.0/16", vxlan_mode="Never", ipip_mode="Never",
                                   nat_outgoing=False, disabled=True))
    assert "calico.nat-outgoing" not in _findings(CONTINUOUS, ippools=shielded)


def test_shims_need_enable_default_deny_in_the_served_schema() -> None:
    [old] = _findings(CONTINUOUS, ALLOW_WEB, shim_schema=False)["policy.shim-schema"]
    assert old.severity is Severity.BLOCKING and "enableDefaultDeny" in old.message
    assert "policy.shim-schema" not in _findings(CONTINUOUS, ALLOW_WEB, shim_schema=True)
    assert "policy.shim-schema" not in _findings(PreflightInputs(), ALLOW_WEB, shim_schema=False)
