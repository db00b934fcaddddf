"""Run every benchmark module (or the ones named on the command line) and print figures.

Each module in ``MODULES`` exposes ``main(argv: list[str]) -> None``. ``python -m bench boot
--nodes 5000`` runs one module with options: the words before the first option name modules,
the rest is handed to them (with one module only; exit 2 otherwise).
"""

import importlib
import sys

MODULES = ("bench.api", "bench.boot", "bench.engine", "bench.loop", "bench.placement", "bench.policy")


def main(argv: list[str]) -> int:
    first_option = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    words, options = argv[:first_option], argv[first_option:]
    names = [f"bench.{a}" for a in words] or list(MODULES)
    if options and len(names) != 1:
        print(f"bench: options {' '.join(options)!r} need exactly one benchmark named before them, "
              f"e.g. python -m bench boot --nodes 5000", file=sys.stderr)
        return 2
    for name in names:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            print(f"== {name}: not present", flush=True)
            continue
        print(f"== {name}", flush=True)
        mod.main(options)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
