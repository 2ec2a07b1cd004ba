"""Which per-layer codebooks a CR target leaves possible, and whether those layers survive them.

    python -m benchmarks.quality.bound --cr 17                     # LeNet-5 / Fashion-MNIST, results/bound.md

Under eq. 4.1 (W·ceil(log2 k) + k·B bits per layer, B = 32) a CR target caps the total bits, and on a
network whose weights sit in one or two large layers it forces those layers down to one index bit
or none (k <= 2) whatever the others do. This script finds the smallest set of such forcings: each layer
whose holding at two index bits (k = 3 or 4), with every other layer at k = 1 (one value, no index),
already exceeds the bits allowed, or, failing a single one, each pair that does.

For the layers so forced it then measures, at k = 2, each on its own (every other layer untouched, the
best case for it), the loss at mlperf-heavy of:

- wsx's k-means codebook (``wsx.apply`` with k = 2);
- the best two-value codebook found by searching directly on validation accuracy: the split point
  (a quantile of the weights) and the two values (each side's mean times a factor), on a grid, then
  refined. It is not an option of wsx (it reads the metric); a clustering that gives each weight its
  nearest value splits the layer at one point, so it shows, up to the grid's resolution, the most
  any two-value codebook of the layer keeps.

A layer that misses the target on its own even then makes the CR target out of reach for weight
sharing of this model at this target, unless compressing other layers as well gives accuracy back
(which no search measured in ``results/`` has shown).
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def forced_one_bit(sizes: dict, cr: float, bits: int = 32) -> tuple[float, list[tuple[str, ...]]]:
    """(bits allowed, the layer sets of which at least one member must be at k <= 2): singletons where
    a layer alone at two index bits overflows the budget, else the pairs that do."""
    from wsx import weight_sharing_bits

    allowed = sum(sizes.values()) * bits / cr
    floor = {n: weight_sharing_bits(w, 1, bits) for n, w in sizes.items()}  # k = 1: one value, no index
    two = {n: weight_sharing_bits(w, 3, bits) for n, w in sizes.items()}  # k = 3: two index bits, smallest codebook
    base = sum(floor.values())
    for r in (1, 2):
        sets = [s for s in itertools.combinations(sizes, r)
                if base + sum(two[n] - floor[n] for n in s) > allowed]
        if sets:
            return allowed, sets
    return allowed, []


def accuracy(model, x, y) -> float:
    import torch

    with torch.no_grad():
        return float((model(x).argmax(1).numpy() == y).mean())


def two_values(w0, q: float, a: float, b: float):
    """``w0`` split at its quantile ``q``, each side set to its mean times ``a`` (below) or ``b``."""
    import torch

    flat = w0.flatten()
    t = float(torch.quantile(flat, q))
    return torch.where(w0 <= t, flat[flat <= t].mean() * a, flat[flat > t].mean() * b)


def best_two_values(model, name: str, x, y) -> tuple[float, tuple]:
    """The best validation accuracy over two-value codebooks of layer ``name`` (split quantile q, the
    sides' means times factors a and b), and its (q, a, b). A grid with a = b, then a refinement."""
    import torch

    p = dict(model.named_parameters())[name]
    w0 = p.detach().clone()

    def set_values(q, a, b):
        with torch.no_grad():
            p.copy_(two_values(w0, q, a, b))

    best = (-1.0, None)
    try:
        for q in np.arange(0.2, 0.625, 0.025):
            for s in np.arange(1.0, 2.41, 0.2):
                set_values(q, s, s)
                if (acc := accuracy(model, x, y)) > best[0]:
                    best = (acc, (round(float(q), 4), round(float(s), 2), round(float(s), 2)))
        q0, s0, _ = best[1]
        for q in (q0 - 0.0125, q0, q0 + 0.0125):
            for a in np.arange(s0 - 0.3, s0 + 0.31, 0.1):
                for b in np.arange(s0 - 0.3, s0 + 0.31, 0.1):
                    set_values(q, a, b)
                    if (acc := accuracy(model, x, y)) > best[0]:
                        best = (acc, (round(float(q), 4), round(float(a), 2), round(float(b), 2)))
        return best
    finally:
        with torch.no_grad():
            p.copy_(w0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cr", type=float, default=17.0)
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)

    import torch
    import wsx
    from benchmarks import fashion_mnist

    torch.set_num_threads(1)
    model, (xt, yt) = fashion_mnist.load(split="test")
    xv, yv = fashion_mnist.split("val")
    xv, xt = torch.from_numpy(xv), torch.from_numpy(xt)
    sizes = {n: p.numel() for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1}
    allowed, sets = forced_one_bit(sizes, args.cr)
    base_v, base_t = accuracy(model, xv, yv), accuracy(model, xt, yt)
    rows = []
    for name in sorted({n for s in sets for n in s}, key=lambda n: -sizes[n]):
        t0 = time.perf_counter()
        plain = wsx.apply(copy.deepcopy(model), {name: 2})
        searched_v, (q, a, b) = best_two_values(model, name, xv, yv)
        tuned = copy.deepcopy(model)
        w = dict(tuned.named_parameters())[name]
        with torch.no_grad():
            w.copy_(two_values(w.detach().clone(), q, a, b))
        rows.append({"layer": name, "weights": sizes[name],
                     "kmeans_val_al": 100 * (base_v - accuracy(plain, xv, yv)),
                     "kmeans_test_al": 100 * (base_t - accuracy(plain, xt, yt)),
                     "searched_val_al": 100 * (base_v - searched_v),
                     "searched_test_al": 100 * (base_t - accuracy(tuned, xt, yt)),
                     "searched": {"quantile": q, "low": a, "high": b}, "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bound.json").write_text(json.dumps({"cr": args.cr, "sizes": sizes, "bits_allowed": allowed, "forced_sets": sets,
                                                "baseline_top1": {"val": base_v, "test": base_t}, "rows": rows}, indent=1))
    lines = [f"# What CR {args.cr:g} asks of LeNet-5 / Fashion-MNIST (eq. 4.1, B = 32, mlperf-heavy)", "",
             "`python -m benchmarks.quality.bound --cr {:g}` (one torch thread).".format(args.cr), "",
             f"Weights per layer: {', '.join(f'{n} {w}' for n, w in sizes.items())} ({sum(sizes.values())} in all). "
             f"CR {args.cr:g} allows {allowed:,.0f} bits. At least one layer of each set below must be at k <= 2 "
             "(one index bit or none), even with every other layer at k = 1: "
             + "; ".join("{" + ", ".join(s) + "}" for s in sets) + ".", "",
             f"Each such layer at k = 2 on its own (the others untouched). Allowed loss: {base_v:.2f} pp on "
             f"validation, {base_t:.2f} pp on test (1 % of the baseline top-1 {base_v:.4f} / {base_t:.4f}).", "",
             "| layer | weights | k-means (wsx): val / test AL [pp] | best two values searched on val accuracy: val / test AL [pp] | its split quantile, factors |",
             "|---|---:|---:|---:|---|"]
    for r in rows:
        s = r["searched"]
        lines.append(f"| {r['layer']} | {r['weights']} | {r['kmeans_val_al']:.2f} / {r['kmeans_test_al']:.2f} | "
                     f"{r['searched_val_al']:.2f} / {r['searched_test_al']:.2f} | {s['quantile']}, {s['low']}, {s['high']} |")
    (out / "bound.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
