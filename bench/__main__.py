"""Run every benchmark module (or the ones named on the command line) and print figures.

Each module in ``MODULES`` exposes ``main(argv: list[str]) -> None``.
"""

import importlib
import sys

MODULES = ("bench.api", "bench.boot", "bench.engine", "bench.loop", "bench.placement", "bench.policy")


def main(argv: list[str]) -> int:
    names = [f"bench.{a}" for a in argv] or list(MODULES)
    for name in names:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            print(f"== {name}: not present", flush=True)
            continue
        print(f"== {name}", flush=True)
        mod.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
