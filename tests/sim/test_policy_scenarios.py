"""The ``calico-policies`` scenarios: what they install, and that the tool translates and verifies them
(``migrator policy translate`` / ``verify`` over the API, as an operator runs them)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import structlog

from migrator.cli import main
from tests.chaos.incli import _Capture

EXAMPLE = Path(__file__).resolve().parents[2] / "plans" / "example.yaml"


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = _Capture(), _Capture()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):  # type: ignore[type-var]
        code = main(list(args))
    structlog.contextvars.clear_contextvars()
    return code, out.getvalue(), err.getvalue()


def _classes(err: str) -> dict[str, set[str]]:
    rows: dict[str, set[str]] = {}
    for line in err.splitlines()[1:-1]:
        name, klass = line.split()[:2]
        rows.setdefault(name, set()).add(klass)
    return rows


def test_calico_policies_scenario_translates_exactly_and_verifies(sim_factory: Any, tmp_path: Path) -> None:
    sim = sim_factory(nodes=3, scenario="calico-policies")
    ns = {n["metadata"]["name"]: n["metadata"]["labels"] for n in sim.store.list("namespaces")}
    assert {ns[n]["tenant"] for n in ("tenant-a", "tenant-b", "shared")} == {"a", "b", "shared"}
    servers = [p for p in sim.store.list("pods") if (p["metadata"].get("labels") or {}).get("app") == "server"]
    assert len(servers) == 6 and all(p["status"].get("podIP") for p in servers)
    assert sim.store.try_get("crd.projectcalico.org/tiers", None, "security")["spec"]["order"] == 100

    kc = str(sim.write_kubeconfig(tmp_path / "kc"))
    code, out, err = _cli("policy", "translate", "--plan", str(EXAMPLE), "--kubeconfig", kc)
    assert code == 0, err
    classes = _classes(err)
    assert {"gnp/security.quarantine", "gnp/security.isolate-tenant-a", "gnp/security.isolate-tenant-b",
            "np/tenant-a/default.deny-shared-81", "np/tenant-a/default.allow-shared",
            "np/shared/default.egress-control"} <= set(classes)
    assert all(k <= {"exact", "approximate"} for k in classes.values()), classes

    code, out, err = _cli("policy", "verify", "--plan", str(EXAMPLE), "--kubeconfig", kc)
    assert code == 0, out + err
    assert " 0 differ" in out


def test_untranslatable_scenario_names_the_do_not_track_policy(sim_factory: Any, tmp_path: Path) -> None:
    sim = sim_factory(nodes=2, scenario="calico-policies-untranslatable")
    kc = str(sim.write_kubeconfig(tmp_path / "kc"))
    code, _out, err = _cli("policy", "translate", "--plan", str(EXAMPLE), "--kubeconfig", kc)
    assert code == 1
    assert _classes(err)["gnp/security.no-track"] == {"untranslatable"} and "doNotTrack" in err
