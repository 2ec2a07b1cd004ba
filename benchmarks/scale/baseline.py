"""Baseline of scoring work on real architectures, with today's defaults (the table the scale study compares against).

    python benchmarks/scale/baseline.py [--archs resnet18,...] [--samples 64] [--out benchmarks/scale]

For each architecture of ``benchmarks/archs.py`` (random init, synthetic inputs, labels = the model's
own predictions so that top-1 is agreement with the uncompressed model): the layers of interest the
backend finds, the scorings of divide-and-conquer's first (layer-wise) step with the default knob
values (``WeightSharing().knob_values`` summed over layers), the seconds of one scoring (one
candidate, first layer shared at k=16, all samples; best of 3 after a warm-up) and per candidate in
a population of 8 (a middle layer, as the layer-wise step scores them), the first step's projected
hours at 1 000 images of 224 px (x (1000/samples) x (224/size)^2; BERT: x 1000/samples) and the
errors the fast paths reported (``fold_error_``, ``prefix_errors_``, ``vmap_error_``).
Writes baseline.md and baseline.csv.
"""
from __future__ import annotations

import argparse
import csv
import gc
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import archs  # noqa: E402


def measure(name: str, samples: int) -> dict:
    from wsx.engine import make_backend
    from wsx_plugins.approximations.weight_sharing import WeightSharing

    framework, size = archs.ARCHS[name]
    t = time.perf_counter()
    model, data = archs.build(name, samples=samples)
    built = time.perf_counter() - t
    be = make_backend(model, data)
    layers = be.layers()
    appr = WeightSharing()
    first_step = sum(len(appr.knob_values(x)) for x in layers)
    weights = sum(x.size for x in layers)
    be.close()
    one = archs.time_scoring(model, data, population=1)
    middle = layers[len(layers) // 2].name
    pop = archs.time_scoring(model, data, layer=middle, population=8, repeats=1)
    scale = 1000 / samples * (1 if name == "bert6" else (224 / size) ** 2)
    errors = {"fold_error_": pop["fold_error_"] or one["fold_error_"],
              "prefix_errors_": sorted({str(v) for v in {**one["prefix_errors_"], **pop["prefix_errors_"]}.values()}),
              "vmap_error_": pop["vmap_error_"] or one["vmap_error_"]}
    return {"arch": name, "framework": framework, "size": size, "samples": samples, "layers": len(layers),
            "weights": weights, "first_step_scorings": first_step, "s_per_scoring": one["seconds"],
            "s_per_candidate_pop8": pop["seconds_per_candidate"], "pop8_layer": middle,
            "first_step_hours_at_1000x224": first_step * one["seconds"] * scale / 3600,
            "build_s": built, "pop8_paths": " ".join(f"{k}={v}" for k, v in sorted(pop["paths"].items())),
            **{k: v if v else "" for k, v in errors.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", default=",".join(archs.ARCHS))
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--out", type=Path, default=HERE)
    args = p.parse_args(argv)
    import wsx.threads

    threads = wsx.threads.auto_threads()
    wsx.threads.set_process_threads(threads)
    rows = []
    for name in args.archs.split(","):
        try:
            row = measure(name, args.samples)
        except Exception as exc:  # record and go on: the table says which architecture failed and why
            row = {"arch": name, "error": f"{type(exc).__name__}: {exc}"[:300]}
        print(row, flush=True)
        rows.append(row)
        gc.collect()
    fields = ["arch", "framework", "size", "samples", "layers", "weights", "first_step_scorings", "s_per_scoring",
              "s_per_candidate_pop8", "pop8_layer", "first_step_hours_at_1000x224", "build_s", "pop8_paths", "fold_error_",
              "prefix_errors_", "vmap_error_", "error"]
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "baseline.csv", "w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        out.writeheader()
        out.writerows(rows)
    load = os.getloadavg()
    cmd = "python benchmarks/scale/baseline.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# Scoring work on real architectures: the baseline (today's defaults)", "",
             f"Command: `{cmd.strip()}`", "",
             f"Machine: 2 CPU cores shared with other jobs (load average {load[0]:.1f} / {load[1]:.1f} / "
             f"{load[2]:.1f} at the end), {threads} torch thread(s) (`wsx.threads.auto_threads()`), "
             f"Python {platform.python_version()}. Models: random init from `transformers` configs (torch, "
             "wrapped to return logits, which today's backend needs), `keras.applications.MobileNetV2(weights=None)`, "
             "a 4-conv Flax CNN; inputs synthetic, labels the model's own predictions (top-1 = agreement). "
             "Times are noisy on this shared machine: compare within a row, or rerun side by side.", "",
             "| model | layers | weights | D&C first-step scorings | s / scoring | s / candidate, population 8 "
             "| first step at 1 000 @ 224 px (h) | paths, population 8 | fold_error_ | prefix_errors_ | vmap_error_ |",
             "|---|---:|---:|---:|---:|---:|---:|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['arch']} | failed: {r['error']} | | | | | | | | | |")
            continue
        cells = [f"{r['arch']} ({r['size']}{' tokens' if r['arch'] == 'bert6' else ' px'}, {r['samples']})",
                 str(r["layers"]), str(r["weights"]), str(r["first_step_scorings"]), f"{r['s_per_scoring']:.3f}",
                 f"{r['s_per_candidate_pop8']:.3f}", f"{r['first_step_hours_at_1000x224']:.1f}", r["pop8_paths"],
                 str(r["fold_error_"] or "none")[:160], "; ".join(r["prefix_errors_"])[:200] or "none",
                 str(r["vmap_error_"] or "none")[:160]]
        lines.append("| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in cells) + " |")
    lines += ["", "Population 8: eight k values of the middle layer of interest scored in one call, as "
              "divide-and-conquer's layer-wise step does (fold or vmap, and the prefix cache, where they work). "
              "Paths: the backend's counters over the population-8 warm-up and timed call (`folded_calls`: the "
              "fx fold; `vmap_calls`; `loop_forwards`: candidates run one by one; prefix-cache counters where "
              "the cache was used). Errors: what the backend recorded (none = worked, or not tried: see paths).", ""]
    (args.out / "baseline.md").write_text("\n".join(lines))
    print(f"wrote {args.out / 'baseline.md'} and {args.out / 'baseline.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
