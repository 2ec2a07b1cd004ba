"""Metrics (top-1 and user callables), the size / CR formula (thesis eq. 4.1) and quality targets."""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import numpy as np

from .errors import InvalidDataError, InvalidSettingError, MetricError

TARGETS = {"mlperf-heavy": 0.99, "mlperf-light": 0.98}


def index_bits(k: int) -> int:
    """b_index = ceil(log2 k); k=1 needs no index."""
    return int(math.ceil(math.log2(k))) if k > 1 else 0


def weight_sharing_bits(weights: int, k: int, bits: int = 32, groups: int = 1) -> int:
    """size_i = W_i * ceil(log2 k_i) + G_i * k_i * B (thesis eq. 4.1; G codebooks, 1 per layer)."""
    return int(weights) * index_bits(k) + int(groups) * int(k) * int(bits)


def compression_rate(baseline_bits: Iterable[int], sizes: Iterable[int]) -> float:
    """CR = sum_i W_i * B / sum_i size_i over the layers of interest."""
    return float(sum(baseline_bits)) / float(sum(sizes))


def resolve_target(target: Any) -> float:
    """Minimum fraction of the baseline metric a candidate must keep."""
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


class _Top1Acc:
    def __init__(self, n: int, num_classes_check: bool = True):
        self.correct = np.zeros(n, dtype=np.int64)
        self.total = 0
        self._last_labels_id = None

    def add(self, i: int, outputs: np.ndarray, labels: np.ndarray) -> None:
        outputs = np.asarray(outputs)
        if outputs.ndim != 2:
            outputs = outputs.reshape(len(outputs), -1)
        if i == 0:
            self.total += len(labels)
            if len(labels) and (labels.min() < 0 or labels.max() >= outputs.shape[1]):
                raise InvalidDataError(
                    f"labels span [{labels.min()}, {labels.max()}] but the model outputs "
                    f"{outputs.shape[1]} classes; labels must be class indices in [0, {outputs.shape[1] - 1}]")
        self.correct[i] += int((outputs.argmax(axis=1) == labels).sum())

    def result(self) -> np.ndarray:
        return self.correct / max(self.total, 1)


class _CollectAcc:
    def __init__(self, n: int, fn: Callable, name: str):
        self.outputs: list[list[np.ndarray]] = [[] for _ in range(n)]
        self.labels: list[np.ndarray] = []
        self.fn = fn
        self.name = name

    def add(self, i: int, outputs: np.ndarray, labels: np.ndarray) -> None:
        if i == 0:
            self.labels.append(np.asarray(labels))
        self.outputs[i].append(np.asarray(outputs))

    def result(self) -> np.ndarray:
        labels = np.concatenate(self.labels)
        values = []
        for outs in self.outputs:
            try:
                v = float(self.fn(np.concatenate(outs), labels))
            except Exception as exc:  # the user's code: wrap with what to do
                raise MetricError(f"metric {self.name!r} raised {type(exc).__name__}: {exc}; it is called "
                                  "as metric(outputs, labels) with numpy arrays and must return a float "
                                  "(higher is better)") from exc
            values.append(v)
        return np.asarray(values, dtype=np.float64)


class Metric:
    """A higher-is-better score of model outputs against labels."""

    def __init__(self, name: str, fn: Callable | None):
        self.name = name
        self.fn = fn

    def accumulator(self, n: int):
        return _Top1Acc(n) if self.fn is None else _CollectAcc(n, self.fn, self.name)

    def __call__(self, outputs: np.ndarray, labels: np.ndarray) -> float:
        acc = self.accumulator(1)
        acc.add(0, outputs, np.asarray(labels))
        return float(acc.result()[0])


def resolve_metric(metric: Any) -> Metric:
    if isinstance(metric, Metric):
        return metric
    if metric in ("top1", "accuracy", None):
        return Metric("top1", None)
    if callable(metric):
        return Metric(getattr(metric, "__name__", "metric"), metric)
    raise InvalidSettingError(f"unknown metric {metric!r}; use 'top1' or a callable(outputs, labels) -> float")
