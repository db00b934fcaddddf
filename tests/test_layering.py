"""Import layering: the engine and models are pure; only cluster/kube.py talks to the kubernetes package."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "migrator"
PURE = ("engine", "model")
FORBIDDEN_MODULES = ("kubernetes", "migrator.cluster", "migrator.sim", "migrator.runner", "migrator.execute",
                     "migrator.observe", "requests", "urllib3", "socket", "subprocess", "threading", "asyncio")
FORBIDDEN_CALLS = {("time", "sleep"), ("time", "time"), ("time", "monotonic"), ("datetime", "now"),
                   ("datetime", "utcnow"), ("date", "today"), ("random", "random")}


def modules(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


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
            tree = ast.parse(path.read_text(), filename=str(path))
            for name in imported(tree):
                if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN_MODULES):
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
        tree = ast.parse(path.read_text(), filename=str(path))
        if any(n == "kubernetes" or n.startswith("kubernetes.") for n in imported(tree)):
            offenders.append(rel)
    assert offenders == []


def test_the_checker_catches_violations() -> None:
    bad = ast.parse("import time\nfrom kubernetes import client\ntime.sleep(1)\nfrom datetime import datetime\n"
                    "datetime.now()\n")
    assert "kubernetes" in imported(bad)
    assert ("time", "sleep") in calls(bad) and ("datetime", "now") in calls(bad)
