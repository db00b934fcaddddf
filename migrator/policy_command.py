"""``migrator policy translate`` and ``migrator policy verify``: wiring only.

Both read the plan's cluster through the guarded port (Calico policies, network sets, Kubernetes
NetworkPolicies, pods, namespaces), translate with ``migrator.policy`` and write nothing.
``translate`` prints the Cilium objects on stdout (YAML documents, or one JSON ``List``) and the
summary table (policy, class, reason) on stderr: exit 0 when every policy translated (approximations
are listed), 1 when one is untranslatable (the others are still printed). ``verify`` prints the
differences between Calico's verdicts and Cilium's over the live inventory: exit 0 when none,
1 when any. 2 is invalid input, as for every command.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from migrator.commands import EXIT_HELP, _common, _connect, _setup, guarded
from migrator.policy.compile import Translation
from migrator.policy.findings import UNTRANSLATABLE
from migrator.policy.model import PolicyInputError
from migrator.policy.verify import Verification, verify
from migrator.policy_live import read_translation
from migrator.runner import Exit


def register(sub: Any) -> None:
    p = sub.add_parser("policy", help="translate Calico network policy to Cilium and check the translation",
                       description=f"{EXIT_HELP}.")
    inner = p.add_subparsers(dest="policy_command", metavar="SUBCOMMAND", required=True)
    t = inner.add_parser("translate", help="print the Cilium policies that carry the cluster's Calico policies, "
                                           "and each policy's class (writes nothing)",
                         description="Objects on stdout, the summary table on stderr. Exit codes: 0 every "
                                     "policy translated, 1 a policy is untranslatable, 2 invalid input.")
    _common(t)
    t.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    t.set_defaults(func=cmd_translate)
    v = inner.add_parser("verify", help="compare Calico's verdicts with the translation's under Cilium over "
                                        "the live inventory (writes nothing)",
                         description="Exit codes: 0 no difference, 1 differences, 2 invalid input.")
    _common(v)
    v.set_defaults(func=cmd_verify)


def _translation(args: argparse.Namespace) -> tuple[Any, Translation] | int:
    _setup(args)
    port = _connect(args)
    try:
        return read_translation(port)
    except PolicyInputError as exc:
        print(f"error: {exc}; fix or remove that object", file=sys.stderr)
        return Exit.INVALID
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return Exit.INVALID
    finally:
        port.close()


def render_summary(t: Translation) -> str:
    rows = t.summary()
    if not rows:
        return "policy translate: no Calico policies"
    width = max(len(r[0]) for r in rows)
    lines = [f"{'POLICY':<{width}}  {'CLASS':<14}  REASON"]
    lines += [f"{p:<{width}}  {k:<14}  {why}" for p, k, why in rows]
    counts = {k: sum(1 for c in t.classes.values() if c == k) for k in ("exact", "approximate", UNTRANSLATABLE)}
    lines.append(", ".join(f"{n} {k}" for k, n in counts.items()))
    return "\n".join(lines)


@guarded
def cmd_translate(args: argparse.Namespace) -> int:
    got = _translation(args)
    if isinstance(got, int):
        return got
    _inv, t = got
    if args.output == "json":
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": list(t.objects)}, indent=2))
    else:
        print(yaml.safe_dump_all(list(t.objects), sort_keys=False), end="")
    print(render_summary(t), file=sys.stderr)
    return Exit.HALTED if UNTRANSLATABLE in t.classes.values() else Exit.DONE


def render_differences(v: Verification) -> str:
    head = (f"policy verify: {v.endpoints} endpoint groups x {v.probes} probes = {v.flows} flows, "
            f"{len(v.differences)} differ")
    if not v.differences:
        return head
    rows = [("SOURCE", "DESTINATION", "PORT/PROTO", "CALICO", "CILIUM", "RESPONSIBLE")]
    rows += [(d.source, d.destination, d.probe, "allow" if d.calico else "deny", "allow" if d.cilium else "deny",
              "; ".join(d.responsible)) for d in v.differences]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(f"{c:<{w}}" for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5] for r in rows]
    return "\n".join([*lines, head])


@guarded
def cmd_verify(args: argparse.Namespace) -> int:
    got = _translation(args)
    if isinstance(got, int):
        return got
    inv, t = got
    result = verify(inv, t.objects)
    print(render_differences(result))
    return Exit.HALTED if result.differences else Exit.DONE
