"""The container image: its tag, its build, and the check that proves its contents without one.

The ``Containerfile`` is the one definition of what the image runs (its ENTRYPOINT and CMD, and
the ENV of its final stage) and ``.dockerignore`` the one definition of what it is built from;
this module reads both, so the check cannot drift from the image. The builder stage runs
``install`` and ``verify`` below, and ``check`` runs the very same two into a temporary venv, so
the image build and the check install and prove the same thing:

* ``install``: build the wheel (``pip wheel --no-deps``), create a venv without pip, and install
  the wheel into it with its dependencies, without extras, held to ``tools/image.lock`` (the
  exact versions of the runtime closure, so two builds of one commit ship the same packages).
* ``verify``: the installed distributions are exactly the lock; no library of the simulator
  (the ``sim`` extra) is there unless a product dependency requires it; the ENTRYPOINT runs
  (``--version``, the default CMD, ``manifests --help``) with the image's ENV and writes nothing
  into the installation (the image's root filesystem is read-only); ``migrator sim`` exits 2
  naming the extra to install; ``default_image()`` names this image's tag.

Commands (stdlib only, so the builder stage can run it on the bare base image)::

    python tools/image.py tag                 the tag `migrator manifests` emits by default
    python tools/image.py build [--tag T]     `make image`: docker, podman or buildah, the first that works
    python tools/image.py check               `make image-check`: install and verify into a temporary venv
    python tools/image.py lock                `make image-lock`: rewrite tools/image.lock from a fresh resolve
    python tools/image.py install VENV        the builder stage: install the source tree here into VENV
    python tools/image.py verify VENV         the builder stage: verify that installation
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONTAINERFILE = ROOT / "Containerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
LOCK = Path(__file__).resolve().with_name("image.lock")
REPOSITORY = "ghcr.io/migrator/migrator"   # as migrator.manifests.default_image() names it
ENGINES = ("docker", "podman", "buildah")  # tried in this order; IMAGE_ENGINE picks one
SIM_HINT = "pip install 'migrator[sim]'"


def project() -> dict[str, Any]:
    table: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return table


def tag() -> str:
    return f"{REPOSITORY}:{project()['version']}"


def canonical(name: str) -> str:
    """A distribution name as the index compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(req: str) -> str:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    if not m:
        raise ValueError(f"not a requirement: {req!r}")
    return canonical(m[1])


# --- what the Containerfile says --------------------------------------------------------------------

@dataclass(frozen=True)
class Image:
    """The parts of the Containerfile the check needs, from its final stage."""

    bases: tuple[str, ...]           # every FROM image reference, in order
    user: str                        # the final stage's USER
    entrypoint: tuple[str, ...]      # exec form
    cmd: tuple[str, ...]             # exec form
    env: dict[str, str]              # the final stage's ENV, as written (no expansion)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, backslash continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def read_containerfile(path: Path = CONTAINERFILE) -> Image:
    bases: list[str] = []
    user, entrypoint, cmd, env = "", tuple[str, ...](), tuple[str, ...](), dict[str, str]()
    for word, rest in instructions(path.read_text(encoding="utf-8")):
        if word == "FROM":
            args = [a for a in rest.split() if not a.startswith("--")]
            bases.append(args[0])
            user, entrypoint, cmd, env = "", (), (), {}   # a new stage starts afresh
        elif word == "USER":
            user = rest
        elif word in ("ENTRYPOINT", "CMD"):
            value = json.loads(rest)   # exec form only: a shell form would run through /bin/sh
            if not (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
                raise ValueError(f"{path.name}: {word} must be a JSON list of strings, not {rest}")
            if word == "ENTRYPOINT":
                entrypoint = tuple(value)
            else:
                cmd = tuple(value)
        elif word == "ENV":
            for item in shlex.split(rest):
                key, sep, value = item.partition("=")
                if not sep:
                    raise ValueError(f"{path.name}: write ENV as KEY=value, not {rest}")
                env[key] = value
    if not entrypoint:
        raise ValueError(f"{path.name}: the final stage has no ENTRYPOINT")
    return Image(tuple(bases), user, entrypoint, cmd, env)


def context_paths(path: Path = DOCKERIGNORE) -> tuple[list[str], list[str]]:
    """The build context as ``.dockerignore`` lets it through: (included paths, excluded patterns).

    Only the allow-list form is read: ``*`` first, then ``!path`` lines naming what goes in and
    ``**/pattern`` lines naming what is left out wherever it appears.
    """
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines or lines[0] != "*":
        raise ValueError(f"{path.name}: start with `*` and allow what the image is built from with `!path`")
    included, excluded = [], []
    for ln in lines[1:]:
        if ln.startswith("!"):
            included.append(ln[1:].strip("/"))
        elif ln.startswith("**/"):
            excluded.append(ln[3:])
        else:
            raise ValueError(f"{path.name}: {ln!r}: only `!path` and `**/pattern` lines are understood")
    return included, excluded


def copy_context(dest: Path) -> None:
    """Copy the build context, as the engine would send it, into ``dest``."""
    included, excluded = context_paths()
    ignore = shutil.ignore_patterns(*excluded)
    for rel in included:
        src = ROOT / rel
        if src.is_dir():
            shutil.copytree(src, dest / rel, ignore=ignore)
        else:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


# --- install and verify (the builder stage runs these too) ---------------------------------------------

def run(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, env=env, cwd=cwd, timeout=timeout)


class Failed(Exception):
    """A step that failed, with what to do about it."""


def pip(args: list[str], what: str) -> None:
    result = run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args])
    if result.returncode != 0:
        raise Failed(f"{what} failed (pip exit {result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}")


def install(src: Path, venv: Path, *, locked: bool = True, compile_: bool = True) -> Path:
    """Build the wheel of ``src`` and install it, without extras, into a new venv at ``venv``."""
    dist = Path(tempfile.mkdtemp(prefix="migrator-wheel-"))
    try:
        pip(["wheel", "--no-deps", "--wheel-dir", str(dist), str(src)], "building the wheel")
        wheels = sorted(dist.glob("migrator-*.whl"))
        if len(wheels) != 1:
            raise Failed(f"building the wheel left {[w.name for w in wheels]}, not one migrator wheel")
        made = run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
        if made.returncode != 0:
            raise Failed(f"creating the venv failed: {made.stderr.strip()}")
        lock = ["--constraint", str(LOCK)] if locked else []
        try:
            pip(["--python", str(venv / "bin" / "python"), "install", "--no-compile", "--only-binary", ":all:",
                 *lock, str(wheels[0])], "installing the wheel")
        except Failed as exc:
            if locked:
                raise Failed(f"{exc}\n{LOCK.relative_to(ROOT)} may be out of date with pyproject.toml: "
                             "`make image-lock` rewrites it") from None
            raise
    finally:
        shutil.rmtree(dist, ignore_errors=True)
    if compile_:   # the image is immutable: bytecode checked by nothing but its presence
        compiled = run([str(venv / "bin" / "python"), "-m", "compileall", "-q", "--invalidation-mode",
                        "unchecked-hash", str(venv / "lib")])
        if compiled.returncode != 0:
            raise Failed(f"compiling the installation failed: {compiled.stdout[-2000:]}{compiled.stderr[-2000:]}")
    return venv


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if len(found) != 1:
        raise Failed(f"{venv}: expected one site-packages, found {found}")
    return found[0]


def installed(venv: Path) -> dict[str, importlib.metadata.Distribution]:
    return {canonical(d.metadata["Name"]): d for d in importlib.metadata.distributions(path=[str(site_packages(venv))])}


def read_lock() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            if not sep:
                raise Failed(f"{LOCK.relative_to(ROOT)}: {line!r} is not pinned with ==")
            pins[canonical(name)] = version.strip()
    return pins


def snapshot(tree: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(tree)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in tree.rglob("*")}


def verify(venv: Path, *, home: Path, work: Path) -> list[str]:
    """Everything the image promises about its installation; the list of what is wrong (empty: all well)."""
    image = read_containerfile()
    problems: list[str] = []
    dists = installed(venv)

    got = {name: d.version for name, d in dists.items() if name != "migrator"}
    pins = read_lock()
    if got != pins:
        extra = sorted(f"{n}=={v}" for n, v in got.items() if pins.get(n) != v)
        missing = sorted(f"{n}=={v}" for n, v in pins.items() if got.get(n) != v)
        problems.append(f"installed packages differ from {LOCK.relative_to(ROOT)}: installed {extra}, locked "
                        f"{missing}; `make image-lock` rewrites it")

    sim = {requirement_name(r) for r in project()["optional-dependencies"]["sim"]}
    for name in sorted(sim & dists.keys()):
        needed_by = sorted(other for other, d in dists.items() if other != "migrator"
                           and any(requirement_name(r) == name for r in d.requires or ()))
        if not needed_by:
            problems.append(f"{name}, a library of the simulator only (the sim extra), is installed")

    env = {**os.environ, **{k: v for k, v in image.env.items() if k not in ("PATH", "HOME")},
           "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(home)}
    entry = shutil.which(image.entrypoint[0], path=env["PATH"])
    if entry is None or Path(entry).parent != venv / "bin":
        problems.append(f"the ENTRYPOINT {image.entrypoint[0]!r} is not the installation's own ({entry})")
        return problems
    command = list(image.entrypoint)
    probe = ("from migrator.manifests import default_image\nprint(default_image())\n")
    runs = {
        "--version": command + ["--version"],
        "the default CMD": command + list(image.cmd),
        "manifests --help": command + ["manifests", "--help"],
        "sim": command + ["sim"],
        "default_image()": [str(venv / "bin" / "python"), "-c", probe],
    }
    before = snapshot(venv)
    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        futures = {what: pool.submit(run, cmd, env=env, cwd=work, timeout=120) for what, cmd in runs.items()}
        results = {what: f.result() for what, f in futures.items()}
    for what in ("--version", "the default CMD", "manifests --help", "default_image()"):
        if results[what].returncode != 0:
            problems.append(f"{shlex.join(runs[what])} exited {results[what].returncode}: "
                            f"{results[what].stderr.strip()[-2000:]}")
    version = f"migrator {project()['version']}"
    if results["--version"].stdout.strip() != version:
        problems.append(f"--version printed {results['--version'].stdout.strip()!r}, not {version!r}")
    if "usage:" not in results["the default CMD"].stdout + results["manifests --help"].stdout:
        problems.append("the default CMD and `manifests --help` printed no usage")
    sim_run = results["sim"]
    if sim_run.returncode != 2 or SIM_HINT not in sim_run.stderr:
        problems.append(f"`{shlex.join(runs['sim'])}` exited {sim_run.returncode} ({sim_run.stderr.strip()!r}), "
                        f"not 2 saying {SIM_HINT}")
    if results["default_image()"].stdout.strip() != tag():
        problems.append(f"migrator.manifests.default_image() is {results['default_image()'].stdout.strip()!r}, "
                        f"not this image's tag {tag()!r}")
    written = sorted(set(snapshot(venv).items()) ^ set(before.items()))
    if written:
        problems.append(f"running the entrypoint wrote into the installation (read-only in the image): "
                        f"{sorted({p for p, _ in written})[:5]}")
    return problems


# --- the commands --------------------------------------------------------------------------------------

def cmd_check(_: argparse.Namespace) -> int:
    image = read_containerfile()
    with tempfile.TemporaryDirectory(prefix="migrator-image-check-") as tmp:
        root = Path(tmp)
        for d in ("src", "home", "work"):
            (root / d).mkdir()
        copy_context(root / "src")
        try:
            venv = install(root / "src", root / "venv", compile_=False)   # bytecode is the image's only difference
            problems = verify(venv, home=root / "home", work=root / "work")
            count = len(installed(venv))
        except Failed as exc:
            problems = [str(exc)]
    if problems:
        for p in problems:
            print(f"image-check: {p}", file=sys.stderr)
        return 1
    print(f"image-check: ok: the wheel installs without extras into a clean venv ({count} distributions, "
          f"exactly {LOCK.relative_to(ROOT)}, no simulator library); the ENTRYPOINT "
          f"{shlex.join(image.entrypoint)} runs --version, {shlex.join(image.cmd)} and manifests --help "
          f"without writing into the installation; `sim` exits 2 naming the extra; default_image() is {tag()}")
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    try:
        install(ROOT, Path(args.venv))
    except Failed as exc:
        print(f"image install: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="migrator-verify-") as tmp:
        (Path(tmp) / "home").mkdir()
        (Path(tmp) / "work").mkdir()
        try:
            problems = verify(Path(args.venv), home=Path(tmp) / "home", work=Path(tmp) / "work")
        except Failed as exc:
            problems = [str(exc)]
    for p in problems:
        print(f"image verify: {p}", file=sys.stderr)
    return 1 if problems else 0


def cmd_lock(_: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="migrator-image-lock-") as tmp:
        (Path(tmp) / "src").mkdir()
        copy_context(Path(tmp) / "src")
        try:
            dists = installed(install(Path(tmp) / "src", Path(tmp) / "venv", locked=False, compile_=False))
        except Failed as exc:
            print(f"image-lock: {exc}", file=sys.stderr)
            return 1
        pins = sorted((f"{d.metadata['Name']}=={d.version}" for n, d in dists.items() if n != "migrator"),
                      key=str.lower)
    header = [line for line in LOCK.read_text(encoding="utf-8").splitlines() if line.startswith("#")] \
        if LOCK.exists() else []
    LOCK.write_text("\n".join([*header, *pins]) + "\n", encoding="utf-8")
    print(f"image-lock: wrote {len(pins)} pins to {LOCK.relative_to(ROOT)}")
    return 0


def find_engine(preferred: str | None) -> tuple[str | None, list[str]]:
    """The first engine that works, and why each one before it does not."""
    why: list[str] = []
    for name in ENGINES:
        if preferred and name != preferred:
            continue
        path = shutil.which(name)
        if path is None:
            why.append(f"{name}: not installed")
            continue
        try:
            probe = run([path, "info"], timeout=60)
        except subprocess.TimeoutExpired:
            why.append(f"{name}: installed, but `{name} info` did not answer within 60 s")
            continue
        if probe.returncode != 0:
            said = (probe.stderr.strip() or probe.stdout.strip() or f"exit {probe.returncode}").splitlines()[-1]
            kind = "the client is installed but no daemon answers" if name == "docker" else "installed but not working"
            why.append(f"{name}: {kind} (`{name} info`: {said})")
            continue
        return path, why
    return None, why


def cmd_build(args: argparse.Namespace) -> int:
    preferred = os.environ.get("IMAGE_ENGINE") or None
    if preferred and preferred not in ENGINES:
        print(f"make image: IMAGE_ENGINE={preferred}: not one of {', '.join(ENGINES)}", file=sys.stderr)
        return 2
    engine, why = find_engine(preferred)
    if engine is None:
        print("make image: no container engine can build here:", file=sys.stderr)
        for line in why:
            print(f"  {line}", file=sys.stderr)
        print("`make image-check` proves the image's contents without one.", file=sys.stderr)
        return 1
    for line in why:
        print(f"make image: {line}; trying the next engine", file=sys.stderr)
    image_tag = args.tag or tag()
    cmd = [engine, "build", "--file", str(CONTAINERFILE), "--tag", image_tag,
           "--label", f"org.opencontainers.image.version={project()['version']}", str(ROOT)]
    print(f"make image: {shlex.join(cmd)}", file=sys.stderr)
    code = subprocess.run(cmd, check=False).returncode
    if code != 0:
        print(f"make image: {Path(engine).name} build exited {code}; where the base image cannot be pulled "
              "(no registry), `make image-check` proves the image's contents without it", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/image.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("tag", help="print the image's tag").set_defaults(func=lambda _: print(tag()) or 0)
    build = sub.add_parser("build", help="build the image with docker, podman or buildah")
    build.add_argument("--tag", help=f"tag to build (default: {REPOSITORY}:<version from pyproject.toml>)")
    build.set_defaults(func=cmd_build)
    sub.add_parser("check", help="prove the image's contents without building it").set_defaults(func=cmd_check)
    sub.add_parser("lock", help="rewrite tools/image.lock").set_defaults(func=cmd_lock)
    for name, func in (("install", cmd_install), ("verify", cmd_verify)):
        p = sub.add_parser(name, help=f"the builder stage: {name} into VENV")
        p.add_argument("venv")
        p.set_defaults(func=func)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
