"""Where divide-and-conquer's sample-forwards go on a real architecture: per origin (layer-wise step,
knapsack bisection, rounds, descent, ladder) the candidates scored, rejected and the samples the
rejected ones saw, and after how many samples rejections came.

    python benchmarks/scale/forwards.py efficientnet_b0 --tag TAG     # 64 images at 32 px, as study.py

The exploration is ``study.py``'s new variant (agreement on all 64 samples, batches of 16,
mlperf-heavy, one torch thread, seed 0) run from this checkout; the row goes to
``forwards/ARCH-TAG.json`` and is printed.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))


def origin(label: str) -> str:
    head, _, rest = label.partition(":")
    return (head + ":" + rest.rstrip("0123456789")) if head == "knapsack" else head


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("arch")
    p.add_argument("--tag", default="checkout")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--strategy", default=None, help="a strategy spec in place of the default, e.g. "
                   "divide-and-conquer:picks=8")
    p.add_argument("--out", default=str(HERE / "forwards"))
    args = p.parse_args(argv)
    import wsx
    from benchmarks.scale.study import problem

    model, data, kw = problem(args.arch, args)  # the study's problem and explore keywords
    if args.strategy:
        kw["strategy"] = args.strategy
    t, cpu = time.perf_counter(), time.process_time()
    r = wsx.explore(model, data, target="mlperf-heavy", progress=False, seed=0, threads=1, **kw)
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    by = collections.defaultdict(lambda: {"scored": 0, "rejected": 0, "rejected_samples": 0})
    depth = collections.Counter()
    for c in r.history:
        row = by[origin(c.origin)]
        row["scored"] += 1
        if c.rejected:
            row["rejected"] += 1
            row["rejected_samples"] += c.samples
            depth[c.samples] += 1
    best = r.best()
    out = {"arch": args.arch, "tag": args.tag, "samples": args.samples, "size": args.size, "wall": wall, "cpu": cpu,
           "scorings": r.scorings, "sample_forwards": r.extras.get("sample_forwards", {}).get("total"),
           "best_cr": best.compression_rate if best else None, "by_origin": dict(by),
           "rejected_after": {str(k): v for k, v in sorted(depth.items())}, "vmap_choice": r.extras.get("vmap_choice")}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"{args.arch}-{args.tag}.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
