"""Check a Core ML package written by `wsx export` against the exploration it came from.

    python benchmarks/export/check_coreml.py RESULTS_DIR PACKAGE.mlpackage

Rebuilds every layer's dense weights from the package twice, with wsx.mlpackage and with
coremltools' own MIL loader (constexpr_lut_to_dense's materialized_val_inference), and compares
both bit for bit with what wsx.apply writes into the zoo model for the candidate the package holds;
then prints the lookup-table bytes per layer against wsx's formula for the padded bit-widths.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import wsx
from wsx.commands.export import zoo_model
from wsx.engine import make_backend
from wsx.mlpackage import Package, coremltools, inspect, layer_ops, load_palettized


def main(results: str, package_path: str) -> int:
    ct = coremltools()
    from coremltools.converters.mil.frontend.milproto.load import load

    result = wsx.Result.load(results)
    info = inspect(package_path)
    knobs = info["candidate"]["knobs"]
    model, _ = zoo_model(result)
    wsx.apply(model, knobs, result=result)
    be = make_backend(model, None)
    applied = {name: be.get_weights(name) for name in knobs}

    ours = load_palettized(package_path)
    spec = ct.utils.load_spec(package_path)
    prog = load(spec, spec.specificationVersion, str(Path(package_path) / "Data" / "com.apple.CoreML" / "weights"))
    theirs = {op.name: op.materialized_val_inference() for op in prog.functions["main"].operations
              if op.op_type == "constexpr_lut_to_dense"}
    package = Package(package_path)
    layers = package.manifest["layers"]
    found = layer_ops(package.lut_ops(), len(layers))
    print(f"{'layer':<14} {'k':>4} {'nbits':>5} {'bytes':>7} {'formula':>7} {'wsx (k)':>7}  "
          "bit for bit (wsx / coremltools)")
    rows = {r["layer"]: r for r in info["layers"]}
    exact = True
    for n, entry in enumerate(layers):
        name = entry["name"]
        copy, op = found[n][0]
        mine = np.array_equal(ours[name], applied[name])
        ct_dense = np.transpose(theirs[op["name"]], np.argsort(entry["perms"][copy]))
        same = np.array_equal(ct_dense, applied[name])
        exact &= mine and same
        r = rows[name]
        print(f"{name:<14} {r['k']:>4} {r['nbits']:>5} {r['bytes']:>7} {r['formula_bytes']:>7} "
              f"{r['wsx_formula_bytes']:>7}  {mine} / {same}")
    payload, formula = info["payload_bytes"], info["formula_bytes"]
    print(f"payload {payload} bytes; formula for the padded bit-widths {formula} bytes "
          f"({100 * (payload - formula) / formula:+.2f} %); eq. 4.1 for k itself {info['wsx_formula_bytes']} bytes "
          f"({100 * (payload - info['wsx_formula_bytes']) / info['wsx_formula_bytes']:+.2f} %)")
    print(f"package {info['package_bytes']} bytes on disk, weight file {info['weight_file_bytes']} bytes; "
          f"all layers bit for bit: {exact}")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
