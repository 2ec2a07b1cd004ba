"""Table 6.1 rerun: gather the runs of ``benchmarks/table61.py`` into TABLE61.md.

    python -m benchmarks.table61_report

(from the repository root). Reads every ``runs.csv`` under
``benchmarks/strategies/results/table61-<problem>-<settings>/`` (the runner's output; a setting may
be run in parts, one folder per group of approaches), and rewrites the part of
``benchmarks/strategies/results/TABLE61.md`` between the ``generated`` markers: per problem and
setting, mean [95 % t-interval] over seeds per approach and budget, the thesis' Table 6.1 beside
it, and Welch intervals of "IV minus V" and of the best approach against each other one. The text
around the markers is kept.
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "strategies" / "results"
START, END = "<!-- generated:start -->", "<!-- generated:end -->"
PROBLEMS = ("digits", "fashion")
SETTINGS = ("thesis", "defaults")
# Thesis Table 6.1 (MobileNetV2 / ImageNet, one run each, no budget) and what its Figure 6.1 shows.
THESIS = {
    "I": ("Greedy SO (proxy)", 7874, "04:51", "lowest AL of all, low CR"),
    "II": ("Greedy MO", 56322, "32:51", "front not competitive"),
    "III": ("Divide & Conquer", 14352, "08:35", "front mostly outside the quality target"),
    "IV": ("Divide & Conquer (regr.)", 10268, "06:19", "about 20 % higher CR than V at the target; best at low AL"),
    "V": ("NSGA-II", 10098, "06:23", "second to IV"),
}

# specs of the committed thesis runs (main 52abe66: the log k grid and the scanning layer-wise step were
# the defaults then, so the runner did not name them)
AS_RUN = {"thesis": {
    "divide-and-conquer:pop_size=100,generations=100,patience=null": "III",
    "divide-and-conquer:combination=regression,doe=kmeans,surrogate_pop_size=500,surrogate_generations=200,rounds=1":
        "IV"}, "defaults": {}}


def load(problem: str, settings: str):
    """(runs with an ``approach`` column, list of the parts' meta) or (None, []) when nothing ran."""
    import pandas as pd

    from benchmarks.table61 import APPROACHES

    folder = RESULTS / f"table61-{problem}-{settings}"
    parts = sorted(folder.glob("*/runs.csv")) + sorted(folder.glob("runs.csv"))
    if not parts:
        return None, []
    runs = pd.concat([pd.read_csv(p) for p in parts], ignore_index=True)
    ids = {**AS_RUN[settings], **{spec: a for a, spec in APPROACHES[settings].items()}}
    runs["approach"] = runs["strategy"].map(ids)
    runs = runs.sort_values(["approach", "budget", "seed"], key=lambda s: s.map(_order) if s.name == "approach" else s)
    return runs, [json.loads((p.parent / "meta.json").read_text()) for p in parts]


# beyond the thesis: wsx's default strategy, run with the defaults settings
EXTRA = {"D": "divide and conquer, knapsack combination and a descent (wsx's default)"}


def _order(a: str) -> int:
    return [*THESIS, *EXTRA].index(a)


def welch(a, b) -> tuple[float, float, float]:
    """Mean of a minus mean of b and its 95 % Welch interval (nan when both are constant)."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2 or (a.std() == 0 and b.std() == 0):
        return diff, float("nan"), float("nan")
    with warnings.catch_warnings():  # near-constant samples (a greedy run repeats itself) warn of precision
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    return diff, float(ci.low), float(ci.high)


def verdict(diff: float, low: float, high: float) -> str:
    if low != low:
        return "≥" if diff >= 0 else "<"
    if low > 0:
        return "> (interval excludes 0)"
    if high < 0:
        return "< (interval excludes 0)"
    return "≈ (interval spans 0)"


def section(problem: str, settings: str) -> list[str]:
    from wsx.benchmark import MEASURES, format_ci, summarise

    runs, metas = load(problem, settings)
    title = f"### {problem}, {settings} settings"
    if runs is None:
        return [title, "", "Not run.", ""]
    metas = sorted(metas, key=lambda m: m["budgets"])
    commands = list(dict.fromkeys(m["command"] for m in metas))
    lines = [title, "", "Made with " + ", ".join(f"`{c}`" for c in commands) + "; each part ended:", ""]
    lines += [f"- budget{'s' * (len(m['budgets']) > 1)} {', '.join(map(str, m['budgets']))}: {m['date']}, load {m['load_before'][0]:.1f} → "
              f"{m['load_after'][0]:.1f}" for m in metas]
    lines += ["", f"Target {metas[0]['target']} (max loss {metas[0]['max_loss']:.3f} pp), best CR / HV / IGD on "
              f"{'the test split' if metas[0]['test_data'] else 'the search data (no test split)'}, IGD against the "
              f"{metas[0]['reference']}.", ""]
    summary = summarise(runs.drop(columns="strategy").rename(columns={"approach": "strategy"}))
    lines += ["| approach | budget | seeds | best CR | HV | IGD | scorings | wall [s] |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for _, r in summary.iterrows():
        cells = [format_ci(r[m], r[f"{m}_low"], r[f"{m}_high"], f) for m, f in zip(MEASURES, (".2f", ".3f", ".3f", ".0f", ".1f"))]
        lines.append(f"| {r['strategy']} | {r['budget']} | {r['runs']} | " + " | ".join(cells) + " |")
    lines += ["", "Best CR, by budget: the best approach (highest mean) against each other one (difference of "
              "means [95 % Welch interval]); IV − V on best CR and HV.", ""]
    lines += ["| budget | best | best − others (best CR) | IV − V best CR | IV − V HV |", "|---:|---|---|---|---|"]
    for budget, g in runs.groupby("budget"):
        by = {a: gg for a, gg in g.groupby("approach")}
        best = max(by, key=lambda a: by[a]["best_cr"].mean())
        others = "; ".join(f"{a}: {_fmt(welch(by[best]['best_cr'], by[a]['best_cr']))}" for a in sorted(by, key=_order)
                           if a != best)
        iv_v = [(_fmt(welch(by["IV"][m], by["V"][m])) + " " + verdict(*welch(by["IV"][m], by["V"][m])).split(" ")[0])
                if {"IV", "V"} <= set(by) else "—" for m in ("best_cr", "hv")]
        lines.append(f"| {budget} | {best} | {others} | {iv_v[0]} | {iv_v[1]} |")
    return lines + [""]


def _fmt(d: tuple[float, float, float]) -> str:
    diff, low, high = d
    return f"{diff:+.2f}" if low != low else f"{diff:+.2f} [{low:+.2f}, {high:+.2f}]"


def generated() -> str:
    lines = ["## The thesis' Table 6.1 (MobileNetV2 / ImageNet, one run per approach, no budget)", "",
             "| id | approach | scorings | total [hh:mm] | Figure 6.1 |", "|---|---|---:|---:|---|"]
    lines += [f"| {a} | {n} | {s} | {t} | {f} |" for a, (n, s, t, f) in THESIS.items()]
    lines += ["", "## This rerun", ""]
    lines += [f"Beyond the thesis, the defaults settings also run {a}: {what}." for a, what in EXTRA.items()] + [""]
    for problem in PROBLEMS:
        for settings in SETTINGS:
            lines += section(problem, settings)
    return "\n".join(lines)


def main() -> int:
    sys.path.insert(0, str(HERE.parent))
    path = RESULTS / "TABLE61.md"
    text = path.read_text() if path.exists() else f"# Table 6.1, re-run\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(f"{head}{START}\n{generated()}\n{END}{tail}")
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
