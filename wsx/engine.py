"""The one driver: ``explore`` runs any strategy on any backend, plus ``apply``.

The engine owns what every strategy shares: the seeded scoring subset, the (layer, knob) cache of
approximated weights, the budget, the baseline, the final re-scoring of the front on all data (and on
test data), and the guarantee that the user's model is restored bit for bit whatever happens.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from contextlib import ExitStack
from contextvars import ContextVar
from typing import Any

import numpy as np

from . import plugins, specs
from .approximation import Approximation
from .backend import Backend, can_reject
from .clusterer import Clusterer
from .arguments import (check_bits, check_count, check_early_rejection, check_knob_layers, check_knobs, check_out,
                        check_seconds, check_seed, check_subset)
from .errors import (BackendNotFoundError, BudgetTooSmallError, CorruptFileError, InvalidDataError, InvalidModelError,
                     InvalidSettingError, MetricError, PluginNotFoundError, WsxError)
from .executor import ScoringSession, resolve_executor
from .files import OutDirLock
from .journal import journal_setting
from .identity import code_digest
from .metrics import Goal, TargetSpec, resolve_metric, target_spec
from .problem import Problem, Timers, knob_key, takes_keyword
from .progress import Progress
from .result import Baseline, Candidate, Result, pareto_front
from .sanity import check_inputs, score_baseline, warn_if_chance
from .scoring import Scored
from .strategy import Strategy
from .threads import check_threads, limit_threads

MIN_SUBSET = 1000  # fewer samples make top-1's standard error larger than typical AL differences
AUTO = "auto"
DEFAULT_SUBSET = 0.1  # what subset="auto" starts from
AUTO_PROBE = 512  # samples timed to price a larger subset
AUTO_EXTRA_SECONDS = 0.5  # per scoring: the most subset="auto" adds to buy a quieter subset

# wsx.bench sets this around its runs of one problem (same model, data, metric, approximation and
# clusterer): {search subset: {knob key: score}}, so that a candidate another run scored on the same
# samples is taken instead of scored again (it still counts as a scoring of this run).
SHARED_SCORES: ContextVar[dict | None] = ContextVar("wsx_shared_scores", default=None)


# -- resolving names to plugin instances --------------------------------------------------------
def resolve_backend_class(backend: Any, model: Any) -> type:
    if isinstance(backend, type) and issubclass(backend, Backend):
        return backend
    table = plugins.backends()
    if backend is None:
        name = plugins.backend_for(model)
        if name is None:
            raise BackendNotFoundError(
                f"no backend recognises a {type(model).__module__}.{type(model).__name__}; pass a "
                "torch.nn.Module, a Keras model or a JAX (apply_fn, params) pair, or name one with "
                f"backend= (available: {', '.join(sorted(table))})")
        backend = name
    for cls in table.values():  # aliases such as "keras" for the tensorflow backend
        if backend in getattr(cls, "aliases", ()):
            backend = cls.name
    return plugins.get("backend", backend)


def make_backend(model: Any, data: Any, backend: Any = None, *, metric: Any = None, output: Any = None,
                 **kwargs) -> Backend:
    """A backend for ``model`` and ``data``; a configured instance is used as it is, with ``metric``
    and ``output`` applied where it was created without them (never silently ignored)."""
    if isinstance(backend, Backend):
        _reconcile(backend, "metric", metric, resolve_metric)
        _reconcile(backend, "output", output, lambda o: o)
        return backend
    given = {k: v for k, v in (("metric", metric), ("output", output)) if v is not None}
    return resolve_backend_class(backend, model)(model, data, **given, **kwargs)


def _reconcile(be: Backend, what: str, value: Any, resolve) -> None:
    """Apply explore's ``metric`` / ``output`` to a configured backend created without one; refuse
    two different ones."""
    if value is None:
        return
    mine = getattr(be, what, None)
    if mine is None:
        setattr(be, what, value)
        if what == "metric":
            be.metric_ = resolve(value)
        return
    same = resolve(mine).key() == resolve(value).key() if what == "metric" else mine == value
    if not same:
        shown = resolve(value).name if what == "metric" else repr(value)
        theirs = be.metric_.name if what == "metric" else repr(mine)
        raise InvalidSettingError(
            f"explore({what}=...) gives {shown!r} but the {be.name} backend passed as backend= was created with "
            f"{what} {theirs!r}; give the {what} in one place: on the backend ({type(be).__name__}(model, data, "
            f"{what}=...)) or to explore, not both")


def resolve_strategy(strategy: Any) -> Strategy:
    """A Strategy from an instance, a class, a name or a ``name:key=value,...`` spec (wsx.specs)."""
    return specs.resolve("strategy", strategy, Strategy)


def resolve_clusterer(clusterer: Any, seed: int) -> Clusterer:
    if clusterer is None:
        table = plugins.clusterers()
        usable = [cls for cls in table.values() if cls.available()[0]]
        if not usable:
            raise PluginNotFoundError("no clusterer is available; reinstall wsx")
        cls = max(usable, key=lambda c: (getattr(c, "priority", 0), c.name))
        return cls(seed=seed)
    return specs.resolve("clusterer", clusterer, Clusterer, seed=seed)


def resolve_approximation(approximation: Any, bits: int | None) -> Approximation:
    appr = specs.resolve("approximation", approximation, Approximation)
    bits = check_bits(bits)
    if bits is not None:
        appr.bits = bits
    return appr


def subset_indices(n: int, subset: Any, seed: int, min_samples: int = MIN_SUBSET) -> np.ndarray | None:
    """Seeded, sorted sample indices for search-time scoring; None means all samples.

    A float is a fraction of the samples, an int a count; either is raised to ``min_samples`` (or all
    samples) so that search-time comparisons are not drowned in sampling noise.
    """
    subset = check_subset(subset)
    if subset is None:
        return None
    count = subset if isinstance(subset, int) else int(math.ceil(subset * n))
    count = min(n, max(count, min_samples, 1))
    if count >= n:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=count, replace=False))


def _knob_values(appr: Approximation, layers, knobs: Any) -> dict:
    if knobs is None:
        return {layer.name: appr.knob_values(layer) for layer in layers}
    out = {}
    for layer in layers:
        if isinstance(knobs, dict):  # per layer: every value must be valid
            values = knobs.get(layer.name)
            out[layer.name] = (appr.knob_values(layer) if values is None
                               else sorted({check_knob(appr, layer, v) for v in values}, key=_order))
            continue
        valid = set()  # one list for all layers: values a layer cannot take are dropped for it
        for v in knobs:
            try:
                valid.add(check_knob(appr, layer, v))
            except InvalidSettingError:
                pass
        if not valid:
            check_knob(appr, layer, max(knobs, key=_order))  # raises, naming the layer and the valid range
        out[layer.name] = sorted(valid)
    return out


def check_knob(appr: Approximation, layer, value: Any) -> Any:
    """``appr.check_knob``, where a value of the wrong type (a string, None) is an InvalidSettingError too."""
    try:
        return appr.check_knob(layer, value)
    except WsxError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidSettingError(f"knob {value!r} for layer {layer.name!r} is not a valid {appr.knob_name} "
                                  f"for {appr.name} ({exc}); see its knob_values for examples") from None


def _order(value: Any) -> tuple:
    """Sort key for knob values of mixed types (the valid ones sort as themselves)."""
    return (0, value) if isinstance(value, (int, float, tuple)) else (1, repr(value))


# -- explore --------------------------------------------------------------------------------------
def explore(model: Any, data: Any, *, metric: Any = None, strategy: Any = "divide-and-conquer",
            backend: Any = None, clusterer: Any = None, approximation: Any = "weight-sharing",
            target: Any = None, max_drop: float | None = None, max_increase: float | None = None,
            output: Any = None, subset: Any = "auto", seed: int = 0, budget: int | None = None,
            out: Any = None, progress: bool = True, test_data: Any = None, bits: int | None = None,
            time_limit: float | None = None, knobs: Any = None, batch_size: int = 256,
            device: str | None = None, executor: Any = None, min_subset: int = MIN_SUBSET,
            restart: bool = False, threads: int | None = None, exclude_unused: bool = True,
            early_rejection: Any = "exact") -> Result:
    """Search per-layer knob values (k for weight sharing) and return the front of metric loss
    against compression rate.

    ``data``: ``(inputs, labels)``, inputs alone, ``wsx.Data(inputs=, labels=)`` or a loader of such
    batches; inputs and labels are arrays or dicts / tuples of arrays (``wsx.data``). ``metric``:
    "top1" (the default when not given), "agreement", "cosine", "mse", "psnr" (``wsx.metrics``), a
    callable ``(outputs, labels) -> float`` (higher is better) or ``wsx.metric(fn, ...)``; fidelity
    metrics compare with the uncompressed model, so the data may be inputs alone. ``output`` picks
    what the metric sees of a dict / tuple / ModelOutput result (``wsx.outputs``). A configured
    ``backend`` instance created without a metric (or output) takes this one; one created with a
    different one is an error.

    The target, one of: ``target`` "mlperf-heavy" (99 % of the baseline; the default for
    higher-is-better metrics), "mlperf-light" (98 %) or a fraction; ``max_drop`` (higher-is-better
    metrics) or ``max_increase`` (lower-is-better ones), an absolute tolerance in the metric's loss
    unit (percentage points for top-1 and agreement). Search-time scores use a seeded ``subset``
    (fraction or count, at least ``min_subset`` samples; "auto", the default, is 10 % raised to the
    size whose standard error at the target is 2/3 of the allowed loss where that adds at most
    ``AUTO_EXTRA_SECONDS`` per scoring, timed on 512 samples; a resumed run keeps its size); the
    front is re-scored on all data, and on ``test_data`` when given. A subset whose standard error
    exceeds the allowed loss gets a note with the subset size that would not: a small one flatters
    whole regions and costs CR on all data (LeNet-5 / Fashion-MNIST: 1 000 of 10 000 images, mean CR
    10.3; 3 000, 13.3). ``budget`` caps scorings, ``time_limit`` the search seconds; ``knobs``
    overrides candidate knob values ({layer: [values]} or one list for all layers); ``bits`` is B.
    Layers whose weights cannot influence the selected output (``Backend.unused_layers``) are left
    out of the search and the CR, and listed in ``result.unused_layers`` (``exclude_unused=False``
    keeps them). With ``out`` the result is saved there and every scoring is journaled as it is made
    (``out/journal.jsonl``): the same call after a crash resumes where it stopped, rescoring nothing;
    a journal of another model, data or settings is refused unless ``restart=True`` discards it.
    One run at a time may use an ``out`` directory (a second one raises OutputError).
    Every argument is checked before anything is scored. The user's model is bit-identical
    afterwards, whether the call returns, raises or is interrupted. ``threads`` caps torch's CPU
    threads for the run (default: this process's share of the cores, ``wsx.threads.auto_threads``;
    see ``wsx.threads`` for TensorFlow and JAX). ``executor`` decides where candidates are scored:
    None or "serial" in this process; "ray" on a Ray cluster's workers, optionally with settings
    (``"ray:address=auto,workers=8,gpus_per_worker=1"``; wsx_plugins.executors.ray_executor), or an
    Executor instance. The same seed gives the same result on any executor.

    ``early_rejection``: with a metric that is a mean of per-sample values with known bounds (top-1,
    agreement, cosine, MSE, ``wsx.metric(..., per_sample=True, bounds=...)``), search-time scoring
    stops on a candidate once it cannot meet the target on the subset: "exact" (the default: even if
    every remaining sample scored the best value; with a class axis, as for top-1 and agreement, the
    subset is scored nearest a change of class first, ``Backend.sample_margins``, so that a candidate
    flipping one is stopped on its first batch), a confidence such as 0.99 (also on a statistical
    bound at that level; the subset is then scored in a seeded random order), or False (every
    candidate on every sample). Rejected candidates are recorded as such (``Candidate.rejected``,
    the samples seen and their bound), count as scorings and fail the target; every candidate on the
    front or meeting the target was scored on the whole subset. ``result.extras["sample_forwards"]``
    counts candidates x samples run (search, final re-scoring, test); ``extras["sample_orders"]`` the
    times a strategy had the subset ordered by a candidate's margins (``Problem.order_samples_by``,
    one forward of the subset each, counted in the search's).
    """
    t_start = time.perf_counter()
    # the metric decides what a target means (its direction): checked with the other arguments
    metric_ = resolve_metric(metric) if metric is not None else \
        backend.metric_ if isinstance(backend, Backend) else resolve_metric(None)
    spec = target_spec(metric_, target, max_drop, max_increase)
    seed = check_seed(seed)
    budget = check_count("budget", budget, allow_none=True, unit="scorings")
    time_limit = check_seconds("time_limit", time_limit)
    subset = check_subset(subset)
    bits = check_bits(bits)
    batch_size = check_count("batch_size", batch_size)
    min_subset = check_count("min_subset", min_subset, minimum=0)
    knobs = check_knobs(knobs)
    out = check_out(out)
    threads = None if threads is None else check_threads(threads)
    early_rejection = check_early_rejection(early_rejection)
    if data is None and not isinstance(backend, Backend):
        raise InvalidDataError("data=None: explore scores the model on data; pass (inputs, labels), the inputs "
                               "alone (metrics that compare with the uncompressed model) or a loader")
    strat = resolve_strategy(strategy)
    appr = resolve_approximation(approximation, bits)
    clus = resolve_clusterer(clusterer, seed) if appr.uses_clusterer else None
    runner = resolve_executor(executor)
    with ExitStack() as stack:
        if out is not None:
            stack.enter_context(OutDirLock(out))  # before anything is scored: one run per out dir
        kwargs = dict(batch_size=batch_size, device=device)
        be = scoring_backend(model, data, backend, metric=metric, output=output, **kwargs)
        stack.callback(be.close)
        snapshot = be.snapshot()
        stack.callback(be.restore, snapshot)  # runs before close: the model is put back first
        prog = Progress(progress)
        stack.callback(prog.finish)
        n_threads, thread_notes, restore_threads = limit_threads(threads)
        stack.callback(restore_threads)
        test_be = None
        if test_data is not None:
            test_be = scoring_backend(model, test_data, type(be), what="test_data", metric=be.metric_,
                                      output=be.output, **kwargs)
            stack.callback(test_be.close)
        return _explore(stack, be, test_be, strat, appr, clus, runner, prog, t_start,
                        spec=spec, subset=subset, seed=seed, budget=budget, out=out, time_limit=time_limit,
                        knobs=knobs, min_subset=min_subset, restart=restart, threads=n_threads,
                        thread_notes=thread_notes, snapshot=snapshot, exclude_unused=exclude_unused,
                        early_rejection=early_rejection)


def scoring_backend(model: Any, data: Any, backend: Any, *, what: str = "data", **kwargs) -> Backend:
    """The backend that scores ``model`` on ``data``; what the framework refuses (strings for inputs,
    ragged arrays) becomes an InvalidDataError naming it."""
    try:
        be = make_backend(model, data, backend, **kwargs)
    except (WsxError, MemoryError):
        raise
    except Exception as exc:
        raise InvalidDataError(f"{what}: the backend cannot read it with this model ({type(exc).__name__}: "
                               f"{str(exc).strip()[:300]}); pass (inputs, labels) as numeric arrays, or a loader "
                               "of such batches") from exc
    if be.data is None:
        raise InvalidDataError(f"{what}=None: the backend has no data to score the model on; pass "
                               "(inputs, labels), the inputs alone or a loader")
    return be


def _explore(stack: ExitStack, be: Backend, test_be: Backend | None, strat: Strategy, appr: Approximation,
             clus: Clusterer | None, executor, prog: Progress, t_start: float, *, spec: TargetSpec, subset,
             seed, budget, out, time_limit, knobs, min_subset, restart, snapshot, exclude_unused, threads=None,
             thread_notes=(), early_rejection="exact") -> Result:
    layers = be.layers()
    if not layers:
        raise InvalidModelError(f"backend {be.name!r} found no layers of interest in the model; wsx shares "
                                "the weights of convolution and linear layers (check include/exclude)")
    check_knob_layers(knobs, [layer.name for layer in layers])
    originals = {}
    for layer in layers:
        w = be.get_weights(layer.name)
        if not np.all(np.isfinite(w)):
            raise InvalidModelError(f"layer {layer.name!r} has NaN or Inf weights; fix the model or "
                                    "exclude the layer before exploring")
        originals[layer.name] = w
    knob_values = _knob_values(appr, layers, knobs)
    n = be.num_samples
    sub, auto_note = (_auto_subset(be, spec, n, seed, min_subset, out, restart) if subset == AUTO else
                      (subset_indices(n, subset, seed, min_subset), None))
    n_sub = n if sub is None else sub.size
    search_idx = sub  # the search subset in the order it is scored
    sub_indices = np.arange(n) if sub is None else sub  # the same samples, as indices (for reordering)
    if isinstance(early_rejection, float):  # a statistical bound needs the samples in random order
        search_idx = np.random.default_rng([seed, 12]).permutation(sub_indices)
    timers = Timers()
    forwards = {"search": 0, "final": 0, "test": 0}  # candidates x samples scored, by phase
    phase = ["search"]

    importances = None
    if getattr(appr, "needs_importances", False):  # once per exploration, on the search subset
        if not type(be).supports_gradients:
            raise InvalidSettingError(f"{appr.name} with sensitivity weighting needs gradients, which the {be.name} "
                                      "backend does not compute; use sensitivity=None or a backend that does "
                                      "(torch, tensorflow, jax)")
        with timers("importances"):
            importances = be.importances([layer.name for layer in layers], sub, seed=seed)
        be.restore(snapshot)
    backends = {"search": be} if test_be is None else {"search": be, "test": test_be}
    session = ScoringSession.create(backends, appr, clus, layers, weights_of=originals.__getitem__, timers=timers,
                                    importances=importances)
    cache = session.cache
    stack.callback(executor.close)  # before start: a start that fails half way releases what it got
    executor.start(session)

    partial_scale = None  # set where the search scores the nearest samples first (below)

    def checked(out: list, n: int, split: str) -> list:
        if partial_scale is not None and split == "search":
            out = [_rescaled(s, partial_scale) for s in out]
        values = np.asarray([s.value for s in out], dtype=np.float64)
        if values.shape != (n,) or not np.all(np.isfinite(values)):
            raise MetricError(f"backend {backends[split].name!r} (executor {executor.name!r}) returned {values!r} "
                              f"for {n} candidates on the {split} data; scoring must give one "
                              "finite metric value per candidate")
        return out

    parts_back = takes_keyword(executor.score, "on_result")

    def scored(population, subset_idx, split="search", stop=None, on_result=None) -> list[Scored]:
        """Knob dicts scored through the executor, checked: one finite value per candidate (parts the
        executor hands back before it returns go to ``on_result`` checked too)."""
        t0, clustered = time.perf_counter(), timers.get("clustering")
        kwargs = {}
        if on_result is not None and parts_back:
            kwargs["on_result"] = lambda indices, part: on_result(indices, checked(list(part), len(indices), split))
        try:
            out = list(executor.score(population, subset_idx, stop=stop, split=split, **kwargs))
        finally:  # materialising candidates here clusters: that time is clustering's, not scoring's
            timers.add("scoring", time.perf_counter() - t0 - (timers.get("clustering") - clustered))
        forwards["test" if split == "test" else phase[0]] += sum(int(s.samples) for s in out)
        return checked(out, len(population), split)

    def score(population, subset_idx, split="search") -> np.ndarray:
        return np.asarray([s.value for s in scored(population, subset_idx, split)], dtype=np.float64)

    # The unmodified model on all data, checked: finite inputs and outputs, not at chance level.
    check_inputs(be)
    base_full, chance = score_baseline(be, lambda pop: score(pop, None))
    chance = warn_if_chance(base_full, chance, n)
    test_base = None
    if test_be is not None:  # checked before the search, not after it
        check_inputs(test_be)
        test_base, _ = score_baseline(test_be, lambda pop: score(pop, None, "test"))
    unused = be.unused_layers() if exclude_unused else []
    be.restore(snapshot)  # probing must leave the model as it was; this holds a backend to it
    layers = [layer for layer in layers if layer.name not in unused]
    if not layers:
        raise InvalidModelError(f"no layer of interest can influence the selected output ({', '.join(unused)} "
                                "leave it unchanged); check output= and the model's forward")
    knob_values = {name: values for name, values in knob_values.items() if name not in unused}
    base_sub = base_full if sub is None else float(score([{}], sub)[0])
    metric = be.scoring_metric_ or be.metric_  # bound to the data: against labels or the reference
    ref_margins = None  # the uncompressed model's gaps, where the search scores the nearest samples first
    orders = [0]

    def order_by(gaps: np.ndarray) -> None:
        """The search subset nearest first by ``gaps``. A rejected candidate's distortion is a mean over
        the first samples, whose distances are divided by their (uncompressed) gaps: scaled by the ratio
        of the subset's mean 1/gap to theirs it estimates the subset's, which the divide-and-conquer
        model fits (MobileNetV2: CR 7.20 unscaled, 8.81 scaled, 9.07 in the data's order)."""
        nonlocal search_idx, partial_scale
        order = np.argsort(gaps, kind="stable")
        search_idx = sub_indices[order]
        partial_scale = partial_scales(ref_margins[order])

    if early_rejection == "exact" and can_reject(metric):
        # the samples nearest a change of class first: a candidate that flips one is rejected on its
        # first batch, not its third (EfficientNet-B0: most rejections came after 32 of 64 samples)
        ref_margins = be.sample_margins(sub, metric.decision_axis)
        if ref_margins is not None:
            order_by(ref_margins)

    def reorder(knobs) -> bool:
        """Problem.order_samples_by: the search subset in the order of ``knobs``' own margins."""
        if ref_margins is None:
            return False
        mine = be.sample_margins(sub, metric.decision_axis, weights=session.materialise([knobs])[0])
        if mine is None:
            return False
        forwards[phase[0]] += len(mine)
        orders[0] += 1
        order_by(mine)
        return True

    goal_full, goal_sub = spec.goal(metric, base_full), spec.goal(metric, base_sub)
    timers.seconds.pop("scoring", None)
    forwards.update(search=0, test=0)  # the checks and baselines above are not the search's
    shared = SHARED_SCORES.get()
    if shared is not None:
        shared = shared.setdefault(None if sub is None else hashlib.sha256(sub.tobytes()).hexdigest(), {})
    problem = Problem(layers=layers, knob_values=knob_values, approximation=appr,
                      cache=cache, score_fn=lambda pop, stop=None, on_result=None: scored(
                          pop, search_idx, stop=stop, on_result=on_result),
                      baseline_accuracy=base_sub, early_rejection=early_rejection,
                      target=goal_sub, budget=budget, time_limit=time_limit, seed=seed,
                      measured_on="subset" if sub is not None else "full", timers=timers, progress=prog,
                      shared_scores=shared, chunk_size=max(32, executor.candidates_per_call), reorder=reorder,
                      rejection_slack=_rejection_slack(metric, goal_sub.threshold, sub, n_sub))
    if chance:
        problem.note(chance)
    for message in thread_notes:
        problem.note(message)
    if unused:
        problem.note(f"{len(unused)} layer(s) cannot influence the selected output and are left as they are, "
                     f"out of the compression rate: {', '.join(unused)}")
    if be.output_note_:
        problem.note(be.output_note_)
    for message in be.notes():
        problem.note(message)
    asked = DEFAULT_SUBSET if subset == AUTO else subset
    if auto_note:
        problem.note(auto_note)
    elif sub is not None and asked is not None and n_sub > (math.ceil(float(asked) * n)
                                                             if isinstance(asked, float) else int(asked)):
        problem.note(f"subset raised to {n_sub} of {n} samples (min_subset={min_subset})")
    noisy = _subset_noise_note(problem, n_sub, n) if sub is not None else _resolution_note(problem, n)
    if noisy:
        problem.note(noisy)
    needed = getattr(strat, "first_step_scorings", None)
    if budget is not None and needed is not None and needed(problem) > budget:
        raise BudgetTooSmallError(
            f"budget={budget} scorings cannot cover {strat.name}'s first step ({needed(problem)} "
            "scorings); raise budget, pass fewer knob values (knobs=...), or pick another strategy")
    journal = None
    if out is not None:
        from .journal import Journal, ReplayCheck

        fingerprint = dict(be.fingerprint(), metric=metric_identity(metric))
        check = ReplayCheck(baseline=base_sub, value_range=metric_range(metric),
                            rescore=lambda pop, stop=None: scored(pop, search_idx, stop=stop),
                            agree=lambda old, new: replay_agrees(metric, n_sub, old, new))
        journal = Journal.attach(problem, out, fingerprint, _search_settings(
            be, strat, appr, clus, spec, subset, min_subset, n_sub, seed, problem), restart=restart,
            check=check)
        stack.callback(journal.close, raise_errors=False)
        if journal.replayed:
            problem.note(f"resumed from {journal.path}: {journal.replayed} scorings replayed, not re-scored")
            prog.message(f"wsx: resuming from {journal.path} ({journal.replayed} scorings already made)")
    prog.message(f"wsx: {strat.name} on {be.name}, {len(layers)} layers, baseline {metric.name} "
                 f"{base_full:.6g} ({metric.direction}), scoring on {n_sub}/{n} samples")
    t_search = time.perf_counter()
    strat.run(problem)
    search_seconds = time.perf_counter() - t_search
    scoring = timers.get("scoring")  # search-time scoring; the final re-scoring is timed apart
    prog.finish()

    # Re-score the front on all samples: search-time scores are noisy and selection-biased.
    t_final = time.perf_counter()
    phase[0] = "final"
    front = _rescore_front(problem, score, sub, goal_full, n_sub)
    extras = dict(problem.extras)
    extras["rejected"] = problem.rejections
    extras["sample_orders"] = orders[0]
    choice = getattr(be, "vmap_choice_", None)
    if choice:  # timed, so it can differ between runs; the paths round differently
        extras["vmap_choice"] = dict(choice)
        problem.note(f"vmap='auto' timed the population's paths and scored {choice['chosen']} "
                     f"({choice['stacked_s_per_candidate']:.3g} s stacked, {choice['loop_s_per_candidate']:.3g} s "
                     "one by one per candidate); their float rounding differs, which moves the search (the "
                     "output distortions its model fits, near-tie samples at the target): pass "
                     f"vmap={choice['chosen'] == 'stacked'} to the backend to repeat this run exactly")
    if shared is not None:
        extras["shared_scores"] = problem.shared_hits  # scorings taken from another run of a wsx.bench
    replayed = {"scoring": 0.0, "clustering": 0.0, "wall": 0.0}
    if journal is not None:
        extras["journal"] = journal.info()
        replayed = journal.timings
        journal.close()
    if test_be is not None:
        _score_on_test(lambda pop: score(pop, None, "test"), test_be, front, problem, spec, test_base)
    # candidates x samples run: what early rejection and the search's choices cost in forwards
    extras["sample_forwards"] = {**forwards, "total": sum(forwards.values())}
    final_seconds = time.perf_counter() - t_final
    executed = dict(executor.stats() or {})
    if executed:  # where candidates were scored: per-worker utilisation joins the timings
        extras["executor"] = {k: v for k, v in executed.items() if k != "timings"}
    # A resumed run reports the time its journal's records cost too, not only this session's.
    total = time.perf_counter() - t_start + replayed["wall"]
    clustering = timers.get("clustering") + replayed["clustering"]
    scoring += replayed["scoring"]
    timings = {"clustering": clustering, "scoring": scoring, "search": search_seconds + replayed["wall"],
               "final_scoring": final_seconds, "total": total,
               "overhead": max(total - clustering - scoring - final_seconds, 0.0)}
    if importances is not None:
        timings["importances"] = timers.get("importances")
    if journal is not None and journal.replayed:
        timings["from_journal"] = replayed["wall"]
    timings.update(executed.get("timings", {}))
    # "target" as given: a name, a fraction (a number, as before) or "max_drop=0.5" / "max_increase=0.01"
    target_setting = spec.value if spec.kind == "fraction" and spec.name is None else spec.label
    settings = {"target": target_setting, "target_fraction": spec.value if spec.kind == "fraction" else None,
                "max_drop": spec.value if spec.kind == "max_drop" else None,
                "max_increase": spec.value if spec.kind == "max_increase" else None,
                "max_accuracy_loss": goal_full.max_loss, "subset": subset,
                "subset_samples": n_sub, "samples": n, "seed": seed, "budget": budget,
                "time_limit": time_limit, "bits": appr.bits, "metric": metric.name,
                "strategy_params": _jsonable(strat.get_params()),
                "approximation_params": _jsonable(appr.get_params()),
                "clusterer_params": _jsonable(clus.get_params()) if clus else None,
                "knob_values": problem.knob_values, "stop_reason": problem.stop_reason,
                "executor": getattr(executor, "name", type(executor).__name__), "threads": threads,
                "early_rejection": early_rejection, "stop_rule": None if problem.stop_rule is None
                else problem.stop_rule.to_dict()}
    if journal is not None:
        settings["fingerprint"] = journal.fingerprint
    settings["config"] = {  # every setting, resolved, in the form `wsx explore --config` reads
        "strategy": {"name": strat.name, **settings["strategy_params"]},
        "clusterer": {"name": clus.name, **settings["clusterer_params"]} if clus else None,
        "approximation": {"name": appr.name, **settings["approximation_params"]}, "backend": be.name,
        "knobs": _jsonable({"knobs": knobs})["knobs"], "target": settings["target"], "subset": subset,
        "min_subset": min_subset, "budget": budget, "time_limit": time_limit, "bits": appr.bits, "seed": seed,
        "early_rejection": early_rejection, "executor": specs.describe(executor)}
    result = Result(front=front, history=problem.history,
                    baseline=Baseline(accuracy=base_full, bits=problem.total_baseline_bits,
                                      subset_accuracy=base_sub, test_accuracy=test_base),
                    timings=timings, scorings=problem.scorings, settings=settings, strategy=strat.name,
                    backend=be.name, clusterer=clus.name if clus else "", approximation=appr.name,
                    layers=[layer.to_dict() for layer in layers], notes=problem.notes, extras=extras,
                    metric=metric.describe(), unused_layers=list(unused), importances=importances)
    if out is not None:
        result.save(out)
    return result


def metric_identity(metric) -> str:
    """The metric's name, what it compares with, its direction and, for a callable, the digest of its
    code (wsx.identity)."""
    fn = getattr(metric, "fn", None)
    code = "builtin" if fn is None else code_digest(fn)
    return f"{metric.name}:{code}:{metric.against}:{'higher' if metric.greater_is_better else 'lower'}"


def metric_range(metric) -> tuple[float, float]:
    """The values a metric can take: the bounds of a mean of per-sample values when declared (top-1
    and agreement [0, 1], cosine [-1, 1], MSE [0, inf)), anything finite otherwise."""
    if metric.per_sample and metric.bounds is not None:
        return metric.bounds
    return (-math.inf, math.inf)


def counts_samples(metric) -> bool:
    """A mean of per-sample 0 / 1 values (top-1, agreement): two execution paths may differ by
    whole samples' flips."""
    return metric.per_sample and metric.bounds == (0.0, 1.0) and metric.unit == "pp"


def replay_agrees(metric, n_sub: int, old: float, new: float) -> bool:
    """Whether a journaled score and a fresh one are the same scoring: within two samples for top-1
    and agreement (a population forward may round differently and flip a near-tie), 1e-4 relative
    otherwise."""
    if counts_samples(metric):
        return abs(old - new) <= 2.0 / max(n_sub, 1) + 1e-12
    return abs(old - new) <= 1e-4 * max(1.0, abs(old), abs(new))


def _standard_error(metric, value: float, n_sub: int) -> float | None:
    """The standard error of a mean of ``n_sub`` per-sample values in [0, 1] (top-1, agreement) at
    ``value``, in the metric's loss unit; None for other metrics."""
    if not (metric.per_sample and metric.bounds == (0.0, 1.0)):
        return None
    p = min(max(value, 1e-3), 1 - 1e-3)
    return math.sqrt(p * (1 - p) / n_sub) * metric.scale


def _subset_se(problem: Problem, n_sub: int) -> float | None:
    """The search subset's standard error at the target's value (``_standard_error``)."""
    return _standard_error(problem.metric, problem.target_accuracy, n_sub)


def _rescore_margin(metric, target_value: float, n_sub: int) -> float:
    """How far past the target (loss unit) a candidate's loss on the search subset may lie and still be
    re-scored on all samples at the end: for a mean of per-sample values in [0, 1] (top-1, agreement),
    3 standard errors at the target's value, as it may be legal on all data; for other metrics any
    distance. Early rejection on a subset stops a candidate only past it (``Problem.rejection_slack``):
    LeNet-5 / Fashion-MNIST's seed 0 rejected every candidate with conv3 at 2 bits on its subset, by
    bounds 0.02-0.34 pp past the target, though they meet it on all samples (CR 13.70 once spared)."""
    se = _standard_error(metric, target_value, n_sub)
    return math.inf if se is None else 3.0 * se


def _rejection_slack(metric, target_value: float, sub, n_sub: int) -> float:
    """``Problem.rejection_slack``: the re-scoring margin on a subset; none on all samples (the search's
    scores are final) or where the margin is unbounded (a metric whose noise wsx cannot size: rejecting
    only past the target, as ever, keeps early rejection of any use there)."""
    margin = 0.0 if sub is None else _rescore_margin(metric, target_value, n_sub)
    return margin if math.isfinite(margin) else 0.0


def _quiet_size(se_one: float, max_loss: float, n: int) -> int:
    """Samples at which a standard error of ``se_one`` on one sample falls to 2/3 of the allowed loss."""
    return min(n, math.ceil((1.5 * se_one / max_loss) ** 2))


def _auto_subset(be: Backend, spec: TargetSpec, n: int, seed: int, min_subset: int, out, restart: bool):
    """``subset="auto"``: the 10 % default (at least ``min_subset`` samples), raised to the size whose
    standard error at the target is 2/3 of the allowed loss when that costs at most
    ``AUTO_EXTRA_SECONDS`` more per scoring (timed on the unmodified model). A small subset flatters
    whole regions of the search space and the front's best then miss the target on all samples
    (LeNet-5 / Fashion-MNIST: mean test CR 10.3 on 1 000 images, 13.3 on 3 000); where scoring is dear
    (a ResNet on a CPU) the 10 % stays and a note names the size. A resumed run keeps its journal's
    size. Returns (indices or None, note or None)."""
    base = subset_indices(n, DEFAULT_SUBSET, seed, min_subset)
    if base is None:
        return None, None
    recorded = None if restart or out is None else journal_setting(out, "subset_samples")
    if recorded is not None:  # the size this run started with, however the timing comes out now
        return subset_indices(n, int(recorded), seed, min_subset), None
    probe = base[:AUTO_PROBE]
    t0 = time.perf_counter()
    try:
        value = be.score_detailed([{}], probe)[0].value
    except Exception:  # the baseline's scoring names what is wrong with the model or data
        return base, None
    per_sample = (time.perf_counter() - t0) / probe.size
    metric = be.scoring_metric_ or be.metric_
    goal = spec.goal(metric, value)
    se_one = _standard_error(metric, goal.threshold, 1)
    max_loss = goal.max_loss
    if se_one is None or not (math.isfinite(value) and math.isfinite(max_loss) and max_loss > 0):
        return base, None
    wanted = _quiet_size(se_one, max_loss, n)
    if wanted <= base.size:
        return base, None
    extra = (wanted - base.size) * per_sample
    if extra > AUTO_EXTRA_SECONDS:
        return base, None  # the noise note names the size
    sub = subset_indices(n, wanted, seed, min_subset)
    return sub, (f"subset=auto: {n if sub is None else sub.size} of {n} samples (the 10 % default raised: "
                 f"its standard error at the target would exceed 2/3 of the allowed loss, and the larger "
                 f"subset costs about {extra:.2g} s more per scoring)")


def _subset_noise_note(problem: Problem, n_sub: int, n: int) -> str | None:
    """A note when the search subset's standard error exceeds the allowed loss: the subset then
    flatters or condemns whole regions, and the front's best may miss the target on all samples."""
    se = _subset_se(problem, n_sub)
    if se is None or not math.isfinite(problem.max_loss) or se <= problem.max_loss:
        return None
    wanted = _quiet_size(_subset_se(problem, 1), problem.max_loss, n)
    return (f"the search scores {n_sub} of {n} samples, whose standard error ({se:.3g}) exceeds the allowed "
            f"loss ({problem.max_loss:.3g}): candidates near the target may miss it on all samples and the "
            f"final CR come out lower; subset={wanted} (or a larger fraction) trades scoring time for it")


def _resolution_note(problem: Problem, n: int) -> str | None:
    """A note when one sample of all ``n`` moves a 0 / 1 per-sample metric by more than the allowed
    loss: the target then lets no sample change, every layer alone scores a loss of 0 or more than
    allowed, and a combination step that models the layers' losses has nothing to go on (divide-and-
    conquer then models their output distortion, ``Candidate.distortion``)."""
    metric = problem.metric
    if not counts_samples(metric) or not (0 < problem.max_loss < metric.scale / n):
        return None
    return (f"one of the {n} samples moves {metric.name} by {metric.scale / n:.3g} {metric.unit}, more than the "
            f"allowed loss ({problem.max_loss:.3g}): the target lets no sample change, and the layers' losses "
            "are only 0 or failure (divide-and-conquer models their outputs' distortion instead); score on "
            f"{math.ceil(5 * metric.scale / problem.max_loss)} samples or more, or allow a larger loss")


def partial_scales(gaps: np.ndarray) -> np.ndarray:
    """Per count m of samples seen, in the search's order (``gaps``: each sample's divisor of its output
    distance, ``Backend.sample_margins``): the subset's mean 1/gap over the first m samples' mean. A mean
    distance over the first m samples times it estimates the subset's mean, exactly where the samples'
    undivided distances are equal."""
    weight = 1.0 / np.asarray(gaps, dtype=np.float64)
    return weight.mean() / (np.cumsum(weight) / np.arange(1, weight.size + 1))


def _rescaled(s: Scored, scale: np.ndarray) -> Scored:
    """A rejected score's distortion, a mean over its first ``s.samples`` samples in the search's
    order, times ``scale`` there (see ``_explore``'s sample order); other scores as they are."""
    if not s.rejected or s.distortion is None or not 0 < s.samples <= scale.size:
        return s
    return dataclasses.replace(s, distortion=float(s.distortion * scale[s.samples - 1]))


def _rescore_front(problem: Problem, score, sub, goal_full: Goal, n_sub: int) -> list:
    history = problem.history
    if not history:
        return []
    candidates = pareto_front(history)
    if sub is None:
        return candidates
    # Re-score the subset front near and above the target (``_rescore_margin``)
    margin = _rescore_margin(problem.metric, problem.target_accuracy, n_sub)
    chosen = [c for c in candidates if c.accuracy_loss <= problem.max_loss + margin] or candidates[:1]
    # and the strategy's nominated fallbacks (Problem.nominate) near or inside the target, off the front
    seen = {knob_key(c.knobs) for c in chosen}
    known = {knob_key(c.knobs): c for c in history}
    for key in problem.finalists:
        c = known.get(key)
        if c is not None and key not in seen and not c.rejected and c.accuracy_loss <= problem.max_loss + margin:
            chosen.append(c)
            seen.add(key)
    values = score([c.knobs for c in chosen], None)
    full = []
    for c, v in zip(chosen, values):
        full.append(Candidate(knobs=dict(c.knobs), accuracy=float(v), accuracy_loss=goal_full.loss(v),
                              compression_rate=c.compression_rate, meets_target=goal_full.meets(v),
                              measured_on="full", size_bits=c.size_bits, origin=c.origin))
    return pareto_front(full)


def _score_on_test(score, test_be: Backend, front: list, problem: Problem, spec: TargetSpec,
                   base: float) -> None:
    if not front:
        return
    values = score([c.knobs for c in front])
    goal = spec.goal(test_be.scoring_metric_ or problem.metric, base)
    for c, v in zip(front, values):
        c.test_accuracy = float(v)
        c.test_accuracy_loss = goal.loss(v)
        c.test_meets_target = goal.meets(v)


def _search_settings(be, strat, appr, clus, spec, subset, min_subset, n_sub, seed, problem) -> dict:
    """Everything that decides which candidates a search scores and what they score (a journal is
    only resumed under the same); budget and time limit only decide where it stops, so they may change."""
    return {"backend": be.name, "metric": problem.metric.describe(), "output": repr(be.output),
            "layers": list(problem.layer_names), "strategy": strat.name,
            "strategy_params": _jsonable(strat.get_params()), "approximation": appr.name,
            "approximation_params": _jsonable(appr.get_params()), "clusterer": clus.name if clus else None,
            "clusterer_params": _jsonable(clus.get_params()) if clus else None, "target": spec.label,
            "subset": subset, "min_subset": min_subset, "subset_samples": n_sub, "seed": seed,
            "knob_values": problem.knob_values, "early_rejection": problem.early_rejection}


def _jsonable(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        out[k] = v if isinstance(v, (int, float, str, bool, type(None), list, dict)) else repr(v)
    return out


# -- apply ----------------------------------------------------------------------------------------
def _rebuild(kind: str, name: str, params: dict | None) -> Any:
    """A plugin instance with the parameters a result recorded (unknown keys ignored)."""
    import inspect

    cls = plugins.get(kind, name)
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in (params or {}).items() if k in accepted})


def approximated_weights(model: Any, candidate: Any, *, result: Result | None = None, backend: Any = None,
                         clusterer: Any = None, approximation: Any = None, seed: int | None = None,
                         bits: int | None = None, importances: dict | None = None) -> tuple[Backend, dict, dict]:
    """(backend, {layer: approximated weights}, {layer: Approximated}) for a candidate, reproducing
    the clustering of the run that produced it (same clusterer, parameters and seed; with
    sensitivity weighting, the ``importances`` it clustered with: ``result.importances``)."""
    if importances is None and result is not None:
        importances = getattr(result, "importances", None)
    knobs = candidate.knobs if isinstance(candidate, Candidate) else dict(candidate)
    settings = result.settings if result is not None else {}
    if seed is None:
        seed = settings.get("seed", 0)
    try:
        return _approximated(model, knobs, result, settings, backend, clusterer, approximation, seed, bits,
                             importances)
    except (TypeError, ValueError, OverflowError) as exc:
        if result is None or isinstance(exc, WsxError):
            raise
        # Settings read back from a results.json (an edited one) that the plugins cannot work with.
        raise CorruptFileError(f"the result's settings do not rebuild its approximation and clusterer "
                               f"({type(exc).__name__}: {exc}); re-run the exploration, or pass clusterer= and "
                               "approximation= yourself") from exc


def _approximated(model, knobs, result, settings, backend, clusterer, approximation, seed, bits, importances):
    if approximation is None and result is not None and result.approximation:
        approximation = _rebuild("approximation", result.approximation, settings.get("approximation_params"))
    appr = resolve_approximation(approximation or "weight-sharing",
                                 bits if bits is not None else settings.get("bits"))
    if clusterer is None and result is not None and result.clusterer:
        clusterer = _rebuild("clusterer", result.clusterer, settings.get("clusterer_params") or {"seed": seed})
    clus = resolve_clusterer(clusterer, seed) if appr.uses_clusterer else None
    be = make_backend(model, None, backend)
    by_name = {layer.name: layer for layer in be.layers()}
    weights, parts = {}, {}
    for name, knob in knobs.items():
        if name not in by_name:
            raise InvalidSettingError(f"the candidate names layer {name!r}, which this model does not have "
                                      f"(layers: {list(by_name)}); apply it to the model it was found on")
        knob = check_knob(appr, by_name[name], knob)  # a results.json may have been edited
        extra = {"importance": (importances or {}).get(name)} if getattr(appr, "needs_importances", False) else {}
        part = appr.apply(be.get_weights(name), knob, layer=by_name[name], clusterer=clus, **extra)
        weights[name] = part.weights
        parts[name] = part
    return be, weights, parts


def apply(model: Any, candidate: Any, *, result: Result | None = None, backend: Any = None,
          clusterer: Any = None, approximation: Any = None, seed: int | None = None,
          importances: dict | None = None) -> Any:
    """Write a candidate's shared weights into ``model`` (explicitly; explore never does).

    Pass the ``result`` the candidate came from so the same clusterer, parameters and seed are used.
    Returns the model (for JAX: the new params, pytrees being immutable).
    """
    be, weights, _ = approximated_weights(model, candidate, result=result, backend=backend,
                                          clusterer=clusterer, approximation=approximation, seed=seed,
                                          importances=importances)
    return be.write_weights(weights)
