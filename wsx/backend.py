"""Backend interface: one trained model plus its scoring data, in some framework."""
from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Mapping, Sequence

import numpy as np

from .errors import InvalidDataError, MetricError
from .layers import LayerInfo
from .metrics import MeanAccumulator, Metric, resolve_metric
from .outputs import describe, select
from .scoring import Scored, StopRule

# Reference outputs (fidelity metrics) up to this many bytes are kept for the backend's lifetime;
# beyond it they are recomputed for every batch of every score call.
DEFAULT_REFERENCE_BYTES = 1 << 30

Population = Sequence[Mapping[str, np.ndarray]]


def _batch_indices(batch: tuple) -> np.ndarray | None:
    """The sample indices of a batch from ``Backend._iter_batches`` (None where it yields none)."""
    return batch[2] if len(batch) > 2 else None


def _distortion_reference(ref: Any, decision: str | None = None) -> tuple | None:
    """The reference side of ``_sq_distance``, once per batch for every candidate: its shape, its values
    as compared (float64) and, with a class ``decision`` axis (``Metric.decision_axis``), the square of
    its gap between the two top classes there, each sample's divisor (how close the sample is to
    changing class, so that samples near the boundary weigh most). None: not an array."""
    try:
        b = np.asarray(ref, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if b.ndim == 0 or b.size == 0:
        return None
    shape = b.shape
    if decision == "flat" or (decision == "last" and b.ndim == 1):
        b = b.reshape(len(b), -1)
    gap = None
    if decision is not None and b.ndim >= 2 and b.shape[-1] >= 2:
        top = np.partition(b, -2, axis=-1)[..., -2:]
        floor = 1e-12 * (b ** 2).mean(axis=-1) + np.finfo(np.float64).tiny  # a tie, relative to the outputs' scale
        gap = (top[..., 1] - top[..., 0]) ** 2 + floor
    return shape, b, gap


def _sq_distance(out: Any, reference: tuple) -> float | None:
    """The batch's summed per-sample mean squared difference of ``out`` to the reference
    (``_distortion_reference``), over its squared top-two gap where it has one (None: not an array of
    the reference's shape)."""
    shape, b, gap = reference
    try:
        a = np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if a.shape != shape:
        return None
    a = a.reshape(b.shape)
    per = (a - b) ** 2 if gap is None else ((a - b) ** 2).mean(axis=-1) / gap
    return float(per.reshape(len(a), -1).mean(axis=1).sum())


class Backend(ABC):
    """Wraps a framework model and its data; scores populations of weight substitutions.

    A candidate in a population is a mapping {layer name: new weights (numpy, layer shape)}; layers
    it does not name keep their original weights. ``data=None`` gives weight access only (apply,
    export); ``score`` then has nothing to read. ``score`` returns one metric value per candidate
    and must leave the user's model as it found it.

    Implementations provide ``_layers``, ``get_weights``, ``set_weights``, ``_iter_batches``,
    ``_prepare`` and ``_forward_population``; the base class runs the metric, so every backend
    agrees on it. Built-in backends normalise ``data`` with ``wsx.data.as_data`` (inputs and labels as
    arrays, dicts or tuples of arrays; labels optional) and call the model on the inputs as their
    framework does: see each backend's docstring. ``output`` picks what the metric sees of the
    model's outputs (``wsx.outputs``; backends apply ``select_output`` to their native outputs).

    ``metric`` None means not given (top-1 then). A metric that compares with the uncompressed model
    (``needs_reference``) gets its reference outputs from ``_forward_population`` with the original
    weights, computed once per sample and kept while they take at most ``reference_bytes`` (default
    1 GiB); beyond that they are recomputed for every batch (one more forward per batch).

    With ``track_distortion`` (default), every ``Scored`` also carries the mean squared distance of the
    candidate's selected outputs to the uncompressed model's (``Scored.distortion``; for metrics deciding
    a class, per sample over the square of the reference's top-two gap: ``_distortion_reference``): free for such
    metrics, one cached reference forward per sample for label metrics (not measured where the
    reference is not cached, the data yields no sample indices, or the outputs are not arrays).
    """

    name: ClassVar[str] = ""
    extra: ClassVar[str | None] = None
    # Modules the backend imports when used; ``available`` reports the first one missing.
    requires: ClassVar[tuple[str, ...]] = ()
    # Capabilities: tests and the engine branch on these, never on backend names.
    supports_population_vmap: ClassVar[bool] = False
    supports_gpu: ClassVar[bool] = False
    # importances(names, subset, seed=) -> {layer: per-weight squared gradients} (wsx.sensitivity)
    supports_gradients: ClassVar[bool] = False
    supports_prefix_cache: ClassVar[bool] = False
    track_distortion: ClassVar[bool] = True

    def __new__(cls, *args, **kwargs):
        # The arguments a backend was created with, so that an executor can build it again on a
        # worker (wsx.executor.BackendRecipe); every subclass gets this without writing anything.
        self = super().__new__(cls)
        self._init_args = (args, kwargs)
        return self

    def __init__(self, model: Any, data: Any = None, *, metric: Any = None, output: Any = None,
                 batch_size: int = 256, device: str | None = None,
                 reference_bytes: int = DEFAULT_REFERENCE_BYTES):
        self.model = model
        self.data = data
        self.metric = metric  # as given (None: not given; the metric is then top-1)
        self.output = output
        self.batch_size = batch_size
        self.device = device
        self.metric_: Metric = resolve_metric(metric)
        self.reference_bytes = int(reference_bytes)
        self.output_note_: str | None = None
        self.scoring_metric_: Metric | None = None  # metric_ bound to the data (labels or reference)
        self.sample_forwards_ = 0  # candidates x samples run by score calls (early rejection's saving)
        self.first_batch_: int | None = None  # the current score call's first batch size (StopRule.first_batch)
        self._stop_request: _StopRequest | None = None
        self._forget_reference()

    @classmethod
    def available(cls) -> tuple[bool, str]:
        from .plugins import modules_available

        return modules_available(cls.requires, cls.extra)

    @staticmethod
    def prepare_import() -> None:
        """Called before anything of wsx imports the backend's framework (e.g. the zoo building a model):
        a backend may set the framework's environment here (the tensorflow backend quiets its banners)."""

    @classmethod
    def accepts(cls, model: Any) -> bool:
        """True if ``model`` is an object of this backend's framework."""
        return False

    def init_arguments(self) -> dict[str, Any]:
        """The constructor's arguments as this backend was created with them, by name (``model``,
        ``data`` and the keyword settings); what an executor needs to build the same backend elsewhere."""
        import inspect

        args, kwargs = getattr(self, "_init_args", ((), {}))
        try:
            bound = inspect.signature(type(self).__init__).bind_partial(self, *args, **kwargs)
        except TypeError:  # a constructor that takes other arguments than it was given (a custom __new__)
            return {"model": self.model, "data": self.data}
        out: dict[str, Any] = {}
        for name, value in list(bound.arguments.items())[1:]:
            kind = bound.signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                out.update(value)
            elif kind is not inspect.Parameter.VAR_POSITIONAL:
                out[name] = value
        return out

    def portable_data(self) -> Any:
        """The scoring data in a form this backend's constructor takes again in another process (an
        executor ships it to its workers once). Default: ``data`` as given; backends that consume a
        loader override this to return what they kept (numpy ``wsx.Data``)."""
        return self.data

    # -- layers and weights -------------------------------------------------------------------
    def layers(self) -> list[LayerInfo]:
        if not hasattr(self, "_layers_cache"):
            self._layers_cache = list(self._layers())
        return self._layers_cache

    def layer(self, name: str) -> LayerInfo:
        for info in self.layers():
            if info.name == name:
                return info
        raise KeyError(name)

    @abstractmethod
    def _layers(self) -> Iterable[LayerInfo]:
        """Layers of interest, in forward order."""

    @abstractmethod
    def get_weights(self, name: str) -> np.ndarray:
        """A numpy copy of the named layer's weights."""

    @abstractmethod
    def set_weights(self, name: str, array: np.ndarray) -> None:
        """Write ``array`` into the user's model (used by wsx.apply only)."""

    def write_weights(self, weights: Mapping[str, np.ndarray]) -> Any:
        """Write {layer name: array} into the user's model and return it (wsx.apply).

        Backends whose models are immutable (JAX pytrees) return the new model instead."""
        for name, arr in weights.items():
            self.set_weights(name, arr)
        self._forget_reference()
        return self.model

    # -- state guarantee ----------------------------------------------------------------------
    def snapshot(self) -> Any:
        """Everything needed to put the user's model back bit for bit."""
        return {info.name: self.get_weights(info.name) for info in self.layers()}

    def restore(self, snapshot: Any) -> None:
        for name, arr in snapshot.items():
            self.set_weights(name, arr)

    # -- scoring ------------------------------------------------------------------------------
    @property
    @abstractmethod
    def num_samples(self) -> int:
        """Number of scoring samples."""

    @abstractmethod
    def _iter_batches(self, subset: np.ndarray | None) -> Iterable[tuple]:
        """Yield ``(native inputs, labels)`` or ``(native inputs, labels, sample indices)`` over the
        samples in ``subset`` (all if None). Labels are the data's (numpy arrays, a dict / tuple of
        them, or None); the sample indices (positions in the whole data) let the base class keep
        reference outputs per sample instead of recomputing them."""

    @abstractmethod
    def _prepare(self, population: Population) -> Any:
        """Convert a population to native tensors once per ``score`` call."""

    @abstractmethod
    def _forward_population(self, inputs: Any, prepared: Any) -> Sequence[np.ndarray]:
        """The selected outputs (numpy, one row per sample) of every prepared candidate on one batch."""

    def select_output(self, outputs: Any) -> Any:
        """What the metric sees of the model's native ``outputs`` (``output=``, see ``wsx.outputs``)."""
        if self.output_note_ is None:
            self.output_note_ = describe(outputs, self.output) or ""
        return select(outputs, self.output)

    def score(self, population: Population, subset: np.ndarray | None = None) -> np.ndarray:
        """Metric value per candidate, reading each data batch once for the whole population."""
        request, self._stop_request = getattr(self, "_stop_request", None), None
        details = self._score_batches(list(population), subset, None if request is None else request.stop)
        if request is not None:
            request.details = details
        return np.asarray([d.value for d in details], dtype=np.float64)

    def score_detailed(self, population: Population, subset: np.ndarray | None = None, *,
                       stop: StopRule | None = None) -> list[Scored]:
        """One ``wsx.scoring.Scored`` per candidate: its value and the samples it was scored on.

        With a ``stop`` rule, candidates that cannot meet it are rejected (``wsx.scoring``): left out
        of the following batches' forwards, and returned with ``rejected`` set, the samples seen and
        their ``bound``. Only per-sample metrics with declared bounds take part; others are scored in
        full. The call goes through ``score``, so a subclass wrapping ``score`` (a device scope, a
        counter) wraps this too; one that replaces ``score`` without calling the base class gets its
        candidates scored in full."""
        population = list(population)
        request = self._stop_request = _StopRequest(stop)
        try:
            with self._scoring_mode():
                values = np.asarray(self.score(population, subset), dtype=np.float64)
        finally:
            self._stop_request = None
        if request.details is None or len(request.details) != len(values):
            samples = self.num_samples if subset is None else len(subset)
            return [Scored(float(v), samples) for v in values]
        return [Scored(float(v), d.samples, d.rejected, d.bound, d.distortion)
                for v, d in zip(values, request.details)]

    def _scoring_mode(self):
        """A context every scoring runs in (backends override it: eval mode, no autograd)."""
        return contextlib.nullcontext()

    def _score_batches(self, population: list, subset: np.ndarray | None,
                       stop: StopRule | None) -> list[Scored]:
        """The scoring loop: each batch read once for every candidate still scored (see score_detailed)."""
        if not population:
            return []
        prepared = self._prepare(population)
        active = list(range(len(population)))  # positions in population still scored
        total = self.num_samples if subset is None else len(subset)
        # a backend's _iter_batches may make the first batch smaller, where rejections are likely
        self.first_batch_ = stop.first_batch(total, self.batch_size) \
            if stop is not None and can_reject(self.metric_) else None
        rejected: dict[int, float] = {}  # position -> best value it could still reach
        acc = metric = reference = rule = track = None
        seen = checks = 0
        dist = np.zeros(len(population))  # per candidate: summed per-sample squared output distance
        for batch in self._iter_batches(subset):
            if not active:
                break  # every candidate rejected: the rest of the data is not read
            inputs, labels = batch[0], batch[1]
            indices = _batch_indices(batch)
            if metric is None:
                metric = self.scoring_metric_ = self.metric_.bind(labels is not None)
                acc = metric.accumulator(len(population))
                rule = stop if stop is not None and can_reject(metric) else None
            outputs = self._forward_population(inputs, prepared)
            if metric.needs_reference:
                if reference is None:
                    reference = self._prepare([{}])
                target = self._reference(inputs, indices, reference)
            elif labels is None:
                raise InvalidDataError(f"metric {metric.name!r} compares the outputs with labels, but the data has "
                                       "none; pass (inputs, labels), or a metric that compares with the "
                                       "uncompressed model: 'agreement', 'cosine', 'mse', 'psnr'")
            else:
                target = labels
            for i, out in zip(active, outputs):
                acc.add(i, out, target)
            if track is None:  # label metrics pay one reference forward per sample, cached
                track = self.track_distortion and (metric.needs_reference or indices is not None)
            if track:
                if reference is None:
                    reference = self._prepare([{}])
                ref = _distortion_reference(target if metric.needs_reference
                                            else self._reference(inputs, indices, reference), metric.decision_axis)
                for i, out in zip(active, outputs):
                    d = None if ref is None else _sq_distance(out, ref)
                    track = track and d is not None
                    dist[i] += d if d is not None else 0.0
                if not metric.needs_reference and self.reference_cached_ is False:
                    track = False  # not cached: every scoring would pay a second forward
            size = len(outputs[0]) if len(outputs) else 0
            seen += size
            self.sample_forwards_ = getattr(self, "sample_forwards_", 0) + size * len(active)
            if rule is not None and seen < total:
                checks += 1
                at = np.asarray(active)
                _check_bounds(metric, acc, at)
                best = rule.best_means(acc.sums[at], acc.counts[at], total, checks)
                out_now = rule.misses(best)
                if out_now.any():
                    rejected.update((int(i), float(b)) for i, b, r in zip(at, best, out_now) if r)
                    keep = [j for j, r in enumerate(out_now) if not r]
                    active = [active[j] for j in keep]
                    if active:
                        prepared = self._narrow(prepared, keep, [population[i] for i in active])
        self.first_batch_ = None  # other reads of the data (margins, references) keep whole batches
        if seen == 0:
            raise InvalidDataError("the scoring data yielded no samples; pass at least one batch")
        values = acc.result()
        if not np.all(np.isfinite(values)):
            raise MetricError(f"metric {metric.name!r} returned non-finite values {values!r}; "
                              "make it return a finite float")
        counts = getattr(acc, "counts", None)
        out = [Scored(float(v), int(counts[i]), True, rejected[i]) if i in rejected
               else Scored(float(v), int(seen)) for i, v in enumerate(values)]
        if track:  # a rejected candidate's mean is over the samples it was scored on
            for i, scored in enumerate(out):
                d = dist[i] / max(scored.samples, 1)
                scored.distortion = float(d) if np.isfinite(d) else None
        return out

    def _narrow(self, prepared: Any, keep: Sequence[int], candidates: Population) -> Any:
        """``prepared`` reduced to the candidates at positions ``keep`` (those not rejected), which are
        ``candidates``; the default prepares them anew. Backends that convert once override it."""
        return self._prepare(list(candidates))

    # -- reference outputs (fidelity metrics) ---------------------------------------------------
    def _forget_reference(self) -> None:
        """The model's weights changed: reference outputs computed so far are stale."""
        self._ref: np.ndarray | None = None
        self._ref_filled: np.ndarray | None = None
        self.reference_cached_: bool | None = None  # None: not decided yet

    def _reference(self, inputs: Any, indices: np.ndarray | None, prepared: Any) -> np.ndarray:
        """The uncompressed model's selected outputs on one batch (cached per sample, see the class)."""
        if indices is not None and self._ref_filled is not None and self._ref_filled[indices].all():
            return self._ref[indices]
        ref = np.asarray(self._forward_population(inputs, prepared)[0])
        if indices is not None and self.reference_cached_ is None:
            per_sample = ref[:1].nbytes
            self.reference_cached_ = per_sample * self.num_samples <= self.reference_bytes
            if self.reference_cached_:
                self._ref = np.empty((self.num_samples,) + ref.shape[1:], ref.dtype)
                self._ref_filled = np.zeros(self.num_samples, dtype=bool)
        if indices is not None and self._ref is not None and ref.shape[1:] == self._ref.shape[1:]:
            self._ref[indices] = ref
            self._ref_filled[indices] = True
        return ref

    def sample_margins(self, subset: np.ndarray | None, decision: str | None,
                       weights: Mapping[str, Any] | None = None) -> np.ndarray | None:
        """Per sample of ``subset`` (all if None), in its order: the squared gap between the two top
        values of the uncompressed model's selected output on the ``decision`` axis
        (``Metric.decision_axis``), the smallest over a sample's positions. A small gap is a sample
        near a change of class: the first to flip under compression. With ``weights`` (a candidate's
        substituted weights, as ``score`` takes them) the gaps of that candidate's outputs instead:
        the samples it has brought nearest a change. None where there is no such axis."""
        if decision is None:
            return None
        prepared = self._prepare([dict(weights or {})])
        gaps = []
        with self._scoring_mode():
            for batch in self._iter_batches(subset):
                out = self._forward_population(batch[0], prepared)[0] if weights else \
                    self._reference(batch[0], _batch_indices(batch), prepared)
                ref = _distortion_reference(out, decision)
                if ref is None or ref[2] is None:
                    return None
                gaps.append(ref[2].reshape(len(ref[2]), -1).min(axis=1))
        return np.concatenate(gaps) if gaps else None

    # -- parameters that cannot influence the output ---------------------------------------------
    def unused_layers(self, samples: int = 16, seed: int = 0) -> list[str]:
        """Layers of interest whose weights cannot influence the selected output: replaced by random
        values (several times their magnitude), they leave the outputs on the first ``samples``
        samples bit for bit unchanged (e.g. a BERT pooler when the output is ``last_hidden_state``).
        Such layers stay as they are and count in no compression rate."""
        idx = np.arange(min(int(samples), self.num_samples))
        base = self._probe_outputs({}, idx)
        rng = np.random.default_rng(seed)
        unused = []
        for layer in self.layers():
            w = self.get_weights(layer.name)
            noisy = (w + rng.standard_normal(w.shape) * (float(np.abs(w).max()) + 1.0)).astype(w.dtype)
            out = self._probe_outputs({layer.name: noisy}, idx)
            if out.shape == base.shape and np.array_equal(out, base, equal_nan=True):
                unused.append(layer.name)
        return unused

    def _probe_outputs(self, candidate: Mapping[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
        """One candidate's selected outputs on the samples ``idx`` (backends may run this eagerly)."""
        prepared = self._prepare([candidate])
        return np.concatenate([np.asarray(self._forward_population(batch[0], prepared)[0])
                               for batch in self._iter_batches(idx)])

    def notes(self) -> list[str]:
        """Messages for the result about how the backend scored (e.g. reduced precision and its
        agreement with float32); none by default."""
        return []

    def close(self) -> None:
        """Release memory held for scoring (cached batches, activations)."""

    # -- export and resume (wsx.artifact, wsx.journal) ----------------------------------------
    def tensors(self) -> dict[str, np.ndarray]:
        """Every tensor of the model by name, as numpy copies (export stores the ones that are not
        layers of interest as they are). Default: the layers of interest only; backends override
        to add biases, normalisation statistics and other buffers."""
        return {info.name: self.get_weights(info.name) for info in self.layers()}

    def tensor_aliases(self) -> dict[str, str]:
        """{other name: layer name} for tensors that are the very same storage as a layer of
        interest (tied weights), so an artifact restores them with the layer's shared values."""
        return {}

    def fingerprint(self) -> dict[str, str]:
        """sha256 hex digests of the model's tensors, of the scoring data and of the model's
        computation, so that a journal written for one model and data set is never resumed on another."""
        import hashlib

        model = hashlib.sha256()
        aliases = self.tensor_aliases()
        for name, arr in sorted(self.tensors().items()):
            arr = np.ascontiguousarray(arr)
            model.update(f"{name}|{arr.shape}|{arr.dtype.str}|{aliases.get(name, '')}\n".encode())
            model.update(arr.tobytes())
        data = hashlib.sha256(f"samples={self.num_samples}\n".encode())
        if self.data is not None:
            # Inputs and labels are hashed as separate streams so batch boundaries do not matter;
            # rows past a batch's sample count pad a short batch and are left out.
            inputs_hash, labels_hash, kinds = hashlib.sha256(), hashlib.sha256(), set()
            for batch in self._iter_batches(None):
                inputs, labels = batch[0], batch[1]
                label_arrays = [np.ascontiguousarray(a) for a in _numeric_arrays(labels)]
                rows = len(batch[2]) if len(batch) > 2 else (len(label_arrays[0]) if label_arrays else None)
                for arr in _numeric_arrays(inputs):
                    kinds.add(f"{arr.dtype.str}{arr.shape[1:]}")
                    inputs_hash.update(np.ascontiguousarray(arr[:rows]).tobytes())
                for arr in label_arrays:
                    kinds.add(f"label{arr.dtype.str}{arr.shape[1:]}")
                    labels_hash.update(arr.tobytes())
            data.update(f"{sorted(kinds)}|{inputs_hash.hexdigest()}|{labels_hash.hexdigest()}".encode())
        return {"model": model.hexdigest(), "data": data.hexdigest(), "computation": self.computation_digest()}

    def computation_digest(self) -> str | None:
        """sha256 hex digest of what the model computes beyond its tensors (its layer structure and
        forward code, a config, a traced program), so that the same weights under another forward
        are told apart; None where the backend cannot tell."""
        return None


def _numeric_arrays(x: Any):
    """The numeric arrays (at least 1-D) in a batch: numpy, framework tensors on any device, and
    containers or small records (dataclasses) of them. Keys, counts and other metadata a backend
    attaches to a batch are skipped, so the data fingerprint depends on the samples alone."""
    if isinstance(x, (str, bytes, int, float, bool, type(None))):
        return
    if isinstance(x, (tuple, list)):
        for part in x:
            yield from _numeric_arrays(part)
        return
    if isinstance(x, dict):
        for key in sorted(x, key=str):
            yield from _numeric_arrays(x[key])
        return
    for convert in (np.asarray, lambda t: t.cpu().numpy(), lambda t: t.numpy()):
        try:
            arr = convert(x)
        except Exception:  # noqa: BLE001 - try the next conversion
            continue
        if arr.dtype.kind in "biufc":
            if arr.ndim >= 1:
                yield arr
            return
        break
    import dataclasses

    fields = ({f.name: getattr(x, f.name) for f in dataclasses.fields(x)} if dataclasses.is_dataclass(x)
              else getattr(x, "__dict__", None))
    if fields:
        yield from _numeric_arrays(dict(fields))


@dataclass
class _StopRequest:
    """A stop rule handed from ``score_detailed`` to the base ``score`` through a subclass's ``score``."""

    stop: StopRule | None
    details: list | None = None


def can_reject(metric: Metric) -> bool:
    """Whether early rejection applies to ``metric``: a mean of per-sample values with known bounds."""
    return bool(metric.per_sample and metric.bounds is not None
                and issubclass(getattr(metric, "accumulator_class", object), MeanAccumulator))


def _check_bounds(metric: Metric, acc: Any, at: np.ndarray) -> None:
    """A rejection is only as sound as the declared bounds: a running mean outside them is refused."""
    lo, hi = metric.bounds
    mean = acc.running()[at]
    slack = 1e-9 * max(1.0, abs(lo), abs(hi)) if np.isfinite(lo) and np.isfinite(hi) else 1e-9
    if np.any(mean < lo - slack) or np.any(mean > hi + slack):
        bad = float(mean[(mean < lo - slack) | (mean > hi + slack)][0])
        raise MetricError(f"metric {metric.name!r} declares per-sample values in [{lo}, {hi}] but its mean is "
                          f"{bad!r}; fix the bounds= given to wsx.metric (early rejection relies on them), or pass "
                          "early_rejection=False")
