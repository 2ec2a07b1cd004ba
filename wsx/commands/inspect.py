"""``wsx inspect FILE``: what a compressed artifact or a Core ML package holds, layer by layer,
against wsx's formula and the baseline."""
from __future__ import annotations

import json


def add_parser(sub):
    p = sub.add_parser("inspect", help="show the layers, k, bits and bytes of an artifact or .mlpackage",
                       description="Read a compressed artifact written by `wsx export` (safetensors) or a Core ML "
                       ".mlpackage (its spec and weight file; needs pip install 'wsx[coreml]'); no code is run. "
                       "Prints per layer k, index bits and stored bytes against wsx's formula (for a package: "
                       "the LUT entries and bits found in it, the formula for those padded bit-widths and for "
                       "k itself), and the totals against the uncompressed baseline.")
    p.add_argument("file", help="artifact file or .mlpackage directory written by `wsx export`")
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


def print_package(info: dict) -> None:
    """The table `wsx inspect` and `wsx export` print for a Core ML package."""
    writer = f", written by wsx {info['wsx_version']} ({info['backend']} backend)" if info["wsx_version"] else ""
    print(f"{info['path']}: {info['package_bytes']} bytes on disk (weight file {info['weight_file_bytes']}), "
          f"ML program spec {info['specification_version']}, {info['precision'] or '?'}, target "
          f"{info['target'] or '?'}{writer}")
    print(f"{'layer':<28} {'weights':>9} {'k':>5} {'bits':>4} {'nbits':>5} {'LUTs':>5} {'entries':>7} "
          f"{'indices B':>10} {'LUT B':>8} {'bytes':>9} {'formula':>9} {'eq. 4.1':>9} {'baseline':>9} {'CR':>7}")
    for r in info["layers"]:
        print(f"{(r['layer'] or r['op']):<28} {r['weights']:>9} {r.get('k', '-'):>5} {r.get('index_bits', '-'):>4} "
              f"{r['nbits']:>5} {r['luts']:>5} {r['lut_entries']:>7} {r['index_bytes']:>10} {r['lut_bytes']:>8} "
              f"{r['bytes']:>9} {r['formula_bytes']:>9} {r.get('wsx_formula_bytes', '-'):>9} "
              f"{r['baseline_bytes']:>9} {r['baseline_bytes'] / r['bytes']:>7.2f}")
    payload, formula = info["payload_bytes"], info["formula_bytes"]
    ratio = info["baseline_bytes"] / payload if payload else float("inf")
    print(f"{'total':<28} {'':>9} {'':>5} {'':>4} {'':>5} {'':>5} {'':>7} {'':>10} {'':>8} {payload:>9} "
          f"{formula:>9} {info['wsx_formula_bytes'] if info['wsx_formula_bytes'] is not None else '-':>9} "
          f"{info['baseline_bytes']:>9} {ratio:>7.2f}")
    off = 100.0 * (payload - formula) / formula if formula else 0.0
    print(f"lookup tables: {payload} bytes, {off:+.2f} % against the formula's {formula} bytes for the bit-widths "
          "in the package (sum of ceil((W*nbits + LUTs*2**nbits*B) / 8))")
    if info["wsx_formula_bytes"]:
        pad = 100.0 * (formula - info["wsx_formula_bytes"]) / info["wsx_formula_bytes"]
        print(f"wsx's formula for k itself (eq. 4.1, B = {info['bits']}): {info['wsx_formula_bytes']} bytes; "
              f"Core ML's bit-widths and LUT sizes add {pad:+.2f} %")
    padded = [f"{r['layer']} k={r['k']} -> {r['nbits']} bits, {r['lut_entries']} entries" for r in info["layers"]
              if r.get("k") is not None and (r["padding_bits"] or r["lut_entries"] != r["k"])]
    if padded:
        print("padded: " + "; ".join(padded))
    if info.get("bit_exact"):
        rounded = " rounded to float16" if info["precision"] == "float16" else ""
        print(f"read back: every lookup table decodes to the shared weights wsx.apply writes{rounded}, bit for bit")
    if info["uncompressed_layers_of_interest"]:
        print(f"layers of interest kept dense: {', '.join(info['uncompressed_layers_of_interest'])}")


def print_dense(info: dict) -> None:
    """What `wsx export` prints for a dense ONNX / Keras file."""
    values = ", ".join(f"{n} {k}" for n, k in info["shared_values"].items())
    print(f"{info['path']}: {info['file_bytes']} bytes, {info['format']} (dense: every weight stored as a float; "
          f"the layers hold only their shared values: {values})")
    if info["max_abs_diff"] == info["max_abs_diff"]:  # not NaN: the file was loaded back
        print(f"loaded back: outputs differ from the model's by at most {info['max_abs_diff']:.3g}")


def run(args) -> int:
    from pathlib import Path

    if Path(args.file).is_dir() or args.file.rstrip("/").endswith(".mlpackage"):
        from wsx.mlpackage import inspect as inspect_package

        info, show = inspect_package(args.file), print_package
    else:
        from wsx.artifact import inspect

        info, show = inspect(args.file), print_inspection
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        show(info)
    return 0
