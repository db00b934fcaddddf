"""`migrator sim ...` and `migrator demo`: the simulated cluster from the command line.

The product CLI hands these commands to ``main`` after importing this module, which loads the
whole sim and so fails at once, with the CLI's install hint, when the ``sim`` extra is missing.
``migrator sim serve`` builds a cluster, writes a kubeconfig once it has converged (the admin's,
and one per ``--kubeconfig-for NS/SA PATH`` acting as that ServiceAccount, under RBAC),
prints one line saying where it is, and serves until SIGINT or SIGTERM, then stops
cleanly (exit 0). ``--list-scenarios`` prints the scenario names with descriptions.
Exit codes follow the CLI's: 0 done, 2 invalid input.

Rehearsing a faulty control plane: ``--fault-rate 0.05`` answers 5 % of the requests (of
``--fault-verbs``, every verb by default; pods/proxy and watches included) with an error drawn
from ``--fault-codes`` (default 503,500,429), seeded by ``--seed``; ``--outage 30s:1m`` makes
the API server unavailable one minute, 30 s after the ready line, either refusing connections
(``--outage-mode refuse``, the default: a kube-apiserver restarting during an upgrade) or
answering 503 (``--outage-mode 503``: a load balancer in front of it). The cluster's own
controllers and kubelets are not affected; only clients are.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

# The sim extra's libraries (pyproject.toml, optional dependencies "sim"). The sim loads most of
# them only when a cluster starts; importing them here makes a missing one fail the product
# CLI's import of this module, where it becomes the install hint, not a traceback mid-command.
import cryptography  # noqa: F401
import fastjsonschema  # noqa: F401
import google.protobuf  # noqa: F401
import jsonpatch  # noqa: F401
import jsonschema  # noqa: F401
import kubernetes_validate  # noqa: F401
import orjson  # noqa: F401

from migrator.sim import demo
from migrator.sim.cluster import SimCluster
from migrator.sim.config import SimConfig
from migrator.sim.faults import OUTAGE_MODES, parse_codes, parse_outage, parse_rate, parse_verbs
from migrator.sim.scenarios import SCENARIOS, describe
from migrator.sim.world import own_process


def main(argv: list[str]) -> int:
    """Run ``migrator sim ...`` or ``migrator demo ...``; ``argv`` starts with the command."""
    parser = argparse.ArgumentParser(prog="migrator")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    register(sub)
    demo.register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


def register(sub: Any) -> None:
    """Add the sim subcommands to a parser."""
    sim = sub.add_parser("sim", help="run the simulated cluster",
                         description="The simulated Kubernetes cluster the migrator is tested against.")
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="SUBCOMMAND")
    serve = sim_sub.add_parser("serve", help="serve a simulated cluster until interrupted")
    serve.add_argument("--nodes", type=int, default=6, help="total nodes, control plane included (default 6)")
    serve.add_argument("--control-plane-nodes", type=int, default=1, help="control-plane nodes (default 1)")
    serve.add_argument("--seed", type=int, default=0, help="seed for names, addresses and faults (default 0)")
    serve.add_argument("--scenario", default="default", help="named scenario (see --list-scenarios)")
    serve.add_argument("--list-scenarios", action="store_true", help="print the scenarios and exit")
    serve.add_argument("--port", type=int, default=0, help="API server port (default: any free port)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--time-scale", type=float, default=1.0,
                       help="simulated seconds per wall second (default 1.0)")
    serve.add_argument("--pods-per-node", type=int, default=0,
                       help="add a filler Deployment to reach this many pods per worker")
    serve.add_argument("--kubeconfig", type=Path, help="where to write the kubeconfig (required to serve)")
    serve.add_argument("--kubeconfig-for", nargs=2, action="append", default=[], metavar=("NS/SA", "PATH"),
                       help="also write a kubeconfig acting as ServiceAccount NS/SA (its rights are what RBAC "
                            "binds to it; it works once the ServiceAccount exists); repeatable")
    serve.add_argument("--fault-rate", default="0", metavar="RATE",
                       help="probability (0..1) that a request is answered with an error instead (default 0)")
    serve.add_argument("--fault-codes", default="503,500,429", metavar="CODES",
                       help="errors a faulted request gets, drawn at random (seeded) (default 503,500,429)")
    serve.add_argument("--fault-verbs", default="all", metavar="VERBS",
                       help="verbs subject to faults, e.g. get,list,patch (default all)")
    serve.add_argument("--outage", metavar="AFTER:DURATION",
                       help="API server unavailable for DURATION, AFTER the ready line (e.g. 30s:1m)")
    serve.add_argument("--outage-mode", default="refuse", metavar="|".join(OUTAGE_MODES),
                       help="refuse: connections refused and cut (an apiserver restarting); "
                            "503: every request answered 503 (a load balancer in front) (default refuse)")
    serve.set_defaults(func=serve_command)
    sim.set_defaults(func=lambda args: (sim.print_help(), 2)[1])


def serve_command(args: argparse.Namespace) -> int:
    from migrator import log as logsetup
    logsetup.configure(fmt="console", level="info")   # logs on stderr; stdout has the ready line
    if args.list_scenarios:
        width = max(len(name) for name in SCENARIOS)
        for name, text in describe():
            print(f"{name:<{width}}  {text}")
        return 0
    if args.kubeconfig is None:
        print("migrator sim serve: --kubeconfig is required", file=sys.stderr)
        return 2
    for account, _ in args.kubeconfig_for:
        namespace, _, name = account.partition("/")
        if not namespace or not name or "/" in name:
            print(f"migrator sim serve: --kubeconfig-for {account!r}: expected NAMESPACE/SERVICEACCOUNT PATH",
                  file=sys.stderr)
            return 2
    if args.scenario not in SCENARIOS:
        print(f"migrator sim serve: unknown scenario {args.scenario!r} (see --list-scenarios)", file=sys.stderr)
        return 2
    if args.nodes < 1 or args.control_plane_nodes < 0 or args.time_scale <= 0:
        print("migrator sim serve: --nodes must be >= 1 and --time-scale > 0", file=sys.stderr)
        return 2
    try:
        rate = parse_rate(args.fault_rate)
        codes = parse_codes(args.fault_codes)
        verbs = parse_verbs(args.fault_verbs)
        outage = parse_outage(args.outage, args.outage_mode) if args.outage else None
        if args.outage_mode not in OUTAGE_MODES:
            raise ValueError(f"--outage-mode {args.outage_mode!r} must be one of {', '.join(OUTAGE_MODES)}")
    except ValueError as err:
        print(f"migrator sim serve: {err}", file=sys.stderr)
        return 2
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    config = SimConfig(nodes=args.nodes, control_plane_nodes=args.control_plane_nodes)
    own_process()
    sim = SimCluster(config=config, seed=args.seed, scenario=args.scenario, time_scale=args.time_scale,
                     port=args.port, host=args.host, pods_per_node=args.pods_per_node)
    try:
        sim.start()
        if rate:
            sim.faults.add_mixed(rate, codes, verbs)
        path = sim.write_kubeconfig(args.kubeconfig)
        for account, account_path in args.kubeconfig_for:
            sim.write_kubeconfig(account_path, service_account=account)
        details = "".join(f" {k}={v}" for k, v in sim.scenario_details.items())
        if rate:
            details += f", faults {rate:g} of {','.join(verbs) or 'all'} requests ({','.join(map(str, codes))})"
        if outage is not None:
            sim.server.schedule_outage(outage)
            details += f", outage ({outage.mode}) {outage.duration:g}s from {outage.after:g}s"
        print(f"sim cluster ready: {config.nodes} nodes, scenario {args.scenario}{details}, serving {sim.url}; "
              f"export KUBECONFIG={path.resolve()}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("sim cluster stopped", flush=True)
    return 0
