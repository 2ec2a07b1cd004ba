"""A tiny numpy-only backend (two dense layers) for fast tests of the engine's input checks, the
journal and the artifact code; it imports no deep-learning framework."""
from __future__ import annotations

import numpy as np

from wsx.backend import Backend
from wsx.data import as_data
from wsx.hookspecs import hookimpl
from wsx.layers import LayerInfo


def make_mlp(seed: int = 0, n: int = 400) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """({layer: weights}, (inputs, labels)) where the labels are the clean model's predictions."""
    rng = np.random.default_rng(seed)
    weights = {"fc1": rng.normal(size=(24, 8)).astype(np.float32),
               "fc2": rng.normal(size=(5, 24)).astype(np.float32)}
    x = rng.normal(size=(n, 8)).astype(np.float32)
    y = forward(weights, x).argmax(axis=1)
    return weights, (x, y)


def forward(weights: dict, x: np.ndarray) -> np.ndarray:
    return np.maximum(x @ weights["fc1"].T, 0) @ weights["fc2"].T


class TinyBackend(Backend):
    """Scores a dict of numpy weights; ``bad_scores`` (a value) lets a test corrupt the scores."""

    name = "tiny"

    def __init__(self, model, data=None, *, metric="top1", batch_size=128, device=None, bad_scores=None):
        # data: any form wsx.data.as_data takes (labels may be absent)
        super().__init__(model, data, metric=metric, batch_size=batch_size, device=device)
        self.bad_scores = bad_scores
        self._data = None if data is None else as_data(data)

    def _layers(self):
        return [LayerInfo(name, w.shape, int(w.size), "Linear", (name,)) for name, w in self.model.items()]

    def get_weights(self, name):
        return self.model[name].copy()

    def set_weights(self, name, array):
        self.model[name] = np.asarray(array, dtype=np.float32).copy()

    @property
    def num_samples(self):
        return 0 if self._data is None else self._data.num_samples

    def _iter_batches(self, subset):
        for sel, batch in self._data.batches(subset, self.batch_size):
            yield batch.inputs, batch.labels, sel

    def _prepare(self, population):
        return [{**self.model, **cand} for cand in population]

    def _forward_population(self, inputs, prepared):
        return [forward(w, inputs) for w in prepared]

    def score(self, population, subset=None):
        values = super().score(population, subset)
        return values if self.bad_scores is None else np.full(len(values), self.bad_scores)


class TinyPlugin:
    """Registers TinyBackend as the backend "tiny" (for commands that take --backend by name)."""

    @hookimpl
    def wsx_backends(self):
        return [TinyBackend]
