"""The demo's exploration time before and after this branch's clustering and thread changes, alone and under test-suite load.

    python benchmarks/scale/demo_timing.py [--runs 2] [--load] [--before-commit main]
    python benchmarks/scale/demo_timing.py --layers-only [--runs 2]    # clustering alone, per k vs sweep
    python benchmarks/scale/demo_timing.py --before-code 52abe66 [--load]  # all of wsx before against now

Each run is a fresh process exploring the embedded LeNet-5 / digits model with the demo's defaults
(``wsx.explore(model, data)``, divide-and-conquer), reporting the result's timings:

- before: sorted1d as of ``--before-commit`` (its source read with ``git show``), torch's own
  thread count (one per core: what wsx did before it chose threads);
- after: sorted1d of this checkout, ``wsx.threads.auto_threads()``.

Variants alternate (before, after, before, after, ...). With ``--load`` each demo runs while
``python -m pytest -n 2 tests`` runs beside it, started 20 s before and stopped when the demo ends;
the suite's workers run as they did before (``WSX_THREADS=<cores / 1>`` per worker: a thread per
core each) for "before" and with this checkout's conftest for "after".

With ``--before-code COMMIT``, "before" is the whole of wsx as of that commit (``_code.py``: its
defaults, clusterer and threads included) and the suite beside it is this checkout's for both.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def child(variant: str, before_commit: str, whole: bool = False) -> None:
    import wsx

    if variant == "before" and not whole:
        clusterer = _sorted1d_before(before_commit).Sorted1DClusterer()
        import torch

        threads = torch.get_num_threads()  # torch's default: what explore used before
    else:
        clusterer, threads = None, None
    model, data = wsx.zoo.load("lenet5-digits", framework="torch")
    t = time.perf_counter()
    r = wsx.explore(model, data, clusterer=clusterer, threads=threads, progress=False)
    wall = time.perf_counter() - t
    best = r.best()
    print(json.dumps({"variant": variant, "wall": wall, "threads": r.settings.get("threads", threads),
                      "timings": r.timings, "scorings": r.scorings,
                      "best_cr": best.compression_rate if best else None}))


def _sorted1d_before(before_commit: str):
    """The sorted1d module as of ``before_commit`` (read with ``git show``)."""
    import importlib.util
    import tempfile

    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{before_commit}:plugins/clusterers/sorted1d.py"],
                         capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "sorted1d_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("sorted1d_before", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def layers_only(before_commit: str, runs: int) -> None:
    """Clustering alone on the demo's layers x default k grid: before per k, after per k (as the
    engine asks today), after as one sweep per layer; alternating, seconds per pass."""
    import numpy as np
    import wsx
    from wsx_plugins.approximations.weight_sharing import log_k_range
    from wsx_plugins.clusterers import sorted1d as after

    before = _sorted1d_before(before_commit)
    model, _ = wsx.zoo.load("lenet5-digits", framework="torch")
    layers = [p.detach().numpy().ravel().astype(np.float64) for p in model.parameters() if p.ndim > 1]
    total = {"before, per k": 0.0, "after, per k": 0.0, "after, sweep": 0.0}
    for _ in range(runs):
        for w in layers:
            ks = log_k_range(100, 2, 1024, cap=w.size)
            for name in total:
                t = time.perf_counter()
                if name == "after, sweep":
                    after.Sorted1DClusterer().cluster_many(w, ks)
                else:
                    mod = before if name.startswith("before") else after
                    [mod.Sorted1DClusterer().cluster(w, k) for k in ks]
                total[name] += time.perf_counter() - t
    print("clustering the demo's 5 layers x default k grid, seconds per pass (load "
          f"{os.getloadavg()[0]:.1f}): " + ", ".join(f"{k} {v / runs:.2f}" for k, v in total.items()))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=2, help="runs per variant")
    p.add_argument("--load", action="store_true", help="run the test suite (pytest -n 2) beside each demo")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds the suite runs before the demo starts")
    p.add_argument("--before-commit", default="main")
    p.add_argument("--layers-only", action="store_true", help="clustering alone on the demo's layers")
    p.add_argument("--before-code", default=None, help="run 'before' on the whole of wsx as of this commit")
    p.add_argument("--after-code", default=None, help="with --before-code: run 'after' as of this commit")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.layers_only:
        layers_only(args.before_commit, args.runs)
        return 0
    if args.child:
        child(args.child, args.before_commit, whole=args.before_code is not None)
        return 0
    rows = []
    for i in range(args.runs):
        for variant in ("before", "after"):
            load = None
            if args.load:
                env = dict(os.environ)
                if variant == "before" and args.before_code is None:
                    env["WSX_THREADS"] = str(os.cpu_count() or 1)
                else:
                    env.pop("WSX_THREADS", None)
                load = subprocess.Popen([sys.executable, "-m", "pytest", "-n", "2", "-q", "tests"], cwd=ROOT,
                                        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
                time.sleep(args.warmup)  # past collection (framework imports), into the tests
            before_load = os.getloadavg()[0]
            cmd = [sys.executable, __file__, "--child", variant, "--before-commit", args.before_commit]
            env = {k: v for k, v in os.environ.items() if k != "WSX_THREADS"}
            if args.before_code is not None:
                sys.path.insert(0, str(HERE))
                from _code import child_env

                cmd += ["--before-code", args.before_code]
                env = child_env(args.before_code if variant == "before" else args.after_code)
                env.pop("WSX_THREADS", None)
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
            if load is not None:
                os.killpg(load.pid, signal.SIGTERM)
                load.wait()
            line = next((x for x in out.stdout.splitlines()[::-1] if x.startswith("{")), None)
            if line is None:
                print(out.stderr[-2000:], file=sys.stderr)
                return 1
            row = json.loads(line)
            row["load_at_start"] = before_load
            rows.append(row)
            t = row["timings"]
            print(f"run {i} {variant:6s} load={'pytest -n 2' if args.load else 'none'} (1-min avg {before_load:.1f}) "
                  f"threads {row['threads']}: explore {row['wall']:.1f} s = clustering {t['clustering']:.1f} + "
                  f"scoring {t['scoring']:.1f} + overhead {t['overhead']:.1f} (+ final {t['final_scoring']:.1f}); "
                  f"{row['scorings']} scorings, best CR {row['best_cr']:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
