"""Conformance suite for Strategy plugins, run on a cheap synthetic Problem (no network).

    from wsx.testing.strategies import check_strategy
    check_strategy(MyStrategy, pop_size=20)      # constructor params; raises AssertionError on a broken rule

``CHECKS`` maps a readable name to each check so a test suite can parametrise over them.
``synthetic_problem()`` builds the Problem: four layers of Laplacian weights whose "accuracy" is a
known function of the per-layer relative squared error the shared weights cause (additive, plus an
optional interaction term), so a strategy's outputs can be checked against the truth.

What is checked, and why:

- parameters: keyword-only with defaults, stored under their own names, ``get_params`` rebuilds an
  equal object, ``set_params`` round-trips (results record them; benchmarks rebuild strategies);
  state learned while running ends with ``_``;
- budget: never more scorings than ``budget`` — also when it is smaller than the strategy's first step;
- history: every scoring is in ``problem.history`` once, with the true score (a surrogate's
  prediction must never be recorded as a measurement);
- determinism: the same seed gives the same history, candidate for candidate;
- time limit: the search stops by itself once the time limit is spent (virtual clock: each scoring
  costs one second, so no wall-clock assertion);
- rejection: with early rejection, candidates that miss the target come back rejected with a
  flattering partial value (just short of the target, better than their truth); the search must
  still run within its budget and deterministically, and no rejected candidate meets the target.
"""
from __future__ import annotations

import inspect
import math
from typing import Callable

import numpy as np

from ..clusterer import Clusterer, Clustering
from ..layers import LayerInfo
from ..problem import ApproximationCache, Problem, Timers, knob_key
from ..scoring import Scored
from ._common import check_init_params

__all__ = ["CHECKS", "check_strategy", "synthetic_problem", "true_accuracy", "SyntheticProblem"]

LAYERS = (("l1.weight", (8, 6)), ("l2.weight", (12, 10)), ("l3.weight", (20, 15)), ("l4.weight", (10, 9)))
SENSITIVITY = (0.06, 0.02, 0.04, 0.03)  # accuracy drop per unit of relative squared error
BASELINE = 0.9
K_VALUES = (2, 3, 4, 6, 8, 12, 16, 32)


class SortedKMeans(Clusterer):
    """Tiny deterministic 1-D k-means (quantile start, Lloyd steps on sorted data) for the suite."""

    name = "testing-sorted-kmeans"

    def __init__(self, *, seed: int = 0, iterations: int = 20):
        self.seed = seed
        self.iterations = iterations

    def _cluster(self, w: np.ndarray, k: int) -> Clustering:
        srt = np.sort(w)
        c = np.quantile(srt, (np.arange(k) + 0.5) / k)
        for _ in range(self.iterations):
            cuts = np.searchsorted(srt, (c[1:] + c[:-1]) / 2)
            groups = np.split(srt, cuts)
            c = np.array([g.mean() if g.size else c[i] for i, g in enumerate(groups)])
        c = np.sort(c)
        labels = np.clip(np.searchsorted((c[1:] + c[:-1]) / 2, w), 0, k - 1).astype(np.int64)
        return Clustering(c, labels, float(((w - c[labels]) ** 2).sum()))


class SyntheticProblem(Problem):
    """A Problem whose clock advances ``seconds_per_scoring`` per scoring on top of real time."""

    seconds_per_scoring = 0.0

    @property
    def elapsed(self) -> float:
        return super().elapsed + self.scorings * self.seconds_per_scoring


def _weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1234)
    return {name: rng.laplace(0.0, 0.05, size=shape).astype(np.float32) for name, shape in LAYERS}


def true_accuracy(errors: dict[str, float], interaction: float = 0.0) -> float:
    """The synthetic metric from per-layer relative squared errors."""
    loss = sum(s * errors.get(name, 0.0) for (name, _), s in zip(LAYERS, SENSITIVITY))
    return BASELINE - loss - interaction * loss ** 2


def synthetic_problem(*, budget: int | None = None, time_limit: float | None = None, seed: int = 0,
                      interaction: float = 0.0, seconds_per_scoring: float = 0.0, chunk_size: int = 4,
                      k_values=K_VALUES, target: float = 0.99, reject: bool = False,
                      steps: int | None = None) -> SyntheticProblem:
    """A small Problem (4 layers, 8 knob values each) scored by ``true_accuracy``; no framework.

    ``reject``: candidates missing the target come back rejected (early rejection), seen on 100 of
    1000 samples, with a flattering partial value just short of the target's threshold.
    ``steps``: the metric moves in steps of 1 / ``steps`` (a top-1 on that many samples: the loss
    rounded to whole samples), and each score carries the unrounded loss as its ``distortion``."""
    from .. import plugins

    weights = _weights()
    appr = plugins.get("approximation", "weight-sharing")()
    layers = [LayerInfo(name, shape, int(np.prod(shape)), "Linear", (name.split(".")[0],)) for name, shape in LAYERS]
    norms = {name: float((w.astype(np.float64) ** 2).sum()) for name, w in weights.items()}
    timers = Timers()
    cache = ApproximationCache(appr, SortedKMeans(seed=seed), weights.__getitem__, timers)

    def truths(population):  # knob dicts, materialised here as the serial executor would
        out = []
        for cand in (problem._materialise(knobs) for knobs in population):
            errors = {n: float(((w.astype(np.float64) - weights[n]) ** 2).sum()) / norms[n] for n, w in cand.items()}
            out.append(true_accuracy(errors, interaction))
        return np.asarray(out)

    def score(population):
        values = truths(population)
        if steps is None:
            return values
        return [Scored(BASELINE - round((BASELINE - v) * steps) / steps, steps, distortion=BASELINE - v)
                for v in values]

    def score_rejecting(population, stop=None):
        values = truths(population)
        if stop is None:
            return [Scored(float(v), 1000) for v in values]
        return [Scored(stop.threshold - 1e-6, 100, True, stop.threshold - 5e-7) if v < stop.threshold
                else Scored(float(v), 1000) for v in values]

    problem = SyntheticProblem(layers=layers, knob_values={layer.name: list(k_values) for layer in layers},
                               approximation=appr, cache=cache, score_fn=score_rejecting if reject else score,
                               baseline_accuracy=BASELINE,
                               target=target, budget=budget, time_limit=time_limit, seed=seed,
                               measured_on="subset", timers=timers, chunk_size=chunk_size)
    problem.seconds_per_scoring = seconds_per_scoring
    problem.relative_norms = norms
    return problem


def relative_error(problem: Problem, name: str, k) -> float:
    """Relative squared error of layer ``name`` at knob ``k`` (inertia / Σ w²)."""
    return problem.proxy(name, k) / problem.relative_norms[name]


# -- checks ---------------------------------------------------------------------------------------
def _first_step(strategy, problem) -> int:
    fn = getattr(strategy, "first_step_scorings", None)
    return int(fn(problem)) if fn is not None else 0


def _budget_for(cls, params) -> int:
    probe = synthetic_problem()
    return _first_step(cls(**params), probe) + 30


def check_params(cls, params: dict) -> None:
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        assert p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD), f"{cls.__name__}: parameter {p.name!r} must be keyword-only"
        assert p.default is not p.empty, f"{cls.__name__}: parameter {p.name!r} needs a default"
    assert cls.name, f"{cls.__name__} has no name"
    check_init_params(cls, cls(), cls.__name__)
    s = cls(**params)
    got = s.get_params()
    for k, v in params.items():
        assert got[k] == v, f"{cls.__name__}: parameter {k!r} stored as {got[k]!r}, given {v!r}"
    assert type(s)(**got).get_params() == got, f"{cls.__name__}: get_params() does not rebuild an equal object"
    other = cls().set_params(**got)
    assert other.get_params() == got, f"{cls.__name__}: set_params(**get_params()) does not round-trip"
    repr(s)


def check_learned_state(cls, params: dict) -> None:
    s = cls(**params)
    before = set(vars(s))
    s.run(synthetic_problem(budget=_budget_for(cls, params)))
    new = [k for k in set(vars(s)) - before if not k.endswith("_") and not k.startswith("_")]
    assert not new, f"{cls.__name__}: attributes set while running must end with '_': {new}"
    assert s.get_params() == cls(**params).get_params(), f"{cls.__name__}: run() changed its parameters"


def check_budget(cls, params: dict) -> None:
    budget = _budget_for(cls, params)
    for b in (budget, 3, 1):
        problem = synthetic_problem(budget=b)
        cls(**params).run(problem)  # must not raise: the budget ends a search quietly
        assert problem.scorings <= b, f"{cls.__name__}: {problem.scorings} scorings for budget={b}"
    problem = synthetic_problem(budget=budget)
    cls(**params).run(problem)
    assert problem.scorings > 0, f"{cls.__name__} scored nothing with budget={budget}"


def check_history(cls, params: dict) -> None:
    problem = synthetic_problem(budget=_budget_for(cls, params), interaction=5.0)
    cls(**params).run(problem)
    h = problem.history
    assert len(h) == problem.scorings, f"{cls.__name__}: {problem.scorings} scorings but {len(h)} in history"
    keys = [knob_key(c.knobs) for c in h]
    assert len(set(keys)) == len(keys), f"{cls.__name__}: a candidate was recorded twice"
    assert set(keys) == set(problem.scores), f"{cls.__name__}: history and scores disagree"
    for c in h:
        errors = {n: relative_error(problem, n, k) for n, k in c.knobs.items()}
        truth = true_accuracy(errors, interaction=5.0)
        assert math.isclose(c.accuracy, truth, rel_tol=1e-9, abs_tol=1e-12), \
            f"{cls.__name__}: history holds {c.knobs} with accuracy {c.accuracy}, but it scores {truth} " \
            "(a surrogate prediction was recorded as a measurement?)"
        assert c.measured_on == problem.measured_on


def check_determinism(cls, params: dict) -> None:
    runs = []
    for _ in range(2):
        problem = synthetic_problem(budget=_budget_for(cls, params), seed=7, interaction=5.0)
        cls(**params).run(problem)
        runs.append([(knob_key(c.knobs), c.accuracy, c.origin) for c in problem.history])
    assert runs[0] == runs[1], f"{cls.__name__}: two runs with seed 7 gave different histories"


def check_time_limit(cls, params: dict) -> None:
    limit = 10.0
    free = synthetic_problem(seconds_per_scoring=1.0, chunk_size=4)
    cls(**params).run(free)
    problem = synthetic_problem(time_limit=limit, seconds_per_scoring=1.0, chunk_size=4)
    cls(**params).run(problem)  # must return quietly
    assert problem.scorings <= limit + problem.chunk_size, \
        f"{cls.__name__}: {problem.scorings} scorings with a time limit of {limit} one-second scorings"
    if free.scorings > limit + problem.chunk_size:  # it would have run past the limit
        assert problem.stop_reason == "time limit reached", \
            f"{cls.__name__}: the time limit did not stop the search (stop_reason={problem.stop_reason!r})"


def check_rejection(cls, params: dict) -> None:
    budget = _budget_for(cls, params) + 30
    runs = []
    for _ in range(2):
        problem = synthetic_problem(budget=budget, seed=7, interaction=5.0, reject=True, target=0.999)
        cls(**params).run(problem)  # must not raise
        assert problem.scorings <= budget, f"{cls.__name__}: {problem.scorings} scorings for budget={budget}"
        runs.append([(knob_key(c.knobs), c.accuracy, c.rejected) for c in problem.history])
        for c in problem.history:
            assert not (c.rejected and c.meets_target), f"{cls.__name__}: rejected {c.knobs} meets the target"
    assert runs[0] == runs[1], f"{cls.__name__}: two runs with rejection and seed 7 gave different histories"
    assert any(r for _, _, r in runs[0]), f"{cls.__name__}: the rejecting problem rejected nothing"


CHECKS: dict[str, Callable] = {
    "params": check_params,
    "learned-state": check_learned_state,
    "budget": check_budget,
    "history": check_history,
    "determinism": check_determinism,
    "time-limit": check_time_limit,
    "rejection": check_rejection,
}


def check_strategy(cls, **params) -> None:
    """Run every check on ``cls`` built with ``params``; raises AssertionError on the first failure."""
    for check in CHECKS.values():
        check(cls, params)
