"""Dense exports for runtimes without lookup tables: ONNX (torch models, ``torch.onnx``'s exporter)
and a Keras ``.keras`` file (Keras models, ``model.save``).

Both hold the candidate's shared weights written into the model as ordinary float tensors: the file
is as large as the original model (a general-purpose compressor shrinks it, since each layer repeats
only k distinct values), and runs on any runtime that reads the format. When example inputs are
given (or a Keras model knows its input shapes), the written file is loaded back and its outputs
compared with the model's: the largest absolute difference is reported.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidModelError, InvalidSettingError, PluginUnavailableError
from .exporting import candidate_summary, example_batch, require, shared_weights, written_into

FRAMEWORK = {"onnx": "torch", "keras": "tensorflow"}


def export(model: Any, candidate: Any, path: str | os.PathLike, *, format: str, result: Any = None,
           backend: Any = None, clusterer: Any = None, approximation: Any = None, seed: int | None = None,
           bits: int | None = None, example_inputs: Any = None, opset: int | None = None) -> dict:
    """Write ``candidate`` of ``model`` as a dense ONNX (torch) or ``.keras`` (Keras) file."""
    if format not in FRAMEWORK:
        raise InvalidSettingError(f"format={format!r}: dense exports are {sorted(FRAMEWORK)}")
    candidate, be, weights, _ = shared_weights(model, candidate, result=result, backend=backend,
                                               clusterer=clusterer, approximation=approximation, seed=seed,
                                               bits=bits)
    if be.name != FRAMEWORK[format]:
        other = {"torch": "'onnx' or 'coreml'", "tensorflow": "'keras' or 'coreml'"}.get(be.name, "'wsx'")
        raise InvalidModelError(f"format={format!r} writes {FRAMEWORK[format]} models, this is a {be.name} "
                                f"model; export it as {other}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write = _onnx if format == "onnx" else _keras
    max_diff = write(be, weights, path, example_inputs, opset)
    return {"path": str(path), "format": format, "dense": True, "file_bytes": _bytes(path),
            "shared_values": {name: int(len(np.unique(w))) for name, w in weights.items()},
            "max_abs_diff": max_diff, "candidate": candidate_summary(candidate)}


def _bytes(path: Path) -> int:
    extra = path.with_name(path.name + ".data")  # ONNX external data, if any
    return path.stat().st_size + (extra.stat().st_size if extra.exists() else 0)


def _onnx(be, weights: dict, path: Path, example_inputs: Any, opset: int | None) -> float:
    import torch

    require("onnx", "onnx")
    require("onnxscript", "onnx")
    example = example_batch(example_inputs, "ONNX export")
    args = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in example)
    batch = torch.export.Dim.AUTO  # the batch axis stays free where the model allows it
    with written_into(be, weights) as live:
        live.eval()
        with torch.no_grad():
            expected = [_numpy(o) for o in _flat(live(*args))]
            try:
                torch.onnx.export(live, args, str(path), dynamo=True, external_data=False, verbose=False,
                                  dynamic_shapes=tuple({0: batch} for _ in args), opset_version=opset)
            except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds
                raise InvalidModelError(f"torch.onnx cannot export this model ({type(exc).__name__}: "
                                        f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); "
                                        "export format='coreml' or the wsx artifact instead") from exc
    try:
        ort = require("onnxruntime", "onnx")
    except PluginUnavailableError:  # the check is optional
        return float("nan")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {i.name: a for i, a in zip(session.get_inputs(), example)})
    return _max_diff(expected, got)


def _keras(be, weights: dict, path: Path, example_inputs: Any, opset: int | None) -> float:
    import keras

    if path.suffix != ".keras":
        raise InvalidSettingError(f"{path}: Keras writes its format to a file named *.keras; rename it")
    if opset is not None:
        raise InvalidSettingError("opset applies to ONNX exports only")
    example = example_batch(example_inputs, "Keras export", be)
    with written_into(be, weights) as live:
        expected = [_numpy(o) for o in _flat(live(example[0] if len(example) == 1 else list(example), training=False))]
        live.save(str(path))
    loaded = keras.saving.load_model(str(path), compile=False)
    got = [_numpy(o) for o in _flat(loaded(example[0] if len(example) == 1 else list(example), training=False))]
    return _max_diff(expected, got)


def _flat(outputs: Any) -> list:
    if isinstance(outputs, dict):
        return [outputs[k] for k in sorted(outputs)]
    return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _max_diff(expected: list, got: list) -> float:
    if len(expected) != len(got):
        raise InvalidModelError(f"the exported file returns {len(got)} outputs, the model {len(expected)}")
    return max((float(np.max(np.abs(np.asarray(g, np.float64) - e))) if e.size else 0.0)
               for e, g in zip(expected, got))
