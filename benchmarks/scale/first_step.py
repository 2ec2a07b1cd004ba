"""Divide-and-conquer's first step under the old defaults, counted without running it.

    python benchmarks/scale/first_step.py resnet20_fashion mobilenet_v2 --samples 64 --size 32

Before issue 12 part B the layer-wise step scored every k of the thesis' grid (100 log-spaced
values in [2, 1024], capped at the layer's weight count) on every sample of the search subset,
whatever the scores: its scorings and sample-forwards follow from the layers' sizes alone. Printed
per model: layers, scorings, and sample-forwards for the given search-subset size.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(argv=None) -> int:
    import wsx
    from benchmarks.scale.study import FASHION, problem
    from wsx.engine import MIN_SUBSET, make_backend, subset_indices

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="+")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args(argv)
    log = wsx.plugins.approximations()["weight-sharing"](k_grid="log")
    for name in args.names:
        model, data, kw = problem(name, args)
        be = make_backend(model, data, metric=kw.get("metric"))
        layers = be.layers()
        scorings = sum(len(log.knob_values(layer)) for layer in layers)
        # the explore defaults: subset 0.1 of the search data, at least MIN_SUBSET samples; the archs: all
        n = be.num_samples
        idx = subset_indices(n, 0.1, 0, MIN_SUBSET) if name in FASHION else None
        sub = n if idx is None else idx.size
        print(f"{name}: {len(layers)} layers, old first step {scorings} scorings x {sub} samples = "
              f"{scorings * sub} sample-forwards")
        be.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
