"""Head-to-head strategy benchmark: every strategy at every budget, over several seeds, on one problem.

``wsx.bench`` runs ``wsx.explore`` once per (strategy, budget, seed) on the same model, data,
clusterer (seed 0 for every run: only the search differs), approximation and target, and reports per
(strategy, budget) the mean and 95 % confidence interval over seeds (Student's t, scipy.stats) of:

- ``best_cr``: the highest compression rate of the final front meeting the target (on the test
  data when given, else on all search data); 1.0 when no candidate meets it (the model itself does);
- ``hv``: pymoo's hypervolume of the front's (loss, CR) points inside the target, against the
  reference (allowed loss, CR 1);
- ``igd``: pymoo's IGD from the reference front to the run's legal points, normalised to the
  reference's ranges; the reference is ``exhaustive_front`` when given, else the Pareto front of the
  union of every run's legal points (then a low IGD means "close to the best any run found");
- ``scorings`` and ``wall_s`` (the run's total seconds).

Anytime curves record, for each run, the best CR meeting the target among the candidates scored so
far (search-time measurements, in the order they were scored) against the scoring count.

Every budget is checked against every strategy's first step before anything runs. With
``share_scores`` (the default) the runs share one score table per search subset: a candidate another
run already scored on the same samples is taken instead of scored again. It still counts as a
scoring of the run (budgets mean the same), so scorings, fronts and quality are those of independent
runs, up to the rare near-tie a population forward rounds differently (see wsx.engine.replay_agrees),
while wall times are lower; ``runs.csv`` reports the hits per run (``shared_hits``).
"""
from __future__ import annotations

import copy
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .arguments import check_count, check_seed
from .errors import BudgetTooSmallError, InvalidSettingError
from .strategy import Strategy

DEFAULT_STRATEGIES = ("greedy", "greedy-filter", "greedy-pareto", "divide-and-conquer",
                      "divide-and-conquer:combination=regression", "nsga2", "random", "knapsack")
MEASURES = ("best_cr", "hv", "igd", "scorings", "wall_s")
CONFIDENCE = 0.95


@dataclass
class BenchResult:
    """What ``wsx.bench`` measured. DataFrames: ``runs`` (one row per run), ``summary`` (per strategy
    and budget: ``runs`` and, per measure, ``<measure>``, ``<measure>_low``, ``<measure>_high``: the
    mean and its 95 % confidence interval), ``fronts`` (every run's final front), ``curves`` (anytime:
    the best CR after each improvement); ``reference`` the IGD reference front as (loss, CR) rows."""

    runs: Any
    summary: Any
    fronts: Any
    curves: Any
    reference: np.ndarray
    meta: dict = field(default_factory=dict)

    def markdown(self, names: dict | None = None) -> str:
        """The summary as a Markdown table, mean [95 % CI] per measure; ``names`` maps a strategy's spec
        to what its row shows (default: the spec as code)."""
        head = ["strategy", "budget", "seeds", "best CR", "HV", "IGD", "scorings", "wall [s]"]
        lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
        for _, r in self.summary.iterrows():
            cells = [(names or {}).get(r.strategy, f"`{r.strategy}`"), str(r.budget), str(r.runs)]
            for m, fmt in zip(MEASURES, (".2f", ".3f", ".3f", ".0f", ".1f")):
                cells.append(format_ci(r[m], r[f"{m}_low"], r[f"{m}_high"], fmt))
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def page(self, title: str | None = None, intro: Sequence[str] = (), names: dict | None = None) -> str:
        """results.md: ``title``, the ``intro`` paragraphs, what was run (command, when, where, settings)
        and ``markdown(names)``, for a repository or a pull request where report.html does not render."""
        m = self.meta
        load = m.get("load_before"), m.get("load_after")
        lines = [f"# {title or 'Strategy benchmark: ' + (m.get('name') or 'model')}", ""]
        for paragraph in intro:
            lines += [paragraph, ""]
        if m.get("command"):
            lines += [f"Made with: `{m['command']}`", ""]
        shared = m.get("share_scores")
        lines += [f"{m.get('date', '')}, {m.get('machine', '?')}, {m.get('cpus', '?')} CPUs"
                  + (f" (load {load[0][0]:.1f} before, {load[1][0]:.1f} after)" if all(load) else "")
                  + f". Budgets {m.get('budgets')}, seeds {m.get('seeds')}, target {m.get('target')} "
                  f"(max loss {m.get('max_loss', float('nan')):.3f} pp), approximation {m.get('approximation')}, "
                  f"clusterer {m.get('clusterer')} (seed 0 for every run), search subset {m.get('subset')}, scores "
                  f"shared across runs ({'on: wall times are not those of lone runs' if shared else 'off'}). "
                  f"Best CR, HV and IGD on {'the test data' if m.get('test_data') else 'the search data'}"
                  + (f", IGD against the {m['reference']}" if m.get("reference") else "")
                  + f"; mean [{100 * m.get('confidence', CONFIDENCE):g} % interval] over seeds. Per-run rows, "
                  "fronts, anytime curves and figures: runs.csv, fronts.csv, curves.csv, report.html.", "",
                  self.markdown(names), ""]
        return "\n".join(lines)

    def save(self, out: str | Path) -> Path:
        """Write bench.csv (the summary), runs.csv, fronts.csv, curves.csv, meta.json, report.html and
        results.md (``page()``)."""
        from .benchmark_report import write_report
        from .files import atomic_write, prepare_dir, write_text

        out = prepare_dir(out)
        for name, frame in (("bench.csv", self.summary), ("runs.csv", self.runs), ("fronts.csv", self.fronts),
                            ("curves.csv", self.curves)):
            atomic_write(out / name, lambda tmp, f=frame: f.to_csv(tmp, index=False))
        write_text(out / "meta.json", json.dumps(self.meta, indent=1, default=str))
        write_report(self, out / "report.html")
        write_text(out / "results.md", self.page())
        return out


def format_ci(mean: float, low: float, high: float, fmt: str) -> str:
    if mean != mean:  # NaN
        return "-"
    if low != low or high == low:
        return f"{mean:{fmt}}"
    return f"{mean:{fmt}} [{low:{fmt}}, {high:{fmt}}]"


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high): Student's t interval of the mean; low = high = NaN for one value."""
    from scipy import stats

    v = np.asarray([x for x in values if x == x and np.isfinite(x)], dtype=float)
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(v.mean())
    if v.size == 1:
        return mean, float("nan"), float("nan")
    sem = float(stats.sem(v))
    if sem == 0.0:
        return mean, mean, mean
    low, high = stats.t.interval(confidence, v.size - 1, loc=mean, scale=sem)
    return mean, float(low), float(high)


# -- front quality ---------------------------------------------------------------------------------
def front_points(result) -> tuple[np.ndarray, float]:
    """(loss, CR) rows of the final front, measured on test data when the run had it, and the
    largest loss meeting the target on that data."""
    test = result.baseline.test_accuracy is not None and all(c.test_accuracy_loss is not None for c in result.front)
    base = result.baseline.test_accuracy if test else result.baseline.accuracy
    max_al = 100.0 * (1.0 - result.settings["target_fraction"]) * base
    pts = [((c.test_accuracy_loss if test else c.accuracy_loss), c.compression_rate) for c in result.front]
    return np.asarray(pts, dtype=float).reshape(-1, 2), max_al


def best_cr(result) -> float:
    """Highest CR of the final front meeting the target (test data when given); 1.0 if none does."""
    ok = [c.compression_rate for c in result.front
          if c.meets_target and c.test_meets_target is not False]
    return float(max(ok)) if ok else 1.0


def hypervolume(points: np.ndarray, max_al: float) -> float:
    """pymoo HV of (loss, -CR) against (max_al, -1): the area a front dominates inside the target."""
    from pymoo.indicators.hv import HV

    pts = points[(points[:, 0] < max_al) & (points[:, 1] > 1.0)]
    if pts.size == 0:
        return 0.0
    return float(HV(ref_point=np.array([max_al, -1.0]))(np.column_stack([pts[:, 0], -pts[:, 1]])))


def igd(points: np.ndarray, reference: np.ndarray, max_al: float) -> float:
    """pymoo IGD from the reference front's legal part to the run's legal points (normalised to the
    reference's ranges when they are not empty); inf when the run has no legal point."""
    from pymoo.indicators.igd import IGD

    ref = reference[reference[:, 0] <= max_al + 1e-12]
    pts = points[points[:, 0] <= max_al + 1e-12]
    if ref.size == 0:
        return float("nan")
    if pts.size == 0:
        return float("inf")
    to_min = lambda p: np.column_stack([p[:, 0], -p[:, 1]])  # noqa: E731
    spread = np.ptp(ref, axis=0)
    return float(IGD(to_min(ref), zero_to_one=bool(np.all(spread > 0)))(to_min(pts)))


def union_front(points: np.ndarray, max_al: float) -> np.ndarray:
    """The Pareto front (min loss, max CR) of the legal points of every run."""
    from .result import pareto_mask

    legal = points[points[:, 0] <= max_al + 1e-12]
    if legal.size == 0:
        return legal.reshape(0, 2)
    return legal[pareto_mask(legal[:, 0], legal[:, 1])]


def read_front(front: Any) -> np.ndarray:
    """An exhaustive front given as (loss, CR) rows or a CSV file with ``compression_rate`` and
    ``test_accuracy_loss`` (or ``accuracy_loss``) columns."""
    if isinstance(front, (str, os.PathLike)):
        import pandas as pd

        path = Path(front)
        try:
            df = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            raise InvalidSettingError(f"exhaustive_front={str(path)!r}: cannot read it as CSV ({exc}); give a "
                                      "CSV with compression_rate and accuracy_loss columns") from None
        loss = next((c for c in ("test_accuracy_loss", "accuracy_loss") if c in df), None)
        if loss is None or "compression_rate" not in df:
            raise InvalidSettingError(f"exhaustive_front={str(path)!r} has columns {list(df.columns)}; it needs "
                                      "compression_rate and test_accuracy_loss or accuracy_loss")
        front = df[[loss, "compression_rate"]].to_numpy(dtype=float)
    arr = np.asarray(front, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0 or not np.all(np.isfinite(arr)):
        raise InvalidSettingError("exhaustive_front: give (loss, CR) rows of finite numbers, or a CSV path")
    return arr


def anytime(result) -> list[tuple[int, float]]:
    """(scorings, best CR meeting the target so far) at each improvement, and at the run's end."""
    points, best = [(0, 1.0)], 1.0
    for i, c in enumerate(result.history, 1):
        if c.meets_target and c.compression_rate > best:
            best = c.compression_rate
            points.append((i, best))
    if points[-1][0] != len(result.history):
        points.append((len(result.history), best))
    return points


# -- checking --------------------------------------------------------------------------------------
def _seeds(seeds: Any) -> list[int]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        return list(range(check_count("seeds", seeds)))
    try:
        out = [check_seed(s) for s in seeds]
    except TypeError:
        out = []
    if not out or len(set(out)) != len(out):
        raise InvalidSettingError(f"seeds={seeds!r}: give a number of seeds (5 runs seeds 0..4) or a list of "
                                  "distinct seeds")
    return out


def _budgets(budgets: Any) -> list[int]:
    if isinstance(budgets, (int, np.integer)) and not isinstance(budgets, bool):
        budgets = [budgets]
    try:
        out = [check_count("budgets", b, unit="scorings") for b in budgets]
    except TypeError:
        out = []
    if not out:
        raise InvalidSettingError(f"budgets={budgets!r}: give one or more positive numbers of scorings")
    return sorted(dict.fromkeys(out))


def _strategies(strategies: Any) -> list[tuple[str, Callable[[], Strategy]]]:
    """(label, factory of a fresh instance) per strategy; each is built once here to check it."""
    from . import specs

    if isinstance(strategies, (str, Strategy, specs.Spec)):
        strategies = specs.split_list(strategies) if isinstance(strategies, str) else [strategies]
    out = []
    for s in strategies:
        first = specs.resolve("strategy", s, Strategy)
        label = s.text() if isinstance(s, specs.Spec) else s if isinstance(s, str) else specs.describe(first)
        if isinstance(s, Strategy):
            make = lambda s=s: copy.deepcopy(s)  # noqa: E731 - a fresh copy per run: strategies keep state
        else:
            make = lambda s=s: specs.resolve("strategy", s, Strategy)  # noqa: E731
        out.append((label, make))
    labels = [label for label, _ in out]
    if not out or len(set(labels)) != len(labels):
        raise InvalidSettingError(f"strategies={labels!r}: give one or more distinct strategies")
    return out


def check_budgets(model, data, strategies, budgets, *, backend=None, approximation="weight-sharing",
                  knobs=None, bits=None, metric="top1", target=0.99) -> None:
    """Raise BudgetTooSmallError naming every (strategy, budget) whose budget cannot cover the
    strategy's first step; builds the model's backend and knob values, scores nothing."""
    from .arguments import check_knob_layers, check_knobs
    from .engine import _knob_values, resolve_approximation, scoring_backend
    from .problem import Problem

    be = scoring_backend(model, data, backend, metric=metric)
    try:
        layers = be.layers()
    finally:
        be.close()
    knobs = check_knobs(knobs)
    check_knob_layers(knobs, [layer.name for layer in layers])
    appr = resolve_approximation(approximation, bits)
    problem = Problem(layers=layers, knob_values=_knob_values(appr, layers, knobs), approximation=appr,
                      cache=None, score_fn=None, baseline_accuracy=1.0, target=target)
    short = []
    for label, make in strategies:
        needed = getattr(make(), "first_step_scorings", None)
        if needed is None:
            continue
        n = needed(problem)
        short += [f"{label} needs {n} scorings for its first step, more than budget {b}" for b in budgets if n > b]
    if short:
        raise BudgetTooSmallError("; ".join(short) + ": raise those budgets, pass fewer knob values (knobs=...) "
                                  "or leave the strategy out (nothing was run)")


# -- running ---------------------------------------------------------------------------------------
def bench(model: Any, data: Any, strategies: Any = DEFAULT_STRATEGIES, budgets: Any = (1000,), seeds: Any = 5, *,
          test_data: Any = None, target: Any = "mlperf-heavy", exhaustive_front: Any = None, out: Any = None,
          metric: Any = "top1", backend: Any = None, clusterer: Any = None, approximation: Any = "weight-sharing",
          subset: Any = 0.1, min_subset: int | None = None, knobs: Any = None, bits: int | None = None,
          time_limit: float | None = None, batch_size: int = 256, threads: int | None = None,
          share_scores: bool | dict = True, early_rejection: Any = "exact", executor: Any = None,
          name: str | None = None, command: str = "", log: Callable[[str], None] | None = print) -> BenchResult:
    """Run every strategy at every budget once per seed on ``model`` / ``data`` and compare them.

    ``strategies``: names, ``name:key=value,...`` specs (wsx.specs), Strategy instances or a
    comma-separated string; ``budgets``: scorings per run (one number or several); ``seeds``: a
    count (5: seeds 0..4) or a list. ``test_data``: a disjoint split the final fronts are measured on
    (best CR, HV and IGD then use it). ``exhaustive_front``: the true front as (loss, CR) rows or a
    CSV, the IGD reference (default: the union of all runs' fronts). The other arguments are
    ``wsx.explore``'s and are the same for every run; the clusterer is built once, with seed 0, and the
    ``executor`` once (a Ray executor's workers keep the model and data from one run to the next).
    ``share_scores``: True shares scores between this bench's runs; a dict (empty at first) also
    shares them with every other bench given the same dict (same model, data and subset only).
    ``out``: a directory for bench.csv (the summary), runs.csv, fronts.csv, curves.csv, meta.json and
    a self-contained report.html. ``log`` gets one line per finished run (None: silent).
    Every argument and every (strategy, budget) pair is checked before anything runs.
    """
    import pandas as pd

    from .arguments import check_early_rejection, check_out
    from .engine import MIN_SUBSET, SHARED_SCORES, explore, resolve_clusterer
    from .executor import resolve_executor
    from .specs import describe
    from .metrics import resolve_target

    strats = _strategies(strategies)
    budgets = _budgets(budgets)
    seeds = _seeds(seeds)
    out = check_out(out)
    early_rejection = check_early_rejection(early_rejection)
    target = "mlperf-heavy" if target is None else target  # None: not given (the CLI's default)
    frac = resolve_target(target)
    reference = read_front(exhaustive_front) if exhaustive_front is not None else None
    clus = resolve_clusterer(clusterer, 0)  # one clustering for every run: only the search differs
    runner = resolve_executor(executor)
    check_budgets(model, data, strats, budgets, backend=backend, approximation=approximation, knobs=knobs,
                  bits=bits, metric=metric, target=frac)
    if out is not None:
        from .files import prepare_dir

        prepare_dir(out)
    # a dict carries the score table over from an earlier bench on the same model and data
    shared: dict | None = share_scores if isinstance(share_scores, dict) else {} if share_scores else None
    token = SHARED_SCORES.set(shared)
    load_before = os.getloadavg()
    rows, fronts, curves, maxima = [], [], [], []
    runner.__enter__()  # workers are kept from run to run, released in finally
    try:
        for label, make in strats:
            for budget in budgets:
                for seed in seeds:
                    result = explore(model, data, strategy=make(), budget=budget, seed=seed, test_data=test_data,
                                     target=target, metric=metric, backend=backend, clusterer=clus,
                                     approximation=approximation, subset=subset, knobs=knobs, bits=bits,
                                     min_subset=MIN_SUBSET if min_subset is None else min_subset,
                                     time_limit=time_limit, batch_size=batch_size, threads=threads,
                                     early_rejection=early_rejection, executor=runner, progress=False)
                    pts, max_al = front_points(result)
                    maxima.append(max_al)
                    row = {"strategy": label, "budget": budget, "seed": seed, "best_cr": best_cr(result),
                           "hv": hypervolume(pts, max_al), "scorings": result.scorings,
                           "wall_s": result.timings["total"], "scoring_s": result.timings["scoring"],
                           "clustering_s": result.timings["clustering"], "front_size": len(result.front),
                           "shared_hits": result.extras.get("shared_scores", 0), "max_loss": max_al,
                           "stop_reason": result.settings.get("stop_reason", "")}
                    rows.append(row)
                    for c, (al, cr) in zip(result.front, pts):
                        fronts.append({"strategy": label, "budget": budget, "seed": seed, "loss": al,
                                       "compression_rate": cr, "meets_target": bool(
                                           c.meets_target and c.test_meets_target is not False),
                                       "knobs": json.dumps(c.knobs, sort_keys=True, default=str)})
                    curves += [{"strategy": label, "budget": budget, "seed": seed, "scorings": n, "best_cr": v}
                               for n, v in anytime(result)]
                    if log is not None:
                        log(f"{label} budget {budget} seed {seed}: best CR {row['best_cr']:.2f}, HV {row['hv']:.3f}, "
                            f"{row['scorings']} scorings, {row['wall_s']:.1f} s"
                            + (f" ({row['shared_hits']} scores shared)" if row["shared_hits"] else ""))
    finally:
        SHARED_SCORES.reset(token)
        runner.shutdown()
    # every run's front may be empty (each candidate rejected early): keep the columns anyway
    runs = pd.DataFrame(rows)
    fronts = pd.DataFrame(fronts, columns=["strategy", "budget", "seed", "loss", "compression_rate", "meets_target",
                                           "knobs"])
    max_al = float(np.min(maxima))
    own = reference is None
    if own:
        reference = union_front(fronts[["loss", "compression_rate"]].to_numpy(dtype=float), max_al)
    runs["igd"] = [igd(fronts[(fronts.strategy == r.strategy) & (fronts.budget == r.budget) & (fronts.seed == r.seed)]
                       [["loss", "compression_rate"]].to_numpy(dtype=float).reshape(-1, 2), reference, r.max_loss)
                   for r in runs.itertuples()]
    meta = {"name": name or "", "command": command, "strategies": [label for label, _ in strats],
            "budgets": budgets, "seeds": seeds, "target": target if isinstance(target, str) else float(target),
            "target_fraction": frac, "max_loss": max_al, "test_data": test_data is not None,
            "subset": subset, "clusterer": clus.name, "approximation": str(approximation),
            "executor": describe(runner),
            "share_scores": shared is not None, "reference": "union of all runs' fronts" if own else "exhaustive front",
            "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.platform(), "cpus": os.cpu_count(),
            "load_before": load_before, "load_after": os.getloadavg(), "confidence": CONFIDENCE}
    result = BenchResult(runs=runs, summary=summarise(runs), fronts=fronts, curves=pd.DataFrame(curves),
                         reference=reference, meta=meta)
    if out is not None:
        result.save(out)
    return result


def summarise(runs) -> Any:
    """Per (strategy, budget), in the order given: runs and mean / CI of every measure."""
    import pandas as pd

    rows = []
    for (strategy, budget), g in runs.groupby(["strategy", "budget"], sort=False):
        row = {"strategy": strategy, "budget": int(budget), "runs": len(g)}
        for m in MEASURES:
            row[m], row[f"{m}_low"], row[f"{m}_high"] = mean_ci(g[m].to_numpy(dtype=float))
        row["shared_hits"] = float(g["shared_hits"].mean())
        rows.append(row)
    return pd.DataFrame(rows)
