"""Conformance suite for Backend plugins: what the engine and every strategy rely on.

    from wsx.testing.backends import check_backend
    check_backend(MyBackend, model, data)     # raises AssertionError naming the broken rule

``model`` / ``data`` default to ``MyBackend.conformance_example()`` (a classmethod returning a small
trained ``(model, (inputs, labels))``; the built-ins return the embedded LeNet). Third-party plugins
run it in their own tests; wsx runs it over every registered backend. ``CHECKS`` maps a readable name
to each check so a test suite can parametrise over them, sharing one ``Context`` per backend.

What is checked, and why:

- capabilities: ``name``, ``extra``, ``aliases`` and the capability flags are well-typed class
  attributes; ``available()`` is ``(bool, str)``; ``accepts`` and the ``wsx_backend_for`` hook
  recognise the model and nothing else (auto-detection picks the backend from them);
- layers: unique names, shapes and sizes matching ``get_weights`` (the CR formula counts them);
- weights: ``get_weights`` returns a copy, ``set_weights`` round-trips bit for bit and refuses a wrong
  shape, ``snapshot`` / ``restore`` put the model back bit for bit (``wsx.apply``, the restore
  guarantee);
- scoring: the baseline is a finite metric, a candidate that names a layer's original weights scores
  as the baseline, a population scores as its candidates one by one (in any order) — for every
  layer changed alone (the layer-wise step, where prefix caches act) and for mixed candidates; a
  subset is deterministic and scores as the same samples passed as data; cached activations follow
  ``set_weights``; bad data raises ``InvalidDataError``;
- the model is bit-identical after scoring, after a metric raising, and after ``wsx.explore``
  returns, raises or is interrupted (KeyboardInterrupt);
- capabilities are honoured: a backend declaring ``supports_population_vmap`` /
  ``supports_prefix_cache`` and exposing ``stats_`` really vectorises / hits its cache on the example
  model; one declaring ``supports_gpu`` accepts ``device="cpu"`` and scores the same there.

Outputs of different execution paths (vectorised, cut, one by one) may differ in float rounding, so
top-1 values may differ by ``max_flips`` samples; a continuous metric must agree to ``rtol``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..backend import Backend
from ..errors import InvalidDataError, MetricError, WsxError
from ..layers import LayerInfo

__all__ = ["CHECKS", "Context", "check_backend", "context", "mean_true_logit"]


def mean_true_logit(outputs: np.ndarray, labels: np.ndarray) -> float:
    """A continuous metric: the mean output of the true class minus the mean output (catches any
    change of the outputs, not only of the arg-max)."""
    outputs = np.asarray(outputs, dtype=np.float64).reshape(len(labels), -1)
    return float(outputs[np.arange(len(labels)), labels].mean() - outputs.mean())


@dataclass
class Context:
    """The backend class under test, its model and data, and what the checks share."""

    backend_cls: type
    model: Any
    data: Any
    seed: int = 0
    max_flips: int = 1  # top-1 may differ by this many samples between execution paths
    rtol: float = 1e-4  # continuous metric tolerance between execution paths
    explore_strategy: str = "random"
    explore_budget: int = 6
    backend_kwargs: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, repr=False)

    # -- shared objects ---------------------------------------------------------------------------
    def backend(self, fresh: bool = False, data: Any = "default", **kwargs) -> Backend:
        """A backend on the context's model; the default one is shared between checks."""
        data = self.data if isinstance(data, str) and data == "default" else data
        kwargs = {**self.backend_kwargs, **kwargs}
        if fresh or kwargs or data is not self.data:
            return self.backend_cls(self.model, data, **kwargs)
        if "backend" not in self._cache:
            self._cache["backend"] = self.backend_cls(self.model, self.data, **self.backend_kwargs)
        return self._cache["backend"]

    def soft_backend(self) -> Backend:
        """Shared backend scoring with ``mean_true_logit``."""
        if "soft" not in self._cache:
            self._cache["soft"] = self.backend(fresh=True, metric=mean_true_logit)
        return self._cache["soft"]

    def layers(self) -> list[LayerInfo]:
        return self.backend().layers()

    def originals(self) -> dict[str, np.ndarray]:
        if "originals" not in self._cache:
            be = self.backend()
            self._cache["originals"] = {layer.name: be.get_weights(layer.name) for layer in be.layers()}
        return self._cache["originals"]

    def state(self) -> dict[str, bytes]:
        """Every tensor of the model, as bytes, read through a fresh backend without data."""
        be = self.backend_cls(self.model, None, **self.backend_kwargs)
        return {k: np.ascontiguousarray(v).tobytes() for k, v in be.tensors().items()}

    def num_samples(self) -> int:
        return self.backend().num_samples

    # -- candidates ---------------------------------------------------------------------------------
    def shared(self, name: str, levels: int, noise: float = 0.0, seed: int = 0) -> np.ndarray:
        """The layer's weights snapped to ``levels`` values (as weight sharing does), plus optional
        noise: candidates whose accuracy differs from the baseline."""
        w = self.originals()[name].astype(np.float64)
        rng = np.random.default_rng(self.seed * 1000 + seed)
        lo, hi = w.min(), w.max()
        grid = np.linspace(lo, hi, levels)
        snapped = grid[np.abs(w[..., None] - grid).argmin(-1)]
        if noise:
            snapped = snapped + noise * w.std() * rng.standard_normal(w.shape)
        return snapped.astype(self.originals()[name].dtype)

    def mixed_population(self) -> list[dict]:
        """Baseline, single-layer and multi-layer candidates."""
        names = [layer.name for layer in self.layers()]
        pop: list[dict] = [{}]
        for i, name in enumerate(names):
            pop.append({name: self.shared(name, 3 + i % 3, seed=i)})
        pop.append({n: self.shared(n, 4, seed=7) for n in names})
        pop.append({n: self.shared(n, 8, 0.3, seed=8) for n in names[::2]})
        pop.append({names[-1]: self.originals()[names[-1]].copy()})
        return pop

    def layerwise_population(self, name: str, size: int = 5) -> list[dict]:
        """Candidates that all change ``name`` only (the layer-wise step)."""
        return [{name: self.shared(name, 2 + j, 0.1 * j, seed=j)} for j in range(size)]

    def subset(self) -> np.ndarray:
        n = self.num_samples()
        rng = np.random.default_rng(self.seed)
        return np.sort(rng.choice(n, size=max(n // 2, 1), replace=False))


def context(backend: Any, model: Any = None, data: Any = None, **kwargs) -> Context:
    """A Context for a backend class (or registered name); model and data default to the class's
    ``conformance_example()``."""
    cls = backend
    if isinstance(backend, str):
        from .. import plugins

        cls = plugins.get("backend", backend)
    if model is None:
        example = getattr(cls, "conformance_example", None)
        if example is None:
            raise TypeError(f"{cls.__name__} has no conformance_example(); pass model= and data=")
        model, data = example()
    return Context(cls, model, data, **kwargs)


# -- helpers ----------------------------------------------------------------------------------------
def _close(a, b, ctx: Context, n: int, what: str) -> None:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"{what}: shapes {a.shape} and {b.shape} differ"
    tol = ctx.max_flips / max(n, 1) + 1e-12
    bad = np.abs(a - b) > tol
    assert not bad.any(), f"{what}: top-1 {a[bad]} vs {b[bad]} (more than {ctx.max_flips} sample(s) apart)"


def _soft_close(a, b, ctx: Context, what: str) -> None:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(float(np.abs(b).max()), 1.0)
    assert a.shape == b.shape and np.allclose(a, b, rtol=ctx.rtol, atol=ctx.rtol * scale), \
        f"{what}: outputs differ between execution paths: {a} vs {b}"


def _one_by_one(be: Backend, population, subset=None) -> np.ndarray:
    return np.array([be.score([cand], subset)[0] for cand in population])


def _explore():
    try:
        from .. import explore
    except ImportError:
        explore = None
    return explore


# -- checks -------------------------------------------------------------------------------------------
def check_capabilities(ctx: Context) -> None:
    cls = ctx.backend_cls
    assert isinstance(cls.name, str) and cls.name, "a backend needs a non-empty class attribute `name`"
    assert cls.extra is None or isinstance(cls.extra, str), "`extra` is the pip extra's name or None"
    aliases = getattr(cls, "aliases", ())
    assert isinstance(aliases, tuple) and all(isinstance(a, str) and a for a in aliases), \
        "`aliases` must be a tuple of names"
    for flag in ("supports_population_vmap", "supports_gpu", "supports_prefix_cache"):
        assert isinstance(getattr(cls, flag), bool), f"capability `{flag}` must be a bool class attribute"
    ok, reason = cls.available()
    assert isinstance(ok, bool) and isinstance(reason, str), "available() must return (bool, str)"
    assert ok, f"{cls.name} reports itself unavailable ({reason}) but its model was built"


def check_accepts(ctx: Context) -> None:
    cls = ctx.backend_cls
    assert cls.accepts(ctx.model), f"{cls.name}.accepts() refuses its own example model"
    for other in (object(), None, 3, "model", (1, 2)):
        assert not cls.accepts(other), f"{cls.name}.accepts() takes {other!r}"
    from .. import plugins

    if plugins.backends().get(cls.name) is cls:
        assert plugins.backend_for(ctx.model) == cls.name, \
            f"the wsx_backend_for hook does not pick {cls.name!r} for its model"


def check_layers(ctx: Context) -> None:
    be = ctx.backend()
    layers = be.layers()
    assert layers and all(isinstance(layer, LayerInfo) for layer in layers), "layers() must list LayerInfo"
    names = [layer.name for layer in layers]
    assert len(set(names)) == len(names), f"layer names repeat: {names}"
    for layer in layers:
        w = be.get_weights(layer.name)
        assert isinstance(w, np.ndarray), f"get_weights({layer.name!r}) must return a numpy array"
        assert tuple(w.shape) == tuple(layer.shape), f"{layer.name}: shape {w.shape} != {layer.shape}"
        assert layer.size == int(np.prod(layer.shape)) == w.size, f"{layer.name}: size {layer.size} is wrong"
        assert np.issubdtype(w.dtype, np.floating) and np.all(np.isfinite(w)), f"{layer.name}: not finite floats"
        assert isinstance(layer.kind, str) and layer.kind, f"{layer.name}: kind must be a non-empty str"
        assert be.layer(layer.name) == layer
    assert [layer.name for layer in ctx.backend(fresh=True).layers()] == names, "layer order is not stable"
    try:
        be.get_weights("no such layer")
    except (KeyError, WsxError):
        pass
    else:
        raise AssertionError("get_weights of an unknown name must raise KeyError")


def check_get_weights_is_a_copy(ctx: Context) -> None:
    be = ctx.backend(fresh=True)
    before = ctx.state()
    for layer in be.layers():
        w = be.get_weights(layer.name)
        w.reshape(-1)[:] = 12345.0
        assert not np.any(be.get_weights(layer.name) == 12345.0), \
            f"get_weights({layer.name!r}) returned a view of the model: editing it changed the model"
    assert ctx.state() == before, "get_weights changed the model"


def check_set_weights_round_trip(ctx: Context) -> None:
    be = ctx.backend(fresh=True)
    before = ctx.state()
    snap = be.snapshot()
    try:
        for i, layer in enumerate(be.layers()):
            new = ctx.shared(layer.name, 4, 0.01, seed=i)
            be.set_weights(layer.name, new)
            assert np.array_equal(be.get_weights(layer.name), new), f"set/get of {layer.name} is not exact"
        bad = np.zeros(tuple(s + 1 for s in be.layers()[0].shape), np.float32)
        try:
            be.set_weights(be.layers()[0].name, bad)
        except WsxError:
            pass
        else:
            raise AssertionError("set_weights with a wrong shape must raise a WsxError")
    finally:
        be.restore(snap)
    for layer in be.layers():
        assert np.array_equal(be.get_weights(layer.name), ctx.originals()[layer.name]), \
            f"restore(snapshot) did not put {layer.name} back"
    assert ctx.state() == before, "restore(snapshot) left the model different"


def check_baseline(ctx: Context) -> None:
    be = ctx.backend()
    base = be.score([{}])
    assert isinstance(base, np.ndarray) and base.shape == (1,), "score returns one value per candidate"
    assert np.isfinite(base[0]) and 0.0 <= base[0] <= 1.0, f"baseline top-1 {base[0]} is not in [0, 1]"
    assert be.score([]).shape == (0,), "an empty population scores as an empty array"
    same = be.score([{layer.name: ctx.originals()[layer.name]} for layer in be.layers()])
    _close(same, np.full(len(same), base[0]), ctx, be.num_samples,
           "candidates naming a layer's original weights must score as the baseline")


def check_population_equals_one_by_one(ctx: Context) -> None:
    pop = ctx.mixed_population()
    be, soft = ctx.backend(), ctx.soft_backend()
    together = be.score(pop)
    alone = _one_by_one(be, pop)
    _close(together, alone, ctx, be.num_samples, "population vs one-by-one scoring")
    assert len(set(np.round(together, 9))) > 1, "the test candidates all score alike; the check is blind"
    _soft_close(soft.score(pop), _one_by_one(soft, pop), ctx, "population vs one-by-one (mean true logit)")
    rev = be.score(pop[::-1])[::-1]
    _close(rev, together, ctx, be.num_samples, "scores depend on the order of the population")


def check_layerwise_population(ctx: Context) -> None:
    be, soft = ctx.backend(), ctx.soft_backend()
    for layer in be.layers():
        pop = ctx.layerwise_population(layer.name)
        first = be.score(pop)
        again = be.score(pop)  # a prefix cache answers now
        assert np.array_equal(first, again), f"{layer.name}: scoring the same population twice differs"
        _close(first, _one_by_one(be, pop), ctx, be.num_samples, f"{layer.name}: layer-wise population")
        s_first, s_again = soft.score(pop), soft.score(pop)
        _soft_close(s_again, s_first, ctx, f"{layer.name}: repeated layer-wise population")
        _soft_close(s_first, _one_by_one(soft, pop), ctx, f"{layer.name}: layer-wise vs one by one")


def check_subset(ctx: Context) -> None:
    be = ctx.backend()
    pop = ctx.mixed_population()[:4]
    sub = ctx.subset()
    a, b = be.score(pop, sub), be.score(pop, sub)
    assert np.array_equal(a, b), "scoring a subset twice gives different values"
    counts = a * sub.size
    assert np.allclose(counts, np.round(counts)), "top-1 on a subset must count the subset's samples only"
    other = np.setdiff1d(np.arange(be.num_samples), sub)
    be.score(pop, other)  # a different subset in between must not leak into the next call
    assert np.array_equal(be.score(pop, sub), a), "scoring another subset changed this subset's values"
    if isinstance(ctx.data, tuple) and len(ctx.data) == 2:
        x, y = (np.asarray(d) for d in ctx.data)
        direct = ctx.backend(data=(x[sub], y[sub])).score(pop)
        _close(a, direct, ctx, sub.size, "a subset must score as the same samples passed as data")


def check_cache_follows_set_weights(ctx: Context) -> None:
    be = ctx.backend(fresh=True, metric=mean_true_logit)
    layers = be.layers()
    if len(layers) < 2:
        return
    first, later = layers[0].name, layers[-1].name
    pop = ctx.layerwise_population(later, 3)
    new_first = ctx.shared(first, 2, seed=3)
    # what the population must score once `first` holds new_first, computed without set_weights
    expected = _one_by_one(ctx.backend(fresh=True, metric=mean_true_logit),
                           [{first: new_first, **cand} for cand in pop])
    snap = be.snapshot()
    try:
        original = be.score(pop)
        be.score(pop)
        be.set_weights(first, new_first)
        after = be.score(pop)
    finally:
        be.restore(snap)
    _soft_close(after, expected, ctx, "after set_weights, scores still use the old weights (stale cache)")
    _soft_close(be.score(pop), original, ctx, "after restore, scores still use the edited weights")


def check_bad_data(ctx: Context) -> None:
    if not (isinstance(ctx.data, tuple) and len(ctx.data) == 2):
        return
    x, y = (np.asarray(d) for d in ctx.data)
    for data, what in (((x[:0], y[:0]), "empty data"), ((x[:5], y[:4]), "5 inputs and 4 labels")):
        try:
            ctx.backend(data=data).score([{}])
        except InvalidDataError:
            continue
        raise AssertionError(f"{what} must raise InvalidDataError")


def check_model_unchanged_by_scoring(ctx: Context) -> None:
    before = ctx.state()
    be = ctx.backend()
    be.score(ctx.mixed_population())
    be.score(ctx.layerwise_population(be.layers()[-1].name), ctx.subset())
    assert ctx.state() == before, "scoring changed the user's model"

    calls = {"n": 0}

    def failing(outputs, labels):
        calls["n"] += 1
        raise ValueError("metric failed on purpose")

    bad = ctx.backend(fresh=True, metric=failing)
    try:
        bad.score(ctx.mixed_population())
    except MetricError:
        pass
    else:
        raise AssertionError("a metric that raises must surface as MetricError")
    assert ctx.state() == before, "a metric raising during scoring left the model changed"
    _close(be.score([{}]), ctx.backend(fresh=True).score([{}]), ctx, be.num_samples,
           "the backend gives other values after a failed scoring")


def check_capabilities_honoured(ctx: Context) -> None:
    cls = ctx.backend_cls
    names = [layer.name for layer in ctx.layers()]
    if cls.supports_population_vmap:
        be = ctx.backend(fresh=True)
        be.score(ctx.mixed_population())
        stats = getattr(be, "stats_", None)
        if stats is not None:
            assert stats.get("vmap_calls", 0) > 0, \
                f"supports_population_vmap is declared but no vectorised call ran ({getattr(be, 'vmap_error_', '')})"
    if cls.supports_prefix_cache and len(names) > 1:
        be = ctx.backend(fresh=True)
        pop = ctx.layerwise_population(names[-1])
        be.score(pop)
        be.score(pop)
        stats = getattr(be, "stats_", None)
        if stats is not None:
            assert stats.get("prefix_hits", 0) > 0, \
                f"supports_prefix_cache is declared but the cache was never hit ({getattr(be, 'prefix_errors_', '')})"
    if cls.supports_gpu:
        pop = ctx.mixed_population()[:3]
        on_cpu = ctx.backend(fresh=True, device="cpu").score(pop)
        _close(on_cpu, ctx.backend().score(pop), ctx, ctx.num_samples(), "device='cpu' scores differently")


def _explore_kwargs(ctx: Context) -> dict:
    from .. import plugins

    name = ctx.backend_cls.name
    backend = name if plugins.backends().get(name) is ctx.backend_cls else ctx.backend_cls
    strategies = plugins.strategies()
    strategy = ctx.explore_strategy if ctx.explore_strategy in strategies else sorted(strategies)[0]
    return dict(backend=backend, strategy=strategy, budget=ctx.explore_budget, knobs=[2, 4, 8],
                target=0.5, progress=False, seed=ctx.seed)


def check_explore_leaves_model_unchanged(ctx: Context) -> None:
    explore = _explore()
    if explore is None:
        raise NotImplementedError("wsx.explore is not available in this build")
    before = ctx.state()
    result = explore(ctx.model, ctx.data, **_explore_kwargs(ctx))
    assert result.backend == ctx.backend_cls.name, f"explore ran on {result.backend!r}"
    assert result.scorings > 0, "explore scored nothing"
    assert ctx.state() == before, "the model changed after wsx.explore returned"


def check_explore_raise_and_interrupt(ctx: Context) -> None:
    explore = _explore()
    if explore is None:
        raise NotImplementedError("wsx.explore is not available in this build")
    before = ctx.state()
    for exc_type, expected in ((ValueError, MetricError), (KeyboardInterrupt, KeyboardInterrupt)):
        calls = {"n": 0}

        def metric(outputs, labels, exc_type=exc_type):
            calls["n"] += 1
            if calls["n"] >= 4:  # past the baseline, inside the search
                raise exc_type("stopped on purpose")
            return float((np.asarray(outputs).argmax(1) == labels).mean())

        try:
            explore(ctx.model, ctx.data, metric=metric, **{**_explore_kwargs(ctx), "budget": 40})
        except expected:
            pass
        else:
            raise AssertionError(f"a metric raising {exc_type.__name__} must make explore raise "
                                 f"{expected.__name__}")
        assert calls["n"] >= 4, "the failure was not reached inside the search"
        assert ctx.state() == before, f"the model changed after explore raised {expected.__name__}"


CHECKS: dict[str, Callable[[Context], None]] = {
    "capabilities": check_capabilities,
    "accepts": check_accepts,
    "layers": check_layers,
    "get_weights_is_a_copy": check_get_weights_is_a_copy,
    "set_weights_round_trip": check_set_weights_round_trip,
    "baseline": check_baseline,
    "population_equals_one_by_one": check_population_equals_one_by_one,
    "layerwise_population": check_layerwise_population,
    "subset": check_subset,
    "cache_follows_set_weights": check_cache_follows_set_weights,
    "bad_data": check_bad_data,
    "model_unchanged_by_scoring": check_model_unchanged_by_scoring,
    "capabilities_honoured": check_capabilities_honoured,
    "explore_leaves_model_unchanged": check_explore_leaves_model_unchanged,
    "explore_raise_and_interrupt": check_explore_raise_and_interrupt,
}


def check_backend(backend: Any, model: Any = None, data: Any = None, *, skip: tuple = (), **kwargs) -> None:
    """Run every check (except those named in ``skip``) on a backend class or registered name;
    raises AssertionError naming the first broken expectation."""
    ctx = context(backend, model, data, **kwargs)
    for name, check in CHECKS.items():
        if name in skip:
            continue
        try:
            check(ctx)
        except AssertionError as exc:
            raise AssertionError(f"[{ctx.backend_cls.name}] {name}: {exc}") from exc
        except NotImplementedError:
            if not name.startswith("explore"):
                raise
