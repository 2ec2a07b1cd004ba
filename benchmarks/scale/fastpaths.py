"""Which torch fast paths work on real architectures, and what they save in a layer-wise sweep.

    WSX_THREADS=1 nice -n 10 python benchmarks/scale/fastpaths.py [--archs resnet18,...] [--samples 32] [--size 64]

For each torch architecture of ``benchmarks/archs.py`` (random init, synthetic inputs, the model's
``ModelOutput`` as it is, ``output="logits"``):

* (scored with `metric="cosine"` against the uncompressed model, so that differences show) whether the model traces (``traced_leaves_``: modules run as one opaque node), whether the folded
  population forward runs on a middle layer's population of 4 (``vmap=True``, no prefix cache) and
  how many graph nodes it handed to per-node vmap or ran once per candidate, and its largest
  difference from one-by-one forwards;
* whether the prefix cut works through the fx graph (``prefix_path="fx"``) and by module hooks
  (``prefix_path="hooks"``) on the same layer, with the largest difference from one-by-one forwards;
* ``precision="bf16"`` (autocast on CPU): its agreement with float32 on the samples (top-1
  agreement, mean cosine, largest difference relative to the outputs' largest magnitude);
* the seconds per candidate of a layer-wise sweep: three layers of interest (at a quarter, half and
  three quarters of the forward order), eight k values each (WeightSharing, k = 2..9), scored as the
  layer-wise step does (one ``score`` call per layer). ``fast``: today's defaults (``vmap="auto"``,
  which times the stacked forward against the loop on its first population and keeps the faster;
  prefix cache on); ``loop``: ``vmap=False, prefix_cache=False``. Both backends are warmed up on the
  sweep once (traces, cut checks, the vmap choice), then timed interleaved, best of ``--repeats``,
  with the prefix cache emptied before each timed sweep so that every layer's prefix forward is paid
  once per sweep, as in a real one. The warm-up sweep's seconds are reported too.

Writes fastpaths.md next to this script.
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import archs  # noqa: E402

TORCH_ARCHS = [n for n, (fw, _) in archs.ARCHS.items() if fw == "torch"]


def _short(text, n: int = 120) -> str:
    return " ".join(str(text).split())[:n].replace("|", "/")


def _diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def probe(model, data, layer: str) -> dict:
    """Fold and prefix paths on a population of 4 of ``layer``, each against one-by-one forwards."""
    from wsx.engine import make_backend

    x = data[0]  # cosine against the uncompressed model's outputs, not the labels
    plain = make_backend(model, x, None, metric="cosine", output="logits", vmap=False, prefix_cache=False)
    w = plain.get_weights(layer)
    rng = np.random.default_rng(0)
    pop = [{layer: (w * (1 + 0.05 * rng.standard_normal(w.shape))).astype(np.float32)} for _ in range(4)]
    ref = plain.score(pop)
    plain.close()
    out: dict = {}
    fold = make_backend(model, x, None, metric="cosine", output="logits", vmap=True, prefix_cache=False)
    try:
        got = fold.score(pop)
        folders = [f for _, f in fold._folders.values()]
        vmapped = sum(sum(f.fallbacks.values()) for f in folders)
        looped = sorted({k for f in folders for k in f.looped})
        out["traced"] = f"yes, {len(fold.traced_leaves_)} opaque module(s)" if fold._traced is not None \
            and not isinstance(fold._traced, Exception) else f"no: {_short(fold._traced)}"
        if fold.fold_error_ or not fold.stats_["folded_calls"]:
            out["fold"] = f"no: {_short(fold.fold_error_ or fold.vmap_error_ or 'not used')}"
        else:
            out["fold"] = (f"yes (diff {_diff(got, ref):.1e}); {vmapped} node call(s) vmapped, "
                           f"{len(looped)} looped{': ' + _short(', '.join(looped), 60) if looped else ''}")
    except Exception as exc:  # noqa: BLE001 - recorded in the table
        out["traced"] = out.get("traced", "?")
        out["fold"] = f"failed: {_short(f'{type(exc).__name__}: {exc}')}"
    finally:
        fold.close()
    for path in ("fx", "hooks"):
        be = make_backend(model, x, None, metric="cosine", output="logits", vmap=False, prefix_path=path)
        try:
            got = be.score(pop)
            got = be.score(pop)
            if be.prefix_paths_.get((layer,)) == path and be.stats_["prefix_hits"] > 0:
                out[path] = f"yes (diff {_diff(got, ref):.1e})"
            else:
                out[path] = f"no: {_short(be.prefix_errors_.get((layer,), 'not used'))}"
        except Exception as exc:  # noqa: BLE001
            out[path] = f"failed: {_short(f'{type(exc).__name__}: {exc}')}"
        finally:
            be.close()
    low = make_backend(model, data, None, output="logits", precision="bf16")
    try:
        low.score(pop[:1])
        r = low.precision_report_
        out["bf16"] = f"top-1 {100 * r['top1_agreement']:.1f} %, cosine {r['mean_cosine']:.5f}, max {100 * r['max_error']:.2g} %"
    except Exception as exc:  # noqa: BLE001
        out["bf16"] = f"failed: {_short(f'{type(exc).__name__}: {exc}')}"
    finally:
        low.close()
    return out


def sweep_timing(model, data, repeats: int, per_layer: int = 8) -> dict:
    from wsx.engine import make_backend, resolve_clusterer
    from wsx_plugins.approximations.weight_sharing import WeightSharing

    fast = make_backend(model, data, None, output="logits")
    loop = make_backend(model, data, None, output="logits", vmap=False, prefix_cache=False)
    layers = fast.layers()
    picks = [layers[int(len(layers) * q)] for q in (0.25, 0.5, 0.75)]
    appr, clus = WeightSharing(), resolve_clusterer(None, 0)
    pops = []
    for info in picks:
        parts = appr.apply_many(fast.get_weights(info.name), list(range(2, 2 + per_layer)), layer=info, clusterer=clus)
        pops.append([{info.name: p.weights} for p in parts])
    n = sum(len(p) for p in pops)

    def run(be) -> float:
        be._prefix.clear()  # each layer's prefix forward is paid once per sweep
        t = time.perf_counter()
        for pop in pops:
            be.score(pop)
        return time.perf_counter() - t

    warm = {"fast": run(fast), "loop": run(loop)}
    best = {"fast": float("inf"), "loop": float("inf")}
    for _ in range(repeats):
        for name, be in (("loop", loop), ("fast", fast)):
            best[name] = min(best[name], run(be))
    res = {"layers": ", ".join(i.name for i in picks), "candidates": n,
           "fast_s": best["fast"] / n, "loop_s": best["loop"] / n,
           "fast_warm_s": warm["fast"], "loop_warm_s": warm["loop"],
           "choice": fast.vmap_choice_, "vmap": fast.vmap_, "paths": dict(fast.prefix_paths_),
           "prefix_errors": {k: _short(v, 80) for k, v in fast.prefix_errors_.items()}}
    fast.close()
    loop.close()
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", default=",".join(TORCH_ARCHS))
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--size", type=int, default=64, help="image size in px (BERT: tokens per sentence)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", type=Path, default=HERE)
    args = p.parse_args(argv)
    import wsx.threads

    threads = wsx.threads.auto_threads()
    wsx.threads.set_process_threads(threads)
    rows = []
    for name in args.archs.split(","):
        size = 32 if name == "bert6" and args.size > 32 else args.size
        row: dict = {"arch": name, "size": size}
        try:
            model, data = archs.build(name, samples=args.samples, size=size, logits=False)
            from wsx.engine import make_backend

            be = make_backend(model, data, None, output="logits")
            layers = be.layers()
            be.close()
            row["n_layers"] = len(layers)
            row["probe_layer"] = layers[len(layers) // 2].name
            row.update(probe(model, data, row["probe_layer"]))
            row.update(sweep_timing(model, data, args.repeats))
        except Exception as exc:  # noqa: BLE001 - record and go on
            row["error"] = _short(f"{type(exc).__name__}: {exc}", 300)
        print(row, flush=True)
        rows.append(row)
        gc.collect()
    load = os.getloadavg()
    cmd = "WSX_THREADS=1 nice -n 10 python benchmarks/scale/fastpaths.py " + \
        " ".join(argv if argv is not None else sys.argv[1:])
    unit = lambda r: f"{r['size']} {'tokens' if r['arch'] == 'bert6' else 'px'}"  # noqa: E731
    lines = ["# Torch fast paths on real architectures", "",
             f"Command: `{cmd.strip()}`", "",
             f"Machine: 2 CPU cores shared with other jobs (load average {load[0]:.1f} / {load[1]:.1f} / "
             f"{load[2]:.1f} at the end), {threads} torch thread(s), Python {platform.python_version()}, "
             f"{args.samples} synthetic samples per model, random init from `transformers` configs, the "
             "model's `ModelOutput` scored with `output=\"logits\"`. See the script's docstring for what each "
             "column measures. Baseline errors (before this change) are in `baseline.md`.", "",
             "## Which fast paths work (a population of 4 of the middle layer of interest)", "",
             "| model | layers | probe layer | traced | population fold | prefix cut, fx | prefix cut, hooks | bf16 autocast vs fp32 (CPU) |",
             "|---|---:|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r and "fold" not in r:
            lines.append(f"| {r['arch']} ({unit(r)}) | failed: {r['error']} | | | | | | |")
            continue
        lines.append(f"| {r['arch']} ({unit(r)}) | {r['n_layers']} | `{r['probe_layer']}` | {r['traced']} | "
                     f"{r['fold']} | {r['fx']} | {r['hooks']} | {r['bf16']} |")
    lines += ["", "## Layer-wise sweep: seconds per candidate, fast path against the plain loop (one run, interleaved)",
              "", "| model | fast s / candidate | loop s / candidate | loop / fast | first sweep fast / loop (s) "
              "| vmap=\"auto\" chose | prefix cuts | layers swept |", "|---|---:|---:|---:|---:|---|---|---|"]
    for r in rows:
        if "fast_s" not in r:
            lines.append(f"| {r['arch']} | failed: {r.get('error', '')} | | | | | | |")
            continue
        c = r["choice"] or {}
        chose = (f"{c['chosen']} (stacked {c['stacked_s_per_candidate']:.3f} s, loop "
                 f"{c['loop_s_per_candidate']:.3f} s per candidate, {c['candidates_per_call']} per call)") \
            if c else ("stacked" if r["vmap"] else "loop")
        cuts = ", ".join(sorted(set(r["paths"].values()))) or "none"
        if r["prefix_errors"]:
            cuts += f"; {len(r['prefix_errors'])} refused: " + _short("; ".join(r["prefix_errors"].values()), 100)
        lines.append(f"| {r['arch']} ({unit(r)}) | {r['fast_s']:.4f} | {r['loop_s']:.4f} | "
                     f"{r['loop_s'] / r['fast_s']:.2f} | {r['fast_warm_s']:.1f} / {r['loop_warm_s']:.1f} | {chose} | "
                     f"{cuts} | `{r['layers']}` |")
    lines.append("")
    (args.out / "fastpaths.md").write_text("\n".join(lines))
    print(f"wrote {args.out / 'fastpaths.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
