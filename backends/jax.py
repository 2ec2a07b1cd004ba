"""JAX backend: a pair ``(apply_fn, params)`` with ``apply_fn(params, inputs) -> outputs``.

Flax, Equinox and hand-written models reduce to this pair, e.g. with Flax linen::

    model = MyFlaxModule()
    variables = model.init(key, x)              # {"params": {...}} (plus "batch_stats" etc.)
    wsx.explore((model.apply, variables), (x_test, y_test), backend="jax")

(a BatchNorm model passes ``lambda v, x: model.apply(v, x, train=False)``), and with Equinox::

    params, static = eqx.partition(model, eqx.is_array)
    wsx.explore((lambda p, x: jax.vmap(eqx.combine(p, static))(x), params), data)

jax is imported only when this backend is used; a pair is recognised only once jax is imported.
"""
from __future__ import annotations

import sys
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from wsx.backend import DEFAULT_REFERENCE_BYTES, Backend
from wsx.data import tree_map
from wsx.errors import InvalidModelError, InvalidSettingError
from wsx.layers import LayerInfo

from ._scoring import (DEFAULT_PREFIX_CACHE_BYTES, DEFAULT_VMAP_BYTES, BatchRef, PopulationScoring, Split,
                       backend_hooks, check_shape, float32_inputs, name_filter)


def _is_pair(model: Any) -> bool:
    jax = sys.modules.get("jax")
    if jax is None or not isinstance(model, tuple) or len(model) != 2 or not callable(model[0]):
        return False
    try:
        leaves = jax.tree_util.tree_leaves(model[1])
    except Exception:
        return False
    arrays = [x for x in leaves if isinstance(x, (jax.Array, np.ndarray))]
    return bool(arrays) and any(x.ndim >= 2 for x in arrays)


def _flat(x: Any) -> list:
    """The input pytree's leaves, in the order the traced function's invars hold them."""
    import jax

    return jax.tree_util.tree_leaves(x)


def _shape_key(x: Any) -> tuple:
    """What a trace of the function depends on: the inputs' structure, shapes and dtypes."""
    import jax

    leaves, treedef = jax.tree_util.tree_flatten(x)
    return (str(treedef),) + tuple((tuple(a.shape), str(a.dtype)) for a in leaves)


def _is_bias(name: str) -> bool:
    """A bias leaf (Flax's per-head attention biases are 2-D, but biases are not weight matrices)."""
    return name.rsplit("/", 1)[-1] in ("bias", "b")


def key_name(path) -> str:
    """A pytree key path joined with "/" (``params/conv1/kernel``)."""
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


class JaxBackend(PopulationScoring, Backend):
    """Scores ``(apply_fn, params)`` with jit-compiled pure functions: candidates replace leaves of
    the params pytree, never the user's arrays (pytrees are immutable; ``set_weights`` updates the
    backend's own copy, read back with ``params``).

    Layers of interest are the floating-point leaves with at least ``min_ndim`` (2) dimensions (dense
    and convolution kernels, attention projections, embedding tables) except biases (leaves named
    ``bias`` or ``b``, unless ``min_ndim`` < 2: Flax keeps per-head attention biases 2-D), named by
    their "/"-joined key
    path and ordered by first use in the traced function (in pytree order when the backend has no
    data to trace with, or tracing fails). ``include`` / ``exclude`` name or exclude leaves (exact
    names or fnmatch patterns, e.g. ``exclude=["*/embed*"]``).
    ``data`` is any form ``wsx.data.as_data`` takes; ``apply_fn(params, inputs)`` receives the inputs
    as given: an array, or a dict / tuple pytree of arrays. ``output`` picks what the metric sees of a
    dict or tuple result (``wsx.outputs``). Populations run through ``jax.vmap`` over the stacked
    changed leaves; the prefix cache splits the function's jaxpr.
    ``vmap``, ``prefix_cache``, ``prefix_cache_bytes`` and ``vmap_bytes`` as for the torch backend;
    ``device`` is a JAX platform ("cpu", "gpu").
    """

    name = "jax"
    extra = "jax"
    requires = ("jax",)
    zoo_framework = "jax"
    supports_gpu = True
    compiled = True  # see PopulationScoring.compiled

    def __init__(self, model: Any, data: Any, *, metric: Any = None, output: Any = None, batch_size: int = 256,
                 device: str | None = None, include: Sequence[str] | None = None,
                 exclude: Sequence[str] | None = None, min_ndim: int = 2, vmap: bool | str = "auto",
                 prefix_cache: bool = True, prefix_cache_bytes: int = DEFAULT_PREFIX_CACHE_BYTES,
                 vmap_bytes: int = DEFAULT_VMAP_BYTES, reference_bytes: int = DEFAULT_REFERENCE_BYTES):
        super().__init__(model, data, metric=metric, output=output, batch_size=batch_size, device=device,
                         reference_bytes=reference_bytes)
        import jax
        import jax.numpy as jnp

        if not (isinstance(model, tuple) and len(model) == 2 and callable(model[0])):
            raise InvalidModelError("the jax backend needs a pair (apply_fn, params) with "
                                    f"apply_fn(params, inputs) -> outputs, got {type(model).__name__}")
        self.apply_fn, params = model
        self.include, self.exclude, self.min_ndim = include, exclude, min_ndim
        try:
            self.device_ = jax.devices(device)[0] if device else jax.devices()[0]
        except RuntimeError as exc:
            raise InvalidSettingError(f"device={device!r} is not available to JAX here ({str(exc)[:200]}); pass "
                                      f"'cpu' or None (available: {jax.devices()[0].platform})") from None
        flat, self._treedef = jax.tree_util.tree_flatten_with_path(params)
        try:
            self._leaves = [jax.device_put(jnp.asarray(leaf), self.device_) for _, leaf in flat]
        except TypeError as exc:
            raise InvalidModelError(f"params must be a pytree of arrays: {exc}") from None
        self._paths = [key_name(path) for path, _ in flat]
        self._index = {name: i for i, name in enumerate(self._paths)}
        self._load(data, float32_inputs)
        self._jits: dict = {}
        self._jaxprs: dict = {}
        self._originals_np: dict = {}
        self._init_scoring(vmap=vmap, prefix_cache=prefix_cache, prefix_cache_bytes=prefix_cache_bytes,
                           vmap_bytes=vmap_bytes)

    @classmethod
    def conformance_examples(cls) -> dict:
        from wsx.testing import models

        return {"lenet": cls.conformance_example, "encoder": models.flax_encoder}

    @classmethod
    def accepts(cls, model: Any) -> bool:
        return _is_pair(model)

    @property
    def params(self):
        """The backend's current params pytree (the original unless ``set_weights`` was called)."""
        import jax

        return jax.tree_util.tree_unflatten(self._treedef, list(self._leaves))

    # -- tracing ------------------------------------------------------------------------------
    def _apply_flat(self, *args):
        import jax

        *leaves, x = args
        out = self.select_output(self.apply_fn(jax.tree_util.tree_unflatten(self._treedef, leaves), x))
        if not hasattr(out, "shape"):
            raise InvalidModelError(f"the selected output of apply_fn is a {type(out).__name__}, not an array; pass "
                                    "output= a key, an index or a callable returning the array the metric reads")
        return out

    def _jaxpr(self, x):
        """The traced function for an input shape (cached). Its invars are the params' leaves, then
        the input pytree's leaves."""
        key = _shape_key(x)
        if key not in self._jaxprs:
            import jax

            self._jaxprs[key] = jax.make_jaxpr(self._apply_flat)(*self._leaves, x)
        return self._jaxprs[key]

    # -- layers -------------------------------------------------------------------------------
    def _layers(self) -> Iterable[LayerInfo]:
        from . import _jaxpr_split

        n = len(self._leaves)
        try:
            order, kinds = _jaxpr_split.first_use(self._jaxpr(self._probe_inputs()), n)
        except Exception:  # untraceable apply_fn: keep the pytree order
            order, kinds = list(range(n)), ["Array"] * n
        out = []
        for i in order:
            leaf, name = self._leaves[i], self._paths[i]
            if leaf.ndim < self.min_ndim or not np.issubdtype(leaf.dtype, np.floating) or \
                    (self.min_ndim >= 2 and _is_bias(name)):
                continue
            if name_filter(name, self.include, self.exclude):
                out.append(LayerInfo(name, tuple(leaf.shape), int(leaf.size), kinds[i], (name,)))
        if not out:
            raise InvalidModelError(f"params have no floating-point leaf with >= {self.min_ndim} dimensions "
                                    "(after include/exclude); wsx shares the weights of such leaves")
        return out

    def _pos(self, name: str) -> int:
        if name not in self._index:
            raise KeyError(f"no leaf {name!r}; layers are {[i.name for i in self.layers()]}")
        return self._index[name]

    def get_weights(self, name: str) -> np.ndarray:
        return np.array(self._leaves[self._pos(name)], copy=True)

    def set_weights(self, name: str, array: np.ndarray) -> None:
        i = self._pos(name)
        array = check_shape(name, array, self._leaves[i].shape)
        import jax

        self._leaves[i] = jax.device_put(self._to_native(name, array), self.device_)
        self._originals_np.pop(name, None)
        self._invalidate()

    def write_weights(self, weights) -> Any:
        """wsx.apply: the new params pytree (the user's stays as it was; pytrees are immutable)."""
        for name, arr in weights.items():
            self.set_weights(name, arr)
        return self.params

    def tensors(self) -> dict[str, np.ndarray]:
        return {name: np.array(leaf, copy=True) for name, leaf in zip(self._paths, self._leaves)}

    def computation_digest(self) -> str:
        """The jaxpr of ``apply_fn`` traced on a probe batch (the program it runs), or without data
        the code of ``apply_fn``."""
        import hashlib

        from wsx.identity import code_digest, strip_addresses

        if self._data is None:
            return code_digest(self.apply_fn)
        text = strip_addresses(str(self._jaxpr(self._probe_inputs())))
        return hashlib.sha256(text.encode()).hexdigest()

    def snapshot(self) -> Any:
        return list(self._leaves)  # immutable arrays: the list is the state

    def restore(self, snapshot: Any) -> None:
        if any(a is not b for a, b in zip(self._leaves, snapshot)):
            self._leaves = list(snapshot)
            self._originals_np = {}
            self._invalidate()

    # -- data ---------------------------------------------------------------------------------
    def _native_inputs(self, tree: Any) -> Any:
        import jax

        return jax.device_put(tree, self.device_)

    def _new_batches(self, idx: np.ndarray, skey: tuple) -> Iterator[tuple[BatchRef, Any, np.ndarray]]:
        n_batches = -(-idx.size // self.batch_size)
        size = -(-idx.size // max(n_batches, 1))  # even batches, the last padded: one compiled shape
        for start, (sel, part) in enumerate(self._data.batches(idx, size)):
            x, valid = part.inputs, None
            if len(sel) < size:
                x = tree_map(lambda a, _: np.concatenate([a, np.zeros((size - len(sel),) + a.shape[1:], a.dtype)]), x)
                valid = len(sel)
            yield BatchRef(self._native_inputs(x), (skey, start), valid), part.labels, sel

    # -- scoring ------------------------------------------------------------------------------
    # Candidates stay numpy until a compiled function receives them: stacking, slicing or padding
    # jax arrays would compile a small program for every new population size.
    def _to_native(self, name: str, array: np.ndarray):
        return np.ascontiguousarray(array, dtype=self._leaves[self._pos(name)].dtype)

    def _original(self, name: str):
        if name not in self._originals_np:
            self._originals_np[name] = np.asarray(self._leaves[self._pos(name)])
        return self._originals_np[name]

    def _stack(self, tensors):
        return np.stack(tensors)

    def _jit(self, key: tuple, make):
        fn = self._jits.get(key)
        if fn is None:
            import jax

            fn = self._jits[key] = jax.jit(make())
        return fn

    def _args(self, subs: dict) -> list:
        leaves = list(self._leaves)
        for name, value in subs.items():
            leaves[self._index[name]] = value
        return leaves

    def _axes(self, names) -> tuple:
        pos = {self._index[n] for n in names}
        return tuple(0 if i in pos else None for i in range(len(self._leaves)))

    def _forward(self, subs: dict, inputs: Any, split: Split | None, live: Any) -> np.ndarray:
        import jax

        # on the device like the other leaves: a numpy leaf at another position would be another
        # signature of the compiled function, so every layer would cost a compilation
        leaves = self._args({n: jax.device_put(v, self.device_) for n, v in subs.items()})
        if split is None:
            return np.asarray(self._jit(("full",), lambda: self._apply_flat)(*leaves, inputs))
        suffix = split.suffix(inputs)
        fn = self._jit(("suffix", split.changed, _shape_key(inputs)), lambda: lambda *a: suffix(*a)[0])
        return np.asarray(fn(*leaves, *_flat(inputs), *live))

    def _forward_stacked(self, stacked: dict, inputs: Any, split: Split | None, live: Any) -> np.ndarray:
        # pad the candidate axis to a power of two (repeating the last candidate): population sizes
        # vary from call to call, and each distinct size would otherwise be a new compilation
        n = next(iter(stacked.values())).shape[0]
        size = 1 << max(n - 1, 0).bit_length()
        if size != n:
            stacked = {k: np.concatenate([v, np.repeat(v[-1:], size - n, axis=0)]) for k, v in stacked.items()}
        return self._run_vmapped(stacked, inputs, split, live)[:n]

    def _run_vmapped(self, stacked: dict, inputs: Any, split: Split | None, live: Any) -> np.ndarray:
        import jax

        leaves = self._args(stacked)
        axes = self._axes(stacked)
        names = tuple(stacked)
        if split is None:
            fn = self._jit(("vmap", names), lambda: jax.vmap(self._apply_flat, in_axes=axes + (None,)))
            return np.asarray(fn(*leaves, inputs))
        suffix = split.suffix(inputs)
        xs = _flat(inputs)
        fn = self._jit(("vmap-suffix", names, split.changed, _shape_key(inputs)),
                       lambda: jax.vmap(lambda *a: suffix(*a)[0], in_axes=axes + (None,) * (len(xs) + len(live))))
        return np.asarray(fn(*leaves, *xs, *live))

    def _squared_gradients(self, names: tuple, inputs: Any, kind: str, target: np.ndarray) -> dict:
        """Per-sample ``jax.grad`` under ``jax.vmap``, compiled once per (layers, loss kind)."""
        pos = [self._index[n] for n in names]

        def make():
            import jax
            import jax.numpy as jnp

            def loss(sub, leaves, x, t):
                leaves = list(leaves)
                for p, v in zip(pos, sub):
                    leaves[p] = v
                y = self._apply_flat(*leaves, jax.tree_util.tree_map(lambda a: a[None], x))[0].astype(jnp.float32)
                if kind == "ce":
                    return -jax.nn.log_softmax(y.reshape(-1))[t]
                if kind == "mse":
                    return 0.5 * jnp.sum((y - t) ** 2)
                return jnp.sum(y * t)

            per_sample = jax.vmap(jax.grad(loss), in_axes=(None, None, 0, 0))
            return lambda sub, leaves, x, t: [jnp.sum(jnp.square(g.astype(jnp.float32)), 0)
                                              for g in per_sample(sub, leaves, x, t)]

        fn = self._jit(("squared-gradients", tuple(names), kind), make)
        sums = fn(tuple(self._leaves[p] for p in pos), tuple(self._leaves), inputs, target)
        return {n: np.asarray(g, dtype=np.float64) for n, g in zip(names, sums)}

    def _on_accelerator(self) -> bool:
        return self.device_.platform != "cpu"

    def _activation_bytes_per_sample(self) -> int:
        from . import _jaxpr_split

        x = self._probe_inputs()
        return _jaxpr_split.activation_bytes(self._jaxpr(x)) // max(len(_flat(x)[0]), 1)

    def _make_split(self, changed: tuple) -> Split | None:
        from . import _jaxpr_split

        positions = [self._index[n] for n in changed]
        n_leaves = len(self._leaves)
        x0 = self._probe_inputs()
        cuts: dict = {}

        def parts(x):  # the jaxpr is traced per input shape; so is its cut
            key = _shape_key(x)
            if key not in cuts:
                cuts[key] = _jaxpr_split.cut(self._jaxpr(x), positions, n_leaves)
                if cuts[key] is None:
                    raise InvalidModelError(f"the function cannot be cut for inputs of shapes {key}")
            return cuts[key]

        if _jaxpr_split.cut(self._jaxpr(x0), positions, n_leaves) is None:
            return None

        def prefix(x):
            fn = self._jit(("prefix", changed, _shape_key(x)), lambda: parts(x)[0])
            return fn(*self._leaves, *_flat(x))

        def prefix_eager(x):
            return parts(x)[0](*self._leaves, *_flat(x))

        return Split(changed, prefix, lambda x: parts(x)[1], {"prefix_eager": prefix_eager})

    def _probe_forward(self, x, split: Split | None):
        """Eager (uncompiled) run: checking a cut must not cost two compilations."""
        import jax

        with jax.disable_jit():
            if split is None:
                return np.asarray(self._apply_flat(*self._leaves, x))
            return np.asarray(split.suffix(x)(*self._leaves, *_flat(x), *split.info["prefix_eager"](x))[0])

    def _live_nbytes(self, live) -> int:
        return sum(int(a.size) * a.dtype.itemsize for a in live)

    def close(self) -> None:
        self._jits = {}
        self._close_scoring()


wsx_backends, wsx_backend_for = backend_hooks(JaxBackend)
