"""Metrics, quality targets and the size / CR formula (thesis eq. 4.1).

**The metric contract.** A ``Metric`` judges a candidate's outputs and declares:

* ``name``; ``greater_is_better`` (as scikit-learn's ``make_scorer``);
* ``scale`` and ``unit``: the *metric loss* of a candidate is ``scale x (baseline - value)`` for a
  higher-is-better metric and ``scale x (value - baseline)`` for a lower-is-better one, so a positive
  loss is always worse; ``unit`` names its unit (accuracies: ``scale=100``, "pp", percentage points).
  ``max_drop=`` / ``max_increase=`` targets are in these units;
* ``per_sample``: True when the value is the mean over samples of a per-sample value (then the metric
  may be computed batch by batch, and its accumulator exposes per-candidate running ``sums`` /
  ``counts``, which is what stopping a hopeless candidate early needs); ``bounds=(lo, hi)`` of the
  per-sample values when known;
* ``against``: what the outputs are compared with: "labels" (the data's), "reference" (the
  uncompressed model's outputs on the same samples: fidelity, no labels needed), or "auto" (labels
  when the data has them, else the reference). ``needs_reference`` is True for "reference".

Built in: ``top1`` (labels are integral class indices; outputs ``(N, classes)``), ``agreement``
(top-1 agreement with the uncompressed model, arg-max over the last axis), ``cosine`` (mean cosine
similarity of the flattened per-sample outputs), ``mse`` (mean squared error, lower is better) and
``psnr`` (10·log10(R² / MSE) over all scored samples, R the range of what is compared with, capped
at 100 dB, so identical outputs score 100). ``cosine``, ``mse`` and ``psnr`` are "auto".

A plain callable ``fn(outputs, labels) -> float`` is a metric where higher is better, computed once
on all scored samples; ``wsx.metric(fn, greater_is_better=..., per_sample=..., ...)`` declares more.
A per-sample callable may return one value per sample or the batch mean. A callable that needs the
reference is called as ``fn(outputs, reference)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from .errors import InvalidDataError, InvalidSettingError, MetricError

TARGETS = {"mlperf-heavy": 0.99, "mlperf-light": 0.98}
AGAINST = ("labels", "reference", "auto")
LABEL_FREE = ("agreement", "cosine", "mse", "psnr")
PSNR_CAP_DB = 100.0


def index_bits(k: int) -> int:
    """b_index = ceil(log2 k); k=1 needs no index."""
    return int(math.ceil(math.log2(k))) if k > 1 else 0


def weight_sharing_bits(weights: int, k: int, bits: int = 32, groups: int = 1) -> int:
    """size_i = W_i * ceil(log2 k_i) + G_i * k_i * B (thesis eq. 4.1; G codebooks, 1 per layer)."""
    return int(weights) * index_bits(k) + int(groups) * int(k) * int(bits)


def compression_rate(baseline_bits: Iterable[int], sizes: Iterable[int]) -> float:
    """CR = sum_i W_i * B / sum_i size_i over the layers of interest."""
    return float(sum(baseline_bits)) / float(sum(sizes))


# -- accumulators: one per score call, fed batch by batch ----------------------------------------------
class MeanAccumulator:
    """Per-sample metrics: per-candidate running ``sums`` and ``counts`` of the per-sample values."""

    def __init__(self, metric: "Metric", n: int):
        self.metric = metric
        self.sums = np.zeros(n, dtype=np.float64)
        self.counts = np.zeros(n, dtype=np.int64)

    def add(self, i: int, outputs: np.ndarray, target: Any) -> None:
        total, count = self.metric.batch_sum(outputs, target)
        self.sums[i] += total
        self.counts[i] += count

    def running(self) -> np.ndarray:
        """Each candidate's mean over the samples it has seen so far."""
        return self.sums / np.maximum(self.counts, 1)

    def result(self) -> np.ndarray:
        return self.running()


class CollectAccumulator:
    """Metrics computed once on all samples: outputs and targets are kept until the end."""

    def __init__(self, metric: "Metric", n: int):
        self.metric = metric
        self.outputs: list[list[np.ndarray]] = [[] for _ in range(n)]
        self.targets: list[Any] = []

    def add(self, i: int, outputs: np.ndarray, target: Any) -> None:
        if i == 0:
            self.targets.append(target)
        self.outputs[i].append(np.asarray(outputs))

    def result(self) -> np.ndarray:
        from .data import tree_map

        target = None if self.targets[0] is None else tree_map(
            lambda _, p: np.concatenate([_at(t, p) for t in self.targets]), self.targets[0])
        return np.asarray([self.metric.whole(np.concatenate(outs), target) for outs in self.outputs],
                          dtype=np.float64)


def _at(tree: Any, path: str) -> np.ndarray:
    from .data import tree_leaves

    return dict(tree_leaves(tree))[path]


class PsnrAccumulator:
    """PSNR from running sums: squared errors, element counts and the compared values' range."""

    def __init__(self, metric: "Metric", n: int):
        self.metric = metric
        self.sse = np.zeros(n, dtype=np.float64)
        self.count = np.zeros(n, dtype=np.int64)
        self.lo, self.hi = math.inf, -math.inf

    def add(self, i: int, outputs: np.ndarray, target: Any) -> None:
        o, t = _paired(self.metric, outputs, target)
        if i == 0:
            self.lo, self.hi = min(self.lo, float(t.min())), max(self.hi, float(t.max()))
        self.sse[i] += float(((o - t) ** 2).sum())
        self.count[i] += o.size

    def result(self) -> np.ndarray:
        peak = self.hi - self.lo if self.hi > self.lo else 1.0
        mse = np.maximum(self.sse / np.maximum(self.count, 1), peak ** 2 * 10 ** (-PSNR_CAP_DB / 10))
        return 10.0 * np.log10(peak ** 2 / mse)


# -- metrics -----------------------------------------------------------------------------------------------
class Metric:
    """How candidates are judged; see the module docstring for every attribute."""

    accumulator_class: type = MeanAccumulator
    # Where the metric takes an arg-max ("flat": over each sample's flattened outputs, "last": over the
    # last axis; None: no class decision): output distortion is then measured against the margin.
    decision_axis: str | None = None

    def __init__(self, name: str, *, greater_is_better: bool = True, per_sample: bool = True,
                 bounds: tuple | None = None, unit: str = "", scale: float = 1.0, against: str = "labels"):
        if against not in AGAINST:
            raise InvalidSettingError(f"against={against!r}; use one of {list(AGAINST)}")
        if bounds is not None:
            bounds = (float(bounds[0]), float(bounds[1]))
            if not bounds[0] <= bounds[1]:
                raise InvalidSettingError(f"bounds={bounds!r} of metric {name!r}: give (low, high) with low <= high")
        if not (isinstance(scale, (int, float)) and scale > 0):
            raise InvalidSettingError(f"scale={scale!r} of metric {name!r}: give a positive number")
        self.name = str(name)
        self.greater_is_better = bool(greater_is_better)
        self.per_sample = bool(per_sample)
        self.bounds = bounds
        self.unit = str(unit)
        self.scale = float(scale)
        self.against = against

    # -- what it compares with ------------------------------------------------------------------
    @property
    def needs_reference(self) -> bool:
        return self.against == "reference"

    def bind(self, has_labels: bool) -> "Metric":
        """This metric with ``against="auto"`` resolved for data with or without labels."""
        if self.against != "auto":
            return self
        import copy

        bound = copy.copy(self)
        bound.against = "labels" if has_labels else "reference"
        return bound

    # -- values ---------------------------------------------------------------------------------
    def accumulator(self, n: int):
        return self.accumulator_class(self, n)

    def values(self, outputs: np.ndarray, target: Any) -> np.ndarray:
        """Per-sample values of one batch (per-sample metrics)."""
        raise NotImplementedError

    def batch_sum(self, outputs: np.ndarray, target: Any) -> tuple[float, int]:
        """(sum of the per-sample values, sample count) of one batch."""
        v = np.asarray(self.values(outputs, target), dtype=np.float64)
        return float(v.sum()), int(v.size)

    def whole(self, outputs: np.ndarray, target: Any) -> float:
        """The value on all samples at once (metrics that are not per-sample)."""
        total, count = self.batch_sum(outputs, target)
        return total / max(count, 1)

    def __call__(self, outputs: Any, labels: Any = None) -> float:
        """The metric of ``outputs`` against ``labels`` (or the reference) on one set of samples."""
        from .data import Data

        outputs = np.asarray(outputs)
        target = None if labels is None else Data(outputs, labels).labels
        acc = self.accumulator(1)
        acc.add(0, outputs, target)
        return float(acc.result()[0])

    # -- loss and description -------------------------------------------------------------------
    def loss(self, value: float, baseline: float) -> float:
        """Metric loss of ``value`` against ``baseline`` (positive: worse), in ``unit``."""
        diff = baseline - value if self.greater_is_better else value - baseline
        return float(self.scale * diff)

    @property
    def loss_name(self) -> str:
        """What the loss is called in tables and plots: AL for accuracies, else drop / increase."""
        if self.unit == "pp" and self.greater_is_better:
            return "AL"
        return "drop" if self.greater_is_better else "increase"

    @property
    def loss_label(self) -> str:
        return f"{self.loss_name} ({self.unit})" if self.unit else self.loss_name

    @property
    def direction(self) -> str:
        return "higher is better" if self.greater_is_better else "lower is better"

    def describe(self) -> dict:
        """What results.json records about the metric."""
        return {"name": self.name, "greater_is_better": self.greater_is_better, "unit": self.unit,
                "scale": self.scale, "loss": self.loss_name, "per_sample": self.per_sample,
                "bounds": None if self.bounds is None else list(self.bounds), "against": self.against,
                "needs_reference": self.needs_reference}

    def key(self) -> tuple:
        """Two metrics with equal keys score alike."""
        return (type(self), self.name, self.greater_is_better, self.per_sample, self.bounds, self.unit,
                self.scale, self.against, getattr(self, "fn", None))

    def __repr__(self) -> str:
        return f"Metric({self.name!r}, {self.direction}, against {self.against})"


def _flat(metric: Metric, outputs: np.ndarray) -> np.ndarray:
    outputs = np.asarray(outputs)
    return outputs.reshape(len(outputs), -1).astype(np.float64, copy=False)


def _paired(metric: Metric, outputs: np.ndarray, target: Any) -> tuple[np.ndarray, np.ndarray]:
    """Outputs and what they are compared with, both (N, features), or an error naming the shapes."""
    if target is None:
        raise InvalidDataError(f"metric {metric.name!r} compares the outputs with the labels, but the data has "
                               "none; pass (inputs, labels), or let it compare with the uncompressed model")
    if not isinstance(target, np.ndarray):
        raise InvalidDataError(f"metric {metric.name!r} compares the outputs with one array per sample, got "
                               f"labels of type {type(target).__name__}; pass one array, or a callable metric "
                               "that reads them")
    o, t = _flat(metric, outputs), _flat(metric, target)
    if o.shape != t.shape:
        what = "the uncompressed model's outputs" if metric.needs_reference else "the labels"
        raise InvalidDataError(f"metric {metric.name!r} compares outputs of shape {np.shape(outputs)} with "
                               f"{what} of shape {np.shape(target)}: they differ per sample; pass labels shaped "
                               "like the outputs, or select another output (output=)")
    return o, t


class Top1(Metric):
    """Top-1 accuracy: arg-max of the outputs (flattened per sample) against integral class labels."""

    decision_axis = "flat"

    def __init__(self):
        super().__init__("top1", bounds=(0, 1), unit="pp", scale=100.0, against="labels")

    def values(self, outputs, target):
        outputs = _flat(self, outputs)
        labels = class_indices(target, len(outputs), outputs.shape[1])
        return (outputs.argmax(axis=1) == labels).astype(np.float64)


def class_indices(labels: Any, n: int, classes: int) -> np.ndarray:
    """Labels as int64 class indices in [0, classes), or an error saying what top-1 needs."""
    if labels is None:
        raise InvalidDataError("metric 'top1' needs labels; pass (inputs, labels), or a label-free metric: "
                               f"{', '.join(LABEL_FREE)} compare with the uncompressed model")
    if not isinstance(labels, np.ndarray):
        raise InvalidDataError(f"metric 'top1' needs one class index per sample, got labels of type "
                               f"{type(labels).__name__}; pass an array, or a callable metric that reads them")
    if labels.ndim > 1 and int(np.prod(labels.shape[1:])) == 1:
        labels = labels.reshape(len(labels))
    if labels.ndim != 1:
        raise InvalidDataError(f"metric 'top1' needs one class index per sample, got labels of shape "
                               f"{labels.shape}; pass class indices, or a metric that reads these labels "
                               f"(a callable, or {', '.join(LABEL_FREE)})")
    if labels.dtype.kind not in "biu":
        if labels.dtype.kind != "f":
            raise InvalidDataError(f"metric 'top1' needs integral class indices, got labels of dtype {labels.dtype}")
        bad = labels[~np.isfinite(labels) | (labels != np.round(labels))]
        if bad.size:
            raise InvalidDataError(f"metric 'top1' needs integral class indices, got label {bad[0]!r} (float "
                                   "labels are not rounded); pass class indices, or a metric for these labels")
    labels = labels.astype(np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        raise InvalidDataError(
            f"labels span [{labels.min()}, {labels.max()}] but the model outputs {classes} classes; labels "
            f"must be class indices in [0, {classes - 1}]")
    return labels


class Agreement(Metric):
    """Top-1 agreement with the uncompressed model: arg-max over the last axis, averaged per sample."""

    decision_axis = "last"

    def __init__(self):
        super().__init__("agreement", bounds=(0, 1), unit="pp", scale=100.0, against="reference")

    def values(self, outputs, target):
        outputs, target = np.asarray(outputs), np.asarray(target)
        if outputs.ndim < 2 or outputs.shape != target.shape:
            raise InvalidDataError(f"metric 'agreement' needs outputs of shape (N, ..., classes) like the "
                                   f"reference's, got {outputs.shape} and {target.shape}; select another output "
                                   "(output=) or use 'cosine' / 'mse'")
        same = outputs.argmax(axis=-1) == target.argmax(axis=-1)
        return same.reshape(len(same), -1).mean(axis=1)


class Cosine(Metric):
    """Mean cosine similarity of the flattened per-sample outputs (1 when both are zero)."""

    def __init__(self, against: str = "auto"):
        super().__init__("cosine", bounds=(-1, 1), against=against)

    def values(self, outputs, target):
        o, t = _paired(self, outputs, target)
        no, nt = np.linalg.norm(o, axis=1), np.linalg.norm(t, axis=1)
        dot = (o * t).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = np.clip(dot / (no * nt), -1.0, 1.0)
        both_zero = (no == 0) & (nt == 0)
        return np.where(both_zero, 1.0, np.where((no == 0) | (nt == 0), 0.0, cos))


class MSE(Metric):
    """Mean squared error of the flattened per-sample outputs (lower is better)."""

    def __init__(self, against: str = "auto"):
        super().__init__("mse", greater_is_better=False, bounds=(0, math.inf), against=against)

    def values(self, outputs, target):
        o, t = _paired(self, outputs, target)
        return ((o - t) ** 2).mean(axis=1)


class PSNR(Metric):
    """10·log10(R² / MSE) over all scored samples (not a per-sample mean), capped at 100 dB."""

    accumulator_class = PsnrAccumulator

    def __init__(self, against: str = "auto"):
        super().__init__("psnr", per_sample=False, bounds=None, unit="dB", against=against)


class CallableMetric(Metric):
    """A user's ``fn(outputs, labels) -> float`` (``fn(outputs, reference)`` when it needs the reference)."""

    def __init__(self, fn: Callable, name: str | None = None, *, per_sample: bool = False, **kwargs):
        super().__init__(name or getattr(fn, "__name__", "metric"), per_sample=per_sample, **kwargs)
        self.fn = fn
        if not per_sample:
            self.accumulator_class = CollectAccumulator

    def _call(self, outputs, target):
        try:
            return self.fn(outputs, target)
        except (MetricError, InvalidDataError):
            raise
        except Exception as exc:  # the user's code: wrap with what to do
            raise MetricError(f"metric {self.name!r} raised {type(exc).__name__}: {exc}; it is called as "
                              f"metric(outputs, {'reference' if self.needs_reference else 'labels'}) with numpy "
                              f"arrays and must return a float ({self.direction})") from exc

    def _number(self, raw) -> np.ndarray:
        try:
            return np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError):
            raise MetricError(f"metric {self.name!r} returned a {type(raw).__name__}, not a number; it must "
                              f"return a float ({self.direction})") from None

    def batch_sum(self, outputs, target):
        v = self._number(self._call(outputs, target))
        n = len(outputs)
        if v.ndim == 0:  # the batch mean
            return self._finite(float(v)) * n, n
        if v.shape != (n,):
            raise MetricError(f"metric {self.name!r} returned an array of shape {v.shape} for {n} samples; a "
                              "per-sample metric returns one value per sample or their mean (a float)")
        self._finite(float(v.sum()))
        return float(v.sum()), n

    def whole(self, outputs, target):
        v = self._number(self._call(outputs, target))
        if v.ndim != 0:
            raise MetricError(f"metric {self.name!r} returned an array of shape {v.shape}, not a scalar; it must "
                              "return one float "
                              f"for the scored samples ({self.direction}); declare it per_sample=True to return "
                              "one value per sample")
        return self._finite(float(v))

    def _finite(self, value: float) -> float:
        if not math.isfinite(value):
            raise MetricError(f"metric {self.name!r} returned non-finite values ({value}); make it return a finite "
                              "float")
        return value


BUILTIN: dict[str, Callable[[], Metric]] = {"top1": Top1, "accuracy": Top1, "agreement": Agreement,
                                            "cosine": Cosine, "mse": MSE, "psnr": PSNR}


def metric(fn: Callable | str, *, greater_is_better: bool = True, per_sample: bool = False,
           bounds: tuple | None = None, name: str | None = None, unit: str = "", scale: float = 1.0,
           needs_reference: bool = False, against: str | None = None) -> Metric:
    """Declare a metric: ``fn(outputs, labels) -> float`` (numpy arrays) with its direction and nature.

    ``per_sample=True`` says the value is the mean over samples of a per-sample value (then ``fn`` may
    return one value per sample or a batch's mean, and is called batch by batch); ``bounds`` are
    those per-sample values' (low, high) when known. ``needs_reference=True`` compares with the
    uncompressed model: ``fn(outputs, reference)``, no labels needed. ``scale`` and ``unit`` set the
    metric loss's unit (``scale=100, unit="pp"`` for an accuracy in [0, 1]). A built-in name returns
    that metric (``against=`` chooses what "cosine", "mse" or "psnr" compare with).
    """
    if isinstance(fn, str):
        if fn not in BUILTIN:
            raise InvalidSettingError(f"unknown metric {fn!r}; use one of {sorted(BUILTIN)} or a callable")
        if against is not None and fn in ("cosine", "mse", "psnr"):
            return BUILTIN[fn](against=against)
        return BUILTIN[fn]()
    if not callable(fn):
        raise InvalidSettingError(f"wsx.metric needs a callable(outputs, labels) -> float, got {type(fn).__name__}")
    if against is None:
        against = "reference" if needs_reference else "labels"
    return CallableMetric(fn, name, greater_is_better=greater_is_better, per_sample=per_sample, bounds=bounds,
                          unit=unit, scale=scale, against=against)


def resolve_metric(metric: Any) -> Metric:
    """A Metric from a name, a callable (higher is better, not per-sample), a Metric, or None (top1)."""
    if isinstance(metric, Metric):
        return metric
    if metric is None:
        return Top1()
    if isinstance(metric, str):
        if metric not in BUILTIN:
            raise InvalidSettingError(f"unknown metric {metric!r}; use one of {sorted(BUILTIN)}, a "
                                      "callable(outputs, labels) -> float, or wsx.metric(...)")
        return BUILTIN[metric]()
    if callable(metric):
        return CallableMetric(metric)
    raise InvalidSettingError(f"unknown metric {metric!r}; use one of {sorted(BUILTIN)}, a callable(outputs, "
                              "labels) -> float, or wsx.metric(...)")


# -- targets --------------------------------------------------------------------------------------------
def resolve_target(target: Any) -> float:
    """Minimum fraction of the baseline metric a candidate must keep (a name or a fraction)."""
    if isinstance(target, (bool, np.bool_)):
        raise InvalidSettingError(f"target={target!r}: give a name {sorted(TARGETS)} or a fraction in (0, 1], "
                                  "e.g. 0.99")
    if isinstance(target, str):
        if target not in TARGETS:
            raise InvalidSettingError(f"unknown target {target!r}; use one of {sorted(TARGETS)} "
                                      "or a float in (0, 1]")
        return TARGETS[target]
    try:
        value = float(target)
    except (TypeError, ValueError):
        raise InvalidSettingError(f"target must be a name {sorted(TARGETS)} or a float in (0, 1], "
                                  f"got {target!r}") from None
    if not (0.0 < value <= 1.0) or math.isnan(value):
        raise InvalidSettingError(f"target {value} is outside (0, 1]; it is the fraction of the "
                                  "baseline accuracy to keep, e.g. 0.99")
    return value


@dataclass(frozen=True)
class TargetSpec:
    """The quality target as asked: a fraction of the baseline, or an absolute tolerance."""

    kind: str  # "fraction", "max_drop" or "max_increase"
    value: float
    name: str | None = None  # "mlperf-heavy" / "mlperf-light" for named fractions

    @property
    def label(self) -> str:
        if self.kind == "fraction":
            return self.name or f"{self.value:g}"
        return f"{self.kind}={self.value:g}"

    def goal(self, metric: Metric, baseline: float) -> "Goal":
        """The target made concrete for a baseline value."""
        baseline = float(baseline)
        if self.kind == "fraction":
            if baseline < 0:
                raise InvalidSettingError(
                    f"target {self.label} keeps a fraction of the baseline, but metric {metric.name!r} is "
                    f"{baseline:.6g} on the baseline model; a fraction of a negative value asks for more than "
                    f"the baseline: give max_drop= (in {metric.name}'s units) instead")
            max_loss = metric.scale * (1.0 - self.value) * baseline
        else:
            max_loss = self.value
        return Goal(metric, baseline, float(max_loss), self)


def target_spec(metric: Metric, target: Any = None, max_drop: Any = None, max_increase: Any = None) -> TargetSpec:
    """Check the target arguments against the metric's direction (before anything is scored)."""
    given = [n for n, v in (("target", target), ("max_drop", max_drop), ("max_increase", max_increase))
             if v is not None]
    if len(given) > 1:
        raise InvalidSettingError(f"{' and '.join(given)} are given; they are alternatives: pass one target "
                                  "(a fraction of the baseline, max_drop= or max_increase=)")
    for name, v in (("max_drop", max_drop), ("max_increase", max_increase)):
        if v is None:
            continue
        bad = isinstance(v, (bool, np.bool_, str))
        try:
            value = float(v)
        except (TypeError, ValueError):
            bad = True
        if bad or not math.isfinite(value) or value < 0:
            raise InvalidSettingError(f"{name}={v!r}: give a non-negative number, in the metric's units "
                                      f"({metric.loss_label} for {metric.name!r})")
        if name == "max_drop" and not metric.greater_is_better:
            raise InvalidSettingError(f"max_drop is for higher-is-better metrics; {metric.name!r} is lower-is-better: "
                                      f"give max_increase= (the largest increase of {metric.name} you accept)")
        if name == "max_increase" and metric.greater_is_better:
            raise InvalidSettingError(f"max_increase is for lower-is-better metrics; {metric.name!r} is "
                                      f"higher-is-better: give max_drop= (the largest drop of {metric.name} you accept)")
        return TargetSpec(name, value)
    if target is None:
        if not metric.greater_is_better:
            raise InvalidSettingError(f"metric {metric.name!r} is lower-is-better, so a fraction of its baseline "
                                      "(the default target) does not apply; give max_increase= (the largest "
                                      f"increase of {metric.name} you accept, in its units)")
        target = "mlperf-heavy"
    frac = resolve_target(target)
    if not metric.greater_is_better:
        raise InvalidSettingError(f"target {target!r} is a fraction of the baseline, which only bounds a "
                                  f"higher-is-better metric; {metric.name!r} is lower-is-better: give max_increase= "
                                  "instead")
    return TargetSpec("fraction", frac, target if isinstance(target, str) else None)


@dataclass(frozen=True)
class Goal:
    """A target made concrete: candidates whose metric loss is at most ``max_loss`` meet it."""

    metric: Metric
    baseline: float
    max_loss: float
    spec: TargetSpec

    def loss(self, value: float) -> float:
        return self.metric.loss(value, self.baseline)

    def meets(self, value: float) -> bool:
        return bool(self.loss(value) <= self.max_loss + 1e-9 * max(1.0, abs(self.max_loss)))

    @property
    def threshold(self) -> float:
        """The worst metric value that still meets the target."""
        step = self.max_loss / self.metric.scale
        return self.baseline - step if self.metric.greater_is_better else self.baseline + step

    def rebased(self, baseline: float) -> "Goal":
        """The same target for another baseline (all data, test data)."""
        return self.spec.goal(self.metric, baseline)
