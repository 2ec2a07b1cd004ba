"""How often a k that is not the largest of its index bit-width ends up on a phi or a final front, and what it buys.

    python benchmarks/scale/kgrid_analysis.py [--no-rerun] [--out benchmarks/scale/kgrid-analysis.md]

Within one index bit-width b = ceil(log2 k) a layer's size differs only by its codebook (k*B bits),
so the largest k of a bit-width in the layer's grid ("top-of-b") is the natural single candidate.
This script measures, with today's defaults (100 log-spaced k in [2, 1024], capped at the layer size):

1. final fronts: every point of every committed front (``benchmarks/strategies/results/*/fronts.csv``,
   every strategy and seed): the share of (point, layer) knobs that are not top-of-b, the share of
   points with at least one, and the CR such points lose when each such k is raised to the top of
   its bit-width (the size grows by the codebook entries only; the accuracy is not rescored, and a
   larger k rarely loses accuracy);
2. phi (divide-and-conquer's per-layer set: per bit-width the best-AL k meeting the target): the
   layer-wise step re-run on lenet5-digits and LeNet-5/Fashion-MNIST (``--no-rerun`` skips it), the
   share of phi members that are not top-of-b, whether top-of-b also met the target, and the layer
   bits the smaller k saves.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "strategies" / "results"


def bits(k: int) -> int:
    return max(int(k) - 1, 0).bit_length()


def layer_sizes(problem: str) -> dict[str, int]:
    from benchmarks.strategies import problems
    from wsx.engine import make_backend

    p = problems.load(problem)
    be = make_backend(p.model, None)
    try:
        return {x.name: x.size for x in be.layers()}
    finally:
        be.close()


def top_of_bits(sizes: dict[str, int]) -> dict[str, dict[int, int]]:
    """{layer: {bit-width: largest k of that bit-width in the layer's default grid}}."""
    from wsx_plugins.approximations.weight_sharing import log_k_range

    out = {}
    for name, size in sizes.items():
        tops: dict[int, int] = {}
        for k in log_k_range(100, 2, 1024, cap=size):
            tops[bits(k)] = max(tops.get(bits(k), 0), k)
        out[name] = tops
    return out


def size_bits(sizes: dict[str, int], knobs: dict[str, int], b: int = 32) -> int:
    from wsx.metrics import weight_sharing_bits

    return sum(weight_sharing_bits(sizes[n], min(int(knobs[n]), sizes[n]), b) if n in knobs else sizes[n] * b
               for n in sizes)


def fronts_table(problem_dirs: dict[str, list[Path]], sizes: dict, tops: dict) -> list[dict]:
    rows = []
    for problem, dirs in problem_dirs.items():
        total_base = sum(sizes[problem].values()) * 32
        per: dict[str, dict] = defaultdict(lambda: {"points": 0, "knobs": 0, "not_top": 0, "points_not_top": 0,
                                                    "cr_gain": []})
        for d in dirs:
            with open(d / "fronts.csv") as f:
                for r in csv.DictReader(f):
                    knobs = {k: int(v) for k, v in json.loads(r["knobs"]).items()}
                    strat = r["strategy"].split(":")[0]
                    for key in (strat, "all strategies"):
                        s = per[key]
                        s["points"] += 1
                        s["knobs"] += len(knobs)
                        low = {n: k for n, k in knobs.items() if k != tops[problem][n].get(bits(k), k)
                               and k < tops[problem][n].get(bits(k), k)}
                        s["not_top"] += len(low)
                        if low:
                            s["points_not_top"] += 1
                            raised = {**knobs, **{n: tops[problem][n][bits(k)] for n, k in low.items()}}
                            cr, cr_up = total_base / size_bits(sizes[problem], knobs), \
                                total_base / size_bits(sizes[problem], raised)
                            s["cr_gain"].append(100 * (cr / cr_up - 1))
        for strat, s in sorted(per.items(), key=lambda kv: (kv[0] != "all strategies", kv[0])):
            gains = s["cr_gain"]
            rows.append({"problem": problem, "strategy": strat, "front points": s["points"],
                         "knobs not top-of-b": f"{s['not_top']}/{s['knobs']} ({100 * s['not_top'] / max(s['knobs'], 1):.0f} %)",
                         "points with one": f"{s['points_not_top']}/{s['points']} ({100 * s['points_not_top'] / max(s['points'], 1):.0f} %)",
                         "CR bought, mean / max": (f"{sum(gains) / len(gains):.3f} % / {max(gains):.3f} %" if gains else "-")})
    return rows


def phi_table(problem: str, sizes: dict, tops: dict) -> tuple[list[dict], dict]:
    """Re-run divide-and-conquer's layer-wise step (budget: exactly that step) and inspect phi."""
    import wsx
    from benchmarks.strategies import problems

    p = problems.load(problem)
    strat = wsx.plugins.strategies()["divide-and-conquer"]()
    model = p.model
    layers = layer_sizes(problem)
    from wsx_plugins.approximations.weight_sharing import log_k_range

    first = sum(len(log_k_range(100, 2, 1024, cap=s)) for s in layers.values())
    result = wsx.explore(model, p.data, strategy=strat, subset=p.subset, budget=first, progress=False)
    rows = []
    for name, knobs in strat.phi_.items():
        scored = {c.knobs[name]: c for c in strat.layerwise_[name]}
        for k in knobs:
            top = tops[problem][name][bits(k)]
            if k >= top:
                rows.append({"problem": problem, "layer": name, "k": k, "top": top, "top_of_b": True})
                continue
            c, t = scored[k], scored.get(top)
            saved = (top - k) * 32
            rows.append({"problem": problem, "layer": name, "k": k, "top": top, "top_of_b": False,
                         "al_k": c.accuracy_loss, "al_top": t.accuracy_loss if t else None,
                         "top_meets": bool(t.meets_target) if t else None, "bits_saved": saved,
                         "layer_saving_pct": 100 * saved / (sizes[problem][name] * bits(k) + top * 32)})
    info = {"scorings": result.scorings, "subset": p.subset, "relaxed": list(strat.relaxed_)}
    return rows, info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-rerun", action="store_true", help="fronts only; do not re-run the layer-wise step")
    ap.add_argument("--out", type=Path, default=HERE / "kgrid-analysis.md")
    args = ap.parse_args(argv)

    problem_dirs: dict[str, list[Path]] = defaultdict(list)
    for d in sorted(RESULTS.iterdir()):
        if (d / "fronts.csv").exists() and (d / "meta.json").exists():
            problem_dirs[json.loads((d / "meta.json").read_text())["problem"]].append(d)
    sizes = {prob: layer_sizes(prob) for prob in problem_dirs}
    tops = {prob: top_of_bits(s) for prob, s in sizes.items()}
    front_rows = fronts_table(problem_dirs, sizes, tops)
    phi_rows, infos = [], {}
    if not args.no_rerun:
        for prob in problem_dirs:
            rows, infos[prob] = phi_table(prob, sizes, tops)
            phi_rows += rows

    cmd = "python benchmarks/scale/kgrid_analysis.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# Does a k below the top of its bit-width ever pay?", "", f"Command: `{cmd.strip()}`", "",
             "Grid: today's default, 100 log-spaced k in [2, 1024] capped at the layer size; top-of-b = the "
             "largest k of the grid with the same index bit-width b = ceil(log2 k). B = 32.", "",
             "## Final fronts (committed benchmark runs)", "",
             "Sources: " + ", ".join(f"`{d.relative_to(ROOT)}/fronts.csv`" for ds in problem_dirs.values() for d in ds)
             + ". Every front point of every strategy and seed. CR bought: the point's CR over its CR with every "
             "k below top-of-b raised to top-of-b (accuracy not rescored).", "",
             "| problem | strategy | front points | knobs not top-of-b | points with one | CR bought, mean / max |",
             "|---|---|---:|---:|---:|---:|"]
    for r in front_rows:
        lines.append("| " + " | ".join(str(r[c]) for c in ("problem", "strategy", "front points", "knobs not top-of-b",
                                                          "points with one", "CR bought, mean / max")) + " |")
    if phi_rows:
        lines += ["", "## phi (divide-and-conquer's layer-wise step, re-run with today's defaults)", ""]
        for prob, info in infos.items():
            lines.append(f"- {prob}: {info['scorings']} scorings, subset {info['subset']}, layers whose target "
                         f"was relaxed: {info['relaxed'] or 'none'}")
        lines += ["", "| problem | layer | phi size | not top-of-b | their k (top) | AL at k / at top (pp) | "
                  "top meets target | layer bits saved |", "|---|---|---:|---:|---|---|---|---|"]
        by = defaultdict(list)
        for r in phi_rows:
            by[(r["problem"], r["layer"])].append(r)
        for (prob, layer), rs in by.items():
            low = [r for r in rs if not r["top_of_b"]]
            lines.append(f"| {prob} | {layer} | {len(rs)} | {len(low)} | "
                         + ", ".join(f"{r['k']} ({r['top']})" for r in low) + " | "
                         + ", ".join(f"{r['al_k']:.2f} / {r['al_top']:.2f}" if r["al_top"] is not None else "-"
                                     for r in low) + " | "
                         + ", ".join(str(r["top_meets"]) for r in low) + " | "
                         + ", ".join(f"{r['bits_saved']} ({r['layer_saving_pct']:.2f} %)" for r in low) + " |")
        low = [r for r in phi_rows if not r["top_of_b"]]
        meets = [r for r in low if r["top_meets"]]
        saved = sorted(r["layer_saving_pct"] for r in low) or [0.0]
        lines += ["", f"Overall: {len(low)} of {len(phi_rows)} phi members are below the top of their bit-width; "
                  f"for {len(meets)} of them the top-of-b k met the target too. The layer bits the smaller k saves: "
                  f"median {saved[len(saved) // 2]:.2f} %, max {saved[-1]:.2f} % of the layer. phi keeps, per "
                  "bit-width, the best AL and on a tie the smaller layer, so where several k of a bit-width "
                  "reach the same AL (on a subset, AL moves in steps of one sample) it keeps the smallest: the "
                  "codebook saving counts most in small layers, where k*B is comparable to W*b."]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
