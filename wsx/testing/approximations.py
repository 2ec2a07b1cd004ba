"""Conformance suite for Approximation plugins: what every strategy relies on, checked on typical
(Laplacian) weights.

    from wsx.testing.approximations import check_approximation
    check_approximation(MyApproximation)          # raises AssertionError naming the broken rule

Third-party plugins run it in their own tests; wsx runs it over every registered approximation.
``CHECKS`` maps a readable name to each check so a test suite can parametrise over them.

What is checked, and why strategies need it:

- parameters: keyword-only, stored under their own names, ``get_params`` rebuilds an equal object
  (results record them and ``wsx.apply`` rebuilds the approximation from them);
- knob values: a non-empty list of hashable values that ``check_knob`` accepts unchanged, with
  sizes monotone along the list (strategies may walk it in order);
- size: positive whole bits, the most compressive knob smaller than the baseline and than the least
  compressive one (compression rates are computed from it, never measured);
- invalid knobs: ``check_knob`` raises ``InvalidSettingError`` naming the rejected value;
- apply: float32 of the input's shape, finite, the input left unmodified, float64 input accepted,
  ``apply_many`` equal to ``apply``; deterministic (a rebuilt object gives the same bits);
- proxy: finite, non-negative, and — like the real squared error — non-increasing as size grows
  (divide-and-conquer and surrogate strategies rank knobs by it); for a tuple knob, along each
  coordinate with the others fixed;
- idempotence, for approximations that declare ``idempotent = True`` (pruning, quantization):
  applying the knob to approximated weights gives them back;
- restore exactness, for approximations with ``decode(payload, layer)``: the payload reproduces the
  approximated weights bit for bit (what an artifact stores is what was scored).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from ..approximation import Approximated, Approximation
from ..errors import InvalidSettingError
from ..layers import LayerInfo
from ._common import check_init_params

__all__ = ["CHECKS", "Context", "check_approximation", "checks", "context", "typical_layers", "typical_weights"]

INVALID_KNOBS = (-1, 10 ** 9)


def typical_layers() -> list[LayerInfo]:
    """A small conv kernel and a linear matrix, torch layout."""
    return [LayerInfo("conv.weight", (8, 8, 3, 3), 8 * 8 * 9, "Conv2d", ("conv",)),
            LayerInfo("fc.weight", (24, 32), 24 * 32, "Linear", ("fc",))]


def typical_weights(layer: LayerInfo, seed: int = 0) -> np.ndarray:
    """Laplacian weights (trained weights are peaked at 0 with heavy tails), float32."""
    rng = np.random.default_rng(seed)
    return rng.laplace(0.0, 0.05, size=layer.shape).astype(np.float32)


@dataclass
class Context:
    """What the checks share: the object under test, layers, weights and tolerances."""

    approximation: Approximation
    clusterer: Any = None
    invalid_knobs: tuple = INVALID_KNOBS
    max_knobs: int = 6  # knob values tried per layer, spread over the list (clustering is slow)
    rtol: float = 0.05  # proxy monotonicity slack, for heuristic approximations (k-means)
    seed: int = 0
    layers: list = field(default_factory=typical_layers)
    _many: dict = field(default_factory=dict, repr=False)

    def weights(self, layer: LayerInfo) -> np.ndarray:
        return typical_weights(layer, self.seed)

    def knobs(self, layer: LayerInfo) -> list:
        """At most about ``max_knobs`` default knob values, spread over the list; for tuple knobs,
        the lines through a middle knob along each coordinate (so that ``chains`` finds runs)."""
        values = list(self.approximation.knob_values(layer))
        if values and all(isinstance(kn, tuple) for kn in values) and len({len(kn) for kn in values}) == 1:
            center, ndim = values[len(values) // 2], len(values[0])
            per_line = max(2, -(-self.max_knobs // ndim) + 1)
            picked = {center}
            for axis in range(ndim):
                line = [kn for kn in values
                        if all(a == b for i, (a, b) in enumerate(zip(kn, center)) if i != axis)]
                picked.update(_spread(sorted(line), per_line))
            return [kn for kn in values if kn in picked]
        return _spread(values, self.max_knobs)

    def apply(self, weights: np.ndarray, knob: Any, layer: LayerInfo, appr: Approximation | None = None) -> Approximated:
        return (appr or self.approximation).apply(weights, knob, layer=layer, clusterer=self.clusterer)

    def many(self, layer: LayerInfo) -> list[Approximated]:
        """``apply_many`` over ``knobs(layer)`` on the typical weights, computed once per layer."""
        if layer.name not in self._many:
            self._many[layer.name] = self.approximation.apply_many(
                self.weights(layer), self.knobs(layer), layer=layer, clusterer=self.clusterer)
        return self._many[layer.name]

    def rebuilt(self) -> Approximation:
        return type(self.approximation)(**self.approximation.get_params())


def _spread(values: list, n: int) -> list:
    """At most ``n`` of ``values``, evenly spread, first and last included."""
    if len(values) <= n:
        return list(values)
    idx = np.unique(np.round(np.linspace(0, len(values) - 1, n)).astype(int))
    return [values[i] for i in idx]


def _name(ctx: Context) -> str:
    return type(ctx.approximation).__name__


# -- the checks ----------------------------------------------------------------------------------
def check_params(ctx: Context) -> None:
    appr, name = ctx.approximation, _name(ctx)
    assert isinstance(type(appr).name, str) and type(appr).name, f"{name}.name must be a non-empty string"
    assert isinstance(appr.bits, (int, np.integer)) and appr.bits > 0, f"{name}.bits must be a positive int"
    check_init_params(type(appr), appr, name)


def check_knob_values(ctx: Context) -> None:
    appr, name = ctx.approximation, _name(ctx)
    for layer in ctx.layers:
        values = list(appr.knob_values(layer))
        assert values, f"{name}.knob_values({layer.name}) is empty"
        assert len(set(values)) == len(values), f"{name}.knob_values({layer.name}) has duplicates"
        for v in values:
            assert appr.check_knob(layer, v) == v, \
                f"{name}.check_knob changes its own default knob {v!r} (returned {appr.check_knob(layer, v)!r})"
        sizes = [appr.size_bits(layer, v) for v in values]
        up = all(a <= b for a, b in zip(sizes, sizes[1:]))
        down = all(a >= b for a, b in zip(sizes, sizes[1:]))
        assert up or down, f"{name}.knob_values({layer.name}) is not ordered by size: sizes {sizes}"


def check_size(ctx: Context) -> None:
    appr, name = ctx.approximation, _name(ctx)
    for layer in ctx.layers:
        values = appr.knob_values(layer)
        sizes = {v: appr.size_bits(layer, v) for v in values}
        for v, s in sizes.items():
            assert isinstance(s, (int, np.integer)) and s > 0, \
                f"{name}.size_bits({layer.name}, {v!r}) = {s!r}; it must be a positive whole number of bits"
        smallest, largest = min(sizes.values()), max(sizes.values())
        assert smallest < largest, f"{name}: every knob of {layer.name} has the same size {smallest}"
        base = appr.baseline_bits(layer)
        assert base == layer.size * appr.bits, f"{name}.baseline_bits must be W*B"
        assert smallest < base, f"{name}: the most compressive knob ({smallest} bits) does not compress " \
                                f"{layer.name} ({base} bits dense)"


def check_invalid_knobs(ctx: Context) -> None:
    appr, name = ctx.approximation, _name(ctx)
    layer = ctx.layers[0]
    for bad in ctx.invalid_knobs:
        try:
            appr.check_knob(layer, bad)
        except InvalidSettingError as exc:
            assert str(bad) in str(exc), f"{name}.check_knob's message for {bad!r} must name it: {exc}"
        else:
            raise AssertionError(f"{name}.check_knob accepted the invalid knob {bad!r}")


def check_apply(ctx: Context) -> None:
    appr, name = ctx.approximation, _name(ctx)
    for layer in ctx.layers:
        w = ctx.weights(layer)
        before = w.tobytes()
        knobs = ctx.knobs(layer)
        single = [ctx.apply(w, kn, layer) for kn in knobs]
        many = appr.apply_many(w, knobs, layer=layer, clusterer=ctx.clusterer)
        assert w.tobytes() == before, f"{name}.apply modified its input weights"
        ctx._many.setdefault(layer.name, many)
        assert len(many) == len(knobs), f"{name}.apply_many returned {len(many)} results for {len(knobs)} knobs"
        for kn, one, res in zip(knobs, single, many):
            for r in (one, res):
                assert isinstance(r, Approximated), f"{name}.apply must return an Approximated"
                assert r.weights.shape == w.shape, \
                    f"{name}.apply({kn!r}) changed the shape {w.shape} -> {r.weights.shape}"
                assert r.weights.dtype == np.float32, f"{name}.apply({kn!r}) returned {r.weights.dtype}, not float32"
                assert np.all(np.isfinite(r.weights)), f"{name}.apply({kn!r}) returned non-finite weights"
                assert np.isfinite(r.proxy) and r.proxy >= 0, f"{name}.apply({kn!r}) proxy {r.proxy!r} not finite >= 0"
            np.testing.assert_allclose(res.weights, one.weights, rtol=1e-6, atol=1e-7,
                                       err_msg=f"{name}.apply_many differs from apply at {kn!r}")
            assert np.isclose(res.proxy, one.proxy, rtol=1e-6, atol=1e-12), \
                f"{name}.apply_many proxy {res.proxy} differs from apply's {one.proxy} at {kn!r}"
        w64 = w.astype(np.float64)
        out = ctx.apply(w64, knobs[0], layer)
        assert out.weights.dtype == np.float32 and out.weights.shape == w.shape, \
            f"{name}.apply on float64 weights must still return float32 of the same shape"


def check_deterministic(ctx: Context) -> None:
    name = _name(ctx)
    other = ctx.rebuilt()
    for layer in ctx.layers:
        w = ctx.weights(layer)
        for kn in ctx.knobs(layer)[:2]:
            a, b = ctx.apply(w, kn, layer), ctx.apply(w.copy(), kn, layer, other)
            assert a.weights.tobytes() == b.weights.tobytes() and a.proxy == b.proxy, \
                f"{name}.apply({kn!r}) is not deterministic"


def _check_monotone(name: str, what: str, layer: LayerInfo, sizes: list, errors: list, ctx: Context) -> None:
    scale = max(errors) if errors else 0.0
    for i, (si, ei) in enumerate(zip(sizes, errors)):
        for sj, ej in zip(sizes[i + 1:], errors[i + 1:]):
            if si < sj:
                ok = ei >= ej * (1 - ctx.rtol) - 1e-9 * scale
            elif sj < si:
                ok = ej >= ei * (1 - ctx.rtol) - 1e-9 * scale
            else:
                continue
            assert ok, (f"{name}: the {what} on {layer.name} does not fall as size grows "
                        f"(size {si} -> {what} {ei:.4g}, size {sj} -> {what} {ej:.4g})")
    lo, hi = int(np.argmin(sizes)), int(np.argmax(sizes))
    assert errors[lo] > errors[hi], f"{name}: the most compressive knob of {layer.name} has no more " \
                                    f"{what} ({errors[lo]:.4g}) than the least ({errors[hi]:.4g})"


def chains(knobs: list) -> list[list[int]]:
    """Positions of knobs along which the error must be monotone: all of them for a scalar knob;
    for a tuple knob, each run of knobs that differ in one coordinate only (a coarser size does
    not imply a larger error across coordinates: 50 % pruned + 16 values can beat 8 values)."""
    if not all(isinstance(kn, tuple) for kn in knobs) or len({len(kn) for kn in knobs}) != 1:
        return [list(range(len(knobs)))]
    out = []
    for axis in range(len(knobs[0])):
        runs: dict[tuple, list[int]] = {}
        for i, kn in enumerate(knobs):
            runs.setdefault(kn[:axis] + kn[axis + 1:], []).append(i)
        out += [run for run in runs.values() if len(run) > 1]
    return out


def check_proxy_monotone(ctx: Context) -> None:
    appr, name = ctx.approximation, _name(ctx)
    for layer in ctx.layers:
        w = ctx.weights(layer)
        knobs = ctx.knobs(layer)
        res = ctx.many(layer)
        sizes = [appr.size_bits(layer, kn) for kn in knobs]
        sse = [float(np.sum((w.astype(np.float64) - r.weights) ** 2)) for r in res]
        runs = [run for run in chains(knobs) if len({sizes[i] for i in run}) > 1]
        assert runs, f"{name}: no two tried knobs of {layer.name} differ in size"
        for run in runs:
            _check_monotone(name, "proxy", layer, [sizes[i] for i in run], [res[i].proxy for i in run], ctx)
            _check_monotone(name, "squared error", layer, [sizes[i] for i in run], [sse[i] for i in run], ctx)


def check_idempotent(ctx: Context) -> None:
    appr, name = ctx.approximation, _name(ctx)
    if not getattr(appr, "idempotent", False):
        return
    for layer in ctx.layers:
        w = ctx.weights(layer)
        tol = 1e-6 * float(np.abs(w).max())
        for kn, res in zip(ctx.knobs(layer), ctx.many(layer)):
            once = res.weights
            twice = ctx.apply(once, kn, layer).weights
            np.testing.assert_allclose(twice, once, rtol=1e-6, atol=tol,
                                       err_msg=f"{name} declares idempotent = True but applying {kn!r} "
                                               f"twice on {layer.name} changes the weights")


def check_decode(ctx: Context) -> None:
    appr, name = ctx.approximation, _name(ctx)
    decode: Callable | None = getattr(appr, "decode", None)
    if decode is None:
        return
    for layer in ctx.layers:
        w = ctx.weights(layer)
        for kn, res in zip(ctx.knobs(layer), ctx.many(layer)):
            back = np.asarray(decode(res.payload, layer))
            assert back.shape == res.weights.shape and back.tobytes() == res.weights.astype(back.dtype).tobytes() \
                and back.dtype == np.float32, f"{name}.decode(payload) does not restore apply({kn!r})'s weights exactly"


CHECKS: dict[str, Callable[[Context], None]] = {
    "params": check_params,
    "knob_values": check_knob_values,
    "size": check_size,
    "invalid_knobs": check_invalid_knobs,
    "apply": check_apply,
    "deterministic": check_deterministic,
    "proxy_monotone": check_proxy_monotone,
    "idempotent": check_idempotent,
    "decode": check_decode,
}


# -- drivers ---------------------------------------------------------------------------------------
def context(approximation: Any, clusterer: Any = None, **options) -> Context:
    """A Context for an Approximation class (built with defaults) or instance; a weight-sharing
    style approximation gets the default clusterer unless one is given."""
    appr = approximation() if isinstance(approximation, type) else approximation
    if not isinstance(appr, Approximation):
        raise TypeError(f"expected an Approximation class or instance, got {approximation!r}")
    if clusterer is None and appr.uses_clusterer:
        from ..engine import resolve_clusterer

        clusterer = resolve_clusterer(None, options.get("seed", 0))
    return Context(appr, clusterer, **options)


def checks(approximation: Any, *, clusterer: Any = None, **options) -> Iterator[tuple[str, Callable[[], None]]]:
    """(name, zero-argument check) pairs, for parametrised tests. ``options`` set Context fields
    (``invalid_knobs``, ``max_knobs``, ``rtol``, ``seed``, ``layers``)."""
    ctx = context(approximation, clusterer, **options)
    for name, fn in CHECKS.items():
        yield name, (lambda fn=fn: fn(ctx))


def check_approximation(approximation: Any, *, clusterer: Any = None, **options) -> None:
    """Run every check on an Approximation class (built with defaults) or instance; raises
    AssertionError naming the first broken rule."""
    for _, run in checks(approximation, clusterer=clusterer, **options):
        run()
