"""Divide-and-conquer's default exploration of one architecture with the torch backend's scoring path
forced: ``vmap=True`` (candidates stacked into one forward) or ``vmap=False`` (one forward per
candidate). Both paths compute the same model up to float rounding; where the target lets no sample
change, that rounding decides near-tie candidates and so the search's path.

    python benchmarks/scale/vmap_paths.py mobilenet_v2 --vmap stacked
    python benchmarks/scale/vmap_paths.py mobilenet_v2 --vmap loop

Same problem as ``study.py``'s architectures (64 synthetic images at 32 px, random init, agreement
with the uncompressed model on all samples, batches of 16, mlperf-heavy, one torch thread). Prints
one line: CPU seconds, scorings, sample-forwards (counted at ``Backend.score_detailed``) and the best
CR meeting the target. Run another commit's wsx with ``PYTHONPATH=$(python -c "from
benchmarks.scale._code import python_path; print(python_path('SHA'))"):.`` from outside the checkout.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("arch")
    p.add_argument("--vmap", choices=("stacked", "loop", "auto"), default="auto")
    args = p.parse_args(argv)

    import wsx
    import wsx.plugins
    from benchmarks.archs import build
    from benchmarks.scale.study import count_forwards

    model, (x, _) = build(args.arch, samples=64, size=32, seed=0)
    counted = count_forwards(wsx)
    vmap = {"stacked": True, "loop": False, "auto": "auto"}[args.vmap]
    backend = wsx.plugins.backends()["torch"](model, x, metric="agreement", batch_size=16, vmap=vmap)
    cpu = time.process_time()
    r = wsx.explore(model, x, metric="agreement", subset=None, batch_size=16, target="mlperf-heavy",
                    progress=False, seed=0, threads=1, backend=backend)
    best = r.best()
    print(json.dumps({"arch": args.arch, "vmap": args.vmap, "cpu": round(time.process_time() - cpu),
                      "scorings": r.scorings, "sample_forwards": counted["total"],
                      "best_cr": best.compression_rate if best else None, "wsx": wsx.__file__}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
