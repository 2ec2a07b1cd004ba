"""The search problem every strategy sees: layers, knob values, evaluate(population) -> metric loss and CR."""
from __future__ import annotations

import time
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .approximation import Approximated, Approximation
from .clusterer import Clusterer
from .errors import InvalidSettingError, SearchStopped
from .layers import LayerInfo
from .metrics import Goal, TargetSpec, Top1, compression_rate, resolve_target
from .result import Candidate
from .scoring import Scored, StopRule

# "Leave this layer uncompressed": a knob every layer may take in a candidate (the layer keeps its
# original weights, as if the candidate did not name it); strategies add it to their choices.
UNCOMPRESSED = None


class Timers:
    """Accumulates seconds per activity (clustering, scoring)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, what: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[what] = self.seconds.get(what, 0.0) + time.perf_counter() - t0

    def add(self, what: str, seconds: float) -> None:
        self.seconds[what] = self.seconds.get(what, 0.0) + seconds

    def get(self, what: str) -> float:
        return self.seconds.get(what, 0.0)


class ApproximationCache:
    """(layer, knob) -> Approximated, bounded in bytes (least recently used goes first).

    Proxies are kept forever: they are what surrogate strategies read. ``importances`` ({layer: per-weight
    importances}) go to an approximation that clusters with them (``needs_importances``).
    """

    def __init__(self, approximation: Approximation, clusterer: Clusterer | None, weights_of,
                 timers: Timers, max_bytes: int = 2 << 30, importances: Mapping[str, np.ndarray] | None = None):
        self.approximation = approximation
        self.importances = importances
        self.clusterer = clusterer
        self.weights_of = weights_of
        self.timers = timers
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, Approximated] = OrderedDict()
        self._bytes = 0
        self.proxies: dict[tuple, float] = {}
        self.computed = 0

    def get(self, layer: LayerInfo, knob: Any) -> Approximated:
        key = (layer.name, knob)
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
            return hit
        self.fill(layer, [knob])
        return self._items[key]

    def fill(self, layer: LayerInfo, knobs: Sequence) -> None:
        """Compute every missing knob of one layer in one call (lets clusterers share a sort)."""
        missing = [kn for kn in dict.fromkeys(knobs) if (layer.name, kn) not in self._items]
        if not missing:
            return
        weights = self.weights_of(layer.name)
        extra = {"importance": self.importances[layer.name]} if self.importances is not None else {}
        with self.timers("clustering"):
            results = self.approximation.apply_many(weights, missing, layer=layer, clusterer=self.clusterer, **extra)
        self.computed += len(missing)
        for kn, res in zip(missing, results):
            key = (layer.name, kn)
            self.proxies[key] = float(res.proxy)
            self._items[key] = res
            self._bytes += res.weights.nbytes
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.weights.nbytes


def knob_key(knobs: Mapping[str, Any]) -> tuple:
    """The cache key of a candidate (UNCOMPRESSED layers are as if not named)."""
    return tuple(sorted((name, kn) for name, kn in knobs.items() if kn is not UNCOMPRESSED))


class Problem:
    """Layers of interest, candidate knob values per layer and a cached, budgeted evaluator.

    ``evaluate(population)`` takes knob dicts ({layer name: knob}; missing layers keep their
    original weights) and returns Candidates scored on the search subset. Identical candidates are
    scored once. ``score_fn(knob dicts)`` scores a chunk of them (the engine's executor path) and
    returns one ``wsx.scoring.Scored`` or plain value per candidate; one that takes a ``stop``
    keyword is handed the early-rejection rule; one that takes ``on_result`` is handed a callback
    ``on_result(indices, results)`` for parts of the chunk that finish before it returns (any order,
    each index once): each is journaled at once, so a run killed mid-chunk keeps them; the history
    still takes each chunk in order. ``budget`` caps the number of scorings; ``time_limit`` the
    seconds of search. When either runs out, evaluate scores what it still may and raises
    SearchStopped, which ends the strategy quietly.

    Strategies judge candidates by their **metric loss** (``loss(value)``, ``Candidate.accuracy_loss``):
    positive is worse whatever the metric's direction, in the metric's loss unit (percentage points
    for accuracies), and a candidate meets the target when its loss is at most ``max_loss``. So a
    strategy minimises loss and maximises CR without knowing which metric runs. ``target`` is a
    ``wsx.metrics.Goal`` (what explore passes) or, for a top-1-like metric, the fraction of
    ``baseline_accuracy`` to keep.

    A knob ``UNCOMPRESSED`` (None) leaves its layer as it is: ``{"a": None, "b": 4}`` is the candidate
    ``{"b": 4}``.

    **Early rejection** (``early_rejection``: "exact", a confidence in (0, 1), or False; see
    ``wsx.scoring``): ``stop_rule`` turns the goal into a ``StopRule`` handed to the scoring side, which
    may stop scoring a candidate that cannot meet the target. Such a candidate is recorded with
    ``rejected`` set (the samples seen, its bound), counts as a scoring and fails the target; its value
    is a mean over part of the subset, so strategies must not fit models on it. ``evaluate(...,
    reject=False)`` asks for full scores (a rejected candidate is then scored again, in full).
    ``rejection_slack`` (the metric's loss unit, default 0) lets a candidate run on until it cannot
    come within that of the target: on a subset the engine sets it to the margin within which its
    final re-scoring on all samples still considers a candidate past the target, so that rejection
    never takes from the front a candidate that may meet the target on all data.
    """

    def __init__(self, *, layers: list[LayerInfo], knob_values: Mapping[str, list],
                 approximation: Approximation, cache: ApproximationCache, score_fn,
                 baseline_accuracy: float, target: Any, budget: int | None = None,
                 time_limit: float | None = None, seed: int = 0, measured_on: str = "subset",
                 timers: Timers | None = None, progress=None, chunk_size: int = 32,
                 shared_scores: dict | None = None, early_rejection: Any = "exact", reorder=None,
                 rejection_slack: float = 0.0):
        self.layers = list(layers)
        self.layer_names = [layer.name for layer in self.layers]
        self._by_name = {layer.name: layer for layer in self.layers}
        self.knob_values = {name: list(knob_values[name]) for name in self.layer_names}
        self.approximation = approximation
        self.cache = cache
        self._score_fn = score_fn
        self.baseline_accuracy = float(baseline_accuracy)
        if not isinstance(target, Goal):
            target = TargetSpec("fraction", resolve_target(target)).goal(Top1(), self.baseline_accuracy)
        self.goal = target
        self.metric = target.metric
        self.target = target.spec.value if target.spec.kind == "fraction" else None
        self.target_accuracy = target.threshold
        self.budget = budget
        self.time_limit = time_limit
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.measured_on = measured_on
        self.timers = timers or Timers()
        self.progress = progress
        self.chunk_size = chunk_size
        self.history: list[Candidate] = []
        self.scores: dict[tuple, float] = {}  # knob key -> subset metric; pre-fillable (resume)
        self.rejected: dict[tuple, Scored] = {}  # knob keys whose score in ``scores`` is partial
        self.rejections = 0  # scorings that ended rejected
        self.distortions: dict[tuple, float] = {}  # knob key -> Scored.distortion, where measured
        self.early_rejection = early_rejection
        self.rejection_slack = float(rejection_slack)
        self._reorder = reorder  # knobs -> bool: the engine's sample order (order_samples_by)
        self._takes_stop = takes_keyword(score_fn, "stop")
        self._takes_on_result = takes_keyword(score_fn, "on_result")
        # Scorings an interrupted run made after some it did not finish (journal records past a gap):
        # taken, at their place, when evaluate asks for them. {knob key: [(knobs, value, origin, scored)]}
        self._pending: dict[tuple, list] = {}
        # Scores other runs made on the same model, data, subset and approximation (wsx.bench): a hit
        # is taken instead of scored but still counts as a scoring, so budgets mean the same.
        self.shared_scores = shared_scores
        self.shared_hits = 0
        self.scorings = 0
        self.notes: list[str] = []
        self.extras: dict = {}
        self.stop_reason = ""
        self.finalists: set[tuple] = set()  # knob keys also re-scored on all samples at the end
        self._t0 = time.perf_counter()
        self._baseline_bits = {layer.name: approximation.baseline_bits(layer) for layer in self.layers}
        self.total_baseline_bits = sum(self._baseline_bits.values())

    def nominate(self, candidates: Iterable) -> None:
        """Ask the final re-scoring on all samples to consider these candidates (Candidate or knob
        dicts) besides the subset's front: fallbacks for where the subset flatters a whole region, so
        that its front's best fail on all samples. Each one near or inside the target costs one
        scoring on all samples at the end (none when the search scores all samples)."""
        for c in candidates:
            knobs = c.knobs if isinstance(c, Candidate) else self._check(c)
            self.finalists.add(knob_key(knobs))

    # -- cheap, analytical ---------------------------------------------------------------------
    def layer(self, name: str) -> LayerInfo:
        return self._by_name[name]

    def size_bits(self, knobs: Mapping[str, Any]) -> int:
        total = 0
        for name in self.layer_names:
            if knobs.get(name, UNCOMPRESSED) is not UNCOMPRESSED:
                total += self.approximation.size_bits(self._by_name[name], knobs[name])
            else:
                total += self._baseline_bits[name]
        return total

    def compression_rate(self, knobs: Mapping[str, Any]) -> float:
        return compression_rate([self.total_baseline_bits], [self.size_bits(knobs)])

    def layer_size_bits(self, name: str, knob: Any) -> int:
        if knob is UNCOMPRESSED:
            return self._baseline_bits[name]
        return self.approximation.size_bits(self._by_name[name], knob)

    def proxy(self, name: str, knob: Any) -> float:
        """Cheap error of one layer at one knob (inertia for weight sharing; 0 for UNCOMPRESSED);
        computes if needed."""
        if knob is UNCOMPRESSED:
            return 0.0
        key = (name, knob)
        if key not in self.cache.proxies:
            self.cache.fill(self._by_name[name], [knob])
        return self.cache.proxies[key]

    def proxies(self, name: str, knobs: Iterable) -> list[float]:
        knobs = list(knobs)
        self.cache.fill(self._by_name[name], [kn for kn in knobs if kn is not UNCOMPRESSED])
        return [0.0 if kn is UNCOMPRESSED else self.cache.proxies[(name, kn)] for kn in knobs]

    def loss(self, value: float) -> float:
        """Metric loss of a metric value against the baseline (positive: worse)."""
        return self.goal.loss(value)

    def meets_target(self, value: float) -> bool:
        return self.goal.meets(value)

    @property
    def max_loss(self) -> float:
        """The largest metric loss that still meets the target."""
        return self.goal.max_loss

    @property
    def baseline(self) -> float:
        """The baseline metric value on the search subset."""
        return self.baseline_accuracy

    # the names from when every metric was an accuracy (kept for strategies written then)
    accuracy_loss = loss

    @property
    def max_accuracy_loss(self) -> float:
        return self.max_loss

    @property
    def stop_rule(self) -> StopRule | None:
        """The early-rejection rule for this goal, or None (off, or a metric that is not a mean of
        per-sample values with known bounds: such candidates are scored in full)."""
        from .backend import can_reject

        mode = self.early_rejection
        if mode is False or mode is None or not self._takes_stop or not can_reject(self.metric):
            return None
        goal = self.goal
        # what Goal.meets forgives, in metric units, plus rounding: never reject what it would pass;
        # and the slack: never reject what the final re-scoring on all samples would still consider
        tolerance = (1e-9 * max(1.0, abs(goal.max_loss)) + self.rejection_slack) / goal.metric.scale \
            + 1e-12 * max(1.0, abs(goal.threshold))
        return StopRule(threshold=goal.threshold, greater_is_better=self.metric.greater_is_better,
                        bounds=tuple(self.metric.bounds), confidence=None if mode == "exact" else float(mode),
                        tolerance=tolerance)

    # -- budget --------------------------------------------------------------------------------
    @property
    def budget_left(self) -> int | None:
        return None if self.budget is None else max(self.budget - self.scorings, 0)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def _time_up(self) -> bool:
        return self.time_limit is not None and self.elapsed >= self.time_limit

    def order_samples_by(self, knobs: Mapping[str, Any]) -> bool:
        """Score the subset's samples nearest a change of class under the candidate ``knobs`` first,
        from the next scoring on. Under exact early rejection the engine starts with those nearest
        for the uncompressed model; deep in a search the samples a candidate has brought near a
        change are others, and a neighbour that flips one should stop on its first batch, not pay
        every sample (measured on EfficientNet-B0's knapsack descent). Costs one forward of the
        candidate over the subset; full scores do not change, only where a rejected candidate stops. False (nothing done) where the engine keeps its order: no exact early
        rejection, no class decision in the metric, a statistical bound (which needs random order)."""
        if self._reorder is None:
            return False
        return bool(self._reorder(self._check(knobs)))

    def note(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)

    @contextmanager
    def stage(self, name: str, total: int | None = None):
        """A named step of a strategy scoring at most ``total`` candidates (None: not known in
        advance); drives the progress bar, whose total is also capped by the budget left."""
        if self.progress is not None:
            left = self.budget_left
            self.progress.start(name, total if left is None or total is None else min(total, left))
        try:
            yield
        finally:
            if self.progress is not None:
                self.progress.finish()

    # -- evaluation ----------------------------------------------------------------------------
    def _check(self, knobs: Mapping[str, Any]) -> dict:
        out = {}
        for name, kn in knobs.items():
            if name not in self._by_name:
                raise InvalidSettingError(f"unknown layer {name!r}; layers are {self.layer_names}")
            if kn is UNCOMPRESSED:
                continue
            out[name] = kn.item() if isinstance(kn, np.generic) else kn
        return out

    def candidate(self, knobs: Mapping[str, Any], accuracy: float, origin: str = "",
                  measured_on: str | None = None, scored: Scored | None = None) -> Candidate:
        rejected = scored is not None and scored.rejected
        return Candidate(knobs=dict(knobs), accuracy=float(accuracy),
                         accuracy_loss=self.loss(accuracy),
                         compression_rate=self.compression_rate(knobs),
                         meets_target=self.meets_target(accuracy) and not rejected,
                         measured_on=measured_on or self.measured_on,
                         size_bits=self.size_bits(knobs), origin=origin, rejected=rejected,
                         samples=int(scored.samples) if rejected else None,
                         bound=None if not rejected or scored.bound is None else float(scored.bound),
                         distortion=self.distortions.get(knob_key(knobs)))

    def evaluate(self, population: Sequence[Mapping[str, Any]], origin: str | Sequence[str] = "", *,
                 reject: bool = True) -> list[Candidate]:
        """Score a population (cached, budgeted). Returns one Candidate per entry, in order.

        ``origin`` names where the candidates come from: one name for all, or one per candidate (a
        population mixing several searches' steps). ``reject=False`` asks for full scores: no early
        rejection, and candidates rejected before are scored again (strategies fitting a model on the
        values ask so)."""
        population = [self._check(p) for p in population]
        keys = [knob_key(p) for p in population]
        origins = [origin] * len(population) if isinstance(origin, str) else list(origin)
        if len(origins) != len(population):
            raise ValueError(f"{len(origins)} origins for {len(population)} candidates")
        origin_of: dict[tuple, str] = {}
        for key, name in zip(keys, origins):
            origin_of.setdefault(key, name)
        rule = self.stop_rule if reject else None
        todo: dict[tuple, dict] = {}
        for key, knobs in zip(keys, population):
            known = key in self.scores and (reject or key not in self.rejected)
            if not known and key not in todo:
                todo[key] = knobs
        if self.progress is not None:
            self.progress.skip(len(set(keys)) - len(todo))  # known already: nothing to score
        stopped = None
        if self.budget is not None and len(todo) > self.budget_left:
            todo = dict(list(todo.items())[: self.budget_left])
            stopped = "scoring budget reached"
        if self.shared_scores is not None:
            hits = [(k, v) for k, v in todo.items() if _usable(self.shared_scores.get(k), rule)]
            for key, knobs in hits:
                del todo[key]
                self.shared_hits += 1
                self._record(key, knobs, self.shared_scores[key], origin_of[key])
            if hits and self.progress is not None:
                self.progress.update(len(hits))
        items = list(todo.items())
        for start in range(0, len(items), self.chunk_size):
            if self._time_up():
                stopped = "time limit reached"
                break
            chunk = items[start:start + self.chunk_size]
            self._score_chunk(chunk, origin_of, rule)
            if self.progress is not None:
                self.progress.update(len(chunk))
        if stopped is None and self._time_up():
            stopped = "time limit reached"
        if stopped:
            self.stop_reason = stopped
            raise SearchStopped(stopped)
        return [self.candidate(knobs, self.scores[key], name, scored=self.rejected.get(key))
                for key, knobs, name in zip(keys, population, origins)]

    def _score_chunk(self, chunk: list, origin_of: dict, rule: StopRule | None) -> None:
        """Score ``chunk`` [(key, knobs)] and record it into the history in chunk order; each result is
        journaled as soon as the score function hands it back (``on_result``, parts in any order), a
        pending scoring of an interrupted run is taken instead of scored."""
        base = len(self.history)
        done: dict[int, Any] = {}
        for i, (key, _) in enumerate(chunk):
            res = self._take_pending(key, rule)
            if res is not None:
                done[i] = res
        ask = [i for i in range(len(chunk)) if i not in done]
        recorded = 0

        def on_result(indices, results) -> None:
            nonlocal recorded
            for j, res in zip(indices, results):
                i = ask[j]
                if i in done:
                    continue
                key, knobs = chunk[i]
                self._on_scored(key, knobs, *_unpack(res), origin=origin_of[key], at=base + i)
                done[i] = res
            while recorded in done:  # the history grows in chunk order whatever order parts come in
                key, knobs = chunk[recorded]
                self._add(key, knobs, *_unpack(done[recorded]), origin=origin_of[key])
                self._share(key, done[recorded])
                recorded += 1

        on_result([], [])  # the pending ones at the chunk's start
        if ask:
            kwargs = {} if rule is None else {"stop": rule}
            if self._takes_on_result:
                kwargs["on_result"] = on_result
            results = self._score_fn([chunk[i][1] for i in ask], **kwargs)
            on_result(range(len(ask)), results)  # what was not handed back in parts

    def _take_pending(self, key: tuple, rule: StopRule | None) -> Any:
        """A pending scoring of ``key`` (an interrupted run's, journaled) that answers this request, or None."""
        entries = self._pending.get(key)
        if not entries:
            return None
        _, value, _, scored = entries[0]
        if not _usable(value if scored is None else scored, rule):
            return None
        entries.pop(0)
        if not entries:
            del self._pending[key]
        return scored if scored is not None else value

    def _share(self, key: tuple, res: Any) -> None:
        if self.shared_scores is not None:
            value, scored = _unpack(res)
            keep = scored is not None and (scored.rejected or scored.distortion is not None)
            self.shared_scores[key] = scored if keep else value

    def _record(self, key: tuple, knobs: dict, res: Any, origin: str) -> None:
        """One scoring's result (a Scored or a plain value) into the tables, history and journal."""
        at = len(self.history)
        value, scored = _unpack(res)
        self._add(key, knobs, value, scored, origin=origin)
        self._on_scored(key, knobs, value, scored, origin=origin, at=at)

    def _add(self, key: tuple, knobs: dict, value: float, scored: Scored | None = None, *, origin: str) -> None:
        self.scores[key] = value
        if scored is not None and scored.distortion is not None:
            self.distortions[key] = float(scored.distortion)
        self.scorings += 1
        if scored is not None and scored.rejected:
            self.rejected[key] = scored
            self.rejections += 1
        else:
            self.rejected.pop(key, None)
        self.history.append(self.candidate(knobs, value, origin, scored=scored))

    def _on_scored(self, key: tuple, knobs: dict, value: float, scored: Scored | None = None, *, origin: str,
                   at: int) -> None:
        """Hook for journals: called as soon as each scoring is back; ``at`` is its place in the history."""

    def replay(self, knobs: Mapping[str, Any], value: float, origin: str = "",
               scored: Scored | None = None, at: int | None = None) -> bool:
        """Take a scoring made by an earlier, interrupted run (wsx.journal) as if evaluate had just
        made it: it joins the history and counts against the budget, but is not scored again.
        Returns False for a candidate already known (a full score replaces a rejected one).

        ``at`` is its place in that run's history (None: next). Replayed in that order, a scoring past
        a gap (the run was killed while parts of a chunk before it were still being scored) waits
        until evaluate asks for it, and joins the history there."""
        knobs = self._check(knobs)
        key = knob_key(knobs)
        if self._pending or (at is not None and at > len(self.history)):
            self._pending.setdefault(key, []).append((knobs, float(value), origin, scored))
            return True
        if key in self.scores and not (key in self.rejected and not (scored is not None and scored.rejected)):
            return False
        self._add(key, knobs, float(value), scored, origin=origin)
        return True

    def _materialise(self, knobs: Mapping[str, Any]) -> dict:
        out = {}
        for name, kn in knobs.items():
            out[name] = self.cache.get(self._by_name[name], kn).weights
        return out


def _unpack(res: Any) -> tuple[float, Scored | None]:
    """(value, Scored or None) of a score function's result (a Scored or a plain value)."""
    scored = res if isinstance(res, Scored) else None
    return float(res.value if scored is not None else res), scored


def _usable(shared: Any, rule: StopRule | None) -> bool:
    """Whether a score another run made (wsx.bench) answers this request: a full one always; a
    rejected one only where rejection is asked for."""
    if shared is None:
        return False
    return not (isinstance(shared, Scored) and shared.rejected) or rule is not None


def takes_keyword(fn: Any, name: str) -> bool:
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in params)
