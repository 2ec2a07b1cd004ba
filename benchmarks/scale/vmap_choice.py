"""How often ``vmap="auto"``'s timed choice changes between runs of the same problem, with one timing
try per path against the fastest of ``VMAP_AUTO_REPEATS`` interleaved tries (the default).

    python benchmarks/scale/vmap_choice.py vit_tiny --trials 8 --out benchmarks/scale/vmap-choice.md

Each trial is a fresh torch backend on the study's problem (``study.py``: 64 synthetic images at
32 px, agreement, batches of 16, one torch thread) scoring one population of ``--population``
candidates of one layer (32: what one stacked call takes there), which is where the choice is made;
the settings alternate trial by trial, so both see the same load. Run it beside other work to see the load's effect: that is when one try flips.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.scale._report import emit  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("arch")
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--population", type=int, default=32)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    import wsx
    from benchmarks.archs import build
    from wsx.engine import make_backend
    from wsx_backends import _scoring

    model, (x, _) = build(args.arch, samples=64, size=32, seed=0)
    default = _scoring.VMAP_AUTO_REPEATS
    seen: dict[int, list] = {1: [], default: []}
    layer = population = None
    try:
        for trial in range(args.trials):
            for repeats in seen:
                _scoring.VMAP_AUTO_REPEATS = repeats
                be = make_backend(model, x, "torch", metric="agreement", batch_size=16)
                if population is None:  # the same candidates for every backend
                    layers = be.layers()
                    layer = layers[len(layers) // 2].name
                    w = be.get_weights(layer)
                    population = [{layer: w * (1 + 0.01 * i)} for i in range(args.population)]
                t = time.perf_counter()
                be.score(population)
                choice = be.vmap_choice_ or {"chosen": "not timed", "stacked_s_per_candidate": 0,
                                             "loop_s_per_candidate": 0}
                seen[repeats].append((choice, time.perf_counter() - t, os.getloadavg()[0]))
                be.close()
    finally:
        _scoring.VMAP_AUTO_REPEATS = default
    lines = [f"# vmap='auto' choices on {args.arch} (64 @ 32), {args.trials} fresh backends per setting", "",
             f"Command: `python benchmarks/scale/vmap_choice.py {' '.join(sys.argv[1:] if argv is None else argv)}` "
             f"(wsx {wsx.__version__}, torch {torch.__version__}, one torch thread)", "",
             "| tries per path | stacked chosen | loop chosen | stacked / loop s per candidate, each trial | "
             "first scoring s (median) | load |", "|---:|---:|---:|---|---:|---|"]
    for repeats, rows in seen.items():
        count = Counter(c["chosen"] for c, _, _ in rows)
        ratios = " ".join(f"{c['stacked_s_per_candidate'] / max(c['loop_s_per_candidate'], 1e-12):.2f}"
                          for c, _, _ in rows)
        first = sorted(s for _, s, _ in rows)[len(rows) // 2]
        loads = [lo for _, _, lo in rows]
        lines.append(f"| {repeats} | {count['stacked']} | {count['loop']} | {ratios} | {first:.2f} | "
                     f"{min(loads):.1f}-{max(loads):.1f} |")
    speedup = _scoring.VMAP_AUTO_MIN_SPEEDUP
    lines += ["", f"Stacked is kept where it is {speedup}x faster (a ratio below {1 / speedup:.2f})."]
    return emit(lines, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
