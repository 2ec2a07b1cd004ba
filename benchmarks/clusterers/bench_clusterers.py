"""Time and inertia of every clusterer against scikit-learn, the exact optimum and fast-pytorch-kmeans.

    python benchmarks/clusterers/bench_clusterers.py [--sizes 864,147456,1280000] [--ks 16,256,1024]

Weights are trained-looking float32 values (``wsx.testing.clusterers.typical_weights``: 70 % a
peaked Laplacian, 30 % a wider shifted Gaussian, seed 0), one tensor per size. Methods:

- every registered clusterer that is available here (``sorted1d``, ``torch``, ``cupy``, the
  ``sklearn`` plugin with its 10 restarts), plus ``sorted1d`` as plain Lloyd from the original
  code's linear initialisation (``refine=False``) to show what the refinement buys;
- ``sklearn-n_init=1``: ``sklearn.cluster.KMeans(n_clusters=k, n_init=1, random_state=0)``, the
  reference of the issue (k-means++ init, Lloyd, scikit-learn's threads);
- ``kmeans1d``: the exact optimum (O(k n) dynamic programme);
- ``fast-pytorch-kmeans`` (its defaults: random init, 100 iterations; its k-means++ init is
  sequential and takes minutes) where installed, on CPU (an n x k distance matrix).

Fast methods are timed ``--repeats`` times after a warm-up, the best kept; slow ones once. Combos
whose estimated time or memory is over the limits are skipped and marked in the table. Then the
k sweep: ``cluster_many`` of the default clusterer over 100 log-spaced k in [2, 1024] (duplicates
after rounding included) on the largest size, against one sklearn fit at k = 256.
Writes results.csv and results.md next to this file (or to --out).

    python benchmarks/clusterers/bench_clusterers.py --flash [--flash-sizes 147456,1280000]

runs only the head-to-head with flash1dkmeans (``pip install -c constraints.txt -e ".[bench]"``;
k-means++ and Lloyd on sorted data, compiled with numba): one call per k (weights in, centroids and
labels in input order out, sorting included on both sides), both timed interleaved in one process,
best of --repeats after a compile-and-warm-up call, then a sweep over every k (each sorting once:
``cluster_many`` against flash1dkmeans on pre-sorted data, labels unsorted per k). Writes
results-flash.csv and results-flash.md.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REFERENCE = "sklearn-n_init=1"
OPTIMUM = "kmeans1d"


# -- methods: each is fn(w float32 1-D, k) -> inertia (float) ------------------------------------
def sklearn_fit(w: np.ndarray, k: int) -> float:
    from sklearn.cluster import KMeans

    x = w.astype(np.float64).reshape(-1, 1)
    km = KMeans(n_clusters=k, n_init=1, random_state=0).fit(x)
    return float(((x.ravel() - km.cluster_centers_.ravel()[km.labels_]) ** 2).sum())


def kmeans1d_fit(w: np.ndarray, k: int) -> float:
    import kmeans1d

    x = w.astype(np.float64)
    labels, centroids = kmeans1d.cluster(x, k)
    return float(((x - np.asarray(centroids)[np.asarray(labels)]) ** 2).sum())


def fast_pytorch_fit(w: np.ndarray, k: int) -> float:
    import torch
    from fast_pytorch_kmeans import KMeans

    torch.manual_seed(0)
    x = torch.as_tensor(w, dtype=torch.float32).reshape(-1, 1)
    labels = KMeans(n_clusters=k, verbose=0).fit_predict(x)  # its defaults: random init, 100 iterations
    c = torch.zeros(k, dtype=torch.float64).index_add_(0, labels, x.ravel().double())
    cnt = torch.bincount(labels, minlength=k).clamp(min=1)
    xd = x.ravel().double()
    return float(((xd - (c / cnt)[labels]) ** 2).sum())  # its own centroids are float32


def clusterer_fit(cls, **params):
    def fit(w: np.ndarray, k: int) -> float:
        return cls(**params).cluster(w, k).inertia
    return fit


def flash_fit(w: np.ndarray, k: int) -> float:
    from flash1dkmeans import kmeans_1d

    x = w.astype(np.float64)
    centroids, labels = kmeans_1d(x, k, random_state=0)
    return float(((x - np.asarray(centroids)[labels]) ** 2).sum())


def flash_sweep(w: np.ndarray, ks: list[int]) -> list[float]:
    """flash1dkmeans over a sweep, sorting once: pre-sorted data, borders, labels unsorted per k."""
    from flash1dkmeans import kmeans_1d

    x = w.astype(np.float64)
    order = np.argsort(x)
    xs = x[order]
    out = []
    for k in ks:
        centroids, borders = kmeans_1d(xs, k, is_sorted=True, return_cluster_borders=True, random_state=0)
        labels = np.empty(x.size, dtype=np.int64)
        labels[order] = np.repeat(np.arange(k), np.diff(np.asarray(borders)))
        out.append(float(((x - np.asarray(centroids)[labels]) ** 2).sum()))
    return out


def flash_main(args, argv) -> int:
    """sorted1d against flash1dkmeans per k and over a sweep (see the module docstring)."""
    from wsx.testing.clusterers import typical_weights
    from wsx_plugins.clusterers.sorted1d import Sorted1DClusterer

    def ours(w, k):  # inertia recomputed from centroids and labels, exactly as for flash1dkmeans
        res = Sorted1DClusterer().cluster(w, k)
        x = w.astype(np.float64)
        return float(((x - res.centroids[res.labels]) ** 2).sum())

    sizes = [int(v) for v in args.flash_sizes.split(",")]
    ks = [int(v) for v in args.flash_ks.split(",")]
    flash_fit(typical_weights(500, seed=1), 4)  # numba compiles here, outside the timings
    rows = []
    for n in sizes:
        w = typical_weights(n, seed=0)
        for k in ks:
            ours(w, k), flash_fit(w, k)  # warm-up
            best = {"sorted1d": (float("inf"), 0.0, 0.0), "flash1dkmeans": (float("inf"), 0.0, 0.0)}
            for _ in range(args.repeats):  # interleaved, so both see the same machine load
                for name, fit in (("sorted1d", ours), ("flash1dkmeans", flash_fit)):
                    wall, cpu, value = timed(fit, w, k, 1)
                    if wall < best[name][0]:
                        best[name] = (wall, cpu, value)
            (s_wall, s_cpu, s_val), (f_wall, f_cpu, f_val) = best["sorted1d"], best["flash1dkmeans"]
            rows.append({"n": n, "k": k, "sorted1d_s": s_wall, "flash_s": f_wall, "sorted1d_cpu_s": s_cpu,
                         "flash_cpu_s": f_cpu, "time_ratio": s_wall / f_wall, "sorted1d_inertia": s_val,
                         "flash_inertia": f_val, "inertia_ratio": s_val / f_val})
            print(f"n={n:>8} k={k:>5} sorted1d {fmt_s(s_wall):>9} flash1dkmeans {fmt_s(f_wall):>9} "
                  f"time ratio {s_wall / f_wall:.2f} inertia ratio {s_val / f_val:.4f}", flush=True)
    sweeps = []
    from wsx_plugins.approximations.weight_sharing import log_k_range

    sweep_ks = log_k_range(100, 2, 1024)
    for n in sizes:
        w = typical_weights(n, seed=0)
        for name in ("sorted1d", "flash1dkmeans", "sorted1d", "flash1dkmeans"):
            t, c = time.perf_counter(), time.process_time()
            x = w.astype(np.float64)
            values = ([float(((x - r.centroids[r.labels]) ** 2).sum()) for r in Sorted1DClusterer().cluster_many(w, sweep_ks)]
                      if name == "sorted1d" else flash_sweep(w, sweep_ks))
            sweeps.append({"n": n, "method": name, "seconds": time.perf_counter() - t,
                           "cpu_seconds": time.process_time() - c, "inertia": values})
            print(f"sweep n={n} {name}: {fmt_s(sweeps[-1]['seconds'])}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "results-flash.csv", "w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=list(rows[0]))
        out.writeheader()
        out.writerows(rows)
    command = "python benchmarks/clusterers/bench_clusterers.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# sorted1d against flash1dkmeans", "", f"Command: `{command.strip()}`", "",
             f"Machine: 2 CPU cores shared with other jobs ({platform.machine()}, Python "
             f"{platform.python_version()}, numpy {np.__version__}). One call per k: weights in, centroids and "
             "labels in input order out, sorting included on both sides; sorted1d with its defaults, "
             "flash1dkmeans `kmeans_1d(x, k, random_state=0)` (k-means++ init, Lloyd up to 300 steps, numba). "
             f"Best wall time of {args.repeats} interleaved runs after a warm-up (numba compiled before). "
             "Weights: `typical_weights(n, seed=0)`.", "",
             "Inertia: both sides recomputed the same way, sum((w - centroids[labels])**2) in float64.", "",
             "| n | k | sorted1d | flash1dkmeans | time sorted1d / flash | inertia sorted1d / flash - 1 |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['n']} | {r['k']} | {fmt_s(r['sorted1d_s'])} | {fmt_s(r['flash_s'])} | "
                     f"{r['time_ratio']:.2f} | {r['inertia_ratio'] - 1:+.1e} |")
    worst_t = max(rows, key=lambda r: r["time_ratio"])
    worst_i = max(rows, key=lambda r: r["inertia_ratio"])
    met_t = worst_t["time_ratio"] <= 1.0
    met_i = worst_i["inertia_ratio"] <= 1.0
    lines += ["", f"Slowest relative to flash1dkmeans: n = {worst_t['n']}, k = {worst_t['k']} at "
              f"**{worst_t['time_ratio']:.2f}x** its time ({'faster at every k' if met_t else 'NOT faster at every k'}); "
              f"worst inertia: n = {worst_i['n']}, k = {worst_i['k']} at **{worst_i['inertia_ratio'] - 1:+.1e}** "
              f"relative to its inertia ({'no worse at any k' if met_i else 'worse at some k'}).", "",
              f"## Sweep: {len(sweep_ks)} log-spaced k in [2, 1024], each side sorting once", "",
              "sorted1d: `cluster_many(w, ks)` (labels included). flash1dkmeans: one argsort, then "
              "`kmeans_1d(sorted, k, is_sorted=True, return_cluster_borders=True)` per k and the labels put "
              "back in input order. Two runs each, alternating; the better kept.", "",
              "| n | sorted1d | flash1dkmeans | time ratio | k where sorted1d's inertia is worse |",
              "|---|---|---|---|---|"]
    for n in sizes:
        mine = min((r for r in sweeps if r["n"] == n and r["method"] == "sorted1d"), key=lambda r: r["seconds"])
        theirs = min((r for r in sweeps if r["n"] == n and r["method"] == "flash1dkmeans"), key=lambda r: r["seconds"])
        worse = [f"{k} (+{a / b - 1:.1e})" for k, a, b in zip(sweep_ks, mine["inertia"], theirs["inertia"]) if a > b]
        lines.append(f"| {n} | {fmt_s(mine['seconds'])} | {fmt_s(theirs['seconds'])} | "
                     f"{mine['seconds'] / theirs['seconds']:.2f} | {', '.join(worse) or 'none'} |")
    (args.out / "results-flash.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'results-flash.csv'} and {args.out / 'results-flash.md'}")
    return 0


def methods() -> list[tuple[str, object, bool, str]]:
    """(name, fit, fast, why unavailable or '')."""
    import wsx
    from wsx_plugins.clusterers.sorted1d import Sorted1DClusterer

    out = []
    for name, cls in sorted(wsx.plugins.clusterers().items(), key=lambda kv: -getattr(kv[1], "priority", 0)):
        ok, why = cls.available()
        out.append((name, clusterer_fit(cls) if ok else None, name != "sklearn", why))
    out.append(("sorted1d-lloyd-linear", clusterer_fit(Sorted1DClusterer, init="linear", refine=False), True, ""))
    out.append((REFERENCE, sklearn_fit, False, ""))
    out.append((OPTIMUM, kmeans1d_fit, False, "" if importlib.util.find_spec("kmeans1d") else "not installed"))
    fpk = importlib.util.find_spec("fast_pytorch_kmeans") and importlib.util.find_spec("torch")
    out.append(("fast-pytorch-kmeans", fast_pytorch_fit, False,
                "" if fpk else "not installed (pip install --no-deps fast-pytorch-kmeans)"))
    return out


def skip_reason(name: str, n: int, k: int, args) -> str:
    """Why a combo is skipped ('' to run it): estimated minutes or memory over the limits."""
    if k > n:
        return "k > n"
    if name == OPTIMUM and n * k > args.optimum_max:
        return f"skipped: O(k n) optimum, est. ~{n * k * 7e-7 / 60:.0f} min"
    if name == "fast-pytorch-kmeans" and n * k > args.fpk_max:
        return "skipped: n x k distance matrix too large for this CPU"
    if name == "sklearn" and n * k > args.sklearn10_max:
        return "skipped: 10 restarts, see sklearn-n_init=1"
    if name == REFERENCE and n * k > args.sklearn_max:
        return "skipped: est. too long"
    return ""


def timed(fit, w, k, repeats: int) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds of this process, all threads, inertia) of the fastest repeat."""
    best, cpu, value = float("inf"), float("nan"), float("nan")
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        value = fit(w, k)
        wall = time.perf_counter() - t
        if wall < best:
            best, cpu = wall, time.process_time() - c
    return best, cpu, value


# -- report ----------------------------------------------------------------------------------------
def fmt_s(s: float) -> str:
    return "" if s != s else (f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s")


def write_md(path: Path, rows: list[dict], sweep: dict, command: str, args) -> None:
    by = {(r["method"], r["n"], r["k"]): r for r in rows}
    lines = ["# Clusterer benchmark", "",
             f"Command: `{command}`", "",
             f"Machine: 2 CPU cores, no GPU ({platform.machine()}, Python {platform.python_version()}, "
             f"numpy {np.__version__}). The machine was shared with other jobs during the run, so wall "
             "times vary; CPU time (this process, all threads: scikit-learn uses both cores, sorted1d "
             "one) is reported beside it. Both sides of every ratio ran in this one process, back to back.", "",
             "Weights: `typical_weights(n, seed=0)` (70 % Laplace(0, 0.03), 30 % Normal(0.01, 0.06), "
             "float32). Time: best of "
             f"{args.repeats} after a warm-up for the fast methods, a single run for the slow ones "
             "(sklearn, kmeans1d, fast-pytorch-kmeans). Inertia ratios: against `sklearn-n_init=1` "
             "(KMeans(n_clusters=k, n_init=1, random_state=0)) and against the exact optimum (`kmeans1d`).", ""]
    head = ("| n | k | method | time (wall) | CPU time | inertia | speed-up vs sklearn (wall / CPU) "
            "| inertia vs sklearn | vs optimum |")
    lines += ["## All runs", "", head, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["note"] and r["seconds"] != r["seconds"]:
            lines.append(f"| {r['n']} | {r['k']} | {r['method']} | {r['note']} | | | | | |")
            continue
        speed = (f"{r['speedup_vs_sklearn']:.0f}x / {r['cpu_speedup_vs_sklearn']:.0f}x"
                 if r["speedup_vs_sklearn"] == r["speedup_vs_sklearn"] else "")
        rel = f"{r['inertia_vs_sklearn']:.4f}" if r["inertia_vs_sklearn"] == r["inertia_vs_sklearn"] else ""
        opt = f"+{100 * (r['inertia_vs_optimum'] - 1):.3f} %" if r["inertia_vs_optimum"] == r["inertia_vs_optimum"] else ""
        lines.append(f"| {r['n']} | {r['k']} | {r['method']} | {fmt_s(r['seconds'])} | {fmt_s(r['cpu_seconds'])} | "
                     f"{r['inertia']:.6g} | {speed} | {rel} | {opt} |")
    lines += ["", "## The issue's bar, measured in this run", ""]
    key = ("sorted1d", 1280000, 256)
    if key in by and (REFERENCE, 1280000, 256) in by:
        r, ref = by[key], by[(REFERENCE, 1280000, 256)]
        ok1 = r["speedup_vs_sklearn"] >= 100 and r["inertia_vs_sklearn"] <= 1.01
        lines.append(f"- 1 280 000 weights, k = 256: sorted1d {fmt_s(r['seconds'])} vs sklearn "
                     f"{fmt_s(ref['seconds'])} = **{r['speedup_vs_sklearn']:.0f}x faster** (CPU time: "
                     f"{fmt_s(r['cpu_seconds'])} vs {fmt_s(ref['cpu_seconds'])} = {r['cpu_speedup_vs_sklearn']:.0f}x), "
                     f"inertia **{r['inertia_vs_sklearn']:.4f}x** sklearn's (bar: >= 100x, <= 1.01x): "
                     f"{'met' if ok1 else 'NOT met'}.")
    gaps = [r for r in rows if r["method"] == "sorted1d" and r["inertia_vs_optimum"] == r["inertia_vs_optimum"]]
    if gaps:
        worst = max(gaps, key=lambda r: r["inertia_vs_optimum"])
        ok2 = worst["inertia_vs_optimum"] <= 1.02
        lines.append(f"- Gap to the exact optimum wherever kmeans1d ran ({len(gaps)} combos): worst "
                     f"**+{100 * (worst['inertia_vs_optimum'] - 1):.3f} %** (n = {worst['n']}, k = {worst['k']}; "
                     f"bar: within 2 %): {'met' if ok2 else 'NOT met'}.")
    if sweep:
        ok3 = sweep["ratio"] < 0.5
        lines.append(f"- Sweep of {sweep['count']} log-spaced k in [2, 1024] ({sweep['distinct']} distinct) over "
                     f"{sweep['n']} weights with `cluster_many` (labels included): **{fmt_s(sweep['seconds'])}** "
                     f"= **{sweep['ratio']:.2f}** of one sklearn fit at k = 256 ({fmt_s(sweep['sklearn_seconds'])}; "
                     f"CPU time {fmt_s(sweep['cpu_seconds'])} vs {fmt_s(sweep['sklearn_cpu_seconds'])} = "
                     f"{sweep['cpu_ratio']:.2f}; bar: < 0.5): {'met' if ok3 else 'NOT met'}.")
    lines += ["", "Skipped combos say why in the time column. `sorted1d-lloyd-linear` is Lloyd's algorithm "
              "on sorted data from evenly spaced centroids (the original code's initialisation) without "
              "the banded-DP refinement: as fast, but several percent off the optimum. "
              "`fast-pytorch-kmeans` runs with its defaults (random init, 100 iterations; its k-means++ "
              "init is sequential and takes minutes here), hence its poor inertia. `torch` is sorted1d's "
              "algorithm on torch CPU tensors (its point is keeping CUDA tensors on their device); `cupy` "
              "needs a CUDA GPU, which this machine lacks.", ""]
    path.write_text("\n".join(lines))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="864,147456,1280000", help="layer sizes (weights)")
    p.add_argument("--ks", default="16,256,1024", help="values of k")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of the fast methods (best kept)")
    p.add_argument("--optimum-max", type=float, default=4e8, help="largest n*k for kmeans1d")
    p.add_argument("--fpk-max", type=float, default=2e8, help="largest n*k for fast-pytorch-kmeans")
    p.add_argument("--sklearn-max", type=float, default=2e9, help="largest n*k for sklearn n_init=1")
    p.add_argument("--sklearn10-max", type=float, default=5e6, help="largest n*k for the sklearn plugin")
    p.add_argument("--no-sweep", action="store_true", help="skip the k sweep")
    p.add_argument("--out", type=Path, default=HERE, help="folder for results.csv and results.md")
    p.add_argument("--flash", action="store_true", help="only sorted1d against flash1dkmeans")
    p.add_argument("--flash-sizes", default="147456,1280000", help="layer sizes for --flash")
    p.add_argument("--flash-ks", default="2,3,4,8,16,32,64,128,256,512,1024", help="values of k for --flash")
    args = p.parse_args(argv)
    if args.flash:
        return flash_main(args, argv)

    from wsx.testing.clusterers import typical_weights
    from wsx_plugins.approximations.weight_sharing import log_k_range

    sizes = [int(s) for s in args.sizes.split(",")]
    ks = [int(k) for k in args.ks.split(",")]
    table = methods()
    warm = typical_weights(200, seed=1)
    for _, fit, _, why in table:  # imports and first-call set-up stay out of the timings
        if not why:
            fit(warm, 4)
    rows = []
    for n in sizes:
        w = typical_weights(n, seed=0)
        for k in ks:
            base = {}
            for name, fit, fast, why in table:
                note = "k > n" if k > n else (why or skip_reason(name, n, k, args))
                row = {"method": name, "n": n, "k": k, "seconds": float("nan"), "cpu_seconds": float("nan"),
                       "inertia": float("nan"), "note": note}
                if not note:
                    if fast:
                        fit(w, k)  # warm-up: imports, allocator
                    row["seconds"], row["cpu_seconds"], row["inertia"] = timed(fit, w, k, args.repeats if fast else 1)
                    print(f"n={n:>8} k={k:>5} {name:<24} {fmt_s(row['seconds']):>10} "
                          f"(cpu {fmt_s(row['cpu_seconds']):>10})  {row['inertia']:.6g}", flush=True)
                elif note != "k > n":
                    print(f"n={n:>8} k={k:>5} {name:<24} {note}", flush=True)
                base[name] = row
                rows.append(row)
            ref, opt = base.get(REFERENCE), base.get(OPTIMUM)
            for row in base.values():
                ok = row["seconds"] == row["seconds"]
                row["speedup_vs_sklearn"] = ref["seconds"] / row["seconds"] if ok and ref and not ref["note"] \
                    else float("nan")
                row["cpu_speedup_vs_sklearn"] = ref["cpu_seconds"] / row["cpu_seconds"] \
                    if ok and ref and not ref["note"] else float("nan")
                row["inertia_vs_sklearn"] = row["inertia"] / ref["inertia"] if ok and ref and not ref["note"] \
                    else float("nan")
                row["inertia_vs_optimum"] = row["inertia"] / opt["inertia"] if ok and opt and not opt["note"] \
                    else float("nan")
    rows = [r for r in rows if r["note"] != "k > n"]

    sweep = {}
    if not args.no_sweep:
        import wsx
        from wsx.engine import resolve_clusterer

        n = max(sizes)
        w = typical_weights(n, seed=0)
        clus = resolve_clusterer(None, 0)
        sweep_ks = [int(k) for k in np.round(np.geomspace(2, 1024, 100))]
        t, c = time.perf_counter(), time.process_time()
        clus.cluster_many(w, sweep_ks)
        seconds, cpu = time.perf_counter() - t, time.process_time() - c
        ref = next((r for r in rows if r["method"] == REFERENCE and r["n"] == n and r["k"] == 256
                    and not r["note"]), None)
        ref_s, ref_cpu = (ref["seconds"], ref["cpu_seconds"]) if ref else timed(sklearn_fit, w, 256, 1)[:2]
        sweep = {"n": n, "count": len(sweep_ks), "distinct": len(set(sweep_ks)), "seconds": seconds,
                 "cpu_seconds": cpu, "sklearn_seconds": ref_s, "sklearn_cpu_seconds": ref_cpu,
                 "ratio": seconds / ref_s, "cpu_ratio": cpu / ref_cpu, "clusterer": clus.name,
                 "engine_ks": len(log_k_range(100, 2, 1024))}
        print(f"sweep: {clus.name}.cluster_many over {len(sweep_ks)} k on {n} weights: {fmt_s(seconds)} "
              f"= {sweep['ratio']:.3f} x one sklearn fit at k=256 ({fmt_s(ref_s)})", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    fields = ["method", "n", "k", "seconds", "cpu_seconds", "inertia", "speedup_vs_sklearn",
              "cpu_speedup_vs_sklearn", "inertia_vs_sklearn", "inertia_vs_optimum", "note"]
    with open(args.out / "results.csv", "w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=fields)
        out.writeheader()
        for r in rows:
            out.writerow({k: r[k] for k in fields})
        if sweep:
            out.writerow({"method": f"sweep:{sweep['clusterer']}.cluster_many({sweep['count']} k)", "n": sweep["n"],
                          "k": "2..1024", "seconds": sweep["seconds"], "cpu_seconds": sweep["cpu_seconds"],
                          "inertia": "", "speedup_vs_sklearn": sweep["sklearn_seconds"] / sweep["seconds"],
                          "cpu_speedup_vs_sklearn": sweep["sklearn_cpu_seconds"] / sweep["cpu_seconds"],
                          "inertia_vs_sklearn": "", "inertia_vs_optimum": "",
                          "note": f"sweep / one sklearn fit at k=256 = {sweep['ratio']:.3f} (cpu {sweep['cpu_ratio']:.3f})"})
    command = "python benchmarks/clusterers/bench_clusterers.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_md(args.out / "results.md", rows, sweep, command.strip(), args)
    print(f"wrote {args.out / 'results.csv'} and {args.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("WSX_DISABLE_PLUGIN_AUTOLOAD", "1")  # built-in clusterers only
    sys.exit(main())
