"""Subcommands of the ``wsx`` CLI."""
from __future__ import annotations

import json
import sys


def add_config(p) -> None:
    p.add_argument("--config", default=None, metavar="FILE",
                   help="TOML file holding any of this command's settings (keys are the option names, e.g. "
                   "strategy = \"nsga2:pop_size=50\" or a [strategy] table with name = ...); options given on "
                   "the command line override it. A results.json written by wsx is read too (its resolved "
                   "settings.config)")
    p.set_defaults(_parser=p)


def add_run_options(p) -> None:
    """What an exploration's model, data and search space take: shared by explore, demo and bench."""
    p.add_argument("--backend", default=None, help="backend name; default: detected from the model")
    p.add_argument("--clusterer", default=None, help="clusterer, optionally with settings: name:key=value,... "
                   "(e.g. sorted1d:init=quantile); default: the fastest available")
    p.add_argument("--approximation", default="weight-sharing", help="approximation, optionally with settings "
                   "(e.g. weight-sharing:k_max=256,granularity=channel)")
    p.add_argument("--granularity", default=None, help="the approximation's granularity (weight-sharing: layer, "
                   "channel or kernel); the same as approximation setting granularity=...")
    p.add_argument("--knobs", default=None, help="knob values to explore: one list for every layer (2,4,8,16) or "
                   "JSON per layer ('{\"conv1\": [2, 4, 8]}'); default: the approximation's")
    p.add_argument("--target", default=None,
                   help="mlperf-heavy (99%% of baseline; the default for higher-is-better metrics), mlperf-light "
                   "(98%%) or a fraction such as 0.995")
    p.add_argument("--subset", default="auto", help="search-time scoring subset: 'auto' (10 %%, raised where "
                   "that is noisy against the target and cheap to enlarge), a fraction, a count, or 'all'")
    p.add_argument("--min-subset", type=int, default=None,
                   help="fewest samples a subset is raised to (default 1000: below it top-1's noise exceeds "
                   "typical loss differences)")
    p.add_argument("--time-limit", type=float, default=None, help="search seconds")
    p.add_argument("--bits", type=int, default=32, help="bits of a stored value in the baseline (B)")
    p.add_argument("--early-rejection", default="exact",
                   help="stop scoring a candidate once it cannot meet the target: exact (default; provably, even "
                   "if every remaining sample scored best), a confidence such as 0.99 (also on a statistical "
                   "bound), or off")
    add_threads(p)
    p.add_argument("--executor", default=None, help="where candidates are scored: serial (default, this process) "
                   "or ray (a Ray cluster's workers; pip install 'wsx[ray]'), optionally with settings "
                   "(ray:chunk_size=4)")
    p.add_argument("--ray-address", default=None, help="the Ray cluster to score on: auto (the cluster this machine "
                   "belongs to) or HOST:PORT of its head node; default: a local Ray instance (implies --executor ray)")
    p.add_argument("--workers", type=int, default=None, help="Ray workers (default: one per CPU of the cluster, or "
                   "per GPU with --gpus-per-worker; implies --executor ray)")
    p.add_argument("--gpus-per-worker", type=float, default=None, help="GPUs each Ray worker holds (1: one worker "
                   "per GPU, model and data on it; implies --executor ray)")


def add_common(p) -> None:
    """Options of the commands that run one exploration (demo, explore)."""
    add_config(p)
    p.add_argument("--strategy", default="divide-and-conquer", help="strategy, optionally with settings: "
                   "name:key=value,... (e.g. divide-and-conquer:combination=regression,doe=auto; `wsx plugins` "
                   "lists the names)")
    add_run_options(p)
    p.add_argument("--metric", default=None,
                   help="top1 (default), agreement, cosine, mse, psnr, or MODULE:ATTR of a callable(outputs, labels) "
                   "or of wsx.metric(...) (importing MODULE runs its code)")
    p.add_argument("--output", default=None, help="which model output the metric reads: a key or an index "
                   "(default: the tensor itself, 'logits', or the first entry)")
    p.add_argument("--max-drop", type=float, default=None,
                   help="instead of --target: largest drop of a higher-is-better metric, in its loss unit (pp for top1)")
    p.add_argument("--max-increase", type=float, default=None,
                   help="instead of --target: largest increase of a lower-is-better metric (mse), in its units")
    p.add_argument("--budget", type=int, default=None, help="maximum number of scorings")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="directory for results.json, results.csv, front.png, report.html "
                   "and journal.jsonl; re-running the same command there resumes an interrupted run")
    p.add_argument("--restart", action="store_true",
                   help="discard the journal in --out (from a run with other model, data or settings) and start over")
    p.add_argument("--json", action="store_true", help="print results.json to stdout instead of a table")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def add_threads(p) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch, TensorFlow and XLA (default: this process's share of the cores: "
                   "the usable cores less those other processes keep busy, at least 1; or $WSX_THREADS)")


def parse_target(text):
    if not isinstance(text, str):
        return text
    try:
        return float(text)
    except ValueError:
        return text


def parse_metric(text):
    """A built-in metric name as it is; MODULE:ATTR imported (a callable or a wsx.metric)."""
    if not isinstance(text, str) or ":" not in text:
        return text
    from .explore import load_object

    return load_object(text, "--metric", call=False)


def parse_output(text):
    if not isinstance(text, str):
        return text
    return int(text) if text.lstrip("-").isdigit() else text


def parse_subset(text):
    """'all', a sample count ('1000'), a fraction ('0.1') or a percentage ('10%'); numbers pass."""
    from wsx.errors import InvalidSettingError

    if not isinstance(text, str):
        return text
    text = text.strip()
    if text in ("all", "none", "None"):
        return None
    if text == "auto":
        return text
    try:
        if text.endswith("%"):
            return float(text[:-1]) / 100.0
        return int(text) if text.isdigit() else float(text)
    except ValueError:
        raise InvalidSettingError(f"--subset {text!r}: give a fraction such as 0.1, a percentage such as 10%, "
                                  "a sample count such as 1000, 'auto' or 'all'") from None


def parse_knobs(text):
    """'2,4,8' -> [2, 4, 8]; JSON ('[2, 4]', '{"conv1": [2, 4]}') as JSON; lists and dicts pass."""
    from wsx.specs import parse_value

    if text is None or not isinstance(text, str):
        return text
    value = parse_value(text.strip())
    if isinstance(value, (list, dict)):
        return value
    return [parse_value(part.strip()) for part in text.split(",") if part.strip()]


def approximation_of(args):
    """--approximation with --granularity folded into its settings."""
    from wsx.specs import Spec

    granularity = getattr(args, "granularity", None)
    if granularity is None:
        return args.approximation
    spec = args.approximation if isinstance(args.approximation, Spec) else Spec.parse(args.approximation)
    return Spec(spec.name, {**spec.params, "granularity": granularity})


def executor_of(args):
    """--executor with --ray-address, --workers and --gpus-per-worker folded into its settings (they
    imply ray)."""
    from wsx.errors import InvalidSettingError
    from wsx.specs import Spec

    given = {key: value for key, value in (("address", getattr(args, "ray_address", None)),
                                           ("workers", getattr(args, "workers", None)),
                                           ("gpus_per_worker", getattr(args, "gpus_per_worker", None)))
             if value is not None}
    executor = getattr(args, "executor", None)
    if not given:
        return executor
    spec = executor if isinstance(executor, Spec) else Spec.parse(executor or "ray")
    if spec.name != "ray":
        options = ", ".join("--" + k.replace("_", "-").replace("address", "ray-address") for k in given)
        raise InvalidSettingError(f"{options} set(s) the ray executor, but --executor is {spec.name!r}; drop "
                                  "--executor or give --executor ray")
    return Spec(spec.name, {**spec.params, **given})


def run_kwargs(args) -> dict:
    """explore's arguments from the options of ``add_run_options``."""
    from wsx.engine import MIN_SUBSET

    return dict(backend=args.backend, clusterer=args.clusterer, approximation=approximation_of(args),
                executor=executor_of(args),
                knobs=parse_knobs(args.knobs), target=parse_target(args.target), subset=parse_subset(args.subset),
                min_subset=MIN_SUBSET if args.min_subset is None else args.min_subset,
                time_limit=args.time_limit, bits=args.bits, threads=args.threads,
                early_rejection=args.early_rejection)


def explore_kwargs(args) -> dict:
    return dict(strategy=args.strategy, budget=args.budget, seed=args.seed, out=args.out,
                progress=not (args.quiet or args.json), restart=args.restart, metric=parse_metric(args.metric),
                output=parse_output(args.output), max_drop=args.max_drop, max_increase=args.max_increase,
                **run_kwargs(args))


def record_config(result, args, **given) -> None:
    """Add the command line's own settings (model, data, out ...) to the resolved config the engine
    recorded, and rewrite results.json: ``--config OUT/results.json`` then repeats the run."""
    config = result.settings.setdefault("config", {})
    config.update({k: v for k, v in given.items() if v is not None})
    if args.out:
        config["out"] = str(args.out)
        result.save_json(args.out)


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
              f"{result.metric_name} {result.fmt_value(best.accuracy)} ({result.direction}; {result.loss_label} "
              f"{result.fmt_loss(best.accuracy_loss)})")
    else:
        print(f"no candidate meets {result.settings['target']} on {result.best_basis()}")
    if args.out:
        print(f"wrote {args.out}/results.json, results.csv, front.png, report.html, journal.jsonl")
