"""Command-line entry point: wiring only.

Each command family lives in its own module and contributes its subcommands through a
``register(subparsers)`` function; each subcommand sets ``func`` (returning an exit
code) with ``set_defaults``. Exit codes are documented in the README:
0 done, 1 halted or blocking findings, 2 invalid input, 3 locked by another run.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from migrator import __version__

COMMAND_MODULES = (
    "migrator.commands",   # preflight, plan, run, status, resume, pause, abort, finalize, demo
    "migrator.sim.cli",    # sim serve
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="migrator",
        description="Live-migrate a running Kubernetes cluster from Calico to Cilium, node by node.",
    )
    parser.add_argument("--version", action="version", version=f"migrator {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
