"""Fast population scoring shared by the built-in backends (framework-free).

Two levers, both declared as capabilities on the backend class:

* **Population vmap** (``supports_population_vmap``): the candidates of one ``score`` call are stacked
  along a new leading axis, only for the layers some candidate changes, and run through one vectorised
  forward (``torch.func.vmap``, ``jax.vmap``, ``tf.vectorized_map``). Layers before the first changed
  one see unbatched weights and inputs, so they run once for the whole population. If the framework
  has no batching rule for an op of the model, the first failure is remembered (``vmap_error_``) and
  the backend loops over candidates from then on.
* **Prefix cache** (``supports_prefix_cache``): the layers a population changes (their union; in
  the layer-wise step every candidate changes the same layer i) split the network in two: the part
  that does not depend on them, and the rest. The activations the first part produces (those
  entering layer i, plus any skip connection crossing the cut) are computed once per (changed
  layers, scoring subset, batch) and kept in a bounded LRU cache; only the rest runs per candidate.
  Torch cuts for any set of changed layers (a cut is cheap); JAX and TensorFlow only for a single
  layer, since each cut costs compilations that only a sweep over that layer pays back. Where the
  graph cannot be cut (untraceable model, subclassed Keras model, side effects), or prefix + suffix
  disagree with the full forward on a probe sample, the backend runs full forwards and records why
  in ``prefix_errors_``.

Settings (constructor arguments of every built-in backend), with the memory bounds:

* ``prefix_cache_bytes`` (default 1 GiB): cached activations beyond it are evicted least recently used
  first; an entry larger than the whole bound is not stored, so the prefix is recomputed once per
  ``score`` call and batch (still shared by every candidate of that call).
* ``vmap`` (default ``"auto"``): True / False force the vectorised path on or off; "auto" uses it
  on an accelerator, and on CPU for networks with at most ``VMAP_AUTO_MAX_BYTES`` (256 KiB) of
  activations per sample; for larger networks on CPU, a backend that sets ``measure_vmap_choice``
  (torch) times both on the first batch of its first population (the fastest of
  ``VMAP_AUTO_REPEATS`` interleaved tries each) and keeps the stacked path where it is
  ``VMAP_AUTO_MIN_SPEEDUP`` (1.25) times faster, else loops; others loop
  (``vmap_`` tells what was chosen, ``vmap_choice_`` the timing).
* ``vmap_bytes`` (default 1 GiB): a vectorised call is given at most
  ``vmap_bytes // (working bytes per sample x samples in the batch)`` candidates (working bytes: what
  one forward holds at once, the sum of all activations where the backend cannot tell); larger
  populations are run in several such chunks.
"""
from __future__ import annotations

import hashlib
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping, Sequence

import numpy as np

from wsx.data import as_data
from wsx.errors import InvalidDataError, InvalidModelError, InvalidSettingError
from wsx.hookspecs import hookimpl

DEFAULT_PREFIX_CACHE_BYTES = 1 << 30
DEFAULT_VMAP_BYTES = 1 << 30
# vmap="auto" vectorises on CPU only below this many activation bytes per sample: on small networks
# per-op overhead dominates and one vectorised call wins (LeNet: 4-9x); on large ones the stacked
# activations are memory-bound and a loop is faster (MobileNetV2 96x96 sweep: loop 28 s, vmap 45 s).
VMAP_AUTO_MAX_BYTES = 256 << 10
# Above it, the timed choice takes the stacked path only this much faster than one-by-one forwards:
# the paths round differently, a near-equal timing flips with the machine's load, and which path
# scored moves the search (ViT-tiny, agreement on 64 samples: CR 7.89 stacked, 7.08 one by one,
# each repeatable); one-by-one forwards compute what the compressed model computes alone.
VMAP_AUTO_MIN_SPEEDUP = 1.25
# Each path is timed this many times, interleaved, and its fastest kept: one try each flipped the
# choice with the load (ViT-tiny, two runs beside CI: stacked 1.3x slower, then 1.7x faster).
VMAP_AUTO_REPEATS = 3


def float32_inputs(a: np.ndarray, _: str = "") -> np.ndarray:
    """Floating input arrays as float32 (what the built-in Keras and JAX backends score with)."""
    return a.astype(np.float32) if np.issubdtype(a.dtype, np.floating) and a.dtype != np.float32 else a


def name_filter(name: str, include: Sequence[str] | None, exclude: Sequence[str] | None) -> bool:
    """True if ``name`` passes ``include`` / ``exclude`` (exact names or fnmatch patterns)."""
    if include is not None and not any(fnmatchcase(name, p) for p in include):
        return False
    return not (exclude is not None and any(fnmatchcase(name, p) for p in exclude))


def is_layer_of(obj: Any, types: Sequence[str], package: str) -> bool:
    """``obj`` is (a subclass of) one of the framework's own layer classes named in ``types``; a user
    class that merely shares a name does not count."""
    return any(c.__name__ in types and c.__module__.startswith(package) for c in type(obj).__mro__)


def subset_key(idx: np.ndarray | None, n: int) -> tuple:
    """A stable key for a scoring subset (None = all ``n`` samples)."""
    if idx is None:
        return ("all", n)
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    return (idx.size, hashlib.blake2b(idx.tobytes(), digest_size=16).hexdigest())


def backend_hooks(cls: type) -> tuple[Callable, Callable]:
    """The ``wsx_backends`` and ``wsx_backend_for`` hooks of a module that provides backend ``cls``
    (assign both to module globals: pluggy finds hooks by name)."""

    @hookimpl
    def wsx_backends():
        return [cls]

    @hookimpl
    def wsx_backend_for(model):
        return cls.name if cls.accepts(model) else None

    return wsx_backends, wsx_backend_for


def check_shape(name: str, array: Any, shape: Sequence[int]) -> np.ndarray:
    """``array`` as numpy, if it has the layer's ``shape`` (set_weights of every backend)."""
    array = np.asarray(array)
    if tuple(array.shape) != tuple(shape):
        raise InvalidModelError(f"weights for {name!r} have shape {array.shape}, expected {tuple(shape)}")
    return array


@dataclass(frozen=True)
class BatchRef:
    """One batch of native inputs plus a key that is stable across ``score`` calls. ``valid`` is the
    number of real samples when the inputs were padded to a common batch shape (saves recompiling
    for a short last batch); outputs past it are dropped."""

    inputs: Any
    key: tuple
    valid: int | None = None


def batch_length(batch: BatchRef) -> int:
    """Samples in a batch: its padded inputs' leading axis (every input leaf has one)."""
    from wsx.data import tree_leaves

    leaves = tree_leaves(batch.inputs)
    return int(leaves[0][1].shape[0]) if leaves and hasattr(leaves[0][1], "shape") else 1


def changed_layers(population: Sequence[Mapping[str, Any]], order: Sequence[str]) -> tuple:
    """Union of the layers the candidates change, in forward order."""
    named = set()
    for cand in population:
        named.update(cand)
    return tuple(name for name in order if name in named)


class PrefixCache:
    """LRU of prefix activations, bounded in bytes; see the module docstring."""

    def __init__(self, max_bytes: int = DEFAULT_PREFIX_CACHE_BYTES):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()
        self.bytes = 0

    def get(self, key: tuple, compute: Callable[[], Any], nbytes: Callable[[Any], int], stats: Counter):
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
            stats["prefix_hits"] += 1
            return hit[0]
        value = compute()
        stats["prefix_misses"] += 1
        size = int(nbytes(value))
        if size <= self.max_bytes:
            self._items[key] = (value, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, old) = self._items.popitem(last=False)
                self.bytes -= old
        return value

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class Split:
    """A model cut in two around a set of changed layers.

    ``prefix(inputs) -> live`` computes what does not depend on the changed layers;
    the backend's suffix runner takes ``live`` (and the substitutions) and returns the outputs.
    """

    changed: tuple
    prefix: Callable[[Any], Any]
    suffix: Any
    info: dict = field(default_factory=dict)


@dataclass
class Prepared:
    """A population converted once per ``score`` call."""

    changed: tuple
    candidates: list  # per candidate: {layer name: native tensor}
    stacked: dict | None  # {layer name: native tensor with a leading candidate axis}, or None
    split: Split | None


class PopulationScoring:
    """Mixin for a Backend: vmapped populations and the prefix cache, over framework hooks.

    A backend using it calls ``_init_scoring`` in its constructor and implements:
    ``_to_native(name, array)``, ``_original(name)``, ``_stack(tensors)``,
    ``_forward(subs, inputs, split, live) -> numpy``, ``_forward_stacked(stacked, inputs, split, live)
    -> numpy with a leading candidate axis``, ``_make_split(changed) -> Split | None``,
    ``_live_nbytes(live)``, ``_activation_bytes_per_sample()``, ``_native_inputs(tree)`` (numpy
    inputs of some samples as the model takes them, on its device) and ``_new_batches(idx, key)``,
    which yields ``(BatchRef, labels, sample indices)`` for ``_iter_batches`` to cache. It keeps its
    scoring data as ``wsx.data.Data`` in ``_data`` (``_load``); ``zoo_framework`` names the
    framework of the embedded LeNet its conformance example is.
    """

    probe_samples: ClassVar[int] = 2  # samples in the probe batch that checks cuts
    split_rtol: float = 1e-4  # a cut agrees with the full forward to this, relative to the outputs' scale

    zoo_framework: ClassVar[str] = ""
    # the two levers this mixin implements (a subclass may turn one off)
    supports_population_vmap: ClassVar[bool] = True
    supports_prefix_cache: ClassVar[bool] = True

    # True where vmap="auto" on CPU, for a network above VMAP_AUTO_MAX_BYTES, times the stacked forward
    # against the loop on its first population and keeps the faster (eager frameworks: no compilation
    # to amortise, so one batch tells)
    measure_vmap_choice: ClassVar[bool] = False

    # True where every distinct set of changed layers costs a compilation (JAX, TensorFlow): cuts are
    # made for single layers only (the layer-wise step, where a sweep pays them back), and a
    # population changing several layers stacks all of them, so one compiled function serves all.
    compiled: bool = False

    def _init_scoring(self, *, vmap: bool | str, prefix_cache: bool, prefix_cache_bytes: int,
                      vmap_bytes: int) -> None:
        if not (isinstance(vmap, bool) or vmap == "auto"):
            raise InvalidSettingError(f"vmap={vmap!r}: use True, False or 'auto'")
        self.vmap = vmap
        self.vmap_: bool | None = None if vmap == "auto" else (vmap and type(self).supports_population_vmap)
        self.vmap_choice_: dict | None = None  # the timing behind vmap="auto"'s choice, where it measured
        self._act_bytes: int | None = None
        self.prefix_cache = bool(prefix_cache) and type(self).supports_prefix_cache
        self.prefix_cache_bytes = int(prefix_cache_bytes)
        self.vmap_bytes = int(vmap_bytes)
        self.stats_: Counter = Counter()
        self.vmap_error_: str | None = None
        self.prefix_errors_: dict = {}
        self._prefix = PrefixCache(self.prefix_cache_bytes)
        self._splits: OrderedDict[tuple, Split | None] = OrderedDict()
        self._vmap_chunk: dict[int, int] = {}  # samples in a batch -> candidates per vectorised call
        self._probe_whole: np.ndarray | None = None
        self._batches: dict = {}

    @classmethod
    def conformance_example(cls):
        """(model, data) the conformance suite (wsx.testing.backends) runs on: the embedded LeNet."""
        from wsx.zoo import load

        return load("lenet5-digits", framework=cls.zoo_framework)

    @classmethod
    def conformance_examples(cls) -> dict[str, Callable[[], Any]]:
        """Every model the conformance suite runs on, by name: the LeNet, plus the backend's tiny
        transformer examples (``wsx.testing.models``)."""
        return {"lenet": cls.conformance_example}

    def _load(self, data: Any, cast: Callable[[np.ndarray, str], np.ndarray] | None = None) -> None:
        """Keep ``data`` (any form ``wsx.data.as_data`` accepts; None: weight access only) as numpy
        ``Data``, input arrays passed through ``cast`` (e.g. floats to the model's dtype)."""
        if data is None:
            self._data = None
            return
        d = as_data(data)
        self._data = d if cast is None else d.map_inputs(cast)

    def portable_data(self) -> Any:
        """The numpy ``wsx.Data`` kept from ``data`` (a loader is read once, here, not shipped)."""
        return self._data

    def _require_data(self) -> None:
        if self._data is None:
            raise InvalidDataError(f"this {self.name} backend was created without data (data=None); pass "
                                   "(inputs, labels) or inputs to score")

    def _probe_data(self, n: int = 2) -> Any:
        """The inputs of the first ``n`` samples (numpy tree), for probes and traces."""
        self._require_data()
        return self._data.take(slice(0, n)).inputs

    # -- batches ----------------------------------------------------------------------------------
    @property
    def num_samples(self) -> int:
        return 0 if self._data is None else self._data.num_samples

    def _iter_batches(self, subset: np.ndarray | None) -> Iterable[tuple[BatchRef, Any, np.ndarray]]:
        self._require_data()
        idx = np.arange(self.num_samples) if subset is None else np.asarray(subset)
        first = self._first_batch()
        skey = subset_key(subset, self.num_samples) + ((first,) if first else ())
        cached = self._batches.get(skey)
        if cached is not None:
            yield from cached
            return
        keep = self._keep_batches(idx)
        out = []
        for item in self._new_batches(idx, skey):
            if keep:
                out.append(item)
            yield item
        if keep:
            self._batches = {skey: out}  # only the latest index set is kept

    def _keep_batches(self, idx: np.ndarray) -> bool:
        """Whether the native batches of ``idx`` are kept for the next ``score`` call."""
        return True

    def _first_batch(self) -> int | None:
        """The first batch's size where smaller than ``batch_size`` (``Backend.first_batch_``); a
        compiled backend keeps one batch shape, as a second would cost a compilation per function."""
        return None if type(self).compiled else getattr(self, "first_batch_", None)

    def _new_batches(self, idx: np.ndarray, key: tuple) -> Iterator[tuple[BatchRef, Any, np.ndarray]]:
        """(BatchRef of native inputs, labels, sample indices) per batch of ``idx``."""
        raise NotImplementedError

    def _probe_inputs(self):
        """Native inputs of the first ``probe_samples`` samples."""
        return self._native_inputs(self._probe_data(self.probe_samples))

    def _probe_outputs(self, candidate, idx: np.ndarray) -> np.ndarray:
        """A full forward (no cut, no stacking) on the samples ``idx``: what unused_layers needs,
        without a prefix split or a compilation per layer (one compiled function serves all)."""
        x = self._native_inputs(self._data.take(idx).inputs)
        subs = {n: self._to_native(n, a) for n, a in candidate.items()}
        return np.asarray(self._forward(subs, x, None, None))

    # -- gradients (wsx.sensitivity) -------------------------------------------------------------
    supports_gradients: ClassVar[bool] = True
    grad_batch: ClassVar[int] = 64  # samples per call of _squared_gradients

    def importances(self, names: Sequence[str], subset: np.ndarray | None = None, *,
                    seed: int = 0) -> dict[str, np.ndarray]:
        """Per-weight importances of the layers ``names``: squared per-sample gradients of the loss
        ``wsx.sensitivity.loss_target`` picks, summed over the samples of ``subset`` (all if None),
        at the backend's current weights."""
        from wsx.sensitivity import loss_target

        self._require_data()
        rng = np.random.default_rng(seed)
        idx = np.arange(self.num_samples) if subset is None else np.asarray(subset)
        total = {n: np.zeros(self.layer(n).shape, dtype=np.float64) for n in names}
        for _, part in self._data.batches(idx, self.grad_batch):
            x = self._native_inputs(part.inputs)
            outputs = np.asarray(self._forward({}, x, None, None))
            kind, target = loss_target(self.metric_, part.labels, outputs, rng)
            for n, g2 in self._squared_gradients(tuple(names), x, kind, target).items():
                total[n] += g2
        return total

    def _squared_gradients(self, names: tuple, inputs: Any, kind: str, target: np.ndarray) -> dict:
        """{layer: sum over the batch's samples of the squared gradient of the per-sample loss
        ``kind`` ("ce", "mse", "projection") against ``target``} as numpy."""
        raise NotImplementedError

    # -- population -----------------------------------------------------------------------------
    def _prepare(self, population):
        order = [info.name for info in self.layers()]
        for cand in population:
            unknown = [n for n in cand if n not in order]
            if unknown:
                raise KeyError(f"unknown layer(s) {unknown}; layers are {order}")
        changed = changed_layers(population, order)
        cands = [{n: self._to_native(n, a) for n, a in cand.items()} for cand in population]
        stacked = None
        if self.vmap_error_ is None and len(cands) > 1 and changed and self._use_vmap():
            names = tuple(order) if self.compiled and len(changed) > 1 else changed
            stacked = {n: self._stack([c.get(n, self._original(n)) for c in cands]) for n in names}
        wanted = self.prefix_cache and changed and (len(changed) == 1 or not self.compiled)
        split = self._split_for(changed) if wanted else None
        return Prepared(changed, cands, stacked, split)

    def _narrow(self, prep: Prepared, keep, candidates) -> Prepared:
        """The candidates at positions ``keep`` only (early rejection dropped the others): their
        native tensors are reused, the stacked ones restacked, the cut kept (it holds for fewer
        changed layers too)."""
        cands = [prep.candidates[i] for i in keep]
        stacked = None
        if prep.stacked is not None and len(cands) > 1:
            stacked = {n: self._stack([c.get(n, self._original(n)) for c in cands]) for n in prep.stacked}
        return Prepared(prep.changed, cands, stacked, prep.split)

    def _forward_population(self, batch: BatchRef, prep: Prepared):
        live = None
        if prep.split is not None:
            split = prep.split
            live = self._prefix.get((split.changed, batch.key), lambda: split.prefix(batch.inputs),
                                    self._live_nbytes, self.stats_)
        outs = None
        if prep.stacked is not None and self.vmap_error_ is None:
            try:
                outs = self._time_choice(prep, batch, live) if self.vmap_ is None else \
                    self._run_stacked(prep, batch, live)
            except Exception as exc:  # no batching rule for some op: loop from now on
                self.vmap_error_ = f"{type(exc).__name__}: {exc}"
        if outs is None:
            self.stats_["loop_forwards"] += len(prep.candidates)
            outs = [self._forward(subs, batch.inputs, prep.split, live) for subs in prep.candidates]
        return outs if batch.valid is None else [out[:batch.valid] for out in outs]

    def _run_stacked(self, prep: Prepared, batch: BatchRef, live) -> list:
        n = len(prep.candidates)
        step = self._candidates_per_call(batch)
        outs: list = []
        for start in range(0, n, step):
            sl = slice(start, min(start + step, n))
            part = prep.stacked if (start == 0 and sl.stop == n) else \
                {k: v[sl] for k, v in prep.stacked.items()}
            out = self._forward_stacked(part, batch.inputs, prep.split, live)
            self.stats_["vmap_calls"] += 1
            outs.extend(out[i] for i in range(out.shape[0]))
        return outs

    def _use_vmap(self) -> bool:
        if self.vmap_ is None:  # "auto", decided once
            if not type(self).supports_population_vmap:
                self.vmap_ = False
            elif self._on_accelerator() or self._activation_bytes() <= VMAP_AUTO_MAX_BYTES:
                self.vmap_ = True
            elif not type(self).measure_vmap_choice:
                self.vmap_ = False
            else:
                return True  # stacked for now: the first population times it against the loop
        return self.vmap_

    def _time_choice(self, prep: Prepared, batch: BatchRef, live) -> list:
        """vmap="auto" on CPU for a large network: score the batch stacked (that first call traces and
        checks), then time a stacked call of as many candidates as a call takes against one-by-one
        forwards of two, on this batch, the fastest of ``VMAP_AUTO_REPEATS`` interleaved tries each,
        and keep the stacked path from now on only where it is ``VMAP_AUTO_MIN_SPEEDUP`` times faster
        (``vmap_choice_``)."""
        outs = self._run_stacked(prep, batch, live)
        stats = self.stats_.copy()
        m = min(len(prep.candidates), self._candidates_per_call(batch))
        part = Prepared(prep.changed, prep.candidates[:m], {k: v[:m] for k, v in prep.stacked.items()}, prep.split)
        k = min(m, 2)
        stacked = loop = float("inf")
        for _ in range(VMAP_AUTO_REPEATS):
            t = time.perf_counter()
            self._run_stacked(part, batch, live)
            stacked = min(stacked, (time.perf_counter() - t) / m)
            t = time.perf_counter()
            for subs in prep.candidates[:k]:
                self._forward(subs, batch.inputs, prep.split, live)
            loop = min(loop, (time.perf_counter() - t) / k)
        self.stats_ = stats
        self.vmap_ = stacked * VMAP_AUTO_MIN_SPEEDUP < loop
        self.vmap_choice_ = {"stacked_s_per_candidate": stacked, "loop_s_per_candidate": loop,
                             "candidates_per_call": m, "samples": batch_length(batch),
                             "chosen": "stacked" if self.vmap_ else "loop"}
        return outs

    def _on_accelerator(self) -> bool:
        return False

    def _activation_bytes(self) -> int:
        if self._act_bytes is None:
            self._act_bytes = int(self._activation_bytes_per_sample())
        return self._act_bytes

    def _working_bytes_per_sample(self) -> int:
        """Bytes one candidate's forward holds at once per sample (bounds a vectorised call); the sum
        of all activations unless a backend knows better."""
        return self._activation_bytes()

    def _candidates_per_call(self, batch: BatchRef) -> int:
        """Candidates per vectorised call: ``vmap_bytes`` over the activations of this batch's real
        samples (not ``batch_size``: a subset of 64 samples is one batch of 64)."""
        n = batch_length(batch)
        if n not in self._vmap_chunk:
            per_sample = max(self._working_bytes_per_sample(), 1)
            self._vmap_chunk[n] = max(1, self.vmap_bytes // (per_sample * max(n, 1)))
        return self._vmap_chunk[n]

    # -- prefix split -------------------------------------------------------------------------
    def _split_for(self, changed: tuple) -> Split | None:
        if changed in self._splits:
            self._splits.move_to_end(changed)
            return self._splits[changed]
        try:
            split = self._make_split(changed)
            if split is not None and not split.info.get("checked") and not self._split_agrees(split):
                self.prefix_errors_[changed] = "prefix + suffix disagree with the full forward"
                split = None
        except Exception as exc:  # the graph cannot be cut here: full forwards
            self.prefix_errors_[changed] = f"{type(exc).__name__}: {exc}"
            split = None
        self._splits[changed] = split
        while len(self._splits) > 256:
            self._splits.popitem(last=False)
        return split

    def _split_agrees(self, split: Split) -> bool:
        """Prefix + suffix must reproduce the full forward on a probe batch (catches bad cuts)."""
        x = self._probe_inputs()
        if self._probe_whole is None:
            self._probe_whole = np.asarray(self._probe_forward(x, None), dtype=np.float64)
        whole = self._probe_whole
        parts = np.asarray(self._probe_forward(x, split), dtype=np.float64)
        scale = max(float(np.abs(whole).max()), 1.0)
        return whole.shape == parts.shape and bool(np.abs(whole - parts).max() <= self.split_rtol * scale)

    def _probe_forward(self, x, split: Split | None):
        """Original-weight outputs on ``x``, whole or through ``split``; backends that compile may
        override it to run eagerly (a probe must not cost a compilation)."""
        return self._forward({}, x, split, split.prefix(x) if split is not None else None)

    def _invalidate(self) -> None:
        """The model's weights changed: cached activations and reference outputs are stale."""
        self._prefix.clear()
        self._probe_whole = None
        self._forget_reference()

    def _close_scoring(self) -> None:
        self._batches = {}
        self._prefix.clear()
        self._splits.clear()
