"""wsx: retraining-free weight-sharing exploration for trained neural networks.

    import wsx
    model, data = wsx.zoo.load("lenet5-digits", framework="torch")
    result = wsx.explore(model, data, target="mlperf-heavy")
    print(result.summary())
    wsx.apply(model, result.best(), result=result)

    # label-free: a fidelity metric compares with the uncompressed model; data may be inputs alone
    result = wsx.explore(encoder, {"input_ids": ids, "attention_mask": mask}, metric="cosine", target=0.99)

``import wsx`` imports no deep-learning framework; backends import theirs when used.
"""
from .approximation import Approximated, Approximation
from .backend import Backend
from .clusterer import Clusterer, Clustering
from .data import Data
from .errors import (BackendNotFoundError, BudgetTooSmallError, CorruptFileError, ExecutorError, InvalidDataError,
                     InvalidModelError, InvalidSettingError, JournalMismatchError, MetricError, OutputError,
                     PluginNotFoundError, PluginUnavailableError, WsxError)
from .hookspecs import hookimpl
from .layers import LayerInfo
from .metrics import Metric, compression_rate, metric, weight_sharing_bits
from .problem import Problem
from .result import Baseline, Candidate, Result
from .strategy import Strategy

__version__ = "0.1.0"

__all__ = [
    "explore", "apply", "export", "load_compressed", "bench", "zoo", "plugins", "testing", "hookimpl",
    "Backend", "Clusterer", "Clustering", "Approximation", "Approximated", "Strategy", "Problem",
    "Result", "Candidate", "Baseline", "LayerInfo", "Data", "Metric", "metric", "compression_rate",
    "weight_sharing_bits",
    "WsxError", "PluginNotFoundError", "PluginUnavailableError", "BackendNotFoundError",
    "InvalidModelError", "InvalidDataError", "InvalidSettingError", "MetricError", "BudgetTooSmallError",
    "CorruptFileError", "JournalMismatchError", "OutputError", "ExecutorError",
]

# Imported on first use, so that ``import wsx`` stays light; each name is the function itself (its
# signature and docstring show in help() and autocompletion).
_LAZY = {"explore": ("engine", "explore"), "apply": ("engine", "apply"), "export": ("exporting", "export"),
         "load_compressed": ("artifact", "load_compressed"), "bench": ("benchmark", "bench"),
         "zoo": ("zoo", None), "plugins": ("plugins", None), "testing": ("testing", None)}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        module, attr = _LAZY[name]
        obj = import_module(f".{module}", __name__)
        value = obj if attr is None else getattr(obj, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'wsx' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__ + ["__version__"])
