"""Packaging: `pip install migrator` brings the product's dependencies only; the simulated cluster
is the `sim` extra, and its commands say what to install when the extra is missing.

A missing library is simulated in a child interpreter by poisoning ``sys.modules`` (a ``None``
entry makes ``import name`` raise ModuleNotFoundError), so no separate environment is needed.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = {"kubernetes", "tenacity", "structlog", "pydantic", "prometheus-client", "PyYAML", "lark"}
SIM = {"jsonpatch", "kubernetes-validate", "jsonschema", "fastjsonschema", "orjson", "cryptography", "protobuf"}
IMPORTED_AS = {"protobuf": "google"}   # a distribution whose top-level package has another name
SIM_MODULES = sorted(IMPORTED_AS.get(name, name.replace("-", "_")) for name in SIM)
HINT = "pip install 'migrator[sim]'"


def pinned(requirements: list[str]) -> dict[str, str]:
    """Requirement name -> pinned version; fails on anything not pinned with ``==``."""
    out = {}
    for req in requirements:
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==([0-9][A-Za-z0-9.]*)", req.strip())
        assert m, f"not pinned: {req!r}"
        out[m[1]] = m[2]
    return out


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_product_depends_on_exactly_its_seven_packages() -> None:
    assert set(pinned(project()["dependencies"])) == PRODUCT


def test_the_sim_extra_has_the_simulators_libraries() -> None:
    extras = project()["optional-dependencies"]
    assert set(pinned(extras["sim"])) == SIM
    assert not SIM & set(pinned(extras["dev"]))


def test_the_sim_door_imports_every_library_of_the_extra() -> None:
    """So a missing one fails where the CLI turns it into the hint (see the tests below)."""
    tree = ast.parse((ROOT / "migrator" / "sim" / "cli.py").read_text())
    top = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    assert set(SIM_MODULES) <= top


def without(modules: list[str], code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a child interpreter where importing any of ``modules`` fails."""
    prelude = f"import sys\nfor name in {modules!r}:\n    sys.modules[name] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)


def cli(argv: list[str]) -> str:
    return f"from migrator.cli import main\nsys.exit(main({argv!r}))\n"


@pytest.mark.parametrize("missing", SIM_MODULES)
def test_sim_serve_without_the_extra_exits_2_with_the_install_hint(missing: str) -> None:
    result = without([missing], cli(["sim", "serve", "--kubeconfig", "/nonexistent/kubeconfig"]))
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and HINT in lines[0] and missing in lines[0], result.stderr


def test_demo_without_the_extra_exits_2_with_the_install_hint() -> None:
    result = without(SIM_MODULES, cli(["demo", "--nodes", "3"]))
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1 and HINT in result.stderr


def test_the_product_works_without_the_extra() -> None:
    """Every product module imports, and help lists the sim's commands, with the sim libraries gone."""
    product = sorted(".".join(("migrator", *p.relative_to(ROOT / "migrator").with_suffix("").parts))
                     .removesuffix(".__init__")
                     for p in (ROOT / "migrator").rglob("*.py")
                     if p.relative_to(ROOT / "migrator").parts[0] != "sim" and "__pycache__" not in p.parts
                     and p.name != "__main__.py")
    code = (f"import importlib\nfor name in {product!r}:\n    importlib.import_module(name)\n"
            "assert not [m for m in sys.modules if m.startswith('migrator.sim')], 'the product loaded the sim'\n"
            + cli(["--help"]))
    result = without(SIM_MODULES, code)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^\s+sim\s", result.stdout, re.M) and re.search(r"^\s+demo\s", result.stdout, re.M)
    result = without(SIM_MODULES, cli(["plan", "--help"]))
    assert result.returncode == 0 and "--plan" in result.stdout, result.stderr


def test_with_the_extra_the_sim_commands_reach_the_sim() -> None:
    result = without([], cli(["sim", "serve", "--list-scenarios"]))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("default ")
    result = without([], cli(["sim", "serve"]))
    assert result.returncode == 2 and "--kubeconfig is required" in result.stderr
