"""Random small inventories (seeded): whenever every policy translates ``exact``, the equivalence check
finds no difference. A compile mistake in ordering, narrowing, Pass or end-of-tier handling shows up
here as a flow the two evaluators disagree on."""

from __future__ import annotations

import random
from typing import Any

import pytest

from migrator.policy import model
from migrator.policy.compile import translate
from migrator.policy.verify import verify
from tests.policy.fixtures import gnp, inventory, knp, np

SELECTORS = ["app == 'web'", "app == 'db'", "has(role)", "role == 'fe'", "role != 'fe'", "all()",
             "app == 'db' || role == 'lb'", "!has(app)"]
PEERS: list[dict[str, Any]] = [
    {}, {"selector": "role == 'fe'"}, {"selector": "has(role)"}, {"selector": "app in {'web', 'db'}"},
    {"namespaceSelector": "tenant == 'a'"}, {"selector": "kind == 'partner'", "namespaceSelector": "global()"},
    {"nets": ["203.0.113.0/25"]}, {"notNets": ["203.0.113.0/24"]}, {"selector": "kind == 'backup'"},
]
L4: list[dict[str, Any]] = [{}, {"protocol": "TCP", "destination": {"ports": [80]}},
                            {"protocol": "TCP", "destination": {"ports": ["80:81"]}}, {"protocol": "UDP"},
                            {"protocol": "ICMP", "icmp": {"type": 8}}]


def rule(rnd: random.Random, direction: str, actions: tuple[str, ...]) -> dict[str, Any]:
    l4 = dict(rnd.choice(L4))
    peer = dict(rnd.choice(PEERS))
    side = "source" if direction == "ingress" else "destination"
    out: dict[str, Any] = {"action": rnd.choice(actions), **{k: v for k, v in l4.items() if k != "destination"}}
    dest = dict(l4.get("destination", {}))
    if side == "destination":
        dest.update(peer)
    else:
        out["source"] = peer
    if dest:
        out["destination"] = dest
    return out


def random_inventory(seed: int) -> model.Inventory:
    rnd = random.Random(seed)
    policies: list[model.Policy] = []
    tiers = (model.Tier("security", 100.0, rnd.choice(("Deny", "Pass"))),)
    for i in range(rnd.randint(1, 4)):
        direction = rnd.choice(("ingress", "egress"))
        types = ["Ingress"] if direction == "ingress" else ["Egress"]
        rules = [rule(rnd, direction, ("Allow", "Deny", "Pass")) for _ in range(rnd.randint(0, 3))]
        order = rnd.choice((None, 10.0, 100.0, 1000.0))
        kind = rnd.choice(("gnp", "np", "tiered"))
        spec: dict[str, Any] = {"selector": rnd.choice(SELECTORS), "types": types, direction: rules}
        if order is not None:
            spec["order"] = order
        if kind == "np":
            policies.append(np(f"p{i}", namespace=rnd.choice(("shop", "other")), **spec))
        elif kind == "tiered":
            policies.append(gnp(f"security.p{i}", tier="security", **spec))
        else:
            policies.append(gnp(f"p{i}", **spec))
    if rnd.random() < 0.4:
        policies.append(knp("k", namespace="shop", podSelector={"matchLabels": {"app": "db"}},
                            ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "fe"}}}]}]))
    return inventory(*policies, tiers=tiers)


@pytest.mark.parametrize("seed", range(150))
def test_exact_translations_agree_on_every_flow(seed: int) -> None:
    inv = random_inventory(seed)
    t = translate(inv)
    if set(t.classes.values()) != {"exact"}:
        return   # approximations are stated; this property is about exact ones
    result = verify(inv, t.objects)
    assert result.differences == (), (seed, result.differences[:3], [p for p in inv.policies])


def test_most_random_inventories_translate_exactly() -> None:
    """The property above is about many inventories, not a few: most of them translate exactly."""
    exact = sum(set(translate(random_inventory(seed)).classes.values()) == {"exact"} for seed in range(150))
    assert exact >= 100
