"""Subcommands of the ``wsx`` CLI."""
from __future__ import annotations

import json
import sys


def add_common(p) -> None:
    """Options shared by commands that run an exploration."""
    p.add_argument("--strategy", default="divide-and-conquer", help="strategy name (see `wsx plugins`)")
    p.add_argument("--backend", default=None, help="backend name; default: detected from the model")
    p.add_argument("--clusterer", default=None, help="clusterer name; default: the fastest available")
    p.add_argument("--approximation", default="weight-sharing")
    p.add_argument("--target", default="mlperf-heavy",
                   help="mlperf-heavy (99%% of baseline), mlperf-light (98%%) or a fraction such as 0.995")
    p.add_argument("--subset", default="0.1", help="search-time scoring subset: fraction, count, or 'all'")
    p.add_argument("--budget", type=int, default=None, help="maximum number of scorings")
    p.add_argument("--time-limit", type=float, default=None, help="search seconds")
    p.add_argument("--bits", type=int, default=32, help="bits of a stored value in the baseline (B)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="directory for results.json, results.csv, front.png, report.html "
                   "and journal.jsonl; re-running the same command there resumes an interrupted run")
    p.add_argument("--restart", action="store_true",
                   help="discard the journal in --out (from a run with other model, data or settings) and start over")
    p.add_argument("--json", action="store_true", help="print results.json to stdout instead of a table")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_threads(p)


def add_threads(p) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch, TensorFlow and XLA (default: this process's share of the cores: "
                   "the usable cores less those other processes keep busy, at least 1; or $WSX_THREADS)")


def parse_target(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def parse_subset(text: str):
    """'all', a sample count ('1000'), a fraction ('0.1') or a percentage ('10%')."""
    from wsx.errors import InvalidSettingError

    text = text.strip()
    if text in ("all", "none", "None"):
        return None
    try:
        if text.endswith("%"):
            return float(text[:-1]) / 100.0
        return int(text) if text.isdigit() else float(text)
    except ValueError:
        raise InvalidSettingError(f"--subset {text!r}: give a fraction such as 0.1, a percentage such as 10%, "
                                  "a sample count such as 1000, or 'all'") from None


def explore_kwargs(args) -> dict:
    return dict(strategy=args.strategy, backend=args.backend, clusterer=args.clusterer,
                approximation=args.approximation, target=parse_target(args.target),
                subset=parse_subset(args.subset), budget=args.budget, time_limit=args.time_limit,
                bits=args.bits, seed=args.seed, out=args.out, progress=not (args.quiet or args.json),
                restart=args.restart, threads=args.threads)


def report(result, args) -> None:
    if args.json:
        json.dump({k: v for k, v in result.to_dict().items() if k != "history"}, sys.stdout, indent=1)
        print()
        return
    print(result.summary())
    t = result.timings
    print(f"time: total {t['total']:.1f} s = clustering {t['clustering']:.1f} s + scoring {t['scoring']:.1f} s "
          f"+ final re-scoring {t['final_scoring']:.1f} s + overhead {t['overhead']:.1f} s")
    for note in result.notes:
        print(f"note: {note}")
    best = result.best()
    if best is not None:
        print(f"best meeting {result.settings['target']} on {result.best_basis()}: CR {best.compression_rate:.2f}, "
              f"accuracy {best.accuracy:.4f} (AL {best.accuracy_loss:.2f} pp)")
    else:
        print(f"no candidate meets {result.settings['target']} on {result.best_basis()}")
    if args.out:
        print(f"wrote {args.out}/results.json, results.csv, front.png, report.html, journal.jsonl")
