"""The one place candidates are handed to a backend for scoring.

Strategies and backends never call each other; the engine sends every population through an
executor, so scoring can be spread over processes, devices or machines by swapping this object
alone. What crosses the seam is knob dicts ({layer name: knob}), never weights: the scoring side
materialises candidates from its own approximation cache (clustering is deterministic for a
clusterer and seed), and returns one ``wsx.scoring.Scored`` per candidate.

An executor is started once per exploration with a ``ScoringSession`` (the backends by data split and
the in-process approximation cache), then asked to ``score`` populations, then closed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from .scoring import Scored, StopRule


@dataclass
class ScoringSession:
    """What scoring needs in this process: ``backends`` by split ("search"; "test" when test data
    was given), the approximation ``cache`` that turns knobs into weights, and the ``layers`` of
    interest by name. Executors that score elsewhere rebuild the same from the ``spec``."""

    backends: dict
    cache: Any
    layers: dict
    spec: dict = field(default_factory=dict)

    def materialise(self, population: Sequence[Mapping[str, Any]]) -> list[dict[str, np.ndarray]]:
        """Each candidate's substituted weights; every layer's missing knobs are approximated in one
        call, so a clusterer sweeps a layer's k values at once (results equal one k at a time)."""
        wanted: dict[str, list] = {}
        for cand in population:
            for name, knob in cand.items():
                wanted.setdefault(name, []).append(knob)
        for name, knobs in wanted.items():
            self.cache.fill(self.layers[name], knobs)
        return [{name: self.cache.get(self.layers[name], knob).weights for name, knob in cand.items()}
                for cand in population]


class Executor:
    """Scores populations of knob dicts on a session's backends; see the module docstring."""

    name: ClassVar[str] = ""

    def start(self, session: ScoringSession) -> None:
        self.session = session

    def score(self, population: Sequence[Mapping[str, Any]], subset: np.ndarray | None, *,
              stop: StopRule | None = None, split: str = "search") -> list[Scored]:
        """One ``Scored`` per candidate, in order, on the ``subset`` of ``split``'s data (all if None)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release workers and what they hold."""


class SerialExecutor(Executor):
    """Scores a population in this process, in one pass over the data."""

    name = "serial"

    def score(self, population, subset, *, stop=None, split="search") -> list[Scored]:
        population = list(population)
        if not population:
            return []
        weights = self.session.materialise(population)
        return self.session.backends[split].score_detailed(weights, subset, stop=stop)
