"""Head-to-head strategy benchmark: same problem, budget, seeds and clusterer for every strategy.

Writes, into ``out``:

- ``runs.csv``: one row per (strategy, seed): the thesis' Table 6.1 columns (scoring count, scoring,
  clustering and total seconds, overhead %) plus front quality — hypervolume, best CR meeting the
  target measured on all test data (and its AL), IGD to the exhaustive front where one exists;
- ``fronts.csv``: every run's final front, measured on all test data;
- ``results.md``: the table averaged over seeds, with the exact command, and notes;
- ``fronts.png``: the fronts of the first seed on one chart, with the exhaustive front.

Front quality is computed on test measurements (AL in pp, CR): hypervolume with pymoo's HV against
the fixed reference point (AL = the target's allowed loss, CR = 1), i.e. the area a front dominates
inside the target; IGD with pymoo's IGD against the exhaustive front's part that meets the target,
both normalised to that front's ranges.
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import problems as problems_mod

TABLE_COLUMNS = ["strategy", "runs", "scorings", "scoring_s", "clustering_s", "overhead_pct", "total_s",
                 "hv", "best_cr", "best_cr_al", "igd"]


@dataclass
class Spec:
    """A strategy with options, written ``name:key=value:key=value`` (e.g.
    ``greedy-filter:inertia_filter_ratio=0.05``)."""

    text: str
    name: str
    params: dict

    @classmethod
    def parse(cls, text: str) -> "Spec":
        name, *opts = text.strip().split(":")
        params = {}
        for opt in opts:
            key, _, value = opt.partition("=")
            params[key] = _value(value)
        return cls(text.strip(), name, params)

    def build(self):
        import wsx

        return wsx.plugins.get("strategy", self.name)(**self.params)


def _value(text: str) -> Any:
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


# -- front quality ----------------------------------------------------------------------------------
def test_points(front) -> np.ndarray:
    """(AL, CR) of a front measured on test data (falls back to the full-data measurement)."""
    pts = [(c.test_accuracy_loss if c.test_accuracy_loss is not None else c.accuracy_loss, c.compression_rate)
           for c in front]
    return np.asarray(pts, dtype=float).reshape(-1, 2)


def hypervolume(points: np.ndarray, max_al: float) -> float:
    """pymoo HV of (AL, -CR) against the reference (max_al, -1): the area dominated inside the target."""
    from pymoo.indicators.hv import HV

    pts = points[(points[:, 0] < max_al) & (points[:, 1] > 1.0)]
    if pts.size == 0:
        return 0.0
    return float(HV(ref_point=np.array([max_al, -1.0]))(np.column_stack([pts[:, 0], -pts[:, 1]])))


def igd(points: np.ndarray, reference: np.ndarray, max_al: float) -> float:
    """pymoo IGD from the reference front's legal part to the run's legal points (normalised)."""
    from pymoo.indicators.igd import IGD

    ref = reference[reference[:, 0] <= max_al]
    pts = points[points[:, 0] <= max_al]
    if ref.size == 0:
        return float("nan")
    if pts.size == 0:
        return float("inf")
    to_min = lambda p: np.column_stack([p[:, 0], -p[:, 1]])  # noqa: E731
    return float(IGD(to_min(ref), zero_to_one=True)(to_min(pts)))


def best_cr(points: np.ndarray, max_al: float) -> tuple[float, float]:
    ok = points[points[:, 0] <= max_al + 1e-12]
    if ok.size == 0:
        return float("nan"), float("nan")
    i = int(np.argmax(ok[:, 1]))
    return float(ok[i, 1]), float(ok[i, 0])


def load_reference(path: Path) -> np.ndarray | None:
    """Exhaustive front (test AL, CR) from ``exhaustive.py``'s CSV, or None."""
    if not path.exists():
        return None
    import pandas as pd

    df = pd.read_csv(path)
    return df[["test_accuracy_loss", "compression_rate"]].to_numpy(dtype=float)


# -- running ----------------------------------------------------------------------------------------
def run_one(problem, spec: Spec, *, budget: int | None, seed: int, clusterer, target: str,
            time_limit: float | None, bits: int) -> tuple[dict, Any]:
    import wsx

    result = wsx.explore(problem.model, problem.data, strategy=spec.build(), budget=budget, seed=seed,
                         subset=problem.subset, test_data=problem.test_data, clusterer=clusterer,
                         target=target, time_limit=time_limit, bits=bits, progress=False)
    t = result.timings
    base = result.baseline.test_accuracy if result.baseline.test_accuracy is not None else result.baseline.accuracy
    max_al = 100.0 * (1.0 - result.settings["target_fraction"]) * base
    pts = test_points(result.front)
    cr, al = best_cr(pts, max_al)
    row = {"strategy": spec.text, "seed": seed, "budget": budget, "scorings": result.scorings,
           "scoring_s": t["scoring"], "clustering_s": t["clustering"], "final_scoring_s": t["final_scoring"],
           "overhead_s": t["overhead"], "overhead_pct": 100.0 * t["overhead"] / max(t["total"], 1e-12),
           "total_s": t["total"], "front_size": len(result.front), "hv": hypervolume(pts, max_al),
           "best_cr": cr, "best_cr_al": al, "max_al": max_al, "test_baseline": base,
           "stop_reason": result.settings.get("stop_reason", ""), "clusterer": result.clusterer}
    greedy = result.extras.get("greedy")
    if greedy:  # Algorithm 1/2's single answer, as thesis Table 4.3 reports it (search-time measurement)
        from wsx.problem import knob_key

        final = {knob_key(c.knobs): c for c in result.history}.get(knob_key(greedy["knobs"]))
        if final is not None:
            row.update(solution_al=final.accuracy_loss, solution_cr=final.compression_rate)
    reg = result.extras.get("regression")
    if reg:
        row.update(r2=reg.get("r2"), rmse=reg.get("rmse"), mae=reg.get("mae"), doe=reg.get("doe"))
    return row, result


def run(problem_name: str, strategies: list[str], *, budget: int | None, seeds: list[int], out: Path,
        target: str = "mlperf-heavy", clusterer: str | None = None, time_limit: float | None = None,
        bits: int = 32, command: str = "", subset: Any = "default", log=print) -> "Any":
    """Run every strategy for every seed on one problem; write runs.csv, fronts.csv, results.md and
    fronts.png into ``out``. Returns the per-run DataFrame."""
    import pandas as pd

    from wsx.engine import resolve_clusterer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    problem = problems_mod.load(problem_name)
    if subset != "default":
        problem.subset = subset
    clus = resolve_clusterer(clusterer, 0)  # one clustering seed for all runs: only the search differs
    specs = [Spec.parse(s) for s in strategies]
    reference = load_reference(problem.exhaustive_front)
    load_before = os.getloadavg()
    rows, fronts = [], []
    for spec in specs:
        for seed in seeds:
            t0 = time.perf_counter()
            row, result = run_one(problem, spec, budget=budget, seed=seed, clusterer=clus, target=target,
                                  time_limit=time_limit, bits=bits)
            pts = test_points(result.front)
            row["igd"] = igd(pts, reference, row["max_al"]) if reference is not None else float("nan")
            rows.append(row)
            for c, (al, cr) in zip(result.front, pts):
                fronts.append({"strategy": spec.text, "seed": seed, "test_accuracy_loss": al,
                               "compression_rate": cr, "search_accuracy_loss": c.accuracy_loss,
                               "knobs": json.dumps(c.knobs, sort_keys=True)})
            log(f"{spec.text} seed {seed}: {row['scorings']} scorings, best CR {row['best_cr']:.2f} "
                f"(AL {row['best_cr_al']:.2f} pp), HV {row['hv']:.3f}, IGD {row['igd']:.3f}, "
                f"{time.perf_counter() - t0:.0f} s")
    runs = pd.DataFrame(rows)
    runs.to_csv(out / "runs.csv", index=False)
    pd.DataFrame(fronts).to_csv(out / "fronts.csv", index=False)
    meta = {"problem": problem_name, "note": problem.note, "subset": problem.subset, "budget": budget,
            "seeds": seeds, "target": target,
            "clusterer": clus.name, "bits": bits, "command": command, "load_before": load_before,
            "load_after": os.getloadavg(), "cpus": os.cpu_count(), "machine": platform.platform(),
            "date": time.strftime("%Y-%m-%d %H:%M"), "reference": str(problem.exhaustive_front.name)
            if reference is not None else None}
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    write_markdown(runs, meta, out / "results.md")
    plot_fronts(pd.DataFrame(fronts), reference, runs, meta, out / "fronts.png")
    return runs


def summary(runs) -> "Any":
    """Mean over seeds per strategy, in the order the strategies were given."""
    order = list(dict.fromkeys(runs["strategy"]))
    agg = runs.groupby("strategy", sort=False).agg(
        runs=("seed", "size"), scorings=("scorings", "mean"), scoring_s=("scoring_s", "mean"),
        clustering_s=("clustering_s", "mean"), overhead_pct=("overhead_pct", "mean"), total_s=("total_s", "mean"),
        hv=("hv", "mean"), best_cr=("best_cr", "mean"), best_cr_min=("best_cr", "min"),
        best_cr_max=("best_cr", "max"), best_cr_al=("best_cr_al", "mean"), igd=("igd", "mean"))
    return agg.loc[order].reset_index()


def write_markdown(runs, meta: dict, path: Path) -> None:
    s = summary(runs)
    lines = [f"# Strategy benchmark: {meta['problem']}", "",
             f"Made with: `{meta['command']}`" if meta["command"] else "", "",
             f"{meta['date']}, {meta['machine']}, {meta['cpus']} CPUs shared with other jobs "
             f"(load average {meta['load_before'][0]:.1f} before, {meta['load_after'][0]:.1f} after: "
             "timings include that contention). "
             f"Budget {meta['budget']} scorings, seeds {meta['seeds']}, target {meta['target']}, "
             f"B = {meta['bits']} bits, clusterer {meta['clusterer']} (seed 0 for every run), search subset "
             f"{meta['subset']}. {meta['note']}.", "",
             "Shape of thesis Table 6.1, mean over seeds. Best CR: highest CR meeting the target on all test "
             "data (min-max over seeds), with its test AL. HV: pymoo hypervolume of (AL, CR) against "
             "(allowed AL, CR 1). IGD: pymoo IGD (normalised) to the legal part of the exhaustive front"
             + (f" ({meta['reference']})." if meta["reference"] else " (none for this problem)."), "",
             "| id | strategy | scorings | scoring [s] | clustering [s] | overhead | total [s] | HV | best CR "
             "(min-max) | AL at best CR [pp] | IGD |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for i, r in s.iterrows():
        lines.append(f"| {i + 1} | `{r.strategy}` | {r.scorings:.0f} | {r.scoring_s:.1f} | {r.clustering_s:.1f} | "
                     f"{r.overhead_pct:.1f} % | {r.total_s:.1f} | {r.hv:.3f} | {r.best_cr:.2f} "
                     f"({r.best_cr_min:.2f}-{r.best_cr_max:.2f}) | {r.best_cr_al:.2f} | {r.igd:.3f} |")
    if "solution_al" in runs and runs["solution_al"].notna().any():
        g = runs[runs["solution_al"].notna()].groupby("strategy", sort=False).agg(
            scorings=("scorings", "mean"), scoring_s=("scoring_s", "mean"), total_s=("total_s", "mean"),
            al=("solution_al", "mean"), cr=("solution_cr", "mean")).reset_index()
        lines += ["", "Greedy answers (thesis Table 4.3 shape: the single solution Algorithm 1/2 returns, "
                  "AL measured on the search data):", "",
                  "| strategy | scorings | scoring [s] | total [s] | AL [pp] | CR |", "|---|---:|---:|---:|---:|---:|"]
        for _, r in g.iterrows():
            lines.append(f"| `{r.strategy}` | {r.scorings:.0f} | {r.scoring_s:.1f} | {r.total_s:.1f} | {r.al:.2f} | "
                         f"{r.cr:.2f} |")
    path.write_text("\n".join(lines) + "\n")


def plot_fronts(fronts, reference, runs, meta: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    if reference is not None:
        ref = reference[np.argsort(reference[:, 1])]
        ax.step(ref[:, 1], ref[:, 0], where="post", color="black", lw=1.2, label="exhaustive front (phi)")
    seed0 = min(runs["seed"])
    for name in dict.fromkeys(runs["strategy"]):
        f = fronts[(fronts["strategy"] == name) & (fronts["seed"] == seed0)].sort_values("compression_rate")
        if len(f):
            ax.plot(f["compression_rate"], f["test_accuracy_loss"], marker="o", ms=3, lw=1, label=name)
    max_al = float(runs["max_al"].iloc[0])
    ax.axhline(max_al, color="red", ls="--", lw=1, label=f"{meta['target']} (AL {max_al:.2f} pp)")
    ax.set_ylim(-0.5, 3 * max_al + 0.5)
    ax.set_xlabel("compression rate")
    ax.set_ylabel("accuracy loss on test data [pp]")
    ax.set_title(f"{meta['problem']}: fronts at budget {meta['budget']} (seed {seed0})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
