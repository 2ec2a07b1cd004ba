"""Greedy layer-by-layer search (thesis ch. 4): Algorithm 1 (``greedy``), Algorithm 2 with the
inertia filter (``greedy-filter``) and Algorithm 3, the Pareto population variant (``greedy-pareto``)."""
from __future__ import annotations

import math

import numpy as np

from wsx.errors import InvalidSettingError
from wsx.hookspecs import hookimpl
from wsx.result import pareto_mask
from wsx.strategy import Strategy

from ._common import evenly_spaced, index_bits_of

ORDERS = ("first-to-last", "last-to-first")


def inertia_filter(problem, name: str, ratio: float, per_group: bool = False) -> list:
    """The ceil(ratio x N) knob values of layer ``name`` with the lowest inertia (Algorithm 2, line 8).

    Clusters every knob value (that is the algorithm's line 5); ties in inertia keep the smaller k.
    ``per_group`` applies the ratio within each index bit-width instead (at least one per group).
    """
    ks = list(problem.knob_values[name])
    if ratio >= 1.0:
        return ks
    if per_group:
        groups: dict = {}
        for k in ks:
            groups.setdefault(index_bits_of(problem, name, k), []).append(k)
        kept = set()
        for members in groups.values():
            kept.update(_lowest(problem, name, members, ratio))
        return [k for k in ks if k in kept]
    return _lowest(problem, name, ks, ratio)


def _lowest(problem, name: str, ks: list, ratio: float) -> list:
    inertia = np.asarray(problem.proxies(name, ks), dtype=float)
    keep = max(1, math.ceil(ratio * len(ks) - 1e-9))
    order = np.lexsort((np.arange(len(ks)), inertia))[:keep]
    return [ks[i] for i in sorted(order)]


def _check(order: str, ratio: float) -> None:
    if order not in ORDERS:
        raise InvalidSettingError(f"order={order!r}; use one of {list(ORDERS)}")
    if not 0.0 < ratio <= 1.0:
        raise InvalidSettingError(f"inertia_filter_ratio={ratio!r}: give a fraction in (0, 1]")


class Greedy(Strategy):
    """Algorithm 1: for each layer in turn, score every knob value with the earlier layers kept
    approximated and keep the one with the best AL (ties: the smaller layer).

    ``order`` is "first-to-last" or "last-to-first"; ``passes`` > 1 repeats the sweep seeded with the
    previous pass until a pass changes nothing (DATE 2020: at most 30). ``inertia_filter_ratio`` < 1
    scores only that fraction of each layer's candidates, those of lowest inertia (Algorithm 2).
    """

    name = "greedy"

    def __init__(self, *, order: str = "first-to-last", passes: int = 1, inertia_filter_ratio: float = 1.0):
        self.order = order
        self.passes = passes
        self.inertia_filter_ratio = inertia_filter_ratio

    def _run(self, problem) -> None:
        _check(self.order, self.inertia_filter_ratio)
        if self.passes < 1:
            raise InvalidSettingError("passes must be >= 1")
        names = list(problem.layer_names)
        if self.order == "last-to-first":
            names.reverse()
        filtered = {}
        self.knobs_ = {}
        self.passes_ = 0
        for p in range(self.passes):
            changed = False
            with problem.stage(f"greedy pass {p + 1}", None):
                for name in names:
                    if name not in filtered:
                        filtered[name] = inertia_filter(problem, name, self.inertia_filter_ratio)
                    population = [{**self.knobs_, name: k} for k in filtered[name]]
                    scored = problem.evaluate(population, origin=f"{self.name}:pass{p + 1}:{name}")
                    # rejected candidates (scored on part of the data) fail: the last resort
                    best = min(scored, key=lambda c: (c.rejected, c.accuracy_loss, c.size_bits))
                    changed |= self.knobs_.get(name) != best.knobs[name]
                    self.knobs_[name] = best.knobs[name]
            self.passes_ = p + 1
            problem.extras["greedy"] = {"knobs": dict(self.knobs_), "passes": self.passes_,
                                        "scored_per_layer": {n: len(v) for n, v in filtered.items()}}
            if not changed:
                break


class GreedyFilter(Greedy):
    """Algorithm 2: Algorithm 1 scoring only the ``inertia_filter_ratio`` fraction of each layer's
    candidates with the lowest inertia (thesis: 5, 15, 33 %; 100 % is Algorithm 1)."""

    name = "greedy-filter"

    def __init__(self, *, order: str = "first-to-last", passes: int = 1, inertia_filter_ratio: float = 0.15):
        super().__init__(order=order, passes=passes, inertia_filter_ratio=inertia_filter_ratio)


class GreedyPareto(Strategy):
    """Algorithm 3: a population carried from layer to layer. Each member is extended with the
    filtered knob values of the next layer (earlier layers stay approximated), everything is scored,
    and the members Pareto-efficient in (AL, ``objective``) survive.

    ``objective="b_index"`` is the thesis' ceil(log2 k) of the layer just explored; "size" uses the
    candidate's total size in bits (a closer CR proxy). ``max_population`` caps the survivors (spread
    evenly along the front); None keeps them all. ``filter_scope="group"`` applies the inertia filter
    within each index bit-width: over a whole log-spaced k range the lowest-inertia fraction holds
    only the largest k, all of one bit-width, and the (AL, b_index) population would collapse to a
    single member; "layer" filters the whole range as Algorithm 2 does.
    """

    name = "greedy-pareto"

    def __init__(self, *, order: str = "first-to-last", inertia_filter_ratio: float = 0.15,
                 objective: str = "b_index", max_population: int | None = 16, filter_scope: str = "group"):
        self.order = order
        self.inertia_filter_ratio = inertia_filter_ratio
        self.objective = objective
        self.max_population = max_population
        self.filter_scope = filter_scope

    def _run(self, problem) -> None:
        _check(self.order, self.inertia_filter_ratio)
        if self.objective not in ("b_index", "size"):
            raise InvalidSettingError(f"objective={self.objective!r}; use 'b_index' or 'size'")
        if self.filter_scope not in ("group", "layer"):
            raise InvalidSettingError(f"filter_scope={self.filter_scope!r}; use 'group' or 'layer'")
        names = list(problem.layer_names)
        if self.order == "last-to-first":
            names.reverse()
        self.population_ = [{}]
        for name in names:
            ks = inertia_filter(problem, name, self.inertia_filter_ratio, self.filter_scope == "group")
            population = [{**member, name: k} for member in self.population_ for k in ks]
            with problem.stage(f"greedy-pareto {name}", len(population)):
                scored = problem.evaluate(population, origin=f"greedy-pareto:{name}")
            self.population_ = [c.knobs for c in self._select(problem, name, scored)]
        problem.extras["greedy_pareto"] = {"population": [dict(p) for p in self.population_]}

    def _select(self, problem, name: str, scored: list) -> list:
        # rejected candidates fail and their loss is partial: they survive only if nothing else is left
        scored = [c for c in scored if not c.rejected] or scored
        scored = sorted(scored, key=lambda c: c.size_bits)  # of equal points the smaller comes first
        cost = np.array([index_bits_of(problem, name, c.knobs[name]) if self.objective == "b_index"
                         else c.size_bits for c in scored], dtype=float)
        al = np.array([c.accuracy_loss for c in scored])
        # pareto_mask maximises its second argument: minimise cost by negating it
        keep = [c for c, m in zip(scored, pareto_mask(al, -cost)) if m]
        keep.sort(key=lambda c: (c.size_bits, c.accuracy_loss))
        if self.max_population is not None and len(keep) > self.max_population:
            keep = [keep[i] for i in evenly_spaced(len(keep), self.max_population)]
        return keep


@hookimpl
def wsx_strategies():
    return [Greedy, GreedyFilter, GreedyPareto]
