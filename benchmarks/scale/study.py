"""Old against new defaults of divide-and-conquer, side by side: Fashion-MNIST models and real architectures.

    python benchmarks/scale/study.py --archs lenet5_fashion,resnet20_fashion --new-commit HEAD
    python benchmarks/scale/study.py --archs mobilenet_v2,resnet18 --samples 64 --size 32 --batch-size 16
    python benchmarks/scale/study.py --archs resnet18 --samples 1000 --size 224       # a real-size run

Each problem is explored twice, one run after the other in fresh processes, at mlperf-heavy with
``wsx.explore``'s defaults otherwise and one torch thread (``--threads``; 0 leaves the count to wsx,
as a user's run would). ``lenet5_fashion`` and
``resnet20_fashion`` (trained, ``benchmarks/data``) search on the Fashion-MNIST validation split
(top-1, the default subset) and re-score the front on the test split; an architecture of
``benchmarks/archs.py`` (random init, synthetic inputs) uses ``metric="agreement"`` (top-1
agreement with the uncompressed model, the inputs alone as data) on all ``--samples`` samples:

- old: wsx as of ``--old-commit`` (default 52abe66, before issue 12 part B: the thesis' 100
  log-spaced k per layer, a layer-wise scan of every k, every candidate scored on every sample),
  run from its own source (``_code.py``);
- new: this checkout, or ``--new-commit`` run from its own source the same way (so that editing
  the checkout during a long run changes nothing): bit-width grid, layer-wise search, exact early
  rejection.

Reported per run: scorings (layer-wise and combination step), sample-forwards (candidates x samples
actually run, counted alike for both variants at ``Backend.score_detailed``), wall and CPU seconds, rejected candidates, and the best
CR meeting the target (re-scored on all samples); then the ratios old / new. Results go to
``--out`` as study.json and study.md (appended per architecture, so a long run keeps what it did).
``--order new,old`` changes which runs first; ``--time-limit`` caps each run's search (a capped run
says so: its CR is not final). ``--journal DIR`` gives each exploration a journal (``out=``) there:
a run stopped with ``kill`` (SIGTERM) on its child keeps its scorings, and the same command
resumes it; its CPU and wall seconds and sample-forwards add up over the sessions (``sessions.json``
beside the journal; the candidates in flight at the stop are counted twice).

``--vmap stacked`` or ``loop`` fixes the new side's population path (torch) instead of timing both
on the first population (``vmap="auto"``): the two round differently, which moves the search
(``path_gap.py``). Problems whose two defaults ran in one command on two seeds or more also get a summary over
the seeds (mean and spread of the best CR, how often new is at least old) and a figure each
(``seeds-<problem>.png`` beside study.md).
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


FASHION = ("lenet5_fashion", "resnet20_fashion")  # trained on Fashion-MNIST: top-1, val for search, test


def problem(name: str, args):
    """(model, data, explore keywords) of a study problem: a Fashion-MNIST model with real labels
    (search on the validation split, the front re-scored on the test split) or an architecture of
    ``benchmarks/archs.py`` with the agreement metric on its synthetic inputs."""
    if name in FASHION:
        from benchmarks import fashion_mnist, resnet20_fashion

        if name == "lenet5_fashion":
            model, val = fashion_mnist.load(split="val")
        else:
            model, val = resnet20_fashion.load(split="val")
        return model, val, {"test_data": fashion_mnist.split("test")}
    from benchmarks.archs import build

    model, (x, _) = build(name, samples=args.samples, size=args.size, seed=0)
    return model, x, {"metric": "agreement", "subset": None, "batch_size": args.batch_size}


def count_forwards(wsx) -> dict:
    """Candidates x samples per scoring call (``Scored.samples``: all of the call's samples, or those
    a rejected candidate saw), counted alike for old and new code, with the forwards that order the
    samples by a candidate's margins; new code also counts them itself
    (``result.extras["sample_forwards"]``, without the baselines)."""
    counted = {"total": 0}
    cls = wsx.backend.Backend
    inner = cls.score_detailed

    def score_detailed(self, population, subset=None, **kw):
        out = inner(self, population, subset, **kw)
        counted["total"] += sum(int(s.samples) for s in out)
        return out

    cls.score_detailed = score_detailed
    margins = getattr(cls, "sample_margins", None)
    if margins is not None:  # a candidate's margins (Problem.order_samples_by) are one forward of it
        def sample_margins(self, *args, **kw):
            out = margins(self, *args, **kw)
            counted["total"] += len(out) if kw.get("weights") and out is not None else 0
            return out

        cls.sample_margins = sample_margins
    return counted


def _interrupt(*_):
    raise KeyboardInterrupt


def child(name: str, variant: str, args) -> dict:
    """One exploration in this process (started by ``run_one`` with the variant's code first on the path)."""
    import wsx

    model, data, kw = problem(name, args)
    vmap = args.vmap if variant == "new" else "auto"  # the old side runs its own defaults
    if vmap != "auto":  # one path for every population, no timing
        from wsx.engine import make_backend

        kw["backend"] = make_backend(model, data, "torch", metric=kw.pop("metric", None),
                                     batch_size=kw.pop("batch_size", 256), vmap=vmap == "stacked")
    restarts = args.restarts if variant == "new" else 0
    kicks = args.kicks if variant == "new" else 0
    more = {k: v for k, v in (("restarts", restarts), ("kicks", kicks)) if v}  # more descents: another run
    if more:  # the new side's DivideAndConquer(restarts=..., kicks=...)
        kw["strategy"] = "divide-and-conquer:" + ",".join(f"{k}={v}" for k, v in more.items())
    counted = count_forwards(wsx)  # the same count for both variants (the baselines' scorings included)
    sessions, before = None, []
    if args.journal:
        tag = ("" if vmap == "auto" else f"-{vmap}") + "".join(f"-{k}{v}" for k, v in more.items())  # another run
        kw["out"] = Path(args.journal) / f"{name}-{variant}-seed{args.seed}{tag}"
        sessions = kw["out"] / "sessions.json"
        before = json.loads(sessions.read_text()) if sessions.exists() else []
        signal.signal(signal.SIGTERM, _interrupt)  # stop as Ctrl-C would: the model restored, the journal kept
    t, cpu = time.perf_counter(), time.process_time()
    try:
        r = wsx.explore(model, data, target="mlperf-heavy", progress=False, seed=args.seed, threads=args.threads or None,
                        time_limit=args.time_limit, **kw)
    finally:  # a stopped run's share of the work, added to the next session's
        this = {"wall": time.perf_counter() - t, "cpu": time.process_time() - cpu, "forwards": counted["total"]}
        if sessions is not None:
            sessions.parent.mkdir(parents=True, exist_ok=True)
            sessions.write_text(json.dumps(before + [this]))
    wall = sum(s["wall"] for s in before) + this["wall"]
    cpu = sum(s["cpu"] for s in before) + this["cpu"]
    counted["total"] += sum(s["forwards"] for s in before)
    best = r.best()
    layerwise = sum(1 for c in r.history if c.origin.startswith("layer-wise"))
    forwards = dict(counted, own=r.extras.get("sample_forwards"))
    return {"arch": name, "variant": variant, "samples": args.samples if name not in FASHION else None,
            "size": args.size if name not in FASHION else None, "layers": len(r.layers), "scorings": r.scorings,
            "layerwise_scorings": layerwise, "combination_scorings": r.scorings - layerwise,
            "sample_forwards": forwards, "rejected": r.extras.get("rejected", 0),
            "sample_orders": r.extras.get("sample_orders", 0),
            "vmap_choice": r.extras.get("vmap_choice"),  # timed: the path can depend on it
            "vmap": vmap, "restarts": restarts, "kicks": kicks, "descents": descents(r),
            "kick_ends": [k["best"] for k in r.extras.get("knapsack", {}).get("kicks", [])],
            "wall": wall, "cpu": cpu, "timings": r.timings, "stop_reason": r.settings.get("stop_reason", ""),
            "best_cr": best.compression_rate if best else None,
            "best_value": best.accuracy if best else None,
            "best_test_value": best.test_accuracy if best else None,
            "front": [[c.compression_rate, c.accuracy, c.meets_target, c.test_accuracy] for c in r.front],
            "wsx": wsx.__file__}


def descents(r) -> list:
    """The best CR (search data) each descent of divide-and-conquer's knapsack reached: the first
    (with the bisection and rounds before it), then each restart's, in order (kicks apart: ``kick_ends``);
    empty for other searches."""
    starts = [i for i, c in enumerate(r.history) if c.origin == "knapsack:restart"
              and (i == 0 or r.history[i - 1].origin != "knapsack:restart")]
    ends = []
    for a, b in zip([0] + starts, starts + [len(r.history)]):
        legal = [c.compression_rate for c in r.history[a:b] if c.meets_target
                 and c.origin.startswith("knapsack") and c.origin not in ("knapsack:ladder", "knapsack:kick")]
        ends.append(max(legal, default=None))
    return ends if any(e is not None for e in ends) else []


def run_one(arch: str, variant: str, args) -> dict:
    sys.path.insert(0, str(HERE))
    from _code import child_env

    cmd = [sys.executable, __file__, "--child", arch, variant, "--samples", str(args.samples), "--size",
           str(args.size), "--batch-size", str(args.batch_size), "--threads", str(args.threads), "--seed", str(args.seed),
           "--vmap", args.vmap, "--restarts", str(args.restarts), "--kicks", str(args.kicks)]
    if args.time_limit:
        cmd += ["--time-limit", str(args.time_limit)]
    if args.journal:
        cmd += ["--journal", args.journal]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE,
                         env=child_env(args.old_commit if variant == "old" else args.new_commit))
    line = next((x for x in out.stdout.splitlines()[::-1] if x.startswith("{")), None)
    if out.returncode or line is None:
        raise SystemExit(f"{arch} {variant} failed:\n{out.stderr[-3000:]}")
    return json.loads(line)


def _label(r: dict, seed: bool = True) -> str:
    label = r["arch"] if r["samples"] is None else f"{r['arch']} ({r['samples']} @ {r['size']})"
    label += f", seed {r['seed']}" if seed and r.get("seed") else ""
    label += f", vmap {r['vmap']}" if r.get("vmap", "auto") != "auto" else ""
    label += f", restarts {r['restarts']}" if r.get("restarts") else ""
    label += f", kicks {r['kicks']}" if r.get("kicks") else ""
    return label + (", wsx's threads" if r.get("threads") == 0 else "")


def _cpu(r: dict) -> str:
    return "" if r.get("cpu") is None else f"{r['cpu']:.0f}"


def _ratio(old: dict, new: dict) -> str:
    return f"{old['cpu'] / new['cpu']:.1f}x" if old.get("cpu") and new.get("cpu") else ""


def _not_worse(old: dict, new: dict) -> bool:
    """New's best CR at least old's (a run without a legal candidate counts as CR 0)."""
    return (new["best_cr"] or 0.0) >= (old["best_cr"] or 0.0) - 1e-9


def pair(rows: list[dict], label: str) -> tuple[dict | None, dict | None, str]:
    """(latest old row, latest new row, whether one command ran both) for a problem."""
    last = {r["variant"]: r for r in rows if _label(r) == label}
    old, new = last.get("old"), last.get("new")
    together = old is not None and new is not None and old["command"] == new["command"]
    return old, new, "one run" if together else "separate runs"


def table(rows: list[dict]) -> list[str]:
    lines = ["| problem | variant | layers | scorings (layer-wise + combination) | sample-forwards | rejected | wall s | CPU s "
             "| best CR | its metric (search data / test) | stop |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        cr = f"{r['best_cr']:.3f}" if r["best_cr"] else "none"
        value = "" if r["best_value"] is None else f"{r['best_value']:.4f}"
        if r.get("best_test_value") is not None:
            value += f" / {r['best_test_value']:.4f}"
        code = ", ".join(filter(None, [r["commit"], (r.get("vmap_choice") or {}).get("chosen")]))
        lines.append(f"| {_label(r)} | {r['variant']} ({code}) | {r['layers']} | {r['scorings']} "
                     f"({r['layerwise_scorings']} + {r['combination_scorings']}) | {r['sample_forwards']['total']} | "
                     f"{r['rejected']} | {r['wall']:.0f} | {_cpu(r)} | {cr} | {value} | {r['stop_reason'] or 'done'} |")
    for label in dict.fromkeys(_label(r) for r in rows):
        old, new, run = pair(rows, label)
        if old and new:
            cr = "equal or better" if _not_worse(old, new) else "worse"
            lines.append(f"| {label} | old / new ({run}) | | {old['scorings'] / new['scorings']:.1f}x | "
                         f"{old['sample_forwards']['total'] / max(new['sample_forwards']['total'], 1):.1f}x | | "
                         f"{old['wall'] / new['wall']:.1f}x | {_ratio(old, new)} | {cr} | | |")
    return lines


def seed_pairs(rows: list[dict]) -> dict[str, dict[int, tuple[dict, dict]]]:
    """Per problem (its label without the seed): seed -> (old, new) of the latest command that ran both
    defaults on that seed, for problems run so on two seeds or more."""
    found: dict[str, dict[int, tuple[dict, dict]]] = {}
    for r in rows:
        if r["variant"] != "new":
            continue
        old = next((o for o in rows if o["variant"] == "old" and o["command"] == r["command"]
                    and _label(o) == _label(r)), None)
        if old is not None:
            found.setdefault(_label(r, seed=False), {})[r.get("seed") or 0] = (old, r)
    return {k: dict(sorted(v.items())) for k, v in found.items() if len(v) >= 2}


def seed_table(groups: dict) -> list[str]:
    """Best CR over seeds, both defaults run by one command per seed: a single seed's CR moves with the
    scoring subset, so a difference is read against the spread."""
    if not groups:
        return []
    lines = ["", "Best CR over seeds (each seed's old and new from one command):", "",
             "| problem | seeds | old: mean (min-max) | new: mean (min-max) | new >= old | new - old: mean (min-max) |",
             "|---|---:|---|---|---:|---|"]
    for label, pairs in groups.items():
        old = [o["best_cr"] or 0.0 for o, _ in pairs.values()]
        new = [n["best_cr"] or 0.0 for _, n in pairs.values()]
        diff = [b - a for a, b in zip(old, new)]
        wins = sum(_not_worse(o, n) for o, n in pairs.values())

        def spread(v):
            return f"{sum(v) / len(v):.2f} ({min(v):.2f}-{max(v):.2f})"
        lines.append(f"| {label} | {len(pairs)} | {spread(old)} | {spread(new)} | {wins} of {len(pairs)} | "
                     f"{sum(diff) / len(diff):+.2f} ({min(diff):+.2f} to {max(diff):+.2f}) |")
    return lines


def seed_figures(groups: dict, out: Path) -> list[str]:
    """One figure per problem: each seed's best CR, old and new, with the means."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    for label, pairs in groups.items():
        seeds = list(pairs)
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        for i, (variant, color) in enumerate((("old", "tab:gray"), ("new", "tab:blue"))):
            values = [pair[i]["best_cr"] or 0.0 for pair in pairs.values()]
            commit = ", ".join(dict.fromkeys(pair[i]["commit"] for pair in pairs.values()))
            ax.plot(seeds, values, "o", color=color, label=f"{variant} ({commit})")
            ax.axhline(sum(values) / len(values), color=color, ls="--", lw=1)
        ax.set_xlabel("the exploration's seed (with subset < 1 it draws the scoring subset)")
        ax.set_ylabel("best CR meeting the target")
        ax.set_xticks(seeds)
        ax.set_title(f"{label}: each seed's best CR (dashed: mean)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.22))  # off the points
        fig.tight_layout()
        name = "seeds-" + label.split(" ")[0].strip(",") + ".png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        names.append(f"![{label}]({name})")
    return [""] + names if names else []


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default="mobilenet_v2,resnet18")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--order", default="old,new")
    p.add_argument("--time-limit", type=float, default=None)
    p.add_argument("--old-commit", default="52abe66")
    p.add_argument("--new-commit", default=None, help="run 'new' from this commit (default: this checkout)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run; 0: wsx's own choice (its default)")
    p.add_argument("--vmap", choices=("auto", "stacked", "loop"), default="auto",
                   help="the new side's population path (torch): 'auto' times both on the first population")
    p.add_argument("--restarts", type=int, default=0,
                   help="the new side's descent restarts (divide-and-conquer's restarts; default 0, its default)")
    p.add_argument("--kicks", type=int, default=0,
                   help="the new side's kicks (divide-and-conquer's kicks; default 0, its default)")
    p.add_argument("--seed", type=int, default=0, help="the exploration's seed (its scoring subset among others)")
    p.add_argument("--out", default=str(HERE / "study"))
    p.add_argument("--journal", default=None, help="keep each run's journal under this folder: a stopped run resumes")
    p.add_argument("--merge", default=None, help="add the rows of another study.json (another --out) and rewrite the table")
    p.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child, args)))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "study.json"
    rows = json.loads(path.read_text()) if path.exists() else []
    command = "python benchmarks/scale/study.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.merge:
        rows += json.loads(Path(args.merge).read_text())
        path.write_text(json.dumps(rows, indent=1))
        args.archs = ""
    commands = list(dict.fromkeys(r["command"] for r in rows))
    for arch in filter(None, args.archs.split(",")):
        for variant in args.order.split(","):
            row = run_one(arch, variant, args)
            row["command"] = command
            row["load"] = os.getloadavg()[0]
            row["commit"] = args.old_commit if variant == "old" else (args.new_commit or "checkout")
            row["seed"] = args.seed
            row["threads"] = args.threads
            rows = [r for r in rows if (r["arch"], r["variant"], r["samples"], r["size"], r.get("seed", 0),
                                        r.get("vmap", "auto"), r.get("restarts", 0), r.get("kicks", 0)) !=
                    (row["arch"], variant, row["samples"], row["size"], args.seed, row["vmap"], row["restarts"],
                     row["kicks"])] + [row]
            path.write_text(json.dumps(rows, indent=1))
            print(json.dumps({k: v for k, v in row.items() if k != "front"}), flush=True)
    lines = ["# Old vs new defaults of divide-and-conquer (mlperf-heavy)", "", "Commands:", ""]
    lines += [f"- `{c}`" for c in dict.fromkeys(commands + [r["command"] for r in rows])] + [""] + table(rows)
    groups = seed_pairs(rows)
    lines += seed_table(groups) + seed_figures(groups, out)
    (out / "study.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
