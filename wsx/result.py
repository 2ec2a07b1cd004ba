"""Candidates, the Result of an exploration, and its JSON / CSV form."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CorruptFileError

RESULT_VERSION = 1


@dataclass
class Candidate:
    """One scored knob combination. ``knobs`` maps layer name -> knob (k for weight sharing);
    layers it does not name keep their original weights.

    ``accuracy`` holds the metric's value (top-1, cosine, MSE, ...: the name is kept for
    compatibility; ``value`` is the same) and ``accuracy_loss`` the metric loss against the baseline
    (``loss``): positive is worse whatever the metric's direction, in the metric's loss unit
    (percentage points for accuracies; ``Result.metric`` says which).
    ``measured_on`` is "subset" for search-time scores and "full" once re-scored on all data.
    ``test_*`` are filled when ``explore(test_data=...)`` re-scored the front on a disjoint split.
    ``rejected`` candidates were stopped early (``wsx.scoring``, early rejection): ``accuracy`` is then
    the mean over the ``samples`` seen and ``bound`` the best value they could still have reached on
    the whole subset; they fail the target and are never on a front. ``samples`` is None for a
    candidate scored on every sample of its data. ``distortion`` is the mean squared distance of its
    outputs to the uncompressed model's on the search subset (``wsx.scoring.Scored``; None where not
    measured).
    """

    knobs: dict
    accuracy: float
    accuracy_loss: float
    compression_rate: float
    meets_target: bool
    measured_on: str = "full"
    size_bits: int = 0
    origin: str = ""
    test_accuracy: float | None = None
    test_accuracy_loss: float | None = None
    test_meets_target: bool | None = None
    rejected: bool = False
    samples: int | None = None
    bound: float | None = None
    distortion: float | None = None

    @property
    def value(self) -> float:
        """The metric's value (the ``accuracy`` field)."""
        return self.accuracy

    @property
    def loss(self) -> float:
        """The metric loss (the ``accuracy_loss`` field): positive is worse."""
        return self.accuracy_loss

    def to_dict(self) -> dict:
        d = asdict(self)
        d["knobs"] = {k: _plain(v) for k, v in self.knobs.items()}
        return {k: _plain(v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "Candidate":
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class Baseline:
    accuracy: float
    bits: int
    subset_accuracy: float | None = None
    test_accuracy: float | None = None


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def pareto_mask(accuracy_loss: np.ndarray, compression_rate: np.ndarray) -> np.ndarray:
    """True for candidates no other candidate dominates (lower metric loss, higher CR)."""
    al = np.asarray(accuracy_loss, dtype=float)
    cr = np.asarray(compression_rate, dtype=float)
    order = np.lexsort((al, -cr))  # by CR descending, ties by AL ascending
    mask = np.zeros(al.size, dtype=bool)
    best_al = math.inf
    last_cr = None
    for idx in order:
        if al[idx] < best_al:
            mask[idx] = True
            best_al = al[idx]
            last_cr = cr[idx]
        elif al[idx] == best_al and cr[idx] == last_cr:
            mask[idx] = False  # exact duplicate point: keep the first only
    return mask


def pareto_front(candidates: list[Candidate]) -> list[Candidate]:
    """Pareto-efficient candidates in (min metric loss, max CR), sorted by CR ascending. Rejected
    candidates (scored on part of the subset) take no part: their loss is not a measurement."""
    candidates = [c for c in candidates if not c.rejected]
    if not candidates:
        return []
    mask = pareto_mask([c.accuracy_loss for c in candidates], [c.compression_rate for c in candidates])
    front = [c for c, m in zip(candidates, mask) if m]
    return sorted(front, key=lambda c: c.compression_rate)


TOP1 = {"name": "top1", "greater_is_better": True, "unit": "pp", "scale": 100.0, "loss": "AL",
        "per_sample": True, "bounds": [0.0, 1.0], "against": "labels", "needs_reference": False}


@dataclass
class Result:
    """What an exploration produced: the front (re-scored on all data), the full history, timings
    (seconds: clustering, scoring, overhead, total, final_scoring), the scoring count and settings.

    ``metric`` describes the metric (name, direction, loss unit, ...; ``wsx.metrics.Metric.describe``);
    ``unused_layers`` lists the layers whose weights cannot influence the selected output: they were
    left as they are and out of every compression rate. ``importances`` holds the per-weight
    importances a sensitivity-weighted run clustered with (in memory only, not saved), so that
    ``wsx.apply`` / ``wsx.export`` given this result reproduce its clustering.
    """

    front: list[Candidate]
    history: list[Candidate]
    baseline: Baseline
    timings: dict
    scorings: int
    settings: dict
    strategy: str = ""
    backend: str = ""
    clusterer: str = ""
    approximation: str = ""
    layers: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    extras: dict = field(default_factory=dict)
    metric: dict = field(default_factory=lambda: dict(TOP1))
    unused_layers: list = field(default_factory=list)
    importances: dict | None = field(default=None, repr=False, compare=False)

    # -- views --------------------------------------------------------------------------------
    def best(self) -> Candidate | None:
        """The highest-CR front candidate that meets the target on all the search data and, when
        ``test_data`` was given, on the test data too (``best_basis`` says which data decided)."""
        ok = [c for c in self.front if c.meets_target and c.test_meets_target is not False]
        return max(ok, key=lambda c: c.compression_rate) if ok else None

    def best_basis(self) -> str:
        """The data ``best()`` was decided on, in words (report.html, `wsx export` and the CLI say it)."""
        samples = (self.settings or {}).get("samples")
        search = f"all {samples} samples of the search data" if samples else "all the search data"
        if any(c.test_meets_target is not None for c in self.front):
            return f"{search} and the test data"
        return search

    def to_frame(self):
        import pandas as pd

        rows = []
        for i, c in enumerate(self.history):
            row = {"index": i, "accuracy": c.accuracy, "accuracy_loss": c.accuracy_loss,
                   "compression_rate": c.compression_rate, "meets_target": c.meets_target,
                   "measured_on": c.measured_on, "size_bits": c.size_bits, "origin": c.origin,
                   "rejected": c.rejected, "samples": c.samples, "bound": c.bound,
                   "distortion": c.distortion}
            for layer, knob in c.knobs.items():
                row[f"knob[{layer}]"] = knob
            rows.append(row)
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        return {
            "wsx_result_version": RESULT_VERSION,
            "baseline": asdict(self.baseline),
            "front": [c.to_dict() for c in self.front],
            "strategy": self.strategy, "backend": self.backend, "clusterer": self.clusterer,
            "approximation": self.approximation, "metric": self.metric, "unused_layers": self.unused_layers,
            "scorings": self.scorings, "timings": self.timings, "settings": self.settings,
            "layers": self.layers, "notes": self.notes, "extras": self.extras,
            "history": [c.to_dict() for c in self.history],
        }

    # -- files --------------------------------------------------------------------------------
    def save(self, out: str | Path, *, plot: bool = True) -> Path:
        """Write results.json, results.csv (history), front.png and report.html into directory ``out``
        (``plot=False``: the JSON and CSV only)."""
        from .files import atomic_write, prepare_dir

        out = prepare_dir(out)
        # Each file is written whole under a temporary name, then moved: a kill leaves old or new.
        self.save_json(out)
        frame = self.to_frame()
        atomic_write(out / "results.csv", lambda tmp: frame.to_csv(tmp, index=False))
        if plot:
            from .plot import plot_front
            from .report import write_report

            atomic_write(out / "front.png", lambda tmp: plot_front(self, tmp))
            write_report(self, out / "report.html")
        return out

    def save_json(self, out: str | Path) -> Path:
        """Write (or rewrite) ``out/results.json`` alone."""
        from .files import prepare_dir, write_text

        path = prepare_dir(out) / "results.json"
        write_text(path, json.dumps(self.to_dict(), indent=1, default=_plain))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Result":
        path = Path(path)
        if path.is_dir():
            path = path / "results.json"
        try:
            d = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptFileError(f"cannot read {path} as a wsx results.json ({exc}); "
                                   "point to the directory an exploration wrote with --out") from exc
        if not isinstance(d, dict) or "front" not in d or "baseline" not in d:
            raise CorruptFileError(f"{path} is not a wsx results.json (no 'front'/'baseline'); "
                                   "point to the directory an exploration wrote with --out")
        problem = _malformed(d)
        if problem:
            raise CorruptFileError(f"{path} has a malformed entry ({problem}); re-run the exploration, or "
                                   "point to a results.json wsx wrote")
        return cls(
            front=[Candidate.from_dict(c) for c in d["front"]],
            history=[Candidate.from_dict(c) for c in d.get("history", [])],
            baseline=Baseline(**{k: v for k, v in d["baseline"].items() if k in Baseline.__dataclass_fields__}),
            timings=d.get("timings", {}), scorings=d.get("scorings", 0), settings=d.get("settings", {}),
            strategy=d.get("strategy", ""), backend=d.get("backend", ""),
            clusterer=d.get("clusterer", ""), approximation=d.get("approximation", ""),
            layers=d.get("layers", []), notes=d.get("notes", []), extras=d.get("extras", {}),
            metric=d.get("metric") or dict(TOP1), unused_layers=d.get("unused_layers", []))

    # -- words for the metric ---------------------------------------------------------------------
    @property
    def metric_name(self) -> str:
        return str(self.metric.get("name", "top1"))

    @property
    def loss_label(self) -> str:
        """The metric loss's column title: "AL (pp)" for accuracies, else "drop" / "increase" (unit)."""
        unit = self.metric.get("unit") or ""
        return f"{self.metric.get('loss', 'AL')} ({unit})" if unit else str(self.metric.get("loss", "AL"))

    @property
    def direction(self) -> str:
        return "higher is better" if self.metric.get("greater_is_better", True) else "lower is better"

    def fmt_value(self, v: float | None) -> str:
        """A metric value as tables print it (4 decimals for accuracies, 6 significant digits else)."""
        if v is None:
            return "-"
        return f"{v:.4f}" if self.metric.get("unit") == "pp" else f"{v:.6g}"

    def fmt_loss(self, v: float | None) -> str:
        if v is None:
            return "-"
        return f"{v:.2f}" if self.metric.get("unit") == "pp" else f"{v:.4g}"

    def summary(self) -> str:
        """The front as a text table."""
        name = self.metric_name
        lines = [f"metric {name} ({self.direction}): baseline {self.fmt_value(self.baseline.accuracy)}, "
                 f"{self.baseline.bits} bits (strategy {self.strategy}, {self.scorings} scorings, "
                 f"{self.timings.get('total', 0):.1f} s)"]
        if self.unused_layers:
            lines.append(f"left out (cannot influence the output): {', '.join(self.unused_layers)}")
        test = any(c.test_accuracy is not None for c in self.front)
        loss = self.loss_label
        cols = [("#", 3), ("CR", 7), (name, max(9, len(name))), (loss, max(8, len(loss))), ("target", 6)]
        if test:
            cols += [(f"test {name}", len(name) + 5), (f"test {loss}", len(loss) + 5), ("test ok", 7)]
        lines.append(" ".join(f"{title:>{w}}" for title, w in cols) + "  knobs")
        for i, c in enumerate(self.front):
            cells = [str(i), f"{c.compression_rate:.2f}", self.fmt_value(c.accuracy), self.fmt_loss(c.accuracy_loss),
                     "yes" if c.meets_target else "no"]
            if test:
                cells += [self.fmt_value(c.test_accuracy), self.fmt_loss(c.test_accuracy_loss),
                          "yes" if c.test_meets_target else "no"]
            knobs = ", ".join(f"{v}" for v in c.knobs.values())
            lines.append(" ".join(f"{cell:>{w}}" for cell, (_, w) in zip(cells, cols)) + f"  [{knobs}]")
        return "\n".join(lines)


def _number(v: Any, *, optional: bool = False) -> bool:
    if v is None:
        return optional
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _malformed_candidate(c: Any) -> str:
    if not isinstance(c, dict):
        return f"a candidate is {type(c).__name__}, not an object"
    knobs = c.get("knobs")
    if not isinstance(knobs, dict) or not all(isinstance(v, (int, float, list)) and not isinstance(v, bool)
                                              for v in knobs.values()):
        return f"knobs {knobs!r}"
    for key in ("accuracy", "accuracy_loss", "compression_rate"):
        if not _number(c.get(key)):
            return f"{key} {c.get(key)!r}"
    for key in ("test_accuracy", "test_accuracy_loss"):
        if not _number(c.get(key), optional=True):
            return f"{key} {c.get(key)!r}"
    if not isinstance(c.get("meets_target"), bool) or not isinstance(c.get("test_meets_target"), (bool, type(None))):
        return "meets_target is not true / false"
    if not _number(c.get("size_bits", 0)) or not all(isinstance(c.get(k, ""), str) for k in ("measured_on", "origin")):
        return "size_bits / measured_on / origin"
    return ""


def _malformed(d: dict) -> str:
    """What is wrong in a results.json's fields (types and values every reader uses), or ""."""
    base = d["baseline"]
    if not isinstance(base, dict) or not _number(base.get("accuracy")) or not _number(base.get("bits")) or not all(
            _number(base.get(k), optional=True) for k in ("subset_accuracy", "test_accuracy")):
        return f"baseline {base!r}"[:200]
    for key in ("front", "history"):
        if not isinstance(d.get(key, []), list):
            return f"{key} is not a list"
        for c in d.get(key, []):
            problem = _malformed_candidate(c)
            if problem:
                return f"{key}: {problem}"[:200]
    kinds = {"timings": dict, "settings": dict, "extras": dict, "layers": list, "notes": list, "strategy": str,
             "backend": str, "clusterer": str, "approximation": str, "metric": dict}
    for key, kind in kinds.items():
        if key in d and not isinstance(d[key], kind):
            return f"{key} is not a {kind.__name__}"
    if not _number(d.get("scorings", 0)) or not all(_number(v) for v in d.get("timings", {}).values()):
        return "scorings / timings are not numbers"
    if not all(isinstance(layer, dict) for layer in d.get("layers", [])):
        return "layers are not objects"
    settings = d.get("settings", {})
    fingerprint = settings.get("fingerprint")
    if fingerprint is not None and not (isinstance(fingerprint, dict)
                                        and all(isinstance(v, (str, type(None))) for v in fingerprint.values())):
        return "settings.fingerprint"
    if not isinstance(settings.get("seed", 0), int) or not _number(settings.get("bits", 32)) \
            or not isinstance(settings.get("approximation_params") or {}, dict) \
            or not isinstance(settings.get("clusterer_params") or {}, dict):
        return "settings (seed, bits, approximation_params, clusterer_params)"
    return ""
