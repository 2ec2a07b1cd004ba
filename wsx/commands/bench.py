"""``wsx bench``: strategies head to head on one model and data, over budgets and seeds (wsx.bench)."""
from __future__ import annotations

import shlex
import sys

from wsx.benchmark import DEFAULT_STRATEGIES as STRATEGIES

from . import add_config, add_run_options, run_kwargs

DEFAULT_STRATEGIES = ",".join(STRATEGIES)
PROBLEMS = {"lenet5-digits": "the embedded LeNet-5 on the 540 held-out digits (search and measurement on "
                             "all of them)"}


def add_parser(sub):
    p = sub.add_parser(
        "bench", help="head-to-head strategy benchmark over budgets and seeds",
        description="Run strategies head to head on one model and data at the same budgets and seeds (the "
        "clusterer is built once, seed 0: only the search differs). Per strategy and budget it reports the "
        "mean and 95%% confidence interval over seeds of the best CR meeting the target (on --test-data when "
        "given), hypervolume, IGD (against --exhaustive-front, else the union of all runs' fronts), scorings "
        "and wall time, plus anytime curves; writes bench.csv, runs.csv, fronts.csv, curves.csv, meta.json "
        "and report.html into --out. Every budget is checked against every strategy before anything runs. "
        "Example: wsx bench --model mymodel:build --data mymodel:val --test-data mymodel:test "
        "--strategies nsga2,divide-and-conquer:combination=regression --budgets 500,1000 --seeds 5 --out bench1")
    add_config(p)
    p.add_argument("--model", default=None, help="MODULE:ATTR of the model, or of a function / class building it")
    p.add_argument("--data", default=None, help="MODULE:ATTR of the search data (or a function returning it)")
    p.add_argument("--test-data", default=None, help="MODULE:ATTR of a disjoint test split the fronts are "
                   "measured on")
    p.add_argument("--problem", default=None, choices=sorted(PROBLEMS),
                   help="a built-in example instead of --model/--data: " + "; ".join(
                       f"{k}: {v}" for k, v in PROBLEMS.items()))
    p.add_argument("--strategies", default=DEFAULT_STRATEGIES,
                   help="comma-separated strategies, each optionally name:key=value,... (a part with = and no : "
                   "continues the strategy before it), e.g. nsga2:pop_size=50,generations=20,knapsack "
                   "(default: %(default)s)")
    p.add_argument("--budgets", "--budget", dest="budgets", default="1000",
                   help="comma-separated scoring budgets; every strategy runs at each (default: %(default)s)")
    p.add_argument("--seeds", default="5", help="a number of seeds (5: seeds 0..4) or a comma-separated list "
                   "(0,1,7) (default: %(default)s)")
    p.add_argument("--exhaustive-front", default=None, help="CSV of the true front (compression_rate and "
                   "test_accuracy_loss or accuracy_loss columns), the IGD reference")
    p.add_argument("--no-share-scores", action="store_true", help="score every run's candidates itself (by "
                   "default a candidate another run scored on the same samples is reused, still counted as a "
                   "scoring)")
    add_run_options(p)
    p.add_argument("--name", default=None, help="what the report calls the problem (default: --problem or --model)")
    p.add_argument("--out", default=None, help="directory for the results (required)")
    p.add_argument("--quiet", action="store_true", help="no line per finished run")
    return p


def _ints(text, what: str) -> list[int]:
    from wsx.errors import InvalidSettingError

    if isinstance(text, (int, list)):
        return text if isinstance(text, list) else [text]
    try:
        return [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise InvalidSettingError(f"--{what} {text!r}: give comma-separated whole numbers") from None


def _command_line() -> str:
    """The command as typed, for the report: ``wsx bench ...``, or the script or module that ran the CLI
    (``python -m benchmarks.strategies ...``), whose own arguments are what a reader can run again."""
    if sys.argv[1:2] == ["bench"]:
        return "wsx bench " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    typed = list(getattr(sys, "orig_argv", None) or [])
    return " ".join(["python", *(shlex.quote(a) for a in typed[1:])]) if len(typed) > 1 else ""


def run(args) -> int:
    import wsx
    from wsx.errors import InvalidSettingError

    from .explore import load_object

    if not args.out:
        raise InvalidSettingError("--out DIR is required: wsx bench writes its tables and report.html there")
    if args.problem and (args.model or args.data):
        raise InvalidSettingError("give either --problem or --model/--data, not both")
    seeds = _ints(args.seeds, "seeds")
    if len(seeds) == 1 and "," not in str(args.seeds):  # one number: how many seeds, not which
        if seeds[0] < 1:
            raise InvalidSettingError(f"--seeds {args.seeds}: one number is a count of seeds (5: seeds 0..4); "
                                      "for seed 0 alone give --seeds 1, for particular seeds a list (--seeds 0,3)")
        seeds = seeds[0]
    kwargs = run_kwargs(args)
    if args.problem == "lenet5-digits" or not (args.model or args.data):
        if not args.problem:
            raise InvalidSettingError("--model MODULE:ATTR and --data MODULE:ATTR are required (or --problem "
                                      "lenet5-digits, the built-in example)")
        model, data = wsx.zoo.load("lenet5-digits", framework="torch", split="test")
        test = None
        if args.subset == "auto":  # the default: all 540 images (fewer than the 1000-sample minimum anyway)
            kwargs["subset"] = None
    else:
        if not (args.model and args.data):
            raise InvalidSettingError("--model and --data are both required (MODULE:ATTR)")
        model, data = load_object(args.model, "--model"), load_object(args.data, "--data")
        test = load_object(args.test_data, "--test-data") if args.test_data else None
    command = _command_line()
    result = wsx.bench(model, data, strategies=args.strategies, budgets=_ints(args.budgets, "budgets"),
                       seeds=seeds, test_data=test, exhaustive_front=args.exhaustive_front, out=args.out,
                       share_scores=not args.no_share_scores, name=args.name or args.problem or args.model,
                       command=command,
                       log=None if args.quiet else (lambda m: print(m, flush=True)), **kwargs)
    print(result.markdown())
    print(f"wrote {args.out}/bench.csv, runs.csv, fronts.csv, curves.csv, meta.json, report.html, results.md")
    return 0
