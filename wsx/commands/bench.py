"""``wsx bench``: head-to-head strategy benchmark (runs ``benchmarks/strategies`` of a source checkout)."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

DEFAULT_STRATEGIES = ("greedy,greedy-filter,greedy-pareto,divide-and-conquer,"
                      "divide-and-conquer:combination=regression,nsga2,random,knapsack")


def add_parser(sub):
    p = sub.add_parser(
        "bench", help="head-to-head strategy benchmark (Table 6.1 shape)",
        description="Run strategies head-to-head on one benchmark problem with the same budget, seeds and "
        "clusterer, and write runs.csv, fronts.csv, results.md (thesis Table 6.1 columns: scoring count, "
        "scoring / clustering / total time, overhead %, plus hypervolume, best CR meeting the target on "
        "all test data and IGD to the exhaustive front) and fronts.png into --out. Needs a source checkout "
        "(the problems live in benchmarks/). Example: wsx bench --problem lenet5-digits "
        "--strategies nsga2,knapsack,divide-and-conquer:combination=regression --budget 1000 --seeds 0,1 "
        "--out /tmp/bench")
    p.add_argument("--problem", default="lenet5-digits", choices=("lenet5-digits", "fashion-mnist", "fashion-resnet20"),
                   help="lenet5-digits (embedded), fashion-mnist (LeNet-5; needs benchmarks/data/lenet5_fashion."
                   "safetensors and the Debian package dataset-fashion-mnist) or fashion-resnet20 (ResNet-20, "
                   "benchmarks/data/resnet20_fashion.safetensors, same data)")
    p.add_argument("--strategies", default=DEFAULT_STRATEGIES,
                   help="comma-separated strategies; options as name:key=value:key=value, e.g. "
                   "greedy-filter:inertia_filter_ratio=0.05 (default: %(default)s)")
    p.add_argument("--budget", type=int, default=1000, help="scorings per run, the same for every strategy")
    p.add_argument("--seeds", default="0,1", help="comma-separated seeds; every strategy runs once per seed")
    p.add_argument("--out", required=True, help="directory for the results")
    p.add_argument("--target", default="mlperf-heavy")
    p.add_argument("--clusterer", default=None, help="clusterer name; default: the fastest available")
    p.add_argument("--time-limit", type=float, default=None, help="search seconds per run")
    p.add_argument("--bits", type=int, default=32, help="bits of a stored value in the baseline (B)")
    p.add_argument("--subset", default=None, help="search-time scoring subset (fraction, count or 'all'); "
                   "default: the problem's (digits: all 540 images; fashion-mnist: 0.5 of the validation split)")
    from . import add_threads

    add_threads(p)
    return p


def _benchmarks_root() -> Path:
    import wsx

    from ..errors import InvalidSettingError

    root = Path(wsx.__file__).resolve().parents[1]
    if not (root / "benchmarks" / "strategies" / "harness.py").exists():
        raise InvalidSettingError("wsx bench needs a source checkout of wsx (benchmarks/ is not installed); "
                                  "run it from a clone installed with pip install -e .")
    return root


def _subset(text):
    if text is None:
        return "default"
    from . import parse_subset

    return parse_subset(text)


def run(args) -> int:
    root = _benchmarks_root()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from benchmarks.strategies import harness

    command = "wsx bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else ""
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    runs = harness.run(args.problem, [s for s in args.strategies.split(",") if s.strip()], budget=args.budget,
                       seeds=seeds, out=Path(args.out), target=args.target, clusterer=args.clusterer,
                       time_limit=args.time_limit, bits=args.bits, command=command, subset=_subset(args.subset),
                       log=lambda m: print(m, flush=True))
    print((Path(args.out) / "results.md").read_text())
    return 0 if len(runs) else 1
