"""Exhaustive front of a benchmark problem over the divide-and-conquer search space phi (thesis §5.3.1).

    python -m benchmarks.strategies.exhaustive --problem fashion-mnist      # from the repository root

1. phi: a layer-wise scan of every knob value on *all* the search data (not a subset), phi_i = best
   AL per index bit-width among the values meeting the target (the divide-and-conquer rule).
2. Every combination of phi is scored on all the search data and on all the test data. The network is
   evaluated as a tree — the activations after layer i are computed once per prefix (k_1..k_i) and
   shared by every combination that starts with it — batch by batch exactly as the torch backend does,
   so that the accuracies equal ``backend.score``'s (checked on random combinations).

Writes ``data/<problem>-exhaustive.csv.gz`` (every combination: knobs, size, CR, accuracies),
``data/<problem>-exhaustive-front.csv`` (its Pareto front on test data: the reference for IGD) and
``data/<problem>-exhaustive.json`` (phi, baselines, clusterer, command, timings).
The LeNet-5 structure (conv1-pool-conv2-pool-conv3-fc1-fc2, ReLU) is assumed.
"""
from __future__ import annotations

import argparse
import itertools
import json
import shlex
import sys
import time

import numpy as np

from . import problems as problems_mod

ORDER = ("conv1.weight", "conv2.weight", "conv3.weight", "fc1.weight", "fc2.weight")


class PhiScan:
    """A strategy that only runs the layer-wise scan and records phi (not registered)."""

    def __new__(cls):
        from wsx.strategy import Strategy
        from wsx_plugins.strategies._common import layerwise_scan
        from wsx_plugins.strategies.divide_and_conquer import select_phi

        class _PhiScan(Strategy):
            name = "phi-scan"

            def _run(self, problem):
                scan = layerwise_scan(problem)
                problem.extras["phi"] = {n: select_phi(problem, n, scan[n])[0] for n in problem.layer_names}
                problem.extras["layerwise"] = {n: [[c.knobs[n], c.accuracy] for c in scan[n]] for n in scan}

        return _PhiScan()


def tree_correct(model, inputs, labels, layer_weights: list[list], batch_size: int = 256) -> np.ndarray:
    """Correct-prediction counts of every combination: array of shape (|phi_1|, ..., |phi_5|)."""
    import torch
    import torch.nn.functional as F

    c1, c2, c3, f1, f2 = model.conv1, model.conv2, model.conv3, model.fc1, model.fc2
    W = [[torch.from_numpy(np.ascontiguousarray(w)) for w in ws] for ws in layer_weights]
    counts = np.zeros([len(ws) for ws in W], dtype=np.int64)
    x_all = torch.as_tensor(inputs)
    y_all = torch.as_tensor(labels)

    def conv(m, x, w):
        return F.conv2d(x, w, m.bias, m.stride, m.padding, m.dilation, m.groups)

    with torch.inference_mode():
        for start in range(0, len(y_all), batch_size):
            x = x_all[start:start + batch_size]
            y = y_all[start:start + batch_size]
            for a, wa in enumerate(W[0]):
                h1 = model.pool(torch.relu(conv(c1, x, wa)))
                for b, wb in enumerate(W[1]):
                    h2 = model.pool(torch.relu(conv(c2, h1, wb)))
                    for c, wc in enumerate(W[2]):
                        h3 = torch.relu(conv(c3, h2, wc)).flatten(1)
                        for d, wd in enumerate(W[3]):
                            h4 = torch.relu(F.linear(h3, wd, f1.bias))
                            for e, we in enumerate(W[4]):
                                counts[a, b, c, d, e] += int((F.linear(h4, we, f2.bias).argmax(1) == y).sum())
    return counts


def main(argv=None) -> None:
    import pandas as pd
    import wsx
    from wsx.engine import make_backend, resolve_approximation, resolve_clusterer
    from wsx.result import pareto_mask

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problem", default="fashion-mnist", choices=problems_mod.NAMES)
    ap.add_argument("--clusterer", default=None, help="default: the fastest available (seed 0), as wsx bench")
    ap.add_argument("--target", default="mlperf-heavy")
    ap.add_argument("--check", type=int, default=16, help="random combinations re-scored by the backend")
    ap.add_argument("--batch-size", type=int, default=2000,
                    help="images per tree pass (the check shows whether the batching changes any prediction)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    problem = problems_mod.load(args.problem)
    clus = resolve_clusterer(args.clusterer, 0)
    scan = wsx.explore(problem.model, problem.data, strategy=PhiScan(), subset=None, clusterer=clus,
                       target=args.target, progress=False)
    phi = scan.extras["phi"]
    t_scan = time.perf_counter() - t0
    names = [n for n in ORDER if n in phi]
    assert names == list(phi), f"unexpected layers {list(phi)}"
    print(f"phi: {phi} -> {int(np.prod([len(phi[n]) for n in names]))} combinations", flush=True)

    appr = resolve_approximation("weight-sharing", None)
    be = make_backend(problem.model, problem.data)
    layers = {layer.name: layer for layer in be.layers()}
    weights = [[a.weights for a in appr.apply_many(be.get_weights(n), phi[n], layer=layers[n], clusterer=clus)]
               for n in names]
    splits = {"search": problem.data, "test": problem.test_data}
    acc, base, checks = {}, {}, {}
    for split, (x, y) in splits.items():
        t = time.perf_counter()
        acc[split] = tree_correct(problem.model, x, y, weights, args.batch_size).ravel() / len(y)
        sbe = make_backend(problem.model, (x, y))
        base[split] = float(sbe.score([{}], None)[0])
        # the tree must agree with the backend, candidate for candidate
        rng = np.random.default_rng(0)
        picks = rng.choice(acc[split].size, size=min(args.check, acc[split].size), replace=False)
        shape = [len(phi[n]) for n in names]
        pop = [{n: weights[j][i] for j, (n, i) in enumerate(zip(names, np.unravel_index(f, shape)))} for f in picks]
        diff = np.abs(np.asarray(sbe.score(pop, None)) - acc[split][picks])
        checks[split] = {"checked": int(len(picks)), "max_abs_difference": float(diff.max(initial=0.0))}
        print(f"{split}: {acc[split].size} combinations in {time.perf_counter() - t:.0f} s "
              f"(baseline {base[split]:.4f}; backend check {checks[split]})", flush=True)

    combos = np.array(list(itertools.product(*[phi[n] for n in names])), dtype=np.int64)
    total = sum(layers[n].size * appr.bits for n in names)
    size = sum(np.array([appr.size_bits(layers[n], int(k)) for k in combos[:, j]]) for j, n in enumerate(names))
    df = pd.DataFrame(combos, columns=[f"k[{n}]" for n in names])
    df["size_bits"] = size
    df["compression_rate"] = total / size
    for split in splits:
        df[f"{split}_accuracy"] = acc[split]
        df[f"{split}_accuracy_loss"] = 100.0 * (base[split] - acc[split])
    stem = problems_mod.DATA / f"{args.problem}-exhaustive"
    problems_mod.DATA.mkdir(parents=True, exist_ok=True)
    df.to_csv(f"{stem}.csv.gz", index=False, float_format="%.6g")
    front = df[pareto_mask(df["test_accuracy_loss"].to_numpy(), df["compression_rate"].to_numpy())]
    front.sort_values("compression_rate").to_csv(problems_mod.exhaustive_front_path(args.problem), index=False,
                                                 float_format="%.6g")
    target = wsx.metrics.resolve_target(args.target)
    legal = df[df["test_accuracy"] >= target * base["test"] - 1e-12]
    meta = {"problem": args.problem, "phi": phi, "combinations": int(len(df)), "clusterer": clus.name,
            "clusterer_params": clus.get_params(), "baseline": base, "target": args.target,
            "legal_on_test": int(len(legal)), "backend_check": checks, "batch_size": args.batch_size,
            "front_size": int(len(front)),
            "best_cr_on_test": float(legal["compression_rate"].max()) if len(legal) else None,
            "seconds": time.perf_counter() - t0, "scan_seconds": t_scan,
            "command": "python -m benchmarks.strategies.exhaustive " + " ".join(shlex.quote(a) for a in
                                                                                (argv or sys.argv[1:]))}
    (stem.parent / f"{stem.name}.json").write_text(json.dumps(meta, indent=1))
    print(json.dumps({k: v for k, v in meta.items() if k != "phi"}, indent=1))


if __name__ == "__main__":
    main()
