"""Divide and conquer (thesis ch. 5): layer-wise reduction of each layer's knob range to phi_i, then
NSGA-II over the combinations of phi_i."""
from __future__ import annotations

import numpy as np

from wsx.hookspecs import hookimpl
from wsx.strategy import Strategy

from .nsga import run_nsga2


def select_phi(problem, name: str, scored: list) -> tuple[list, bool]:
    """phi_i: per knob group (index bit-width for weight sharing) the best-AL candidate meeting the
    target. Returns (sorted knobs, relaxed) — relaxed when no candidate of the layer meets the target,
    in which case the best AL per group is kept regardless."""
    legal = [c for c in scored if c.meets_target]
    relaxed = not legal
    pool = scored if relaxed else legal
    best: dict = {}
    for c in pool:
        knob = c.knobs[name]
        group = problem.approximation.group_key(problem.layer(name), knob)
        key = (c.accuracy_loss, problem.layer_size_bits(name, knob))  # tie: the smaller layer
        if group not in best or key < best[group][0]:
            best[group] = (key, knob)
    return sorted(knob for _, knob in best.values()), relaxed


class DivideAndConquer(Strategy):
    """Layer-wise exploration over each layer's knob values (others untouched), phi_i = best AL per
    index bit-width among candidates meeting the target, then a combination search over phi:
    ``combination="scoring"`` runs NSGA-II with every candidate scored (thesis approach III).

    ``pop_size`` and ``generations`` set NSGA-II (thesis: 100 x 100; the cache makes repeated
    candidates free). ``seed=None`` takes the exploration's seed.
    """

    name = "divide-and-conquer"

    def __init__(self, *, combination: str = "scoring", pop_size: int = 100, generations: int = 100,
                 crossover: float = 0.9, mutation: float = 0.2, seed: int | None = None):
        self.combination = combination
        self.pop_size = pop_size
        self.generations = generations
        self.crossover = crossover
        self.mutation = mutation
        self.seed = seed

    def _check(self) -> None:
        from wsx.errors import InvalidSettingError

        if self.combination not in self._combiners():
            raise InvalidSettingError(f"combination={self.combination!r} is unknown; use one of "
                                      f"{sorted(self._combiners())}")
        if self.pop_size < 2 or self.generations < 1:
            raise InvalidSettingError("pop_size must be >= 2 and generations >= 1")

    def _combiners(self) -> dict:
        return {"scoring": self._combine_scoring}

    def first_step_scorings(self, problem) -> int:
        return sum(len(v) for v in problem.knob_values.values())

    def _run(self, problem) -> None:
        self._check()
        self.layerwise_ = {}
        self.phi_ = {}
        self.relaxed_ = []
        total = self.first_step_scorings(problem)
        with problem.stage("layer-wise", total):
            for name in problem.layer_names:
                population = [{name: kn} for kn in problem.knob_values[name]]
                scored = problem.evaluate(population, origin=f"layer-wise:{name}")
                self.layerwise_[name] = scored
                self.phi_[name], relaxed = select_phi(problem, name, scored)
                if relaxed:
                    self.relaxed_.append(name)
                    problem.note(f"layer {name}: no knob value meets the target on its own; phi keeps the "
                                 "best accuracy per group (target relaxed for this layer)")
        problem.extras["phi"] = {k: list(v) for k, v in self.phi_.items()}
        problem.extras["layerwise"] = {
            name: [[c.knobs[name], c.accuracy_loss, bool(c.meets_target)] for c in scored]
            for name, scored in self.layerwise_.items()}
        self._combiners()[self.combination](problem)

    def _combine_scoring(self, problem) -> None:
        seed = problem.seed if self.seed is None else self.seed
        with problem.stage("nsga2 over phi", self.pop_size * self.generations):
            self.nsga_ = run_nsga2(problem, self.phi_, evaluate=lambda pop: problem.evaluate(pop, origin="nsga2"),
                                   pop_size=self.pop_size, generations=self.generations,
                                   crossover=self.crossover, mutation=self.mutation, seed=seed)


@hookimpl
def wsx_strategies():
    return [DivideAndConquer]
