"""wsx: retraining-free weight-sharing exploration for trained neural networks.

    import wsx
    model, data = wsx.zoo.load("lenet5-digits", framework="torch")
    result = wsx.explore(model, data, target="mlperf-heavy")
    print(result.summary())
    wsx.apply(model, result.best(), result=result)

``import wsx`` imports no deep-learning framework; backends import theirs when used.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from .approximation import Approximated, Approximation
from .backend import Backend
from .clusterer import Clusterer, Clustering
from .errors import (BackendNotFoundError, BudgetTooSmallError, CorruptFileError, InvalidDataError,
                     InvalidModelError, InvalidSettingError, JournalMismatchError, MetricError, OutputError,
                     PluginNotFoundError, PluginUnavailableError, WsxError)
from .hookspecs import hookimpl
from .layers import LayerInfo
from .metrics import compression_rate, weight_sharing_bits
from .problem import Problem
from .result import Baseline, Candidate, Result
from .strategy import Strategy

__version__ = "0.1.0"

__all__ = [
    "explore", "apply", "export", "load_compressed", "zoo", "plugins", "hookimpl",
    "Backend", "Clusterer", "Clustering", "Approximation", "Approximated", "Strategy", "Problem",
    "Result", "Candidate", "Baseline", "LayerInfo", "compression_rate", "weight_sharing_bits",
    "WsxError", "PluginNotFoundError", "PluginUnavailableError", "BackendNotFoundError",
    "InvalidModelError", "InvalidDataError", "InvalidSettingError", "MetricError",
    "BudgetTooSmallError", "CorruptFileError", "JournalMismatchError", "OutputError",
]


def explore(model: Any, data: Any, **kwargs) -> Result:
    from .engine import explore as _explore

    return _explore(model, data, **kwargs)


explore.__doc__ = "Search per-layer knobs; see wsx.engine.explore for every argument."


def apply(model: Any, candidate: Any, **kwargs) -> Any:
    from .engine import apply as _apply

    return _apply(model, candidate, **kwargs)


apply.__doc__ = "Write a candidate's shared weights into the model; see wsx.engine.apply."


def export(model: Any, candidate: Any, path: Any, *, format: str | None = None, **kwargs):
    from .exporting import export as _export

    return _export(model, candidate, path, format=format, **kwargs)


export.__doc__ = """Write a candidate at ``path``: ``format="wsx"`` (the artifact; the default unless the name
ends in .mlpackage, .onnx or .keras), "coreml" (lookup-table weights), "onnx" or "keras" (dense)."""


def load_compressed(path: Any, **kwargs):
    from .artifact import load_compressed as _load

    return _load(path, **kwargs)


def __getattr__(name: str):
    if name in ("zoo", "plugins", "testing"):
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module 'wsx' has no attribute {name!r}")
