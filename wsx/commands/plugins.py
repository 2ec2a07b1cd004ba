"""``wsx plugins``: every backend, strategy, clusterer, approximation and executor wsx found."""
from __future__ import annotations

import json


def add_parser(sub):
    p = sub.add_parser("plugins", help="list backends, strategies, clusterers, approximations and executors",
                       description="List every plugin found through the `wsx` entry-point group, with its "
                       "distribution, version and availability (and the extra to install when unavailable).")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def run(args) -> int:
    import wsx.plugins as plugins

    rows = [r.to_dict() for r in plugins.info()]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'kind':<14} {'name':<22} {'distribution':<16} {'version':<9} available")
    for r in rows:
        avail = "yes" if r["available"] else f"no: {r['reason']}"
        print(f"{r['kind']:<14} {r['name']:<22} {r['distribution']:<16} {r['version']:<9} {avail}")
    return 0
