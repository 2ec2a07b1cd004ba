"""Why two runs of the new default end at different CRs when only the population path differs:
is it the landscape (the paths' rounding decides which candidates meet) or the search's trajectory?

    python benchmarks/scale/study.py --archs vit_tiny --order new --vmap loop --journal J1 ...
    python benchmarks/scale/study.py --archs vit_tiny --order new --vmap stacked --journal J2 ...
    python benchmarks/scale/path_gap.py vit_tiny --runs loop=J1/vit_tiny-new-seed0/results.json \\
        stacked=J2/vit_tiny-new-seed0/results.json --out benchmarks/scale/path-gap.md

1. Each run's best candidate meeting the target is scored again under both paths, on all samples
   (the study's problem: 64 synthetic images at 32 px, agreement, batches of 16, one torch thread).
2. At the lower run's best: every trade of one large layer (``--large`` weights or more) a step down
   (``moves_down``) against another layer a step up (``move_up``), the moves the descent tries once
   single steps stall, scored one by one with early rejection: how many meet the target and the
   best CR they reach, which says how far a local search from there can still go.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.scale._report import emit  # noqa: E402


def best_of(path: str) -> dict:
    history = json.loads(Path(path).read_text())["history"]
    legal = [c for c in history if c["meets_target"] and not c["rejected"]]
    if not legal:
        raise SystemExit(f"{path}: no candidate meets the target")
    return max(legal, key=lambda c: c["compression_rate"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("arch")
    p.add_argument("--runs", nargs=2, required=True, metavar="NAME=RESULTS_JSON",
                   help="two runs' results.json (a journal folder's), each named")
    p.add_argument("--large", type=int, default=100_000, help="weights of a layer the trades move down")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    runs = dict(r.split("=", 1) for r in args.runs)
    import torch

    torch.set_num_threads(1)
    import wsx
    from benchmarks.archs import build
    from wsx.engine import make_backend
    from wsx.problem import UNCOMPRESSED
    from wsx.strategy import Strategy
    from wsx_plugins.strategies.divide_and_conquer import move_up, moves_down

    bests = {name: best_of(path) for name, path in runs.items()}

    class Given(Strategy):
        """Scores the given candidates (all samples) or, from ``here``, the census of trades."""
        name = "path-gap"

        def __init__(self, *, pop=None, here=None, large=0):
            self.pop, self.here, self.large = pop, here, large

        def _run(self, problem):
            if self.pop is not None:
                self.got_ = problem.evaluate(self.pop, origin="given", reject=False)
                return
            here = {n: self.here.get(n, UNCOMPRESSED) for n in problem.layer_names}
            size = problem.size_bits(here)
            large = [layer.name for layer in problem.layers if layer.size >= self.large]
            pop, self.meta_ = [], []
            for a in large:
                for ka in moves_down(problem, a, here[a]):
                    for b in problem.layer_names:
                        kb = move_up(problem, b, here[b])
                        if b == a or kb is None:
                            continue
                        cand = dict(here)
                        cand[a], cand[b] = ka, kb
                        if problem.size_bits(cand) < size:
                            pop.append(cand)
                            self.meta_.append((a, here[a], ka, b, here[b], kb))
            self.large_ = large
            t = time.perf_counter()
            self.got_ = problem.evaluate(pop, origin="trades")
            self.seconds_ = time.perf_counter() - t

    model, (x, _) = build(args.arch, samples=64, size=32, seed=0)
    kw = dict(target="mlperf-heavy", subset=None, progress=False, threads=1)
    lines = [f"# Where the two population paths' runs part ({args.arch}, 64 @ 32, mlperf-heavy)", "",
             "    python benchmarks/scale/path_gap.py " + " ".join(sys.argv[1:] if argv is None else argv), "",
             "## Each run's best, scored again under both paths (all samples)", "",
             "| run's best | its CR | " + " | ".join(f"meets under {p}" for p in ("loop", "stacked")) + " |",
             "|---|---:|---|---|"]
    verdicts = {name: [] for name in bests}
    for path in ("loop", "stacked"):
        be = make_backend(model, x, "torch", metric="agreement", batch_size=16, vmap=path == "stacked")
        s = Given(pop=[b["knobs"] for b in bests.values()])
        wsx.explore(model, x, backend=be, strategy=s, **kw)
        for name, c in zip(bests, s.got_):
            verdicts[name].append(f"{bool(c.meets_target)} ({c.accuracy:.4f})")
    for name, b in bests.items():
        lines.append(f"| {name} | {b['compression_rate']:.3f} | " + " | ".join(verdicts[name]) + " |")
    a, b = (bests[n]["knobs"] for n in bests)
    differ = sorted(n for n in set(a) | set(b) if a.get(n) != b.get(n))
    lines += ["", f"The two bests set {len(differ)} of {len(set(a) | set(b))} layers differently: "
              + ", ".join(f"{n} {a.get(n)} / {b.get(n)}" for n in differ) + "."]
    low = min(bests, key=lambda n: bests[n]["compression_rate"])
    be = make_backend(model, x, "torch", metric="agreement", batch_size=16, vmap=False)
    s = Given(here=bests[low]["knobs"], large=args.large)
    wsx.explore(model, x, backend=be, strategy=s, **kw)
    ok = sorted(((c.compression_rate, m) for c, m in zip(s.got_, s.meta_) if c.meets_target),
                key=lambda t: -t[0])
    lines += ["", f"## Trades at {low}'s best (CR {bests[low]['compression_rate']:.3f})", "",
              f"{len(s.got_)} trades ({len(s.large_)} layers of {args.large}+ weights a step down, another layer a step "
              f"up; {s.seconds_:.0f} s, early rejection): **{len(ok)} meet the target**"
              + (f", the best at CR {ok[0][0]:.3f}." if ok else "."), ""]
    if ok:
        lines += ["| CR | down | up |", "|---:|---|---|"]
        lines += [f"| {cr:.3f} | {a} {ka0}->{ka} | {b} {kb0}->{kb} |" for cr, (a, ka0, ka, b, kb0, kb) in ok[:10]]
    return emit(lines, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
