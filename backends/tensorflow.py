"""TensorFlow/Keras backend: Keras 3 models on the TensorFlow backend (Sequential, functional,
subclassed). tensorflow and keras are imported only when this backend is used.

The CLI and ``explore(backend=...)`` also accept the alias ``"keras"`` (see ``aliases``).
"""
from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from wsx.backend import DEFAULT_REFERENCE_BYTES, Backend
from wsx.data import tree_map
from wsx.errors import InvalidModelError, InvalidSettingError
from wsx.layers import LayerInfo

from ._scoring import (DEFAULT_PREFIX_CACHE_BYTES, DEFAULT_VMAP_BYTES, BatchRef, PopulationScoring, Split,
                       backend_hooks, check_shape, float32_inputs, is_layer_of, name_filter)

LAYER_TYPES = ("Conv1D", "Conv2D", "Conv3D", "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D",
               "SeparableConv2D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", "Dense", "EinsumDense",
               "Embedding")
# SeparableConv has both depthwise and pointwise kernels; an Embedding's table is "embeddings"
KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings")


# What TensorFlow prints on stderr while it loads (CUDA probing on a machine without a GPU, oneDNN and
# CPU-instruction notes), twice: once per native library, before its logging reads any setting.
BANNERS = ("absl::InitializeLog()", "oneDNN custom operations", "cudart_stub.cc", "cpu_feature_guard.cc",
           "To enable the following instructions", "cuda_platform.cc", "cuda_dnn.cc", "cuda_fft.cc",
           "cuda_blas.cc", "computation_placer.cc", "Unable to register cu", "TF-TRT Warning")


def quiet_import() -> None:
    """Import TensorFlow without its start-up banners: TF_CPP_MIN_LOG_LEVEL=3 (its C++ log lines; Python
    errors are unaffected) and the lines it prints before reading that setting filtered out of stderr.
    Does nothing once TensorFlow is imported or when the user set TF_CPP_MIN_LOG_LEVEL (asking for them)."""
    if "tensorflow" in sys.modules or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    with _stderr_without(BANNERS):
        import tensorflow  # noqa: F401


@contextmanager
def _stderr_without(patterns: Sequence[str]):
    """Native code writes to file descriptor 2 directly: catch it in a file, then pass on every line
    that matches none of ``patterns``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not any(p in line for p in patterns)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def _is_keras_model(model: Any) -> bool:
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(model, keras.Model)


class TensorflowBackend(PopulationScoring, Backend):
    """Scores a Keras 3 model (TensorFlow backend) with substituted weights inside a
    ``keras.StatelessScope``, so the model's variables are never written during a search.

    Layers of interest are the kernels of Conv1D/2D/3D, DepthwiseConv1D/2D, SeparableConv1D/2D (the
    depthwise and the pointwise kernel are two layers), Conv1D/2D/3DTranspose, Dense and EinsumDense
    (so the query, key, value and output projections inside ``MultiHeadAttention``) and the tables of
    ``Embedding`` layers, named by their variable path (``"conv1/kernel"``; a Sequential prefixes its
    own name) and given in Keras layout. A layer shared by several calls is one layer.
    ``include`` / ``exclude`` filter them (exact names or fnmatch patterns).

    ``data`` is any form ``wsx.data.as_data`` takes, a ``tf.data.Dataset`` of batches (or of single
    examples with scalar labels) included; it is read once and kept in memory. The model is called
    as ``model(inputs, training=False)`` with the inputs as given: an array, a dict keyed by the
    functional model's input names, or a tuple / list for several positional inputs. ``output``
    picks what the metric sees of a dict or list result (``wsx.outputs``).
    Populations run through one ``tf.vectorized_map`` inside a ``tf.function``; the prefix cache cuts
    functional and Sequential graphs (subclassed models use full forwards). ``vmap``,
    ``prefix_cache``, ``prefix_cache_bytes`` and ``vmap_bytes`` as for the torch backend.
    """

    name = "tensorflow"
    aliases = ("keras",)
    extra = "tensorflow"
    prepare_import = staticmethod(quiet_import)
    requires = ("tensorflow", "keras")
    zoo_framework = "keras"
    supports_gpu = True
    compiled = True  # see PopulationScoring.compiled

    def __init__(self, model: Any, data: Any, *, metric: Any = None, output: Any = None, batch_size: int = 256,
                 device: str | None = None, include: Sequence[str] | None = None,
                 exclude: Sequence[str] | None = None, vmap: bool | str = "auto", prefix_cache: bool = True,
                 prefix_cache_bytes: int = DEFAULT_PREFIX_CACHE_BYTES, vmap_bytes: int = DEFAULT_VMAP_BYTES,
                 reference_bytes: int = DEFAULT_REFERENCE_BYTES):
        super().__init__(model, data, metric=metric, output=output, batch_size=batch_size, device=device,
                         reference_bytes=reference_bytes)
        quiet_import()
        import keras

        if not isinstance(model, keras.Model):
            raise InvalidModelError(f"the tensorflow backend needs a keras.Model, got {type(model).__name__}")
        if keras.config.backend() != "tensorflow":
            raise InvalidModelError(f"Keras runs on the {keras.config.backend()!r} backend; the tensorflow "
                                    "backend needs KERAS_BACKEND=tensorflow (set it before importing keras)")
        if not model.weights:
            raise InvalidModelError("the Keras model has no weights yet; build it (call it on one batch, "
                                    "or give it an Input) and load its trained weights before exploring")
        self.include = include
        self.exclude = exclude
        self._check_device()
        self._vars = self._find_kernels()
        self._load_data(data)
        self._fns: dict = {}
        self._init_scoring(vmap=vmap, prefix_cache=prefix_cache, prefix_cache_bytes=prefix_cache_bytes,
                           vmap_bytes=vmap_bytes)

    @classmethod
    def conformance_examples(cls) -> dict:
        from wsx.testing import models

        return {"lenet": cls.conformance_example, "encoder": models.keras_encoder}

    @classmethod
    def accepts(cls, model: Any) -> bool:
        return _is_keras_model(model)

    # -- layers -------------------------------------------------------------------------------
    def _find_kernels(self) -> dict:
        """{variable path: (variable, layer)} for every kernel of a layer of interest, in order."""
        found: dict = {}
        seen: set[int] = set()
        for layer in self.model._flatten_layers(include_self=False, recursive=True):
            if not is_layer_of(layer, LAYER_TYPES, "keras"):
                continue
            for var in layer.weights:
                if var.name not in KERNEL_NAMES or id(var) in seen or len(var.shape) < 2:
                    continue
                seen.add(id(var))
                path = var.path
                if path in found:  # two variables with one path: keep both, distinctly named
                    path = f"{path}#{sum(1 for p in found if p.split('#')[0] == var.path) + 1}"
                found[path] = (var, layer)
        return found

    def _layers(self) -> Iterable[LayerInfo]:
        out = []
        for path, (var, layer) in self._vars.items():
            if name_filter(path, self.include, self.exclude):
                size = int(np.prod(var.shape))
                out.append(LayerInfo(path, tuple(var.shape), size, type(layer).__name__, (layer.name,)))
        if not out:
            raise InvalidModelError(
                f"{type(self.model).__name__} has no layers of interest ({', '.join(LAYER_TYPES)} kernels, "
                "after include/exclude); wsx shares the weights of convolution and dense layers")
        return out

    def _var(self, name: str):
        if name not in self._vars:
            raise KeyError(f"no kernel {name!r}; layers are {[i.name for i in self.layers()]}")
        return self._vars[name][0]

    def get_weights(self, name: str) -> np.ndarray:
        return np.array(self._var(name).numpy(), copy=True)

    def set_weights(self, name: str, array: np.ndarray) -> None:
        var = self._var(name)
        array = check_shape(name, array, var.shape)
        var.assign(array.astype(var.dtype))
        self._invalidate()

    def tensors(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for var in self.model.variables:
            name, n = var.path, 1
            while name in out:  # two variables with one path
                n += 1
                name = f"{var.path}#{n}"
            out[name] = np.array(var.numpy(), copy=True)
        return out

    def computation_digest(self) -> str:
        """The model's Keras config (layers, activations, connections) plus the code of every model
        or layer class not from Keras (a subclassed model's ``call``)."""
        import hashlib

        from wsx.identity import classes_digest, strip_addresses

        try:
            config = self.model.to_json(sort_keys=True)
        except Exception as exc:  # noqa: BLE001 - a subclassed model without get_config
            config = f"<no config: {type(exc).__name__}>"
        layers = [self.model, *self.model._flatten_layers(include_self=False, recursive=True)]
        text = strip_addresses(config) + classes_digest(layers, ("keras.", "tensorflow.", "tf_keras."))
        return hashlib.sha256(text.encode()).hexdigest()

    def snapshot(self) -> Any:
        return [np.array(v.numpy(), copy=True) for v in self.model.variables]

    def restore(self, snapshot: Any) -> None:
        changed = False
        for var, value in zip(self.model.variables, snapshot):
            if not np.array_equal(var.numpy(), value):
                var.assign(value)
                changed = True
        if changed:
            self._invalidate()

    # -- data ---------------------------------------------------------------------------------
    def _load_data(self, data: Any) -> None:
        tf = sys.modules.get("tensorflow")
        if tf is not None and isinstance(data, tf.data.Dataset):
            data = data.as_numpy_iterator()
        self._load(data, float32_inputs)

    def _native_inputs(self, tree: Any) -> Any:
        import tensorflow as tf

        with self._device():
            return tree_map(lambda a, _: tf.constant(a), tree)

    def _new_batches(self, idx: np.ndarray, skey: tuple) -> Iterator[tuple[BatchRef, Any, np.ndarray]]:
        for start, (sel, part) in enumerate(self._data.batches(idx, self.batch_size)):
            yield BatchRef(self._native_inputs(part.inputs), (skey, start)), part.labels, sel

    def _check_device(self) -> None:
        """Refuse a ``device`` TensorFlow does not have (it would otherwise fail at the first forward)."""
        import tensorflow as tf

        if not self.device:
            return
        name = self.device if ("/" in self.device or ":" in self.device) else None
        kind = "GPU" if self.device.lower() in ("gpu", "cuda") else self.device.upper()
        known = tf.config.list_logical_devices()
        ok = (any(d.name.endswith(name.upper().lstrip("/").replace("DEVICE:", "")) for d in known) if name
              else any(d.device_type == kind for d in known))
        if not ok:
            raise InvalidSettingError(f"device={self.device!r} is not available to TensorFlow here (it has "
                                      f"{sorted({d.name for d in known})}); pass 'cpu' or None")

    def _device(self):
        """``device`` as a TensorFlow device scope: "cpu", "gpu" / "cuda" (first one), or a full
        TensorFlow name such as "/GPU:1"."""
        import contextlib

        import tensorflow as tf

        if not self.device:
            return contextlib.nullcontext()
        name = self.device
        if "/" not in name and ":" not in name:
            name = "/GPU:0" if name.lower() in ("gpu", "cuda") else f"/{name.upper()}:0"
        return tf.device(name)

    # -- scoring ------------------------------------------------------------------------------
    def score(self, population, subset: np.ndarray | None = None) -> np.ndarray:
        with self._device():
            return super().score(population, subset)

    def _to_native(self, name: str, array: np.ndarray):
        import tensorflow as tf

        return tf.constant(np.asarray(array, dtype=self._var(name).dtype))

    def _original(self, name: str):
        return self._var(name).value

    def _stack(self, tensors):
        import tensorflow as tf

        return tf.stack(tensors)

    def _fn(self, kind: str, names: tuple, split: Split | None, values: tuple, args: list):
        """A tf.function per (kind, substituted variables, split). Its signature leaves the batch
        (and candidate) dimension open, so it is traced once."""
        key = (kind, names, split.changed if split is not None else None)
        fn = self._fns.get(key)
        if fn is not None:
            return fn
        import keras
        import tensorflow as tf

        variables = [self._var(n) for n in names]
        net = split.suffix if split is not None else self.model

        def forward(values, args):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                out = net(args if split is not None else args[0], training=False)
            return self._selected(out)

        def open_first(t):
            return tf.TensorSpec([None] + list(t.shape[1:]), t.dtype)

        value_specs = tuple((open_first if kind == "stacked" else lambda t: tf.TensorSpec(t.shape, t.dtype))(v)
                            for v in values)
        signature = [value_specs, tf.nest.map_structure(open_first, args)]
        if kind == "one":
            fn = tf.function(forward, input_signature=signature)
        else:
            fn = tf.function(lambda stacked, args: tf.vectorized_map(lambda v: forward(v, args), stacked),
                             input_signature=signature)
        self._fns[key] = fn
        return fn

    def _selected(self, out):
        """The output the metric reads (``output=``), which must be one tensor."""
        import tensorflow as tf

        out = self.select_output(out)
        if not tf.is_tensor(out):
            raise InvalidModelError(f"the selected model output is a {type(out).__name__}, not a tensor; pass "
                                    "output= a key, an index or a callable returning the tensor the metric reads")
        return out

    def _args(self, inputs, split, live) -> list:
        return list(live) if split is not None else [inputs]

    def _forward(self, subs: dict, inputs: Any, split: Split | None, live: Any) -> np.ndarray:
        names = tuple(self._vars)  # every kernel is an argument: one trace serves every candidate
        values = tuple(subs[n] if n in subs else self._var(n).value for n in names)
        args = self._args(inputs, split, live)
        return self._fn("one", names, split, values, args)(values, args).numpy()

    def _forward_stacked(self, stacked: dict, inputs: Any, split: Split | None, live: Any) -> np.ndarray:
        names = tuple(stacked)
        values = tuple(stacked[n] for n in names)
        args = self._args(inputs, split, live)
        return self._fn("stacked", names, split, values, args)(values, args).numpy()

    def _squared_gradients(self, names: tuple, inputs: Any, kind: str, target: np.ndarray) -> dict:
        """Per-sample ``tf.GradientTape`` on the model's own variables, in inference mode."""
        import tensorflow as tf

        variables = [self._var(n) for n in names]
        totals = [np.zeros(v.shape, dtype=np.float64) for v in variables]
        with self._device():
            for i in range(len(target)):
                x = tree_map(lambda a, _: a[i:i + 1], inputs)
                with tf.GradientTape() as tape:
                    y = tf.cast(self._selected(self.model(x, training=False)), tf.float32)
                    t = tf.constant(target[i:i + 1])
                    if kind == "ce":
                        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(t, tf.reshape(y, (1, -1))))
                    elif kind == "mse":
                        loss = 0.5 * tf.reduce_sum((y - t) ** 2)
                    else:
                        loss = tf.reduce_sum(y * t)
                for total, g in zip(totals, tape.gradient(loss, variables)):
                    if g is not None:
                        total += np.square(tf.convert_to_tensor(g).numpy().astype(np.float64))
        return dict(zip(names, totals))

    def _on_accelerator(self) -> bool:
        import tensorflow as tf

        return (self.device or "").lower() != "cpu" and bool(tf.config.list_logical_devices("GPU"))

    def _activation_bytes_per_sample(self) -> int:
        from . import _keras_graph

        est = _keras_graph.activation_bytes_per_sample(self.model)
        return est if est is not None else 32 * self._data.input_bytes_per_sample()

    def _make_split(self, changed: tuple) -> Split | None:
        import tensorflow as tf

        from . import _keras_graph

        parts = _keras_graph.split(self.model, {id(self._var(n)) for n in changed})
        if parts is None:
            return None
        prefix_model, suffix_model, n_live = parts
        x = self._probe_inputs()
        run = tf.function(lambda x: prefix_model(x, training=False), input_signature=[tf.nest.map_structure(
            lambda t: tf.TensorSpec([None] + list(t.shape[1:]), t.dtype), x)])

        def prefix(x):
            out = run(x)
            return list(out) if isinstance(out, (list, tuple)) else [out]

        return Split(changed, prefix, suffix_model, {"live": n_live, "prefix_model": prefix_model})

    def _probe_forward(self, x, split: Split | None):
        """Eager run: checking a cut must not cost tracing two tf.functions."""
        if split is None:
            return np.asarray(self._selected(self.model(x, training=False)))
        live = split.info["prefix_model"](x, training=False)
        live = list(live) if isinstance(live, (list, tuple)) else [live]
        return np.asarray(self._selected(split.suffix(live, training=False)))

    def _live_nbytes(self, live) -> int:
        return sum(int(np.prod(t.shape)) * t.dtype.size for t in live)

    def close(self) -> None:
        self._fns = {}
        self._close_scoring()


wsx_backends, wsx_backend_for = backend_hooks(TensorflowBackend)
