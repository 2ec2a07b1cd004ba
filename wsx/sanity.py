"""Checks of the model and data made with the baseline scoring, so that a broken model or data set
stops the run naming the cause instead of producing a confident front of garbage.

* Non-finite float inputs stop the run (the sample is named).
* The unmodified model's outputs must be finite: where they are not, the run stops and names the
  tensors outside the layers of interest (biases, normalisation statistics) that hold NaN or Inf.
* A top-1 baseline at chance level (the larger of 1 / classes and the most frequent label's share,
  within three standard errors) is warned about: every candidate then "meets" a target relative to it.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable
import numpy as np

from .backend import Backend, _numeric_arrays
from .errors import InvalidDataError, InvalidModelError, WsxError


class _Watch:
    """Wraps a backend's metric for one scoring: delegates, and counts the samples whose outputs hold
    NaN or Inf and the number of output classes."""

    def __init__(self, metric):
        self.metric = self.original = metric
        self.bad = 0
        self.samples = 0
        self.classes: int | None = None
        self.label_counts: np.ndarray | None = np.zeros(0, np.int64)

    def __getattr__(self, name):  # name, fn, ... of the wrapped metric
        return getattr(self.metric, name)

    def bind(self, has_labels: bool) -> "_Watch":
        """The backend binds its metric to the data (labels or reference): keep watching the bound one."""
        self.metric = self.metric.bind(has_labels)
        return self

    def accumulator(self, n: int):
        inner = self.metric.accumulator(n)
        watch = self

        class Acc:
            def add(self, i, outputs, labels):
                if i == 0:
                    arrays = [a for a in _numeric_arrays(outputs) if a.dtype.kind in "fc"]
                    rows = len(outputs)
                    watch.samples += rows
                    for a in arrays:
                        a = a[:rows]
                        if a.size and not np.isfinite(a).all():
                            watch.bad += int((~np.isfinite(a.reshape(len(a), -1))).any(axis=1).sum())
                    if len(arrays) == 1 and arrays[0].ndim == 2:
                        watch.classes = int(arrays[0].shape[1])
                    watch.count_labels(labels)
                inner.add(i, outputs, labels)

            def result(self):
                return inner.result()

        return Acc()

    def count_labels(self, labels) -> None:
        """Class frequencies, where labels are class indices (for the chance level)."""
        labels = np.asarray(labels) if self.label_counts is not None else None
        if labels is None or labels.ndim != 1 or labels.dtype.kind not in "iu" or (labels.size and labels.min() < 0):
            self.label_counts = None
            return
        counts = np.bincount(labels)
        size = max(counts.size, self.label_counts.size)
        self.label_counts = np.pad(self.label_counts, (0, size - self.label_counts.size)) + np.pad(
            counts, (0, size - counts.size))


def check_inputs(be: Backend) -> None:
    """Stop on NaN or Inf in the float inputs, naming the first sample that holds one."""
    seen = 0
    for batch in be._iter_batches(None):
        arrays = list(_numeric_arrays(batch[0]))
        # the batch's samples (a padded batch has more rows): its indices, else its labels' or inputs' rows
        rows = len(batch[2]) if len(batch) > 2 else \
            (len(batch[1]) if batch[1] is not None else (len(arrays[0]) if arrays else 0))
        for arr in arrays:
            if arr.dtype.kind not in "fc":
                continue
            part = arr[:rows].reshape(min(rows, len(arr)), -1)
            finite = np.isfinite(part).all(axis=1)
            if not finite.all():
                first = seen + int(np.argmin(finite))
                raise InvalidDataError(f"the inputs hold NaN or Inf ({int((~finite).sum())} samples of one batch, "
                                       f"the first is sample {first}); clean or drop those samples before "
                                       "exploring")
        seen += rows


def score_baseline(be: Backend, score: Callable[[list], np.ndarray]) -> tuple[float, float | None]:
    """(baseline metric on all data, its chance level or None) of the unmodified model, scored by ``score``
    (the engine's executor path); raises naming the cause when the model cannot run on the data or
    gives NaN / Inf. An executor scoring elsewhere leaves the outputs unseen (no output check)."""
    watch = _Watch(be.metric_)
    be.metric_ = watch
    try:
        value = float(score([{}])[0])
    except (WsxError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # the framework refusing the inputs: dtype, shape, rank
        raise InvalidDataError(f"the model cannot run on the scoring data ({type(exc).__name__}: "
                               f"{_first_line(exc)}); pass inputs of the dtype and shape the model takes "
                               "(e.g. float32 images, not uint8 or strings)") from exc
    finally:
        be.metric_ = watch.original
        if getattr(be, "scoring_metric_", None) is watch:
            be.scoring_metric_ = watch.metric
    if watch.bad:
        causes = non_finite_tensors(be)
        where = (f"tensors outside the layers of interest hold NaN or Inf: {', '.join(causes[:8])}"
                 if causes else "its forward overflows or divides by zero")
        raise InvalidModelError(f"the unmodified model gives NaN or Inf outputs on {watch.bad} of "
                                f"{watch.samples} samples: {where}; fix the model before exploring")
    return value, chance_level(watch.metric, watch.classes, watch.label_counts)


def non_finite_tensors(be: Backend) -> list[str]:
    """Names of the model's float tensors holding NaN or Inf."""
    try:
        tensors = be.tensors()
    except Exception:  # noqa: BLE001 - a dtype numpy cannot hold; nothing to name then
        return []
    return [name for name, arr in tensors.items()
            if np.asarray(arr).dtype.kind in "fc" and not np.isfinite(arr).all()]


def chance_level(metric, classes: int | None, label_counts: np.ndarray | None = None) -> float | None:
    """The score of guessing, where it is defined: wsx's top-1 over a known number of classes, that
    is the larger of 1 / classes and the share of the most frequent label (always answering it)."""
    if getattr(metric, "name", "") != "top1" or getattr(metric, "fn", None) is not None or not classes \
            or classes < 2:
        return None
    share = label_counts.max() / label_counts.sum() if label_counts is not None and label_counts.sum() else 0.0
    return max(1.0 / classes, float(share))


def warn_if_chance(baseline: float, chance: float | None, samples: int) -> str | None:
    """A warning (also returned, for the result's notes) when the baseline is within three standard
    errors of chance: targets relative to it are then met by any candidate."""
    if chance is None:
        return None
    margin = 3.0 * math.sqrt(chance * (1 - chance) / max(samples, 1))
    if baseline > chance + margin:
        return None
    message = (f"the baseline top-1 {baseline:.4f} is at or below chance level ({chance:.4f}: always answering "
               "the most frequent label, or guessing): every candidate meets a target relative to it; check the "
               "labels and that the model is the trained one")
    warnings.warn(message, stacklevel=3)
    return message


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""
