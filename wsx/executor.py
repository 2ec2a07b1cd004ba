"""The one place candidates are handed to a backend for scoring.

Strategies and backends never call each other; the engine sends every population through an
executor, so scoring can be spread over devices or machines (e.g. a Ray actor pool calling
``backend.score`` on shards) by swapping this object alone.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


class SerialExecutor:
    """Scores a population in this process, in one pass over the data."""

    name = "serial"

    def score(self, backend, population: Sequence[dict], subset: np.ndarray | None) -> np.ndarray:
        return np.asarray(backend.score(population, subset), dtype=np.float64)
