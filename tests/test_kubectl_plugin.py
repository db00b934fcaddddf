"""The kubectl plugin: installing the package puts ``kubectl-migrate_cni`` beside ``migrator``, so
kubectl finds it on PATH and ``kubectl migrate-cni ARGS`` runs ``migrator ARGS`` under that name.

The tests put the venv's bin directory on PATH, as an installation would be, and drive the
kubectl binary itself (against the simulated cluster for a command that reads it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from migrator import __version__
from migrator.cli import PLUGIN_PROG, main

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PLUGIN = BIN / "kubectl-migrate_cni"


def test_the_plugin_is_an_entry_point_of_the_same_parser(capsys: pytest.CaptureFixture[str]) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kubectl-migrate_cni"] == "migrator.cli:kubectl_plugin"
    with pytest.raises(SystemExit) as exited:
        main(["status", "--help"], prog=PLUGIN_PROG)
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: kubectl migrate-cni status [-h] --plan FILE")


@pytest.fixture
def plugin_kubectl(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run kubectl with the venv's bin directory first on PATH and HOME in tmp_path."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    assert PLUGIN.is_file(), f"{PLUGIN} is missing: `make venv` installs the package's entry points"
    path = os.pathsep.join([str(BIN), str(Path(kubectl).parent)])

    def run(*args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PATH": path, "HOME": str(tmp_path),
               "KUBECONFIG": str(kubeconfig or tmp_path / "no-kubeconfig")}
        return subprocess.run([kubectl, *args], env=env, capture_output=True, text=True, timeout=60, check=False)

    return run



@pytest.mark.kubectl
def test_kubectl_plugin_list_finds_it(plugin_kubectl) -> None:
    listed = plugin_kubectl("plugin", "list")
    assert listed.returncode == 0, listed.stderr
    assert str(PLUGIN) in listed.stdout.splitlines()


@pytest.mark.kubectl
def test_kubectl_migrate_cni_help_and_version(plugin_kubectl) -> None:
    helped = plugin_kubectl("migrate-cni", "--help")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: kubectl migrate-cni [-h] [--version] COMMAND ...")
    assert "status" in helped.stdout and "rollback" in helped.stdout
    version = plugin_kubectl("migrate-cni", "--version")
    assert version.returncode == 0 and version.stdout == f"migrator {__version__}\n"
    wrong = plugin_kubectl("migrate-cni", "status")
    assert wrong.returncode == 2
    assert "kubectl migrate-cni status: error: the following arguments are required: --plan" in wrong.stderr


@pytest.mark.kubectl
def test_kubectl_migrate_cni_status_reads_the_cluster(plugin_kubectl, kubeconfig: Path) -> None:
    """Arguments and KUBECONFIG reach the plugin: on a cluster with no run, status says so (exit 2)."""
    status = plugin_kubectl("migrate-cni", "status", "--plan", str(ROOT / "plans" / "example.yaml"),
                            kubeconfig=kubeconfig)
    assert status.returncode == 2, status.stderr
    assert status.stdout == ""
    assert len(status.stderr.splitlines()) == 1, status.stderr
    assert "cni-migration-state" in status.stderr and str(kubeconfig) in status.stderr
