"""Import layering: the engine and models are pure; the models never reach into the engine; only
cluster/kube.py talks to the kubernetes package; the product does not load the simulated cluster (an
optional extra) except through the one lazy import that the CLI guards with an install hint."""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "migrator"
PURE = ("engine", "model")
FORBIDDEN_MODULES = ("kubernetes", "migrator.cluster", "migrator.sim", "migrator.runner", "migrator.execute",
                     "migrator.observe", "requests", "urllib3", "socket", "subprocess", "threading", "asyncio")
FORBIDDEN_CALLS = {("time", "sleep"), ("time", "time"), ("time", "monotonic"), ("datetime", "now"),
                   ("datetime", "utcnow"), ("date", "today"), ("random", "random")}
# The one place product code reaches the simulated cluster: inside a function of the CLI, behind the
# check that prints what to install when the sim extra is missing.
SIM_DOOR = ("cli.py", "migrator.sim.cli")


def modules(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def package_of(path: Path) -> str:
    """The package a module's relative imports start from (``migrator.engine`` for engine/decide.py)."""
    parts = ("migrator", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] != "__init__" else parts[:-1])


def imports(tree: ast.AST, package: str = "") -> Iterator[tuple[str, bool]]:
    """Every module name ``tree`` imports, relative imports resolved against ``package``, each with
    whether the import is lazy (inside a function) rather than run when the module loads.
    ``importlib.import_module("x")`` with a literal name counts as importing ``x``."""
    def visit(node: ast.AST, lazy: bool) -> Iterator[tuple[str, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                yield from ((alias.name, lazy) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    if not package:
                        raise ValueError("a relative import needs the importing module's package")
                    base = importlib.util.resolve_name("." * child.level + base, package)
                yield base, lazy
                yield from ((f"{base}.{alias.name}", lazy) for alias in child.names)
            elif (isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute)
                  and child.func.attr == "import_module" and child.args
                  and isinstance(child.args[0], ast.Constant) and isinstance(child.args[0].value, str)):
                yield child.args[0].value, lazy
            yield from visit(child, lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))
    yield from visit(tree, False)


def imported(tree: ast.AST, package: str = "") -> set[str]:
    return {name for name, _ in imports(tree, package)}


def within(name: str, module: str) -> bool:
    return name == module or name.startswith(module + ".")


def parsed(path: Path) -> ast.AST:
    return ast.parse(path.read_text(), filename=str(path))


def calls(tree: ast.AST) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            found.add((node.value.id, node.attr))
        if isinstance(node, ast.ImportFrom) and node.module in ("time", "datetime"):
            found.update((node.module, alias.name) for alias in node.names)
    return found


def test_engine_and_model_are_pure() -> None:
    offenders = []
    for part in PURE:
        for path in modules(PACKAGE / part):
            tree = parsed(path)
            for name in imported(tree, package_of(path)):
                if any(within(name, bad) for bad in FORBIDDEN_MODULES):
                    offenders.append(f"{path.relative_to(PACKAGE)} imports {name}")
            for pair in calls(tree) & FORBIDDEN_CALLS:
                offenders.append(f"{path.relative_to(PACKAGE)} uses {'.'.join(pair)}")
    assert offenders == []


def test_only_kube_adapter_imports_kubernetes() -> None:
    offenders = []
    for path in modules(PACKAGE):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "cluster/kube.py":
            continue
        if any(within(n, "kubernetes") for n in imported(parsed(path), package_of(path))):
            offenders.append(rel)
    assert offenders == []


def model_imports_of_engine(path: Path, tree: ast.AST) -> list[str]:
    return [f"{path.relative_to(PACKAGE)} imports {name}" for name in sorted(imported(tree, package_of(path)))
            if within(name, "migrator.engine")]


def test_models_never_import_the_engine() -> None:
    offenders = [o for path in modules(PACKAGE / "model") for o in model_imports_of_engine(path, parsed(path))]
    assert offenders == []


def product_imports_of_sim(path: Path, tree: ast.AST) -> list[str]:
    """Imports of ``migrator.sim`` by a product module, except the CLI's one lazy door."""
    rel = path.relative_to(PACKAGE).as_posix()
    return [f"{rel} imports {name}{' (lazily)' if lazy else ''}"
            for name, lazy in sorted(set(imports(tree, package_of(path))))
            if within(name, "migrator.sim") and not (lazy and rel == SIM_DOOR[0] and door(name))]


def door(name: str) -> bool:
    """``name`` is the CLI's door to the sim, a name inside it, or a package it loads anyway."""
    return within(name, SIM_DOOR[1]) or within(SIM_DOOR[1], name)


def test_product_does_not_import_the_sim() -> None:
    product = [p for p in modules(PACKAGE) if p.relative_to(PACKAGE).parts[0] != "sim"]
    offenders = [o for path in product for o in product_imports_of_sim(path, parsed(path))]
    assert offenders == []


def test_the_cli_door_to_the_sim_is_lazy_and_still_there() -> None:
    path = PACKAGE / SIM_DOOR[0]
    assert (SIM_DOOR[1], True) in set(imports(parsed(path), package_of(path)))


def test_the_checker_catches_violations() -> None:
    bad = ast.parse("import time\nfrom kubernetes import client\ntime.sleep(1)\nfrom datetime import datetime\n"
                    "datetime.now()\n")
    assert "kubernetes" in imported(bad)
    assert ("time", "sleep") in calls(bad) and ("datetime", "now") in calls(bad)


def test_the_checker_resolves_relative_imports() -> None:
    tree = ast.parse("from ..cluster import kube\nfrom . import table\nfrom .states import NodePhase\n")
    assert imported(tree, package_of(PACKAGE / "engine" / "decide.py")) == {
        "migrator.cluster", "migrator.cluster.kube", "migrator.engine", "migrator.engine.table",
        "migrator.engine.states", "migrator.engine.states.NodePhase"}
    assert imported(ast.parse("from . import plan\n"), package_of(PACKAGE / "model" / "__init__.py")) == {
        "migrator.model", "migrator.model.plan"}


def test_the_checker_catches_a_relative_import_of_the_cluster_in_the_engine() -> None:
    path = PACKAGE / "engine" / "decide.py"
    assert any(within(n, "migrator.cluster") for n in imported(ast.parse("from ..cluster import kube\n"),
                                                                package_of(path)))


def test_the_checker_catches_the_model_importing_the_engine() -> None:
    path = PACKAGE / "model" / "checkpoint.py"
    for source in ("from migrator.engine.table import TABLE\n", "from ..engine import decide\n",
                   "def f():\n    import migrator.engine.states\n"):
        assert model_imports_of_engine(path, ast.parse(source)), source


def test_the_checker_catches_the_product_importing_the_sim() -> None:
    commands = PACKAGE / "commands.py"
    for source in ("from migrator.sim.cluster import SimCluster\n", "from .sim import cli\n",
                   "def f():\n    from migrator.sim.config import SimConfig\n",
                   "import importlib\nimportlib.import_module('migrator.sim.cli')\n"):
        assert product_imports_of_sim(commands, ast.parse(source)), source
    cli = PACKAGE / "cli.py"
    assert product_imports_of_sim(cli, ast.parse("from migrator.sim import cli\n"))      # the door, but eager
    assert product_imports_of_sim(cli, ast.parse("def f():\n    from migrator.sim import cluster\n"))
    assert not product_imports_of_sim(cli, ast.parse("def f():\n    from migrator.sim import cli\n"))
