"""Thesis Table 6.1 head to head: approaches I-V (and wsx's default, D) on a benchmark problem, over
budgets and seeds.

    python -m benchmarks.table61 --problem digits --budgets 500,1000,1500,3000 --seeds 5 --settings thesis
    python -m benchmarks.table61 --problem fashion --budgets 500,1000,1500,3000 --seeds 5 --settings defaults

(from the repository root). Runs ``wsx.bench`` on the problem of ``benchmarks/strategies/problems.py``
with the exhaustive front as the IGD reference, and writes its files (bench.csv, runs.csv, fronts.csv,
curves.csv, meta.json, report.html) plus results.md into ``--out`` (default
``benchmarks/strategies/results/table61-<problem>-<settings>``), one folder ``budget-<B>`` per budget
when there are several (each written as soon as its budget is done; scores are shared across them).

Approaches (thesis §6.1): I greedy with the inertia filter (Algorithm 2), II multi-objective greedy
(Algorithm 3), III divide and conquer with every NSGA-II candidate scored, IV divide and conquer with
a regression surrogate, V pure NSGA-II. ``--settings thesis`` uses the thesis' parameters (filter 15 %,
III and V P = 100 for 100 generations, IV P = 500 for 200 generations on the surrogate, the
surrogate fitted once and its front scored once as in the thesis (wsx refits in 3 rounds by default),
no early stop);
Every approach searches the thesis' k range (100 log-spaced values in [2, 1024] per layer) and III
and IV scan every value in their layer-wise step. ``--settings defaults`` wsx's defaults for the
same strategies and approximation, plus D, wsx's default strategy as it is (divide and conquer with the
knapsack combination and a descent; beyond the thesis), so that the head to head judges the default.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROBLEMS = {"digits": "lenet5-digits", "fashion": "fashion-mnist"}
APPROACHES = {
    "thesis": {
        "I": "greedy-filter:inertia_filter_ratio=0.15",
        "II": "greedy-pareto:inertia_filter_ratio=0.15",
        "III": "divide-and-conquer:combination=scoring,layerwise=scan,pop_size=100,generations=100,patience=null",
        "IV": "divide-and-conquer:combination=regression,layerwise=scan,doe=kmeans,surrogate_pop_size=500,"
              "surrogate_generations=200,rounds=1",
        "V": "nsga2:pop_size=100,generations=100,patience=null",
    },
    "defaults": {
        "I": "greedy-filter",
        "II": "greedy-pareto",
        "III": "divide-and-conquer:combination=scoring",
        "IV": "divide-and-conquer:combination=regression",
        "V": "nsga2",
        "D": "divide-and-conquer",  # wsx's default (knapsack combination): what users get without settings
    },
}


# the thesis' k range: 100 log-spaced values in [2, 1024] per layer (wsx's default is a bit-width grid)
APPROXIMATION = {"thesis": "weight-sharing:k_grid=log", "defaults": "weight-sharing"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.table61", description=__doc__.split("\n\n")[0])
    parser.add_argument("--problem", choices=sorted(PROBLEMS), default="digits")
    parser.add_argument("--budgets", default="500,1000,1500,3000", help="comma-separated scorings per run")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    parser.add_argument("--settings", choices=sorted(APPROACHES), default="thesis")
    parser.add_argument("--approaches", default=None,
                        help="comma-separated subset of I-V (and D with --settings defaults); default: all of the settings'")
    parser.add_argument("--out", default=None)
    parser.add_argument("--label", default="", help="a line for results.md saying what this run is")
    args = parser.parse_args(argv)

    import wsx

    sys.path.insert(0, str(HERE.parent))
    from benchmarks.strategies.problems import bench_arguments

    name = PROBLEMS[args.problem]
    table = APPROACHES[args.settings]
    chosen = [a.strip() for a in args.approaches.split(",") if a.strip()] if args.approaches else list(table)
    unknown = [a for a in chosen if a not in table]
    if unknown:
        parser.error(f"--approaches {','.join(unknown)}: not in the {args.settings} settings; use some of {','.join(table)}")
    strategies = [table[a] for a in chosen]
    out = Path(args.out or HERE / "strategies" / "results" / f"table61-{args.problem}-{args.settings}")
    command = "python -m benchmarks.table61 " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    kwargs = bench_arguments(name)
    model, data = kwargs.pop("model"), kwargs.pop("data")
    budgets = [int(b) for b in args.budgets.split(",")]
    shared: dict = {}  # one score table for every budget: a longer run replays a shorter one's scorings
    for budget in budgets:  # one bench per budget, each saved when it ends: a run cut short keeps them
        part = out / f"budget-{budget}" if len(budgets) > 1 else out
        result = wsx.bench(model, data, strategies=strategies, budgets=[budget], seeds=args.seeds, out=part,
                           command=command, log=lambda m: print(m, flush=True), share_scores=shared,
                           approximation=APPROXIMATION[args.settings], **kwargs)
        write_results(part, result, name, args, chosen, strategies)
    return 0


def write_results(out: Path, result, name: str, args, chosen: list, strategies: list) -> None:
    """results.md as ``wsx.bench`` writes it, titled for the table, with the approaches' ids."""
    approaches = "Approaches: " + "; ".join(f"{a} `{s}`" for a, s in zip(chosen, strategies)) + "."
    text = result.page(title=f"Table 6.1 head to head: {name}, {args.settings} settings",
                       intro=[p for p in (args.label, approaches) if p],
                       names={s: f"{a}: `{s}`" for a, s in zip(chosen, strategies)})
    (out / "results.md").write_text(text)
    print(text, flush=True)


if __name__ == "__main__":
    sys.exit(main())
