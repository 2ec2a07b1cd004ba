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
from .scoring import Scored


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

    Proxies are kept forever: they are what surrogate strategies read.
    """

    def __init__(self, approximation: Approximation, clusterer: Clusterer | None, weights_of,
                 timers: Timers, max_bytes: int = 2 << 30):
        self.approximation = approximation
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
        with self.timers("clustering"):
            results = self.approximation.apply_many(weights, missing, layer=layer, clusterer=self.clusterer)
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
    return tuple(sorted(knobs.items()))


class Problem:
    """Layers of interest, candidate knob values per layer and a cached, budgeted evaluator.

    ``evaluate(population)`` takes knob dicts ({layer name: knob}; missing layers keep their
    original weights) and returns Candidates scored on the search subset. Identical candidates are
    scored once. ``score_fn(knob dicts)`` scores a chunk of them (the engine's executor path) and
    returns one ``wsx.scoring.Scored`` or plain value per candidate. ``budget`` caps the number of scorings; ``time_limit`` the seconds of search. When
    either runs out, evaluate scores what it still may and raises SearchStopped, which ends the
    strategy quietly.

    Strategies judge candidates by their **metric loss** (``loss(value)``, ``Candidate.accuracy_loss``):
    positive is worse whatever the metric's direction, in the metric's loss unit (percentage points
    for accuracies), and a candidate meets the target when its loss is at most ``max_loss``. So a
    strategy minimises loss and maximises CR without knowing which metric runs. ``target`` is a
    ``wsx.metrics.Goal`` (what explore passes) or, for a top-1-like metric, the fraction of
    ``baseline_accuracy`` to keep.
    """

    def __init__(self, *, layers: list[LayerInfo], knob_values: Mapping[str, list],
                 approximation: Approximation, cache: ApproximationCache, score_fn,
                 baseline_accuracy: float, target: Any, budget: int | None = None,
                 time_limit: float | None = None, seed: int = 0, measured_on: str = "subset",
                 timers: Timers | None = None, progress=None, chunk_size: int = 32,
                 shared_scores: dict | None = None):
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
        # Scores other runs made on the same model, data, subset and approximation (wsx.bench): a hit
        # is taken instead of scored but still counts as a scoring, so budgets mean the same.
        self.shared_scores = shared_scores
        self.shared_hits = 0
        self.scorings = 0
        self.notes: list[str] = []
        self.extras: dict = {}
        self.stop_reason = ""
        self._t0 = time.perf_counter()
        self._baseline_bits = {layer.name: approximation.baseline_bits(layer) for layer in self.layers}
        self.total_baseline_bits = sum(self._baseline_bits.values())

    # -- cheap, analytical ---------------------------------------------------------------------
    def layer(self, name: str) -> LayerInfo:
        return self._by_name[name]

    def size_bits(self, knobs: Mapping[str, Any]) -> int:
        total = 0
        for name in self.layer_names:
            if name in knobs:
                total += self.approximation.size_bits(self._by_name[name], knobs[name])
            else:
                total += self._baseline_bits[name]
        return total

    def compression_rate(self, knobs: Mapping[str, Any]) -> float:
        return compression_rate([self.total_baseline_bits], [self.size_bits(knobs)])

    def layer_size_bits(self, name: str, knob: Any) -> int:
        return self.approximation.size_bits(self._by_name[name], knob)

    def proxy(self, name: str, knob: Any) -> float:
        """Cheap error of one layer at one knob (inertia for weight sharing); computes if needed."""
        key = (name, knob)
        if key not in self.cache.proxies:
            self.cache.fill(self._by_name[name], [knob])
        return self.cache.proxies[key]

    def proxies(self, name: str, knobs: Iterable) -> list[float]:
        knobs = list(knobs)
        self.cache.fill(self._by_name[name], knobs)
        return [self.cache.proxies[(name, kn)] for kn in knobs]

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

    # -- budget --------------------------------------------------------------------------------
    @property
    def budget_left(self) -> int | None:
        return None if self.budget is None else max(self.budget - self.scorings, 0)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def _time_up(self) -> bool:
        return self.time_limit is not None and self.elapsed >= self.time_limit

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
            out[name] = kn.item() if isinstance(kn, np.generic) else kn
        return out

    def candidate(self, knobs: Mapping[str, Any], accuracy: float, origin: str = "",
                  measured_on: str | None = None) -> Candidate:
        return Candidate(knobs=dict(knobs), accuracy=float(accuracy),
                         accuracy_loss=self.loss(accuracy),
                         compression_rate=self.compression_rate(knobs),
                         meets_target=self.meets_target(accuracy),
                         measured_on=measured_on or self.measured_on,
                         size_bits=self.size_bits(knobs), origin=origin)

    def evaluate(self, population: Sequence[Mapping[str, Any]], origin: str = "") -> list[Candidate]:
        """Score a population (cached, budgeted). Returns one Candidate per entry, in order."""
        population = [self._check(p) for p in population]
        keys = [knob_key(p) for p in population]
        todo: dict[tuple, dict] = {}
        for key, knobs in zip(keys, population):
            if key not in self.scores and key not in todo:
                todo[key] = knobs
        if self.progress is not None:
            self.progress.skip(len(set(keys)) - len(todo))  # known already: nothing to score
        stopped = None
        if self.budget is not None and len(todo) > self.budget_left:
            todo = dict(list(todo.items())[: self.budget_left])
            stopped = "scoring budget reached"
        if self.shared_scores is not None:
            hits = [(k, v) for k, v in todo.items() if k in self.shared_scores]
            for key, knobs in hits:
                del todo[key]
                self.shared_hits += 1
                self._add(key, knobs, self.shared_scores[key], origin)
                self._on_scored(key, knobs, self.shared_scores[key], origin)
            if hits and self.progress is not None:
                self.progress.update(len(hits))
        items = list(todo.items())
        for start in range(0, len(items), self.chunk_size):
            if self._time_up():
                stopped = "time limit reached"
                break
            chunk = items[start:start + self.chunk_size]
            results = self._score_fn([knobs for _, knobs in chunk])
            for (key, knobs), res in zip(chunk, results):
                value = float(res.value if isinstance(res, Scored) else res)
                self._add(key, knobs, value, origin)
                self._on_scored(key, knobs, value, origin)
                if self.shared_scores is not None:
                    self.shared_scores[key] = value
            if self.progress is not None:
                self.progress.update(len(chunk))
        if stopped is None and self._time_up():
            stopped = "time limit reached"
        if stopped:
            self.stop_reason = stopped
            raise SearchStopped(stopped)
        return [self.candidate(knobs, self.scores[key], origin) for key, knobs in zip(keys, population)]

    def _add(self, key: tuple, knobs: dict, value: float, origin: str) -> None:
        self.scores[key] = value
        self.scorings += 1
        self.history.append(self.candidate(knobs, value, origin))

    def _on_scored(self, key: tuple, knobs: dict, value: float, origin: str) -> None:
        """Hook for journals: called right after each scoring."""

    def replay(self, knobs: Mapping[str, Any], value: float, origin: str = "") -> bool:
        """Take a scoring made by an earlier, interrupted run (wsx.journal) as if evaluate had just
        made it: it joins the history and counts against the budget, but is not scored again.
        Returns False for a candidate already known."""
        knobs = self._check(knobs)
        key = knob_key(knobs)
        if key in self.scores:
            return False
        self._add(key, knobs, float(value), origin)
        return True

    def _materialise(self, knobs: Mapping[str, Any]) -> dict:
        out = {}
        for name, kn in knobs.items():
            out[name] = self.cache.get(self._by_name[name], kn).weights
        return out
