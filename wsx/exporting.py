"""What every export format shares: the format picked from ``format=`` or the file name, the
candidate resolved, its shared weights reproduced exactly as ``wsx.apply`` writes them, and those
weights written into the user's model only while a converter reads it.

Formats: ``"wsx"`` (the safetensors artifact, ``wsx.artifact``), ``"coreml"`` (an ML program whose
layers of interest are lookup tables, ``wsx.export_coreml``), and two dense formats for runtimes
without lookup tables, ``"onnx"`` (torch) and ``"keras"`` (``wsx.export_dense``).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidModelError, InvalidSettingError, PluginUnavailableError

FORMATS = {"wsx": "wsx.artifact", "coreml": "wsx.export_coreml", "onnx": "wsx.export_dense",
           "keras": "wsx.export_dense"}
SUFFIXES = {".mlpackage": "coreml", ".onnx": "onnx", ".keras": "keras"}


def format_for(path: str | os.PathLike, format: str | None = None) -> str:
    """The format ``format`` names, or the one ``path``'s suffix implies (the artifact otherwise)."""
    if format is None:
        return SUFFIXES.get(Path(path).suffix.lower(), "wsx")
    if format not in FORMATS:
        raise InvalidSettingError(f"format={format!r}: use one of {sorted(FORMATS)} (or leave it out to pick "
                                  "it from the file name: .mlpackage, .onnx, .keras, else the wsx artifact)")
    return format


def export(model: Any, candidate: Any, path: str | os.PathLike, *, format: str | None = None, **kwargs) -> dict:
    """Write ``candidate`` of ``model`` at ``path``; returns what was written (sizes, per-layer details).

    ``format="wsx"`` (the default unless the name ends in .mlpackage, .onnx or .keras) writes the
    compressed artifact (bit-packed indices and per-layer codebooks, safetensors; read it back with
    ``wsx.load_compressed``); ``"coreml"`` a Core ML package with lookup-table weights; ``"onnx"`` and
    ``"keras"`` dense files with the shared weights written in. Pass ``result=`` (the Result the
    candidate came from: same clusterer, parameters and seed), ``backend=`` to force one, and for
    Core ML / ONNX / Keras ``example_inputs=`` (a batch of inputs); Core ML also takes
    ``precision="float32" | "float16"`` and ``target=`` (e.g. "iOS16").
    """
    from .errors import WsxError
    from .files import os_error

    fmt = format_for(path, format)
    module = import_module(FORMATS[fmt])
    try:
        if fmt in ("onnx", "keras"):
            return module.export(model, candidate, path, format=fmt, **kwargs)
        return module.export(model, candidate, path, **kwargs)
    except OSError as exc:  # a full disk, a read-only directory, a path under a file
        if isinstance(exc, WsxError):
            raise
        raise os_error(path, exc, note="") from None


def require(module: str, extra: str):
    """Import an optional package, or say which extra installs it."""
    from .plugins import install_hint

    try:
        return import_module(module)
    except ImportError as exc:
        raise PluginUnavailableError(f"{module} is not installed ({exc}); {install_hint(extra)}") from exc


# -- the candidate -------------------------------------------------------------------------------
def resolve_candidate(candidate: Any, result: Any):
    """A Candidate or {layer: k} as given; an int is an index into ``result.front``."""
    if isinstance(candidate, (int, np.integer)) and not isinstance(candidate, bool):
        if result is None or not 0 <= int(candidate) < len(result.front):
            size = len(result.front) if result is not None else 0
            raise InvalidSettingError(f"candidate {candidate} is not an index of the front ({size} "
                                      "candidates); pass result= and an index shown by result.summary()")
        return result.front[int(candidate)]
    return candidate


def check_explored(be: Any, result: Any) -> None:
    """Refuse a model whose tensors differ from the ones ``result`` was explored on."""
    explored = ((result.settings or {}).get("fingerprint") or {}).get("model") if result is not None else None
    if explored and be.fingerprint()["model"] != explored:
        raise InvalidModelError("the model's tensors differ from the ones the result was explored on (was "
                                "wsx.apply already called on it?); export from the original model")


def shared_weights(model: Any, candidate: Any, *, result: Any = None, backend: Any = None, clusterer: Any = None,
                   approximation: Any = None, seed: int | None = None, bits: int | None = None):
    """(candidate, backend, {layer: shared weights}, {layer: Approximated}) of a candidate, with the
    clustering of the run that found it (see ``wsx.engine.approximated_weights``)."""
    from .engine import approximated_weights

    candidate = resolve_candidate(candidate, result)
    be, weights, parts = approximated_weights(model, candidate, result=result, backend=backend,
                                              clusterer=clusterer, approximation=approximation, seed=seed,
                                              bits=bits)
    check_explored(be, result)
    return candidate, be, weights, parts


@contextmanager
def written_into(be: Any, weights: dict):
    """The backend's model with ``weights`` written in, put back bit for bit on leaving (an error or
    Ctrl-C included), for converters that read a live model."""
    snapshot = be.snapshot()
    try:
        be.write_weights(weights)
        yield be.model
    finally:
        be.restore(snapshot)


def candidate_summary(candidate: Any) -> dict | None:
    """The candidate fields an export records, or None for a plain {layer: k}."""
    from .result import Candidate

    if not isinstance(candidate, Candidate):
        return None
    return {k: v for k, v in candidate.to_dict().items()
            if k in ("knobs", "accuracy", "accuracy_loss", "compression_rate", "meets_target", "measured_on")}


def example_batch(example: Any, what: str, be: Any = None) -> tuple:
    """``example`` (an array or a tuple of arrays: one batch of model inputs) as a tuple of float32
    or integer numpy arrays; without one, zeros shaped like a Keras model's declared inputs."""
    if example is None:
        declared = (getattr(be.model, "inputs", None) or []) if getattr(be, "name", None) == "tensorflow" else []
        shapes = [tuple(1 if d is None else int(d) for d in t.shape) for t in declared]
        if not shapes or any(len(s) == 0 for s in shapes):
            raise InvalidSettingError(f"{what} needs example inputs to fix the input shapes; pass "
                                      "example_inputs= (a batch of inputs as the model takes them, e.g. x[:1])")
        return tuple(np.zeros(s, dtype=np.float32) for s in shapes)
    parts = tuple(example) if isinstance(example, (tuple, list)) else (example,)
    out = []
    for part in parts:
        if isinstance(part, dict):
            raise InvalidSettingError(f"{what} takes example inputs as an array or a tuple of arrays, not a dict")
        arr = part.detach().cpu().numpy() if hasattr(part, "detach") else np.asarray(part)
        out.append(arr.astype(np.float32) if arr.dtype.kind == "f" else arr)
    return tuple(out)
