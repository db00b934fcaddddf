"""Command-line entry point: wiring only.

Each command family lives in its own module and contributes its subcommands through a
``register(subparsers)`` function; each subcommand sets ``func`` (returning an exit
code) with ``set_defaults``. Exit codes are documented in the README:
0 done, 1 halted or blocking findings, 2 invalid input, 3 locked by another run.

The simulated cluster (``migrator sim``, ``migrator demo``) is an optional extra,
``pip install 'migrator[sim]'``. Its commands are listed here so ``--help`` shows them, and
``sim_command`` reaches the sim through one lazy import only when one of them runs: without
the extra, that import fails and the command exits 2 saying what to install.

The same parser is also the kubectl plugin ``kubectl migrate-cni``: kubectl runs the executable
``kubectl-migrate_cni`` it finds on PATH (installed beside ``migrator``) with the arguments that
follow the plugin's name, and ``kubectl_plugin`` only changes the program name help shows.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from migrator import __version__

COMMAND_MODULES = (
    "migrator.commands",   # preflight, plan, run, status, resume, pause, abort, finalize, rollback, canary
    "migrator.report_command",   # report
    "migrator.policy_command",   # policy translate, policy verify
)
SIM_COMMANDS = {
    "sim": "run the simulated cluster",
    "demo": "run the whole migration on an embedded simulated cluster",
}
SIM_HINT = "needs the simulated cluster, an optional extra: pip install 'migrator[sim]'"
PROG = "migrator"
PLUGIN_PROG = "kubectl migrate-cni"   # kubectl's name for an executable kubectl-migrate_cni on PATH


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Live-migrate a running Kubernetes cluster from Calico to Cilium, node by node.",
    )
    parser.add_argument("--version", action="version", version=f"migrator {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for name, text in SIM_COMMANDS.items():
        # The sim parses its own flags: this parser takes everything after the command as is
        # (no prefix character it could mistake for an option, no -h of its own).
        p = sub.add_parser(name, help=f"{text} (sim extra)", add_help=False, prefix_chars="\0")
        p.add_argument("argv", nargs=argparse.REMAINDER)
        p.set_defaults(func=sim_command)
    return parser


def sim_command(args: argparse.Namespace) -> int:
    """Hand ``migrator sim ...`` or ``migrator demo ...`` to the simulated cluster, if installed."""
    try:
        from migrator.sim import cli as sim_cli  # the product's only door to the sim
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name == "migrator" or exc.name.startswith("migrator."):
            raise
        print(f"migrator {args.command}: {SIM_HINT} (missing module {exc.name})", file=sys.stderr)
        return 2
    return sim_cli.main([args.command, *args.argv])


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:  # before a run installs its own handler (which stops at a step boundary)
        print(f"migrator {args.command}: interrupted; `migrator status` shows where the run stands",
              file=sys.stderr)
        return 1


def kubectl_plugin() -> int:
    """``kubectl migrate-cni ARGS``: the ``kubectl-migrate_cni`` entry point, ``migrator ARGS`` by another name."""
    return main(prog=PLUGIN_PROG)


if __name__ == "__main__":
    sys.exit(main())
