"""What crosses the executor seam: candidates go out as knob dicts, results come back as ``Scored``.

A candidate is ``{layer name: knob}`` (layers it does not name keep their weights); the side that
scores it materialises the weights from its own approximation cache, so only knobs travel between
the engine and a worker. ``StopRule`` tells a backend when it may stop scoring a candidate that
cannot meet the target (early rejection); ``Scored`` says what was measured.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StopRule:
    """When a candidate may be left unscored on the remaining samples.

    ``threshold`` is the metric value a candidate must reach on the scoring subset to meet the target
    (at least it for ``greater_is_better`` metrics, at most it otherwise); ``bounds`` the range of the
    metric's per-sample values. With ``confidence`` None only a provable bound rejects (even if
    every remaining sample scored the best value, the mean would miss the threshold); a confidence
    in (0, 1) also rejects on a statistical bound at that level. Plain data: it is shipped to workers.
    """

    threshold: float
    greater_is_better: bool = True
    bounds: tuple[float, float] = (0.0, 1.0)
    confidence: float | None = None


@dataclass
class Scored:
    """One candidate's score: ``value`` on the ``samples`` it was scored on. ``rejected`` candidates were
    stopped early (a StopRule): ``value`` is then the mean over the samples seen and ``bound`` the best
    value the candidate could still have reached on the whole subset; they fail the target."""

    value: float
    samples: int
    rejected: bool = False
    bound: float | None = None

    def to_dict(self) -> dict:
        return {"value": self.value, "samples": self.samples, "rejected": self.rejected, "bound": self.bound}
