"""The plan's policy section: its default, the accepted approximations' names, and its errors."""

from __future__ import annotations

import pytest

from migrator.model.identity import DEFINING, TUNING
from migrator.model.plan import PlanError, parse_plan
from migrator.policy.findings import APPROXIMATE, Finding, blocking
from tests.model.test_plan import example_data


def _with_policy(policy: object) -> dict:
    data = example_data()
    data["policy"] = policy
    return data


def test_policy_defaults_to_off_with_nothing_accepted() -> None:
    data = example_data()
    data.pop("policy", None)
    plan = parse_plan(data)
    assert plan.policy.mode == "off" and plan.policy.accepted == ()


def test_accepted_names_are_what_the_translation_blocks_on() -> None:
    plan = parse_plan(_with_policy({"mode": "continuous", "accept": [
        {"policy": "np/shop/ping", "approximation": "icmp-any-type", "reason": "only echo is used in shop"},
        {"policy": "*", "approximation": "sctp", "reason": "no SCTP service is reached through a VIP"}]}))
    assert plan.policy.accepted == ("np/shop/ping#icmp-any-type", "sctp")
    found = [Finding("np/shop/ping", APPROXIMATE, "icmp-any-type", "types 0, 3, 8, 11"),
             Finding("np/other/ping", APPROXIMATE, "icmp-any-type", "types 0, 3, 8, 11"),
             Finding("gnp/signalling", APPROXIMATE, "sctp", "beta")]
    assert blocking(found, plan.policy.accepted) == [found[1]]


@pytest.mark.parametrize(("policy", "field"), [
    ({"mode": "sometimes"}, "policy.mode"),
    ({"accept": [{"policy": "np/a/b", "approximation": "sctp", "reason": "ok"}]}, "policy.accept[0].reason"),
    ({"accept": [{"policy": "np/a/b", "reason": "a long enough reason"}]}, "policy.accept[0].approximation"),
    ({"accept": [{"policy": "", "approximation": "sctp", "reason": "a long enough reason"}]}, "policy.accept[0].policy"),
    ({"modes": "off"}, "policy.modes"),
])
def test_a_malformed_policy_section_names_the_field(policy: object, field: str) -> None:
    with pytest.raises(PlanError) as caught:
        parse_plan(_with_policy(policy))
    assert field in str(caught.value), str(caught.value)


def test_mode_defines_the_run_and_accepted_approximations_are_tuning() -> None:
    # the CiliumNodeConfig carries enable-policy from prepare on; accepts are read by preflight again on resume
    assert "policy.mode" in DEFINING
    assert {"policy.accept[].policy", "policy.accept[].approximation", "policy.accept[].reason"} <= set(TUNING)
