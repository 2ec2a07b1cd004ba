"""Random search: the baseline every strategy must beat at the same budget."""
from __future__ import annotations

import numpy as np

from wsx.errors import InvalidSettingError
from wsx.hookspecs import hookimpl
from wsx.strategy import Strategy

from ._common import knobs_at, seed_of
from .doe import space_size


class RandomSearch(Strategy):
    """Scores distinct knob combinations drawn uniformly from every layer's full knob range.

    Draws until the budget is spent (``samples`` candidates when the exploration has no budget),
    ``batch`` at a time so that the time limit is checked between batches.
    """

    name = "random"

    def __init__(self, *, samples: int = 1000, batch: int = 64, seed: int | None = None):
        self.samples = samples
        self.batch = batch
        self.seed = seed

    def _run(self, problem) -> None:
        if self.samples < 1 or self.batch < 1:
            raise InvalidSettingError("samples and batch must be >= 1")
        rng = np.random.default_rng(seed_of(self, problem))
        sizes = np.array([len(v) for v in problem.knob_values.values()])
        space = space_size(sizes)
        total = int(min(self.samples if problem.budget is None else problem.budget_left, space))
        seen: set = set()
        with problem.stage("random", total):
            while len(seen) < total:
                rows = []
                while len(rows) < min(self.batch, total - len(seen)):
                    row = tuple(int(v) for v in rng.integers(0, sizes))
                    if row not in seen:
                        seen.add(row)
                        rows.append(row)
                problem.evaluate([knobs_at(problem.knob_values, row) for row in rows], origin="random")


@hookimpl
def wsx_strategies():
    return [RandomSearch]
