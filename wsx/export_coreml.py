"""Core ML export: an ML program in which every layer of interest is a lookup table.

coremltools converts the model (torch through ``torch.jit.trace``, Keras through a ``tf.function``)
while the candidate's shared weights are written into it. Each constant that holds a layer's
weights, in whatever axis order the converter gave them, then becomes a ``constexpr_lut_to_dense``
op built from wsx's own codebooks and indices, one LUT per codebook (per layer, or per output
channel or kernel), so Core ML decodes exactly the values ``wsx.apply`` writes. The LUTs go in after
coremltools has folded constants (transposed Keras kernels) and before it fuses layers (batch norm
into a convolution), which would change the shared values.

Core ML indices have 1, 2, 3, 4, 6 or 8 bits (iOS 16 and 17: no 3, and one LUT per tensor) and a LUT
holds 2**nbits entries: k is padded up to that, with unused zeros, and the padding is reported. LUT
values are the float32 shared values (``precision="float32"``), or those values rounded to float16
like every other weight of a float16 model (``precision="float16"``).
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import mlpackage
from .artifact import _reconstruct, sharing_layout
from .errors import InvalidModelError, InvalidSettingError, WsxError
from .exporting import candidate_summary, example_batch, shared_weights, written_into
from .metrics import index_bits

PRECISIONS = ("float32", "float16")
NBITS_IOS16 = (1, 2, 4, 6, 8)
NBITS_IOS18 = (1, 2, 3, 4, 6, 8)
MAX_K = 256
# The default pass pipeline runs up to and including this pass before the LUTs go in.
_CUT = "common::const_deduplication"
# Runs before the LUTs go in too: it only moves biases, and coremltools 9's version reads the
# weight's value where a Keras convolution (conv, transpose, add) has a LUT op instead.
_EARLY = ("common::fuse_conv_bias",)


@dataclass
class _Layer:
    """One layer of interest as Core ML will hold it."""

    number: int
    name: str
    written: np.ndarray       # the float32 shared weights wsx.apply writes (model layout)
    expected: np.ndarray      # what the LUT must decode to: those, or them rounded to float16
    indices: np.ndarray       # per weight, its entry in its codebook (model layout)
    groups_of: np.ndarray     # per weight, its codebook (model layout)
    lut: np.ndarray           # (codebooks, 2**nbits) float32, k values then zeros
    k: int
    nbits: int
    granularity: str
    perms: list = field(default_factory=list)  # axis orders of the constants replaced

    def entry(self, shape) -> dict:
        return {"name": self.name, "shape": list(shape), "weights": int(self.indices.size), "k": self.k,
                "index_bits": index_bits(self.k), "nbits": self.nbits,
                "lut_entries": 2 ** self.nbits, "groups": int(self.lut.shape[0]), "granularity": self.granularity,
                "perms": [list(p) for p in self.perms]}


def _target(ct, target: str):
    value = getattr(ct.target, str(target), None)
    if value is None or not str(target).startswith(("iOS", "macOS", "tvOS", "watchOS")) \
            or value < ct.target.iOS16:
        raise InvalidSettingError(f"target={target!r}: lookup-table weights need iOS16 / macOS13 or later; "
                                  "give a coremltools deployment target such as 'iOS18' (the default) or 'iOS16'")
    return value


# -- planning ------------------------------------------------------------------------------------
def _plan(be, weights: dict, parts: dict, knobs: dict, ios18: bool, precision: str) -> list[_Layer]:
    by_name = {layer.name: layer for layer in be.layers()}
    allowed = NBITS_IOS18 if ios18 else NBITS_IOS16
    plans = []
    for number, (name, written) in enumerate(weights.items()):
        layer = by_name[name]
        exact, indices, granularity, axes, k = sharing_layout(name, parts[name], layer, written, int(knobs[name]))
        if k > MAX_K:
            raise InvalidSettingError(
                f"layer {name!r}: k={k} shared values do not fit a Core ML lookup table (at most {MAX_K} "
                f"entries, 8-bit indices); export a candidate with k <= {MAX_K} for this layer, or explore "
                f"without it (backend exclude=[{name!r}]) so it stays dense")
        groups = exact.shape[0]
        if groups > 1 and not ios18:
            raise InvalidSettingError(
                f"layer {name!r} has {groups} codebooks ({granularity}); Core ML before iOS 18 holds one LUT "
                "per tensor: export with target='iOS18', or explore with granularity='layer'")
        nbits = next(b for b in allowed if 2 ** b >= k)
        lut = np.zeros((groups, 2 ** nbits), dtype=np.float32)
        lut[:, :k] = exact
        shape = tuple(layer.shape)
        entries = np.broadcast_to(np.arange(k), (groups, k))
        owners = np.broadcast_to(np.arange(groups)[:, None], (groups, k))
        written = np.asarray(written, dtype=np.float32)
        plans.append(_Layer(number, name, written, written.astype(np.float16) if precision == "float16" else written,
                            _reconstruct(entries, indices, shape, np.int64, axes),
                            _reconstruct(owners, indices, shape, np.int64, axes), lut, k, nbits, granularity))
    return plans


# -- conversion ----------------------------------------------------------------------------------
def _pipelines(ct):
    names = list(ct.PassPipeline.DEFAULT.passes)
    cut = names.index(_CUT) + 1
    return (ct.PassPipeline(pass_names=names[:cut] + list(_EARLY), pipeline_name="wsx_before_luts"),
            ct.PassPipeline(pass_names=[n for n in names[cut:] if n not in _EARLY], pipeline_name="wsx_after_luts"))


def _torch_program(ct, model, example, target, pipeline):
    import torch

    model.eval()  # the snapshot taken by written_into restores the training flags
    tensors = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in example)
    with torch.no_grad():
        traced = torch.jit.trace(model, tensors if len(tensors) > 1 else tensors[0])
    inputs = [ct.TensorType(name=f"input_{i}", shape=a.shape, dtype=a.dtype.type) for i, a in enumerate(example)]
    return ct.convert(traced, source="pytorch", inputs=inputs, convert_to="milinternal",
                      minimum_deployment_target=target, compute_precision=ct.precision.FLOAT32,
                      pass_pipeline=pipeline)


def _keras_program(ct, model, example, target, pipeline):
    import tensorflow as tf

    def call(*xs):
        return model(xs[0] if len(xs) == 1 else list(xs), training=False)

    specs = [tf.TensorSpec(a.shape, tf.as_dtype(a.dtype)) for a in example]
    concrete = tf.function(call).get_concrete_function(*specs)
    inputs = [ct.TensorType(name=t.name.split(":")[0], shape=a.shape, dtype=a.dtype.type)
              for t, a in zip(concrete.inputs, example)]
    return ct.convert([concrete], source="tensorflow", inputs=inputs, convert_to="milinternal",
                      minimum_deployment_target=target, compute_precision=ct.precision.FLOAT32,
                      pass_pipeline=pipeline)


CONVERTERS = {"torch": _torch_program, "tensorflow": _keras_program}


def _unconvertible(exc: Exception) -> InvalidModelError:
    import re

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    match = re.search(r"op '([^']+)'", text)
    what = f"op {match.group(1)!r} of this model" if match else "this model"
    return InvalidModelError(
        f"coremltools cannot convert {what} ({type(exc).__name__}: {text}); replace that operation, or leave "
        "it out of the module you export (export the part of the model before it), or export a dense "
        "format that has it (format='onnx' for torch, 'keras' for Keras)")


# -- the lookup tables ---------------------------------------------------------------------------
def _perm(written: np.ndarray, value: np.ndarray):
    """The axis order under which the layer's weights equal ``value``, or None."""
    for perm in itertools.permutations(range(written.ndim)):
        if tuple(written.shape[p] for p in perm) == value.shape and np.array_equal(np.transpose(written, perm), value):
            return perm
    return None


def _lut_op(mb, plan: _Layer, perm: tuple, ios18: bool, name: str, before):
    indices = np.transpose(plan.indices, perm)
    owners = np.transpose(plan.groups_of, perm)
    # One LUT per block: an axis along which the codebook changes has one block per position.
    counts = [size if size > 1 and np.any(np.diff(owners, axis=axis)) else 1
              for axis, size in enumerate(owners.shape)]
    per_block = owners[tuple(slice(None) if n > 1 else slice(0, 1) for n in counts)]
    if not np.array_equal(np.broadcast_to(per_block, owners.shape), owners):
        raise InvalidSettingError(f"layer {plan.name!r}: its {plan.granularity} codebooks do not form blocks "
                                  "of the converted weight tensor; explore it with granularity='layer'")
    if ios18:
        from coremltools.converters.mil.mil import types

        index_type = types.nptype_from_builtin(types.string_to_builtin(f"uint{plan.nbits}"))
        return mb.constexpr_lut_to_dense(indices=indices.astype(index_type), lut=plan.lut[per_block][..., None],
                                         name=name, before_op=before)
    return mb.constexpr_lut_to_dense(lut=plan.lut[0], indices=mlpackage.pack_lsb(indices.ravel(), plan.nbits),
                                     shape=np.array(indices.shape, dtype=np.uint32), name=name, before_op=before)


def _insert_luts(prog, plans: list[_Layer], ios18: bool) -> None:
    """Replace every constant equal to a layer's shared weights (in any axis order) by its LUT op."""
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil.passes.graph_pass import AbstractGraphPass

    class InsertLuts(AbstractGraphPass):
        def apply(self, prog):
            for function in prog.functions.values():
                block = function
                for op in list(block.operations):
                    value = op.outputs[0].val if op.op_type == "const" else None
                    if not isinstance(value, np.ndarray) or value.dtype != np.float32 \
                            or not (op.outputs[0].child_ops or op.outputs[0] in block.outputs):
                        continue  # not a weight, or left behind by constant folding
                    for plan in plans:
                        perm = _perm(plan.written, value) if value.size == plan.written.size else None
                        if perm is None:
                            continue
                        name = f"{mlpackage.OP_PREFIX}{plan.number}_{len(plan.perms)}"
                        with block:
                            new = _lut_op(mb, plan, perm, ios18, name, op)
                        block.replace_uses_of_var_after_op(anchor_op=op, old_var=op.outputs[0], new_var=new,
                                                           no_check_var_types=True)
                        block.remove_ops([op])
                        plan.perms.append(perm)
                        break

    InsertLuts()(prog)
    missing = [p.name for p in plans if not p.perms]
    if missing:
        raise InvalidModelError(
            f"layers {missing}: coremltools did not keep their weights as constants of their own (the "
            "conversion merged them into another operation), so they cannot become lookup tables; explore "
            f"without them (backend exclude={missing}) so they stay dense, or export format='onnx' / 'keras'")


# -- export --------------------------------------------------------------------------------------
def export(model: Any, candidate: Any, path: str | os.PathLike, *, result: Any = None, backend: Any = None,
           clusterer: Any = None, approximation: Any = None, seed: int | None = None, bits: int | None = None,
           example_inputs: Any = None, precision: str = "float32", target: str = "iOS18") -> dict:
    """Write ``candidate`` of a torch or Keras ``model`` as a Core ML package (``.mlpackage``) whose
    layers of interest are lookup tables; returns ``wsx.mlpackage.inspect`` of it plus the check
    that its LUTs decode to the shared weights bit for bit.

    ``example_inputs``: a batch of inputs (an array, or a tuple for several inputs) that fixes the
    package's input shapes; Keras models may leave it out when their inputs have known shapes.
    ``precision``: "float32" or "float16" for every weight and the computation (LUT values too).
    ``target``: the coremltools deployment target; "iOS18" allows 3-bit indices and per-channel LUTs.
    """
    from . import __version__

    if precision not in PRECISIONS:
        raise InvalidSettingError(f"precision={precision!r}: use one of {list(PRECISIONS)}")
    candidate, be, weights, parts = shared_weights(model, candidate, result=result, backend=backend,
                                                   clusterer=clusterer, approximation=approximation, seed=seed,
                                                   bits=bits)
    convert = CONVERTERS.get(be.name)
    if convert is None:
        raise InvalidModelError(
            f"Core ML export converts torch and Keras models; coremltools has no converter for {be.name} "
            "models. Export the wsx artifact (format='wsx') and load it with wsx.load_compressed, or port the "
            "model to torch or Keras")
    ct = mlpackage.coremltools()
    deployment = _target(ct, target)
    ios18 = deployment >= ct.target.iOS18
    knobs = candidate.knobs if hasattr(candidate, "knobs") else dict(candidate)
    plans = _plan(be, weights, parts, knobs, ios18, precision)
    example = example_batch(example_inputs, "Core ML export", be)
    before, after = _pipelines(ct)
    compute = ct.precision.FLOAT16 if precision == "float16" else ct.precision.FLOAT32
    # Converted constants may share memory with the model's tensors: finish while the weights are in.
    with written_into(be, weights) as live:
        try:
            prog = convert(ct, live, example, deployment, before)
            _insert_luts(prog, plans, ios18)
            mlmodel = ct.convert(prog, convert_to="mlprogram", minimum_deployment_target=deployment,
                                 compute_precision=compute, pass_pipeline=after)
        except WsxError:
            raise
        except Exception as exc:  # noqa: BLE001 - coremltools raises many kinds; all mean "cannot convert"
            raise _unconvertible(exc) from exc
    b_value = int(bits if bits is not None else (result.settings.get("bits", 32) if result is not None else 32))
    shapes = {layer.name: layer.shape for layer in be.layers()}
    manifest = {"format": mlpackage.FORMAT, "version": mlpackage.VERSION, "wsx_version": __version__,
                "backend": be.name, "precision": precision, "target": str(target), "bits": b_value,
                "layers": [p.entry(shapes[p.name]) for p in plans], "layers_of_interest": list(shapes),
                "candidate": candidate_summary(candidate)}
    mlmodel.user_defined_metadata["wsx"] = json.dumps(manifest)
    mlmodel.short_description = "wsx weight-sharing candidate: lookup-table weights"
    _save(mlmodel, Path(path))
    return _verified(path, plans)


def _save(mlmodel, path: Path) -> None:
    """Write the package under a temporary name, then move it into place (replacing an older package,
    never another kind of file or directory)."""
    if path.exists() and not (path.is_dir() and (path / "Manifest.json").is_file()):
        raise InvalidSettingError(f"{path} exists and is not an .mlpackage; remove it or pick another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.wsx-tmp.mlpackage")
    shutil.rmtree(tmp, ignore_errors=True)
    mlmodel.save(str(tmp))
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


def _verified(path, plans: list[_Layer]) -> dict:
    """inspect() of the written package, after reading every LUT back and checking that it decodes
    to the expected weights bit for bit."""
    package = mlpackage.Package(path)
    ops = package.lut_ops()
    found = mlpackage.layer_ops(ops, len(plans))
    for plan in plans:
        if plan.number not in found:
            raise InvalidModelError(f"layer {plan.name!r}: its lookup table did not survive coremltools' passes; "
                                    f"explore without it (backend exclude=[{plan.name!r}]) so it stays dense")
        for copy, op in found[plan.number]:
            if not np.array_equal(package.dense(op), np.transpose(plan.expected, plan.perms[copy])):
                raise InvalidModelError(f"layer {plan.name!r}: the package's lookup table does not decode to "
                                        "the shared weights; please report this with the model")
    info = mlpackage.inspect(path)
    info["bit_exact"] = True
    return info
