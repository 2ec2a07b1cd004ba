"""What crosses the executor seam: candidates go out as knob dicts, results come back as ``Scored``.

A candidate is ``{layer name: knob}`` (layers it does not name keep their weights); the side that
scores it materialises the weights from its own approximation cache, so only knobs travel between
the engine and a worker. ``StopRule`` tells a backend when it may stop scoring a candidate that
cannot meet the target (early rejection); ``Scored`` says what was measured. Both are plain,
picklable data: any executor ships them as they are, and the rule is applied inside the backend's
scoring loop (``wsx.backend.Backend.score_detailed``), wherever that runs.

**Early rejection.** A per-sample metric (a mean of per-sample values within declared ``bounds``) is
scored batch by batch; after each batch but the last, every candidate still scored gets the best
mean it could still reach on the whole subset:

* exact: even if every remaining sample scored the best per-sample value,
  ``(sum seen + remaining x best value) / subset size``;
* statistical (``confidence`` c given, finite bounds): also the Hoeffding-Serfling upper confidence
  bound of the subset's mean from the samples seen (sampling without replacement, range R = hi - lo),
  ``mean seen + R sqrt((1 - (n - 1) / N) ln(1 / d_j) / (2 n))``, at d_j = (1 - c) 6 / (pi^2 j^2)
  for the j-th check, so that over all checks of a candidate the chance of rejecting one that would
  have met the target is at most 1 - c. It assumes the samples come in random order (the engine
  scores a seeded permutation of the subset when a confidence is given).

A candidate whose bound misses ``threshold`` (by more than ``tolerance``) is rejected: it is left out
of the following batches' forwards, and fails the target. Under the exact bound alone the engine
scores the subset's samples nearest a change of class first (``Backend.sample_margins``): the order
changes no mean, and a candidate that flips one of them stops on its first batch (EfficientNet-B0 at
a target that lets no sample change: 91 % of rejections on the first of four batches, against 41 %
in the data's order). That first batch is smaller where the target lets few samples fall
(``StopRule.first_batch``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np


FIRST_BATCH_LOOKS = 8  # first batch = this many times the fewest samples that can reject (first_batch)


@dataclass(frozen=True)
class StopRule:
    """When a candidate may be left unscored on the remaining samples.

    ``threshold`` is the metric value a candidate must reach on the scoring subset to meet the target
    (at least it for ``greater_is_better`` metrics, at most it otherwise); ``bounds`` the range of the
    metric's per-sample values. With ``confidence`` None only a provable bound rejects (even if
    every remaining sample scored the best value, the mean would miss the threshold); a confidence
    in (0, 1) also rejects on a statistical bound at that level (see the module docstring).
    ``tolerance`` (metric units) is how far past the threshold a bound must lie, so that rounding
    never rejects a candidate the target's own check would pass. Plain data: it is shipped to workers.
    """

    threshold: float
    greater_is_better: bool = True
    bounds: tuple[float, float] = (0.0, 1.0)
    confidence: float | None = None
    tolerance: float = 0.0

    def best_means(self, sums: np.ndarray, counts: np.ndarray, total: int, check: int) -> np.ndarray:
        """The best mean over ``total`` samples each candidate could still reach, having per-sample
        values summing to ``sums`` over its first ``counts`` samples; ``check`` (1, 2, ...) numbers
        this check among the candidate's checks (the statistical bound's share of 1 - confidence)."""
        sums = np.asarray(sums, dtype=np.float64)
        counts = np.asarray(counts, dtype=np.float64)
        lo, hi = self.bounds
        best = hi if self.greater_is_better else lo
        left = np.maximum(total - counts, 0.0)
        with np.errstate(invalid="ignore"):  # inf x 0 where nothing is left
            exact = np.where(left > 0, (sums + left * best) / total, sums / max(total, 1))
        if self.confidence is None or not (math.isfinite(lo) and math.isfinite(hi)):
            return exact
        delta = (1.0 - self.confidence) * 6.0 / (math.pi ** 2 * check ** 2)
        n = np.maximum(counts, 1.0)
        finite = np.clip(1.0 - (n - 1.0) / max(total, 1), 0.0, 1.0)
        eps = (hi - lo) * np.sqrt(finite * math.log(1.0 / delta) / (2.0 * n))
        mean = sums / n
        if self.greater_is_better:
            return np.minimum(exact, mean + eps)
        return np.maximum(exact, mean - eps)

    def fewest_rejecting(self, total: int) -> int | None:
        """The fewest samples, all scoring the worst per-sample value, that reject a candidate under
        the exact bound on a subset of ``total`` (1 where the target lets no sample fall; None where
        the bounds are not finite)."""
        lo, hi = self.bounds
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo or total < 1:
            return None
        worst = lo if self.greater_is_better else hi
        room = (hi - self.threshold + self.tolerance) if self.greater_is_better \
            else (self.threshold + self.tolerance - lo)
        fewest = max(math.floor(total * room / (hi - lo)), 1)  # then checked as the exact bound decides
        exact = replace(self, confidence=None)
        while fewest <= total and not exact.misses(exact.best_means([fewest * worst], [fewest], total, 1))[0]:
            fewest += 1
        return fewest if fewest <= total else None

    def first_batch(self, total: int, batch_size: int) -> int | None:
        """The first batch's size where it should be smaller than ``batch_size``: ``FIRST_BATCH_LOOKS``
        times the fewest samples that can reject (``fewest_rejecting``). The engine puts the samples
        nearest a change of class first, so most rejections need no more (EfficientNet-B0, 64 samples
        at a target that lets none change: about three quarters of its rejections came after a first
        batch of 8 samples instead of 16); a candidate that meets the target pays one forward more."""
        fewest = self.fewest_rejecting(total)
        if fewest is None or FIRST_BATCH_LOOKS * fewest >= batch_size:
            return None
        return FIRST_BATCH_LOOKS * fewest

    def misses(self, best: np.ndarray) -> np.ndarray:
        """True where a best reachable mean misses the threshold (the candidate is rejected)."""
        best = np.asarray(best, dtype=np.float64)
        if self.greater_is_better:
            return best < self.threshold - self.tolerance
        return best > self.threshold + self.tolerance

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "greater_is_better": self.greater_is_better,
                "bounds": list(self.bounds), "confidence": self.confidence, "tolerance": self.tolerance}


@dataclass
class Scored:
    """One candidate's score: ``value`` on the ``samples`` it was scored on. ``rejected`` candidates were
    stopped early (a StopRule): ``value`` is then the mean over the samples seen and ``bound`` the best
    value the candidate could still have reached on the whole subset; they fail the target.
    ``distortion``: the mean squared distance of the candidate's outputs to the uncompressed model's on
    those samples (None where not measured: see ``Backend.score_detailed``), a continuous signal where
    the metric moves in steps (a flipped top-1 sample)."""

    value: float
    samples: int
    rejected: bool = False
    bound: float | None = None
    distortion: float | None = None

    def to_dict(self) -> dict:
        return {"value": self.value, "samples": self.samples, "rejected": self.rejected, "bound": self.bound,
                "distortion": self.distortion}
