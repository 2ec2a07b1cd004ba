"""Reading a Core ML package (``.mlpackage``) back on any OS: its lookup-table ops, their indices and
LUTs, the dense weights they decode to, and their bytes against wsx's formula.

Core ML predicts only on macOS; this reads what any OS can. The package's ``Manifest.json`` names
the model spec (a protobuf, parsed with coremltools' generated classes); the spec's constants sit
inline or in a weight file: a 64-byte header, then per blob a 64-byte record (sentinel 0xDEADBEEF,
data type, size in bytes, offset of the data) and the data. Indices of 1 to 6 bits are packed
least significant bit first. Every size is checked against the file before anything is decoded,
and nothing in a package is executed.

A package written by ``wsx.export(..., format="coreml")`` carries a manifest in its metadata
(``wsx``) that ties each lookup table to the wsx layer it holds and the axis order the converter
gave the weights, so ``load_palettized`` returns weights in the model's own layout.
"""
from __future__ import annotations

import json
import math
import os
import re
import struct
from pathlib import Path

import numpy as np

from .errors import CorruptFileError
from .exporting import require

FORMAT = "wsx-coreml"
VERSION = 1
LUT_OP = "constexpr_lut_to_dense"
OP_PREFIX = "wsx_lut_"  # name of the ops export writes: wsx_lut_<layer number>_<copy>[_suffix]
_OP_NAME = re.compile(rf"^{OP_PREFIX}(\d+)_(\d+)(?:_|$)")
_SENTINEL = 0xDEADBEEF
_RECORD = struct.Struct("<IIQQ")  # sentinel, data type, size in bytes, data offset (then reserved)
_FIXED = {"FLOAT16": np.float16, "FLOAT32": np.float32, "FLOAT64": np.float64, "INT8": np.int8,
          "UINT8": np.uint8, "INT16": np.int16, "UINT16": np.uint16, "INT32": np.int32, "UINT32": np.uint32,
          "INT64": np.int64, "UINT64": np.uint64}
_SUB_BYTE = {"UINT1": 1, "UINT2": 2, "UINT3": 3, "UINT4": 4, "UINT6": 6}


def coremltools():
    """coremltools, imported with its import-time warnings (framework versions it has not tested,
    no Core ML runtime off macOS) kept quiet: wsx only converts and reads packages."""
    import logging

    log = logging.getLogger("coremltools")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return require("coremltools", "coreml")
    finally:
        log.setLevel(level)


# -- sub-byte packing (least significant bit first, as Core ML stores it) -----------------------------
def pack_lsb(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack integers < 2**bits (bits <= 8) into ceil(n * bits / 8) bytes, LSB first."""
    planes = np.unpackbits(np.asarray(values, dtype=np.uint8).reshape(-1, 1), axis=1, bitorder="little")
    return np.packbits(planes[:, :bits].ravel(), bitorder="little")


def unpack_lsb(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of ``pack_lsb``: ``count`` integers of ``bits`` bits."""
    planes = np.unpackbits(np.asarray(packed, dtype=np.uint8), bitorder="little", count=count * bits)
    weights = (1 << np.arange(bits)).astype(np.uint8)
    return (planes.reshape(count, bits) * weights).sum(axis=1, dtype=np.uint8)


# -- the package ---------------------------------------------------------------------------------
def _fail(path, what: str) -> CorruptFileError:
    return CorruptFileError(f"{path}: {what}; pass a .mlpackage directory written by coremltools or "
                            "`wsx export --format coreml`")


class Package:
    """The spec of an .mlpackage and read access to its weight blobs."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        manifest_file = self.path / "Manifest.json"
        if not manifest_file.is_file():
            raise _fail(self.path, "no Manifest.json (not an .mlpackage directory)")
        try:
            manifest = json.loads(manifest_file.read_text())
            entry = manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]
            spec_file = self._inside(self.path / "Data" / entry["path"])
        except (ValueError, KeyError, TypeError) as exc:
            raise _fail(self.path, f"its Manifest.json does not name the model spec ({exc})") from exc
        proto = coremltools().proto
        self.spec = proto.Model_pb2.Model()
        try:
            self.spec.ParseFromString(spec_file.read_bytes())
        except Exception as exc:  # noqa: BLE001 - protobuf raises its own DecodeError
            raise _fail(self.path, f"its model spec is not a Core ML model ({exc})") from exc
        if not self.spec.HasField("mlProgram"):
            raise _fail(self.path, "it holds no ML program (a neural-network model has no lookup-table ops)")
        self._types = proto.MIL_pb2.DataType
        self._root = spec_file.parent
        self.manifest = self._wsx_manifest()

    def _inside(self, file: Path) -> Path:
        resolved = file.resolve()
        if self.path.resolve() not in resolved.parents or not resolved.is_file():
            raise _fail(self.path, f"{file} is missing or lies outside the package")
        return resolved

    def _wsx_manifest(self) -> dict | None:
        text = self.spec.description.metadata.userDefined.get("wsx")
        if text is None:
            return None
        try:
            manifest = json.loads(text)
        except ValueError as exc:
            raise _fail(self.path, f"its wsx metadata is not JSON ({exc})") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise _fail(self.path, "its wsx metadata is not a wsx Core ML manifest")
        if not isinstance(manifest.get("version"), int) or manifest["version"] > VERSION:
            raise CorruptFileError(f"{self.path} was written by a newer wsx (Core ML manifest version "
                                   f"{manifest.get('version')!r}, this wsx reads {VERSION}); upgrade wsx")
        return manifest

    # -- ops -------------------------------------------------------------------------------------
    def operations(self):
        """Every operation of every function's top-level block."""
        for function in self.spec.mlProgram.functions.values():
            block = function.block_specializations.get(function.opset)
            if block is not None:
                yield from block.operations

    def lut_ops(self) -> list[dict]:
        """{name, shape, nbits, lut_shape, dtype, index_bytes, lut_bytes, indices, lut} of each
        lookup-table op; indices and lut are (type, value) pairs decoded by ``array``."""
        consts = {}
        for op in self.operations():
            if op.type == "const" and "val" in op.attributes:
                for out in op.outputs:
                    consts[out.name] = (out.type, op.attributes["val"])
        found = []
        for op in self.operations():
            if op.type != LUT_OP:
                continue
            params = {name: self._param(op, name, consts) for name in ("indices", "lut", "shape")}
            indices, lut = params["indices"], params["lut"]
            if indices is None or lut is None:
                raise _fail(self.path, f"lookup-table op {self._op_name(op)!r} lacks its indices or LUT")
            out_shape = self._shape(op.outputs[0].type)
            lut_shape = self._shape(lut[0])
            itype = self._type_name(indices[0])
            if params["shape"] is not None:  # iOS 16/17: indices packed into uint8, one LUT per tensor
                nbits = int(math.log2(max(lut_shape[0], 1)))
                lut_shape = (1,) * len(out_shape) + (lut_shape[0], 1)
            else:
                nbits = _SUB_BYTE.get(itype, 8 if itype == "UINT8" else 0)
            if nbits == 0 or lut_shape[-2] != 2 ** nbits or len(lut_shape) != len(out_shape) + 2 \
                    or any(d % b for d, b in zip(out_shape, lut_shape)):
                raise _fail(self.path, f"lookup-table op {self._op_name(op)!r} has LUT shape {lut_shape} for "
                            f"{nbits}-bit indices and output shape {out_shape}")
            found.append({"name": self._op_name(op), "shape": out_shape, "nbits": nbits, "lut_shape": lut_shape,
                          "dtype": self._type_name(lut[0]), "index_bytes": self._stored_bytes(*indices),
                          "lut_bytes": self._stored_bytes(*lut), "indices": indices, "lut": lut,
                          "packed": params["shape"] is not None})
        return found

    @staticmethod
    def _op_name(op) -> str:
        name = op.attributes.get("name")
        if name is not None and name.immediateValue.tensor.strings.values:
            return str(name.immediateValue.tensor.strings.values[0])
        return op.outputs[0].name

    def _param(self, op, name: str, consts: dict):
        if name in op.attributes:
            value = op.attributes[name]
            return value.type, value
        if name in op.inputs and op.inputs[name].arguments:
            binding = op.inputs[name].arguments[0]
            if binding.WhichOneof("binding") == "value":
                return binding.value.type, binding.value
            if binding.name in consts:
                return consts[binding.name]
            raise _fail(self.path, f"op {self._op_name(op)!r} reads {name} from {binding.name!r}, which is "
                        "not a constant")
        return None

    # -- values ----------------------------------------------------------------------------------
    def _type_name(self, type_) -> str:
        return self._types.Name(type_.tensorType.dataType)

    @staticmethod
    def _shape(type_) -> tuple[int, ...]:
        return tuple(int(d.constant.size) for d in type_.tensorType.dimensions)

    def _expected_bytes(self, type_) -> int:
        name, count = self._type_name(type_), math.prod(self._shape(type_))
        if name in _SUB_BYTE:
            return -(-count * _SUB_BYTE[name] // 8)
        if name not in _FIXED:
            raise _fail(self.path, f"a lookup-table value has data type {name}, which wsx does not read")
        return count * np.dtype(_FIXED[name]).itemsize

    def _blob_record(self, blob) -> tuple[Path, int, int]:
        """(weight file, data offset, size in bytes) of a blob, checked against the file."""
        file = self._inside(self._root / blob.fileName.replace("@model_path/", "", 1))
        size_of_file = file.stat().st_size
        with open(file, "rb") as f:
            f.seek(blob.offset)
            record = f.read(_RECORD.size)
        if blob.offset < 0 or len(record) < _RECORD.size:
            raise _fail(self.path, f"blob at offset {blob.offset} lies past the end of {file.name}")
        sentinel, _, size, offset = _RECORD.unpack(record)
        if sentinel != _SENTINEL or offset + size > size_of_file:
            raise _fail(self.path, f"blob at offset {blob.offset} of {file.name} is damaged")
        return file, offset, size

    def _stored_bytes(self, type_, value) -> int:
        """Bytes a value occupies: its blob's data, or its inline bytes."""
        if value.WhichOneof("value") == "blobFileValue":
            return self._blob_record(value.blobFileValue)[2]
        return self._expected_bytes(type_)

    def array(self, type_, value) -> np.ndarray:
        """A constant value as numpy, in its declared shape (sub-byte integers unpacked)."""
        name, shape = self._type_name(type_), self._shape(type_)
        expected = self._expected_bytes(type_)
        if value.WhichOneof("value") == "blobFileValue":
            file, offset, size = self._blob_record(value.blobFileValue)
            if size != expected:
                raise _fail(self.path, f"a blob of {file.name} holds {size} bytes where its type needs {expected}")
            with open(file, "rb") as f:
                f.seek(offset)
                raw = f.read(size)
        else:
            tensor = value.immediateValue.tensor
            kind = tensor.WhichOneof("value")
            if kind == "bytes":
                raw = tensor.bytes.values
            elif kind in ("floats", "ints", "longInts", "doubles"):
                raw = np.asarray(getattr(tensor, kind).values, dtype=_FIXED[name]).tobytes()
            else:
                raise _fail(self.path, f"an inline value is stored as {kind}, which wsx does not read")
            if len(raw) != expected:
                raise _fail(self.path, f"an inline value holds {len(raw)} bytes where its type needs {expected}")
        if name in _SUB_BYTE:
            return unpack_lsb(np.frombuffer(raw, np.uint8), _SUB_BYTE[name], math.prod(shape)).reshape(shape)
        return np.frombuffer(raw, dtype=_FIXED[name]).reshape(shape)

    def dense(self, op: dict) -> np.ndarray:
        """The tensor a lookup-table op decodes to: each weight takes entry ``index`` of the LUT of
        the block it lies in."""
        shape, nbits = op["shape"], op["nbits"]
        indices = self.array(*op["indices"])
        if op["packed"]:
            indices = unpack_lsb(indices, nbits, math.prod(shape))
        indices = indices.reshape(shape)
        lut = self.array(*op["lut"]).reshape(op["lut_shape"])
        if lut.shape[-1] != 1:
            raise _fail(self.path, f"op {op['name']!r} is a vector LUT, which wsx does not write or read")
        blocks = np.zeros(shape, dtype=np.int64)
        for axis, (size, luts) in enumerate(zip(shape, lut.shape[:-2])):
            coords = np.arange(size) // (size // luts)
            blocks = blocks * luts + coords.reshape((-1,) + (1,) * (len(shape) - axis - 1))
        return lut.reshape(-1, lut.shape[-2])[blocks, indices.astype(np.intp)]


# -- what export wrote ---------------------------------------------------------------------------
def layer_ops(ops: list[dict], count: int) -> dict[int, list[tuple[int, dict]]]:
    """{layer number: [(copy, lookup-table op)]} from the names export gives them; a layer's
    weights may sit in several constants (tied weights, several layouts), each a copy."""
    out: dict[int, list[tuple[int, dict]]] = {}
    for op in ops:
        match = _OP_NAME.match(op["name"])
        if match and int(match.group(1)) < count:
            out.setdefault(int(match.group(1)), []).append((int(match.group(2)), op))
    return out


def load_palettized(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """{layer: dense weights decoded from the package's LUTs}, in the model's own layout for a
    package wsx wrote (its manifest gives each op's axis order), else {op name: dense tensor}."""
    package = Package(path)
    ops = package.lut_ops()
    if package.manifest is None:
        return {op["name"]: package.dense(op) for op in ops}
    layers = package.manifest.get("layers", [])
    out = {}
    for number, found in layer_ops(ops, len(layers)).items():
        entry = layers[number]
        copy, op = found[0]
        if not 0 <= copy < len(entry["perms"]) or sorted(entry["perms"][copy]) != list(range(len(op["shape"]))):
            raise _fail(package.path, f"its wsx metadata gives no axis order for op {op['name']!r}")
        out[entry["name"]] = np.transpose(package.dense(op), np.argsort(entry["perms"][copy]))
    return out


def inspect(path: str | os.PathLike) -> dict:
    """Per lookup-table op: the LUT entries and index bits found in the package, its bytes, and
    wsx's formula for the padded bit-widths (W * nbits + LUTs * 2**nbits * B) and for k itself."""
    package = Package(path)
    manifest = package.manifest or {}
    layers = manifest.get("layers", [])
    ops = package.lut_ops()
    owner = {id(op): layers[n] for n, found in layer_ops(ops, len(layers)).items() for _, op in found}
    rows = []
    for op in ops:
        entry = owner.get(id(op), {})
        weights, luts = math.prod(op["shape"]), math.prod(op["lut_shape"][:-2])
        value_bits = 8 * np.dtype(_FIXED.get(op["dtype"], np.float32)).itemsize  # B of the stored LUT
        padded = weights * op["nbits"] + luts * 2 ** op["nbits"] * value_bits
        row = {"op": op["name"], "layer": entry.get("name"), "shape": list(op["shape"]), "weights": weights,
               "luts": luts, "lut_entries": 2 ** op["nbits"], "nbits": op["nbits"], "lut_dtype": op["dtype"],
               "index_bytes": op["index_bytes"], "lut_bytes": op["lut_bytes"],
               "bytes": op["index_bytes"] + op["lut_bytes"], "formula_bytes": -(-padded // 8),
               "baseline_bytes": weights * manifest.get("bits", value_bits) // 8}
        if entry:
            eq41 = weights * entry["index_bits"] + luts * entry["k"] * manifest["bits"]
            row.update(k=entry["k"], index_bits=entry["index_bits"], padding_bits=op["nbits"] - entry["index_bits"],
                       wsx_formula_bytes=-(-eq41 // 8))
        rows.append(row)
    files = [f for f in package.path.rglob("*") if f.is_file()]
    weight_files = [f for f in files if f.parent.name == "weights"]
    payload = sum(r["bytes"] for r in rows)
    return {
        "path": str(package.path), "package_bytes": sum(f.stat().st_size for f in files),
        "weight_file_bytes": sum(f.stat().st_size for f in weight_files),
        "specification_version": int(package.spec.specificationVersion),
        "wsx_version": manifest.get("wsx_version"), "backend": manifest.get("backend"),
        "precision": manifest.get("precision"), "target": manifest.get("target"), "bits": manifest.get("bits"),
        "layers": rows, "payload_bytes": payload, "formula_bytes": sum(r["formula_bytes"] for r in rows),
        "wsx_formula_bytes": sum(r.get("wsx_formula_bytes", 0) for r in rows) if layers else None,
        "baseline_bytes": sum(r["baseline_bytes"] for r in rows),
        "uncompressed_layers_of_interest": [n for n in manifest.get("layers_of_interest", [])
                                            if n not in {e["name"] for e in layers}],
        "candidate": manifest.get("candidate"), "compression_rate": manifest.get("compression_rate"),
    }
