"""A third-party wsx plugin used by the tests: a numpy MLP backend and a uniform-k strategy.

The backend deliberately writes candidate weights into the user's model while scoring (as a naive
plugin might), so the engine's restore guarantee is what keeps the model intact.
"""
from __future__ import annotations

import numpy as np

import wsx
from wsx.data import as_data
from wsx.executor import Executor


class ToyModel:
    """Two-layer MLP held as a dict of numpy arrays."""

    def __init__(self, seed: int = 0, n_in: int = 16, n_hidden: int = 32, n_out: int = 4):
        rng = np.random.default_rng(seed)
        self.params = {"w1": rng.laplace(0, 0.3, (n_in, n_hidden)).astype(np.float32),
                       "w2": rng.laplace(0, 0.3, (n_hidden, n_out)).astype(np.float32)}

    def forward(self, x):
        return np.maximum(x @ self.params["w1"], 0) @ self.params["w2"]


def toy_data(model: ToyModel, n: int = 400, seed: int = 1):
    """Inputs and the labels the model itself predicts (baseline accuracy 1.0)."""
    x = np.random.default_rng(seed).normal(size=(n, model.params["w1"].shape[0])).astype(np.float32)
    return x, model.forward(x).argmax(1)


class ToyBackend(wsx.Backend):
    name = "toy-numpy"

    @classmethod
    def accepts(cls, model):
        return isinstance(model, ToyModel)

    def __init__(self, model, data=None, **kwargs):
        super().__init__(model, data, **kwargs)
        if data is not None:
            d = as_data(data)
            self.x, self.y = d.inputs.astype(np.float32), d.labels

    def _layers(self):
        return [wsx.LayerInfo(n, w.shape, w.size, "Dense") for n, w in self.model.params.items()]

    def get_weights(self, name):
        return self.model.params[name].copy()

    def set_weights(self, name, array):
        self.model.params[name] = np.asarray(array, dtype=np.float32).copy()

    @property
    def num_samples(self):
        return len(self.y)

    def _iter_batches(self, subset):
        idx = np.arange(len(self.y)) if subset is None else subset
        for s in range(0, idx.size, self.batch_size):
            sel = idx[s:s + self.batch_size]
            yield self.x[sel], self.y[sel]

    def _prepare(self, population):
        return list(population)

    def _forward_population(self, inputs, prepared):
        outs = []
        for cand in prepared:
            for name, w in cand.items():  # mutates the user's model on purpose
                self.model.params[name] = w.astype(np.float32)
            outs.append(self.model.forward(inputs))
        return outs


class UniformK(wsx.Strategy):
    """Tries the same knob index on every layer."""

    name = "toy-uniform"

    def __init__(self, *, steps: int = 5):
        self.steps = steps

    def _run(self, problem):
        n = min(len(v) for v in problem.knob_values.values())
        picks = np.unique(np.linspace(0, n - 1, self.steps).round().astype(int))
        population = [{name: problem.knob_values[name][i] for name in problem.layer_names} for i in picks]
        self.scored_ = problem.evaluate(population, origin="uniform")


@wsx.hookimpl
def wsx_backends():
    return [ToyBackend]


@wsx.hookimpl
def wsx_strategies():
    return [UniformK]


@wsx.hookimpl
def wsx_backend_for(model):
    return "toy-numpy" if isinstance(model, ToyModel) else None


class QuantileClusterer(wsx.Clusterer):
    """Centroids at the k quantiles, one assignment step: cheap and deterministic."""

    name = "toy-quantile"

    def _cluster(self, w, k):
        centroids = np.unique(np.quantile(w, (np.arange(k) + 0.5) / k))
        mids = (centroids[1:] + centroids[:-1]) / 2
        labels = np.searchsorted(mids, w)
        return wsx.Clustering(centroids, labels, float(((w - centroids[labels]) ** 2).sum()))


class RoundToGrid(wsx.Approximation):
    """Rounds weights to multiples of 2**-knob (knob: fractional bits)."""

    name = "toy-grid"
    knob_name = "fraction_bits"

    def knob_values(self, layer):
        return [1, 2, 3, 4, 6, 8]

    def size_bits(self, layer, knob):
        return layer.size * (knob + 4)

    def apply(self, weights, knob, *, layer, clusterer=None):
        q = np.round(weights * 2.0 ** knob) / 2.0 ** knob
        return wsx.Approximated(q.astype(np.float32), float(((weights - q) ** 2).sum()))


@wsx.hookimpl
def wsx_clusterers():
    return [QuantileClusterer]


@wsx.hookimpl
def wsx_approximations():
    return [RoundToGrid]


class OneByOne(Executor):
    """Scores each candidate in a call of its own, in reverse order (a naive executor: the engine must
    still get the results in population order)."""

    name = "toy-one-by-one"

    def __init__(self, *, reverse: bool = True):
        self.reverse = reverse

    def score(self, population, subset, *, stop=None, split="search"):
        population = list(population)
        order = range(len(population) - 1, -1, -1) if self.reverse else range(len(population))
        out = [None] * len(population)
        for i in order:
            weights = self.session.materialise([population[i]])
            out[i] = self.session.backends[split].score_detailed(weights, subset, stop=stop)[0]
        return out


@wsx.hookimpl
def wsx_executors():
    return [OneByOne]
