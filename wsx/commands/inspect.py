"""``wsx inspect FILE``: what a compressed artifact holds, layer by layer, against the baseline."""
from __future__ import annotations

import json


def add_parser(sub):
    p = sub.add_parser("inspect", help="show the layers, k, bits and bytes of a compressed artifact",
                       description="Read a compressed artifact written by `wsx export` (safetensors; no code is "
                       "run) and print per layer k, index bits and stored bytes, and the totals against the "
                       "uncompressed baseline.")
    p.add_argument("file", help="artifact file written by `wsx export`")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def print_inspection(info: dict) -> None:
    """The table `wsx inspect` and `wsx export` print."""
    print(f"{info['path']}: {info['file_bytes']} bytes on disk, B = {info['bits']} bits, "
          f"written by wsx {info['wsx_version']} ({info['backend']} backend)")
    print(f"{'layer':<28} {'weights':>9} {'k':>6} {'groups':>6} {'bits':>4} {'indices B':>10} "
          f"{'codebook B':>10} {'bytes':>9} {'formula':>9} {'baseline':>9} {'CR':>7}")
    for r in info["layers"]:
        print(f"{r['name']:<28} {r['weights']:>9} {r['k']:>6} {r['groups']:>6} {r['index_bits']:>4} "
              f"{r['index_bytes']:>10} {r['codebook_bytes']:>10} {r['bytes']:>9} {r['formula_bytes']:>9} "
              f"{r['baseline_bytes']:>9} {r['compression_rate']:>7.2f}")
    ratio = info["baseline_bytes"] / info["payload_bytes"] if info["payload_bytes"] else float("inf")
    print(f"{'total':<28} {'':>9} {'':>6} {'':>6} {'':>4} {'':>10} {'':>10} {info['payload_bytes']:>9} "
          f"{info['formula_bytes']:>9} {info['baseline_bytes']:>9} {ratio:>7.2f}")
    same = "equals" if info["payload_bytes"] == info["formula_bytes"] else "DIFFERS FROM"
    print(f"packed indices + codebooks: {info['payload_bytes']} bytes, {same} the formula's "
          f"{info['formula_bytes']} bytes (sum of ceil(size_i / 8))")
    if info.get("compression_rate"):
        print(f"compression rate over the layers of interest: {info['compression_rate']:.2f} "
              f"({info['baseline_bits']} -> {info['size_bits']} bits)")
    if info["uncompressed_layers_of_interest"]:
        print(f"layers of interest kept as they are: {', '.join(info['uncompressed_layers_of_interest'])}")
    print(f"other tensors stored as they are: {info['other_tensors']} ({info['other_bytes']} bytes)")


def run(args) -> int:
    from wsx.artifact import inspect

    info = inspect(args.file)
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        print_inspection(info)
    return 0
