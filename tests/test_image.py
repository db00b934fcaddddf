"""The container image: `make image-check` (run here, so `make test` runs it), what the
Containerfile promises (a base pinned by digest, a numeric non-root uid, the ENTRYPOINT the check
runs and the manifests' pods rely on), and how `make image` picks an engine.

No engine can build the image where the tests run (no daemon, no registry), so the check proves
its contents instead: ``tools/image.py check`` installs the wheel as the builder stage does and
runs the Containerfile's own ENTRYPOINT from that installation.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tomllib
from contextlib import redirect_stdout
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from migrator.cli import main as migrator_main

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "image.py"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
TAG = f"ghcr.io/migrator/migrator:{VERSION}"


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("image_tool", TOOL)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


image = load_tool()


def recipe(target: str) -> list[str]:
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    return [line.strip() for line in lines[start + 1:] if line.startswith("\t")][:1] or []


def test_image_check_proves_the_images_contents() -> None:
    """What `make image-check` runs, run here: the wheel in a clean venv, its ENTRYPOINT, no sim library."""
    assert recipe("image-check") == ["$(BIN)/python tools/image.py check"]
    result = subprocess.run([sys.executable, str(TOOL), "check"], capture_output=True, text=True, timeout=280,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("image-check: ok: ")
    assert "no simulator library" in result.stdout and TAG in result.stdout


def containerfile_lines() -> list[str]:
    return (ROOT / "Containerfile").read_text().splitlines()


def test_every_stage_starts_from_python_3_11_slim_pinned_by_digest() -> None:
    froms = [line.split()[1] for line in containerfile_lines() if line.startswith("FROM ")]
    assert len(froms) == 2, froms   # the builder and the final stage
    for ref in froms:
        assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", ref), ref
    assert len(set(froms)) == 1, "both stages share one base, so the venv's interpreter is the same file"
    assert image.read_containerfile().bases == tuple(froms)


def pod_security(docs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(pod securityContext, containers) of every pod template in the manifests."""
    found = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "containers" in node:
                found.append((node.get("securityContext", {}), node["containers"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(docs)
    return found


def manifests() -> list[dict[str, Any]]:
    """The Job and the CronJob (the example plan selects nodes by label: its size is given)."""
    docs = []
    for plan, flags in (("example.yaml", ["--job", "--nodes", "5"]), ("canary.yaml", ["--cronjob"])):
        out = io.StringIO()
        with redirect_stdout(out):
            code = migrator_main(["manifests", "--plan", str(ROOT / "plans" / plan), *flags])
        assert code == 0
        docs += [d for d in yaml.safe_load_all(out.getvalue()) if d]
    assert {d["kind"] for d in docs} >= {"Job", "CronJob"}
    return docs


def test_the_image_runs_as_the_numeric_non_root_uid_the_manifests_ask_for() -> None:
    user = image.read_containerfile().user
    assert re.fullmatch(r"\d+:\d+", user), f"USER {user}: numeric, so runAsNonRoot can verify it"
    uid = int(user.split(":")[0])
    assert uid != 0
    pods = pod_security(manifests())
    assert pods and {ctx.get("runAsUser") for ctx, _ in pods} == {uid}
    assert all(ctx.get("runAsNonRoot") is True for ctx, _ in pods)


def test_the_entrypoint_is_the_one_the_check_runs_and_the_pods_rely_on() -> None:
    found = re.search(r"^ENTRYPOINT (.+)$", (ROOT / "Containerfile").read_text(), re.M)
    assert found
    written = json.loads(found[1])
    assert list(image.read_containerfile().entrypoint) == written == ["migrator"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[written[0]] == "migrator.cli:main"
    # The pods give only args: the image's ENTRYPOINT is what runs them.
    for _, containers in pod_security(manifests()):
        for container in containers:
            assert "command" not in container and container["args"][0] in {"run", "canary", "resume"}


def test_the_image_env_keeps_writes_in_tmp() -> None:
    env = image.read_containerfile().env
    assert env["HOME"] == "/tmp" and env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PATH"].startswith("/opt/migrator/bin:")
    assert "COPY --from=build /opt/migrator /opt/migrator" in containerfile_lines()


def test_the_build_context_is_what_the_wheel_needs(tmp_path: Path) -> None:
    included, _ = image.context_paths()
    assert set(included) == {"Containerfile", "pyproject.toml", "README.md", "migrator", "tools/image.py",
                             "tools/image.lock"}
    image.copy_context(tmp_path)
    assert (tmp_path / "migrator" / "cli.py").is_file() and not list(tmp_path.rglob("__pycache__"))
    assert not (tmp_path / "tests").exists() and not (tmp_path / ".venv").exists()


def test_the_containerfile_reader_takes_the_final_stage_and_refuses_the_shell_form(tmp_path: Path) -> None:
    path = tmp_path / "Containerfile"
    path.write_text('FROM a AS build\nENV X=1\nUSER 1\nENTRYPOINT ["b"]\n'
                    'FROM c\n# a comment\nENV A=1 \\\n    B="two words"\nUSER 7:7\nENTRYPOINT ["m"]\nCMD ["--help"]\n')
    parsed = image.read_containerfile(path)
    assert parsed == image.Image(("a", "c"), "7:7", ("m",), ("--help",), {"A": "1", "B": "two words"})
    path.write_text("FROM c\nENTRYPOINT migrator\n")
    with pytest.raises(ValueError):
        image.read_containerfile(path)


def fake_dist(site: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: " + name + "\nVersion: " + version + "\n"
                                   + "".join(f"Requires-Dist: {r}\n" for r in requires))


def test_verify_names_a_simulator_library_no_product_dependency_needs(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    site = venv / "lib" / "python3.11" / "site-packages"
    fake_dist(site, "migrator", VERSION, ("kubernetes==37.0.2", 'jsonschema==4.26.0; extra == "sim"'))
    fake_dist(site, "kubernetes", "37.0.2", ("cryptography>=1",))   # as if a product dependency needed it
    fake_dist(site, "cryptography", "50.0.2")
    fake_dist(site, "jsonschema", "4.26.0")
    (venv / "bin").mkdir()
    problems = image.verify(venv, home=tmp_path, work=tmp_path)
    assert any(p.startswith("jsonschema, a library of the simulator only") for p in problems), problems
    assert not any(p.startswith("cryptography") for p in problems), problems
    assert any("differ from tools/image.lock" in p for p in problems)
    assert any("is not the installation's own" in p for p in problems)


def fake_engine(bindir: Path, name: str, *, info_ok: bool, log: Path) -> None:
    script = bindir / name
    fail = ('echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. '
            'Is the docker daemon running?" >&2; exit 1')
    script.write_text(f'#!/bin/sh\necho "$@" >> {log}\nif [ "$1" = info ]; then {"exit 0" if info_ok else fail}; fi\n'
                      "exit 0\n")
    script.chmod(0o755)


def make_image(bindir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOOL), "build"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": str(bindir), **env})


def test_make_image_says_that_a_docker_client_without_a_daemon_cannot_build(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    fake_engine(tmp_path, "docker", info_ok=False, log=log)
    result = make_image(tmp_path)
    assert result.returncode == 1
    assert "docker: the client is installed but no daemon answers" in result.stderr
    assert "podman: not installed" in result.stderr and "buildah: not installed" in result.stderr
    assert "make image-check" in result.stderr
    assert log.read_text() == "info\n"   # never tried to build


def test_make_image_builds_with_the_first_working_engine_under_the_manifests_tag(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    fake_engine(tmp_path, "docker", info_ok=False, log=log)
    fake_engine(tmp_path, "podman", info_ok=True, log=log)
    result = make_image(tmp_path)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert calls[:2] == ["info", "info"]
    assert calls[2] == (f"build --file {ROOT / 'Containerfile'} --tag {TAG} "
                        f"--label org.opencontainers.image.version={VERSION} {ROOT}")
    assert recipe("image") == ["$(PY) tools/image.py build $(if $(IMAGE),--tag $(IMAGE))"]


def test_image_engine_picks_one_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    for name in ("docker", "podman", "buildah"):
        fake_engine(tmp_path, name, info_ok=True, log=log)
    assert make_image(tmp_path, IMAGE_ENGINE="buildah").returncode == 0
    assert log.read_text().splitlines()[0] == "info" and len(log.read_text().splitlines()) == 2
    assert "buildah build" in make_image(tmp_path, IMAGE_ENGINE="buildah").stderr
    refused = make_image(tmp_path, IMAGE_ENGINE="kaniko")
    assert refused.returncode == 2 and "IMAGE_ENGINE=kaniko" in refused.stderr
