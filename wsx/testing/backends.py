"""Conformance suite for Backend plugins: what the engine and every strategy rely on.

    from wsx.testing.backends import check_backend
    check_backend(MyBackend, model, data)     # raises AssertionError naming the broken rule

``model`` / ``data`` default to ``MyBackend.conformance_example()`` (a classmethod returning a small
trained ``(model, (inputs, labels))``; the built-ins return the embedded LeNet). A backend may also
offer ``conformance_examples()``: {name: builder of ``(model, data)`` or a
``wsx.testing.models.Example``}, and ``check_backend(MyBackend, example="encoder")`` runs on one of
them; the built-ins add tiny transformer encoders fed tokenizer-style dict inputs without labels,
scored with a fidelity metric (cosine, agreement), and torch adds Hugging Face BERT and ViT.
Third-party plugins run it in their own tests; wsx runs it over every registered backend and
example. ``CHECKS`` maps a readable name to each check so a test suite can parametrise over them,
sharing one ``Context`` per backend and example.

What is checked, and why:

- capabilities: ``name``, ``extra``, ``aliases`` and the capability flags are well-typed class
  attributes; ``available()`` is ``(bool, str)``; ``accepts`` and the ``wsx_backend_for`` hook
  recognise the model and nothing else (auto-detection picks the backend from them);
- layers: unique names, shapes and sizes matching ``get_weights`` (the CR formula counts them);
  every layer an example names (embedding tables, attention projections) is found; ``unused_layers``
  finds exactly the layers that cannot influence the selected output (a pooler the output skips);
- weights: ``get_weights`` returns a copy, ``set_weights`` round-trips bit for bit and refuses a wrong
  shape, ``snapshot`` / ``restore`` put the model back bit for bit (``wsx.apply``, the restore
  guarantee);
- scoring: the baseline is a finite metric, a candidate that names a layer's original weights scores
  as the baseline, a population scores as its candidates one by one (in any order) — for every
  layer changed alone (the layer-wise step, where prefix caches act) and for mixed candidates; a
  subset is deterministic and scores as the same samples passed as data; cached activations follow
  ``set_weights``; bad data (empty, labels of another length, input entries of different lengths)
  raises ``InvalidDataError``;
- the model is bit-identical after scoring, after a metric raising, and after ``wsx.explore``
  returns, raises or is interrupted (KeyboardInterrupt);
- capabilities are honoured: a backend declaring ``supports_population_vmap`` /
  ``supports_prefix_cache`` and exposing ``stats_`` really vectorises / hits its cache on the example
  model (or, for an example that declares the capability unusable on it, says why); one declaring
  ``supports_gpu`` accepts ``device="cpu"`` and scores the same there.

Outputs of different execution paths (vectorised, cut, one by one) may differ in float rounding, so
top-1 and agreement values may differ by ``max_flips`` samples; a continuous metric must agree to
``rtol``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..backend import Backend
from ..data import as_data, tree_leaves, tree_map
from ..errors import InvalidDataError, MetricError, WsxError
from ..layers import LayerInfo
from ..metrics import metric as declare_metric
from ..metrics import resolve_metric

__all__ = ["CHECKS", "Context", "check_backend", "context", "examples", "mean_true_logit"]


def mean_true_logit(outputs: np.ndarray, labels: np.ndarray) -> float:
    """A continuous metric: the mean output of the true class minus the mean output (catches any
    change of the outputs, not only of the arg-max)."""
    outputs = np.asarray(outputs, dtype=np.float64).reshape(len(labels), -1)
    return float(outputs[np.arange(len(labels)), labels].mean() - outputs.mean())


def mean_output(outputs: np.ndarray, labels: np.ndarray) -> float:
    """A continuous metric of the outputs alone (labels unused)."""
    return float(np.asarray(outputs, dtype=np.float64).mean())


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
    metric: Any = None  # None: the backend's default (top-1)
    output: Any = None
    unused: tuple | None = None  # the layers unused_layers() must find (None: not checked)
    contains: tuple = ()  # fnmatch patterns of layers the backend must find
    fallbacks: dict = field(default_factory=dict)  # capability -> why this model cannot use it
    explore: dict = field(default_factory=dict)  # explore() settings overriding the defaults
    example: str = ""
    layer_sample: int | None = None  # layer-wise checks on this many layers, spread evenly (None: all)
    skip: tuple = ()  # checks this context does not run (see wsx.testing.models.Example.skip)
    _cache: dict = field(default_factory=dict, repr=False)

    # -- shared objects ---------------------------------------------------------------------------
    def settings(self, **kwargs) -> dict:
        """Backend constructor arguments: the context's metric, output and kwargs, then ``kwargs``."""
        given = {k: v for k, v in (("metric", self.metric), ("output", self.output)) if v is not None}
        return {**given, **self.backend_kwargs, **kwargs}

    def backend(self, fresh: bool = False, data: Any = "default", **kwargs) -> Backend:
        """A backend on the context's model; the default one is shared between checks."""
        data = self.data if isinstance(data, str) and data == "default" else data
        if fresh or kwargs or data is not self.data:
            return self.backend_cls(self.model, data, **self.settings(**kwargs))
        if "backend" not in self._cache:
            self._cache["backend"] = self.backend_cls(self.model, self.data, **self.settings())
        return self._cache["backend"]

    def soft_backend(self) -> Backend:
        """Shared backend scoring with a continuous metric: ``mean_true_logit`` on class labels,
        else MSE (against the labels, or the uncompressed model when there are none)."""
        if "soft" not in self._cache:
            self._cache["soft"] = self.backend(fresh=True, metric=self.soft_metric())
        return self._cache["soft"]

    def soft_metric(self) -> Any:
        return mean_true_logit if self.counts() else "mse"

    def plain_backend(self, soft: bool = False) -> Backend:
        """A backend scoring one plain forward per candidate (no prefix cut, no vectorisation) where
        the class offers those switches: the reference the faster paths are compared with."""
        key = "plain-soft" if soft else "plain"
        if key not in self._cache:
            import inspect

            accepted = inspect.signature(self.backend_cls.__init__).parameters
            off = {k: False for k in ("prefix_cache", "vmap") if k in accepted}
            metric = {"metric": self.soft_metric()} if soft else {}
            self._cache[key] = self.backend(fresh=True, **off, **metric) if off or soft else self.backend()
        return self._cache[key]

    def checked_layers(self) -> list[str]:
        """The layers the layer-wise checks sweep: all, or ``layer_sample`` of the used ones."""
        names = [layer.name for layer in self.layers()]
        if self.layer_sample is None:
            return names
        used = [n for n in names if n not in (self.unused or ())]
        pick = np.unique(np.round(np.linspace(0, len(used) - 1, self.layer_sample)).astype(int))
        return [used[i] for i in pick]

    def metric_(self):
        return resolve_metric(self.metric)

    def counts(self) -> bool:
        """Whether the metric counts samples (top-1): its values are multiples of 1 / samples."""
        return self.metric_().name == "top1"

    def fraction(self) -> bool:
        """Whether the metric is a mean of per-sample 0 / 1 values (top-1, agreement), so execution
        paths may differ by whole samples' flips."""
        m = self.metric_()
        return m.per_sample and m.bounds == (0.0, 1.0) and m.unit == "pp"

    def custom_metric(self, fn):
        """``fn(outputs, target)`` as a metric that runs on this data: against its labels, or the
        uncompressed model's outputs when it has none."""
        return declare_metric(fn, needs_reference=as_data(self.data).labels is None, name=fn.__name__)

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


def examples(backend: Any) -> list[str]:
    """Names of the models the suite runs a backend on (``conformance_examples()``), or ``[""]``."""
    cls = _backend_class(backend)
    table = getattr(cls, "conformance_examples", None)
    return list(table()) if table is not None else [""]


def _backend_class(backend: Any) -> type:
    if isinstance(backend, str):
        from .. import plugins

        return plugins.get("backend", backend)
    return backend


def context(backend: Any, model: Any = None, data: Any = None, *, example: str = "", **kwargs) -> Context:
    """A Context for a backend class (or registered name); model and data default to the class's
    ``conformance_example()``, or to its conformance example named ``example``."""
    cls = _backend_class(backend)
    if model is None:
        if example:
            built = cls.conformance_examples()[example]()
        else:
            make = getattr(cls, "conformance_example", None)
            if make is None:
                raise TypeError(f"{cls.__name__} has no conformance_example(); pass model= and data=")
            built = make()
        if isinstance(built, tuple):
            model, data = built
        else:  # a wsx.testing.models.Example
            model, data = built.model, built.data
            kwargs = {"metric": built.metric, "output": built.output, "unused": tuple(built.unused),
                      "contains": tuple(built.contains), "fallbacks": dict(built.fallbacks),
                      "explore": dict(built.explore), "layer_sample": built.layer_sample,
                      "skip": tuple(built.skip), **kwargs}
    return Context(cls, model, data, example=example, **kwargs)


# -- helpers ----------------------------------------------------------------------------------------
def _close(a, b, ctx: Context, n: int, what: str) -> None:
    """Values of the context's metric from two execution paths: ``max_flips`` samples apart for a
    fraction of samples (top-1, agreement), ``rtol`` for a continuous metric."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"{what}: shapes {a.shape} and {b.shape} differ"
    if not ctx.fraction():
        _soft_close(a, b, ctx, what)
        return
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


def _like(data: Any, pick) -> Any:
    """``data`` in its own form (``(inputs, labels)``, a dict of inputs, an array) with every array
    replaced by ``pick(array, path)``; None when the form is a loader."""
    if isinstance(data, tuple) and len(data) == 2:
        return tree_map(pick, data[0], "inputs"), None if data[1] is None else tree_map(pick, data[1], "labels")
    if isinstance(data, dict) or hasattr(data, "shape"):
        return tree_map(pick, data, "inputs")
    return None


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
    from fnmatch import fnmatchcase

    for pattern in ctx.contains:
        assert any(fnmatchcase(n, pattern) for n in names), f"no layer of interest matches {pattern!r}: {names}"
    try:
        be.get_weights("no such layer")
    except (KeyError, WsxError):
        pass
    else:
        raise AssertionError("get_weights of an unknown name must raise KeyError")


def check_unused_layers(ctx: Context) -> None:
    if ctx.unused is None:
        return
    be = ctx.backend()
    before = ctx.state()
    found = be.unused_layers()
    assert set(found) == set(ctx.unused), \
        f"unused_layers() finds {found}, but the layers that cannot influence the output are {list(ctx.unused)}"
    assert ctx.state() == before, "unused_layers() changed the model"
    zeroed = be.score([{name: 0 * ctx.originals()[name]} for name in found] or [{}])
    _close(zeroed, np.full(len(zeroed), be.score([{}])[0]), ctx, be.num_samples,
           "zeroing a layer unused_layers() reports changed the scores")


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
    lo, hi = ctx.metric_().bounds or (-np.inf, np.inf)
    assert np.isfinite(base[0]) and lo <= base[0] <= hi, \
        f"baseline {ctx.metric_().name} {base[0]} is not in [{lo}, {hi}]"
    assert be.score([]).shape == (0,), "an empty population scores as an empty array"
    same = be.score([{layer.name: ctx.originals()[layer.name]} for layer in be.layers()])
    _close(same, np.full(len(same), base[0]), ctx, be.num_samples,
           "candidates naming a layer's original weights must score as the baseline")


def check_population_equals_one_by_one(ctx: Context) -> None:
    pop = ctx.mixed_population()
    be, soft = ctx.backend(), ctx.soft_backend()
    together = be.score(pop)
    alone = _one_by_one(ctx.plain_backend(), pop)
    _close(together, alone, ctx, be.num_samples, "population vs one-by-one scoring")
    assert len(set(np.round(together, 9))) > 1, "the test candidates all score alike; the check is blind"
    _soft_close(soft.score(pop), _one_by_one(ctx.plain_backend(soft=True), pop), ctx,
                "population vs one-by-one (continuous metric)")
    rev = be.score(pop[::-1])[::-1]
    _close(rev, together, ctx, be.num_samples, "scores depend on the order of the population")


def check_layerwise_population(ctx: Context) -> None:
    be, soft = ctx.backend(), ctx.soft_backend()
    for name in ctx.checked_layers():
        pop = ctx.layerwise_population(name)
        first = be.score(pop)
        again = be.score(pop)  # a prefix cache answers now
        assert np.array_equal(first, again), f"{name}: scoring the same population twice differs"
        _close(first, _one_by_one(ctx.plain_backend(), pop), ctx, be.num_samples, f"{name}: layer-wise population")
        s_first, s_again = soft.score(pop), soft.score(pop)
        _soft_close(s_again, s_first, ctx, f"{name}: repeated layer-wise population")
        _soft_close(s_first, _one_by_one(ctx.plain_backend(soft=True), pop), ctx, f"{name}: layer-wise vs one by one")


def check_subset(ctx: Context) -> None:
    be = ctx.backend()
    pop = ctx.mixed_population()[:4]
    sub = ctx.subset()
    a, b = be.score(pop, sub), be.score(pop, sub)
    assert np.array_equal(a, b), "scoring a subset twice gives different values"
    if ctx.counts():
        counts = a * sub.size
        assert np.allclose(counts, np.round(counts)), "top-1 on a subset must count the subset's samples only"
    other = np.setdiff1d(np.arange(be.num_samples), sub)
    be.score(pop, other)  # a different subset in between must not leak into the next call
    assert np.array_equal(be.score(pop, sub), a), "scoring another subset changed this subset's values"
    same = _like(ctx.data, lambda arr, _: np.asarray(arr)[sub])
    if same is not None:
        direct = ctx.backend(data=same).score(pop)
        _close(a, direct, ctx, sub.size, "a subset must score as the same samples passed as data")


def check_cache_follows_set_weights(ctx: Context) -> None:
    # a metric of the outputs alone: a fidelity metric's reference would follow set_weights too
    data, metric = ctx.data, ctx.soft_metric()
    if not ctx.counts():
        d = as_data(ctx.data)
        data, metric = (d.inputs, np.zeros(d.num_samples)), mean_output
    be = ctx.backend(fresh=True, data=data, metric=metric)
    layers = [layer for layer in be.layers() if layer.name not in (ctx.unused or ())]
    if len(layers) < 2:
        return
    first, later = layers[0].name, layers[-1].name
    pop = ctx.layerwise_population(later, 3)
    new_first = ctx.shared(first, 2, seed=3)
    # what the population must score once `first` holds new_first, computed without set_weights
    expected = _one_by_one(ctx.backend(fresh=True, data=data, metric=metric),
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
    cases = [(_like(ctx.data, lambda arr, _: np.asarray(arr)[:0]), "empty data")]
    if isinstance(ctx.data, tuple) and ctx.data[1] is not None:
        cases.append((_like(ctx.data, lambda arr, p: np.asarray(arr)[:4 if p.startswith("labels") else 5]),
                      "5 inputs and 4 labels"))
    inputs = ctx.data[0] if isinstance(ctx.data, tuple) else ctx.data
    if len(tree_leaves(inputs)) > 1:
        first = tree_leaves(inputs, "inputs")[0][0]
        cases.append((_like(ctx.data, lambda arr, p: np.asarray(arr)[:4 if p == first else 5]),
                      "input entries of different lengths"))
    for data, what in cases:
        if data is None:
            continue
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

    bad = ctx.backend(fresh=True, metric=ctx.custom_metric(failing))
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
    names = [layer.name for layer in ctx.layers() if layer.name not in (ctx.unused or ())]
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
        if stats is not None and "prefix_cache" in ctx.fallbacks:
            assert stats.get("prefix_hits", 0) > 0 or getattr(be, "prefix_errors_", None), \
                "the prefix cache was never hit and prefix_errors_ does not say why"
        elif stats is not None:
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
    settings = dict(backend=backend, strategy=strategy, budget=ctx.explore_budget, knobs=[2, 4, 8],
                    target=0.5, progress=False, seed=ctx.seed, metric=ctx.metric, output=ctx.output)
    return {**settings, **ctx.explore}


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

        def raising(outputs, target, exc_type=exc_type):
            calls["n"] += 1
            if calls["n"] >= 4:  # past the baseline, inside the search
                raise exc_type("stopped on purpose")
            return 1.0 + float(np.abs(np.asarray(outputs, dtype=np.float64)).mean())

        try:
            explore(ctx.model, ctx.data, **{**_explore_kwargs(ctx), "budget": 40, "target": 0.5,
                                            "metric": ctx.custom_metric(raising)})
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
    "unused_layers": check_unused_layers,
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


def check_backend(backend: Any, model: Any = None, data: Any = None, *, skip: tuple = (), example: str = "",
                  **kwargs) -> None:
    """Run every check (except those named in ``skip``) on a backend class or registered name, on
    ``model`` / ``data``, its conformance example, or its example named ``example``; raises
    AssertionError naming the first broken expectation."""
    ctx = context(backend, model, data, example=example, **kwargs)
    for name, check in CHECKS.items():
        if name in skip or name in ctx.skip:
            continue
        try:
            check(ctx)
        except AssertionError as exc:
            raise AssertionError(f"[{ctx.backend_cls.name}] {name}: {exc}") from exc
        except NotImplementedError:
            if not name.startswith("explore"):
                raise
