"""Scoring throughput of every backend: one by one vs population vs prefix-cached layer-wise.

    python benchmarks/scoring/bench_scoring.py [--backends torch,tensorflow,jax] [--repeats 5]

Throughput is candidates x samples scored per second. Two models:

* the embedded LeNet-5 (540 test digits) in each backend, with
  - ``one-by-one``: ``score([c])`` per candidate, no vmap, no prefix cache (the naive loop);
  - ``population-P`` (P = 1, 8, 32): ``score(chunk of P)`` with vmap, prefix cache off, on ``--mixed``
    candidates that change every layer (as NSGA-II offspring do) and on "layer-wise" ones (every
    candidate of a chunk changes the same layer: the engine's first step); for torch this is the
    folded population forward, ``population (vmap)`` is whole-model ``torch.func.vmap``, and the
    ``(subnormals kept)`` rows score with ``flush_subnormals=False``;
  - ``prefix-cached``: the layer-wise sweep (``--sweep-k`` candidates per layer, chunks of 32) with
    vmap and the prefix cache, against the same sweep one by one;
* a MobileNetV2-shaped torch network (benchmarks/scoring/mobilenet.py, random weights and inputs):
  a full layer-wise sweep (``--mnv2-candidates`` candidates, default 32, for each of its 53 layers) with full
  forwards vs with the prefix cache (both looping over candidates, then both vectorised).

Each LeNet mode is timed ``--repeats`` times, interleaved with the others so that a busy machine
slows them alike, after one warm-up (tracing, jit; reported as "first run"); the fastest repeat is
reported. The MobileNetV2 variants take turns layer by layer. ``--threads N`` caps every framework
at N threads (on a shared machine, 2 threads per process on 2 busy cores mostly measure the
contention: OpenMP workers wait for each other). Writes
results.csv and results.md next to this file (or to --out; --tag names them results-TAG.*).
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FRAMEWORK = {"torch": "torch", "tensorflow": "keras", "jax": "jax"}


def shared(w: np.ndarray, k: int) -> np.ndarray:
    """``w`` snapped to k evenly spaced values: a weight-sharing-like candidate, cheap to make."""
    grid = np.linspace(w.min(), w.max(), k)
    return grid[np.abs(w.ravel()[:, None] - grid).argmin(1)].reshape(w.shape).astype(w.dtype)


def mixed_candidates(originals: dict, n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{name: shared(w, int(rng.integers(2, 64))) for name, w in originals.items()} for _ in range(n)]


def layerwise_candidates(originals: dict, name: str, n: int) -> list[dict]:
    w = originals[name]
    return [{name: shared(w, 2 + j)} for j in range(n)]


def chunks(seq, size):
    return [seq[i:i + size] for i in range(0, len(seq), size)]


class Timer:
    """Interleaved repeats: ``add(key, fn, work)`` then ``run(repeats)``; best seconds per key, and
    the first (cold) run's seconds, which include tracing and compilation."""

    def __init__(self):
        self.jobs = []
        self.best: dict = {}
        self.first: dict = {}

    def add(self, key, fn, work: int):
        self.jobs.append((key, fn, work))

    def run(self, repeats: int, log) -> None:
        for key, fn, _ in self.jobs:  # warm-up: tracing, jit compilation, first-call caches
            t0 = time.perf_counter()
            fn()
            self.first[key] = time.perf_counter() - t0
        for r in range(repeats):
            for key, fn, _ in self.jobs:
                t0 = time.perf_counter()
                fn()
                dt = time.perf_counter() - t0
                self.best[key] = min(self.best.get(key, float("inf")), dt)
            log(f"  repeat {r + 1}/{repeats} done")


def bench_lenet(backend: str, args, rows: list, log) -> None:
    import wsx

    cls = wsx.plugins.backends()[backend]
    model, data = wsx.zoo.load("lenet5-digits", framework="keras" if backend == "tensorflow" else backend)
    n = len(data[1])
    plain = cls(model, data, vmap=False, prefix_cache=False)
    pop = cls(model, data, vmap=True, prefix_cache=False)
    cached = cls(model, data, vmap=True)
    # torch: the folded population forward (default) against whole-model torch.func.vmap
    whole = cls(model, data, vmap=True, prefix_cache=False, fold_population=False) if backend == "torch" else None
    # torch: subnormal weights kept (the embedded LeNet has 651 of them; flushing is the default)
    kept = [cls(model, data, vmap=v, prefix_cache=False, flush_subnormals=False) for v in (False, True)] \
        if backend == "torch" else None
    originals = {layer.name: plain.get_weights(layer.name) for layer in plain.layers()}
    names = list(originals)
    mixed = mixed_candidates(originals, args.mixed)  # scored in chunks of P: longer, steadier timings
    sweep = {name: layerwise_candidates(originals, name, args.sweep_k) for name in names}
    lw32 = [c for name in names for c in sweep[name][:32]]  # 32 per layer: one chunk each

    timer = Timer()
    timer.add(("mixed", "one-by-one", 1), lambda: [plain.score([c]) for c in mixed], len(mixed))
    for p in (1, 8, 32):
        timer.add(("mixed", "population", p), lambda p=p: [pop.score(ch) for ch in chunks(mixed, p)], len(mixed))
    if whole is not None:
        timer.add(("mixed", "population (vmap)", 32), lambda: [whole.score(ch) for ch in chunks(mixed, 32)],
                  len(mixed))
    timer.add(("layer-wise", "one-by-one", 1), lambda: [plain.score([c]) for c in lw32], len(lw32))
    for p in (1, 8, 32):
        timer.add(("layer-wise", "population", p),
                  lambda p=p: [pop.score(ch) for name in names for ch in chunks(sweep[name][:32], p)], len(lw32))
    if whole is not None:
        timer.add(("layer-wise", "population (vmap)", 32),
                  lambda: [whole.score(sweep[name][:32]) for name in names], len(lw32))
    if kept is not None:
        timer.add(("layer-wise", "one-by-one (subnormals kept)", 1), lambda: [kept[0].score([c]) for c in lw32],
                  len(lw32))
        timer.add(("layer-wise", "population (subnormals kept)", 32),
                  lambda: [kept[1].score(sweep[name][:32]) for name in names], len(lw32))
    n_sweep = sum(len(v) for v in sweep.values())
    timer.add(("sweep", "one-by-one", 1), lambda: [plain.score([c]) for v in sweep.values() for c in v], n_sweep)
    timer.add(("sweep", "population", 32), lambda: [pop.score(ch) for v in sweep.values() for ch in chunks(v, 32)],
              n_sweep)

    def prefix_sweep():
        cached._invalidate()  # every repeat starts with no cached activations (compiled code stays)
        return [cached.score(ch) for v in sweep.values() for ch in chunks(v, 32)]

    timer.add(("sweep", "prefix-cached", 32), prefix_sweep, n_sweep)
    log(f"lenet5 / {backend}: {len(timer.jobs)} modes x {args.repeats} repeats")
    timer.run(args.repeats, log)
    work = {key: w for key, _, w in timer.jobs}
    for (family, mode, p), sec in timer.best.items():
        base = timer.best[(family, "one-by-one", 1)]
        rows.append({"model": "lenet5-digits", "backend": backend, "candidates": family, "mode": mode,
                     "population": p, "scored": work[(family, mode, p)], "samples": n, "seconds": sec,
                     "first_run_seconds": timer.first[(family, mode, p)],
                     "throughput": work[(family, mode, p)] * n / sec, "speedup": base / sec})
    stats = dict(cached.stats_)
    log(f"  prefix stats {stats}; vmap error: {pop.vmap_error_}; "
        f"folded: {getattr(pop, 'fold_error_', None) or 'ok'} {dict(pop.stats_)}")


def bench_mobilenet(args, rows: list, log) -> None:
    import wsx

    sys.path.insert(0, str(HERE))
    from mobilenet import mobilenet_v2

    model = mobilenet_v2()
    rng = np.random.default_rng(0)
    s = args.mnv2_size
    x = rng.standard_normal((args.mnv2_samples, 3, s, s)).astype(np.float32)
    y = rng.integers(0, 1000, args.mnv2_samples)
    cls = wsx.plugins.backends()["torch"]
    from wsx.testing.backends import mean_true_logit

    kw = dict(batch_size=args.mnv2_batch, metric=mean_true_logit)  # a continuous metric: outputs compared
    variants = {("loop", "full"): cls(model, (x, y), vmap=False, prefix_cache=False, **kw),
                ("loop", "prefix"): cls(model, (x, y), vmap=False, **kw)}
    if args.mnv2_vmap:
        variants[("vmap", "full")] = cls(model, (x, y), vmap=True, prefix_cache=False, **kw)
        variants[("vmap", "prefix")] = cls(model, (x, y), vmap=True, **kw)
    log(f"  default settings choose vmap={cls(model, (x, y), **kw)._use_vmap()} for this network")
    ref = variants[("loop", "full")]
    originals = {layer.name: ref.get_weights(layer.name) for layer in ref.layers()}
    sweep = [layerwise_candidates(originals, name, args.mnv2_candidates) for name in originals]
    n_cand = sum(len(v) for v in sweep)
    log(f"mobilenet_v2 {s}x{s}, {args.mnv2_samples} samples: {len(originals)} layers x "
        f"{args.mnv2_candidates} candidates")
    for be in variants.values():
        be.score(sweep[len(sweep) // 2])  # warm-up: traces the graph (cuts are made during the sweep)
    best: dict = {}
    first: dict = {}
    last: dict = {}
    for r in range(args.mnv2_repeats):
        spent = {key: 0.0 for key in variants}
        values: dict = {key: [] for key in variants}
        for be in variants.values():
            be._invalidate()  # no cached activations; traced graphs stay
        for pop in sweep:  # layer by layer, every variant in turn: a busy machine slows them alike
            for key, be in variants.items():
                t0 = time.perf_counter()
                values[key].append(be.score(pop))
                spent[key] += time.perf_counter() - t0
        for key, dt in spent.items():
            first.setdefault(key, dt)
            best[key] = min(best.get(key, float("inf")), dt)
            last[key] = np.concatenate(values[key])
        assert variants[("loop", "prefix")].prefix_errors_ == {}, variants[("loop", "prefix")].prefix_errors_
        log(f"  repeat {r + 1}/{args.mnv2_repeats}: " +
            ", ".join(f"{k[0]}-{k[1]} {v:.1f}s" for k, v in best.items()))
    for key in last:  # every variant scored the same values
        np.testing.assert_allclose(last[key], last[("loop", "full")], rtol=1e-4, atol=1e-4)
    for (mode, how), sec in best.items():
        base = best[(mode, "full")]
        rows.append({"model": f"mobilenet_v2-{s}", "backend": "torch", "candidates": "sweep",
                     "mode": f"{'prefix-cached' if how == 'prefix' else 'full-forward'} ({mode})",
                     "population": args.mnv2_candidates, "scored": n_cand, "samples": args.mnv2_samples,
                     "seconds": sec, "first_run_seconds": first[(mode, how)],
                     "throughput": n_cand * args.mnv2_samples / sec, "speedup": base / sec})


def set_threads(n: int) -> None:
    """Before any framework is imported: cap torch, TensorFlow and XLA at ``n`` threads."""
    os.environ["OMP_NUM_THREADS"] = str(n)
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(n)
    os.environ["TF_NUM_INTEROP_THREADS"] = str(n)
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_cpu_multi_thread_eigen={'true' if n > 1 else 'false'}"
                               f" intra_op_parallelism_threads={n}").strip()
    try:
        import torch

        torch.set_num_threads(n)
        torch.set_num_interop_threads(n)
    except ImportError:
        pass


def machine() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    parts = [f"{platform.processor() or platform.machine()}", f"{os.cpu_count()} CPU cores",
             f"load average {' '.join(f'{v:.2f}' for v in load)} at the end", f"python {platform.python_version()}"]
    if "torch" in sys.modules:
        parts.append(f"torch threads {sys.modules['torch'].get_num_threads()}")
    for mod in ("torch", "tensorflow", "keras", "jax"):
        if mod in sys.modules:
            parts.append(f"{mod} {sys.modules[mod].__version__}")
    return ", ".join(parts)


def write(rows: list, args, out: Path, seconds: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cols = ["model", "backend", "candidates", "mode", "population", "scored", "samples", "seconds",
            "first_run_seconds", "throughput", "speedup"]
    stem = f"results-{args.tag}" if args.tag else "results"
    with open(out / f"{stem}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for row in rows:
            w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    cmd = "python benchmarks/scoring/bench_scoring.py " + " ".join(sys.argv[1:])
    lines = ["# Scoring throughput", "", f"Command: `{cmd.strip()}`  ", f"Machine: {machine()}  ",
             f"Run time: {seconds:.0f} s. Throughput = candidates x samples per second (higher is better); "
             "speedup is against one-by-one scoring of the same candidates (LeNet) or against full "
             "forwards in the same population mode (MobileNetV2). Fastest of the repeats.", ""]
    lines += ["| model | backend | candidates | mode | P | seconds | first run s | throughput | speedup |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['backend']} | {r['candidates']} | {r['mode']} | {r['population']} | "
                     f"{r['seconds']:.3f} | {r['first_run_seconds']:.3f} | {r['throughput']:,.0f} | "
                     f"{r['speedup']:.2f}x |")
    lines += ["", "## Done-criteria ratios", ""]
    for r in rows:
        if r["model"] == "lenet5-digits" and r["mode"].startswith("population") and r["population"] == 32:
            lines.append(f"- LeNet, {r['backend']}, {r['mode']}-32 vs one-by-one ({r['candidates']} candidates): "
                         f"**{r['speedup']:.2f}x**")
        if r["model"] == "lenet5-digits" and r["mode"] == "prefix-cached":
            lines.append(f"- LeNet, {r['backend']}, layer-wise sweep with prefix cache vs one-by-one: "
                         f"**{r['speedup']:.2f}x**")
        if r["model"].startswith("mobilenet") and r["mode"].startswith("prefix"):
            lines.append(f"- MobileNetV2-shaped, torch, full layer-wise sweep, {r['mode']} vs full forwards: "
                         f"**{r['speedup']:.2f}x**")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="torch,tensorflow,jax")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--mixed", type=int, default=128, help="LeNet candidates that change every layer")
    ap.add_argument("--sweep-k", type=int, default=64, help="candidates per layer in the LeNet layer-wise sweep")
    ap.add_argument("--mnv2-size", type=int, default=96, help="MobileNetV2 input side (pixels)")
    ap.add_argument("--mnv2-samples", type=int, default=16)
    ap.add_argument("--mnv2-batch", type=int, default=16)
    ap.add_argument("--mnv2-candidates", type=int, default=32,
                    help="candidates per layer in its sweep (the engine's layer-wise step scores every k of a "
                         "layer: 74 per layer on the demo's LeNet)")
    ap.add_argument("--mnv2-repeats", type=int, default=1)
    ap.add_argument("--no-mnv2-vmap", dest="mnv2_vmap", action="store_false",
                    help="skip the vectorised MobileNetV2 sweeps")
    ap.add_argument("--no-mobilenet", action="store_true")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads per framework (default: the frameworks' own choice, all cores)")
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--tag", default="", help="write results-TAG.csv / .md instead of results.csv / .md")
    args = ap.parse_args(argv)
    if args.threads:
        set_threads(args.threads)
    t0 = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t0:6.1f}s] {msg}", flush=True)

    rows: list = []
    for backend in [b for b in args.backends.split(",") if b]:
        try:
            __import__(FRAMEWORK[backend])
        except ImportError:
            log(f"skipping {backend}: not installed")
            continue
        bench_lenet(backend, args, rows, log)
    if not args.no_mobilenet:
        bench_mobilenet(args, rows, log)
    write(rows, args, Path(args.out), time.perf_counter() - t0)
    log(f"wrote {args.out}/results{'-' + args.tag if args.tag else ''}.md")
    return rows


if __name__ == "__main__":
    main()
