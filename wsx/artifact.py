"""Compressed artifacts: what a user ships after an exploration.

``export`` writes one safetensors file. Per compressed layer it holds the index matrix bit-packed at
ceil(log2 k) bits per weight (most significant bit first, fields back to back) and the codebook at B
bits per value; every other tensor of the model is stored as it is. A JSON manifest in the file's
metadata names the layers, shapes, k, granularity, B and the wsx version. safetensors is a plain
header plus raw buffers, so reading an artifact never runs code (no pickle anywhere).

The packed payload of a layer is exactly ceil(size_i / 8) bytes, size_i = W_i * ceil(log2 k_i) +
groups * k_i * B (thesis eq. 4.1), so the file agrees with the compression rate a search reports.
``load_compressed`` rebuilds dense tensors equal bit for bit to what ``wsx.apply`` writes.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CorruptFileError, InvalidModelError, InvalidSettingError
from .metrics import index_bits

FORMAT = "wsx-artifact"
VERSION = 1
# B -> storage dtype of a codebook value. Other B have no exact float type to store the values in.
CODEBOOK_DTYPES = {16: np.dtype(np.float16), 32: np.dtype(np.float32), 64: np.dtype(np.float64)}
INDICES = "@wsx/indices/"   # tensor-name prefixes of the packed parts; checked against model names
CODEBOOK = "@wsx/codebook/"
_CHUNK = 1 << 18            # weights packed per step; a multiple of 8 keeps chunks byte-aligned
EXPANSION = 256             # load_compressed's default bound: dense bytes per file byte ...
MIN_LOAD_BYTES = 256 << 20  # ... and at least this many


# -- bit packing ---------------------------------------------------------------------------------
def _width(bits: int) -> int:
    return 8 if bits <= 8 else 16 if bits <= 16 else 32


def _nbytes(bits: int) -> int:
    """Bytes that hold ``bits`` bits: ceil(bits / 8)."""
    return -(-bits // 8)


def _size_bits(entry: dict, bits: int) -> int:
    """size_i of a manifest entry: W * ceil(log2 k) + G * k * B (eq. 4.1 with G codebooks)."""
    return entry["weights"] * entry["index_bits"] + entry["groups"] * entry["k"] * bits


def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack non-negative integers < 2**bits into ceil(n * bits / 8) bytes, MSB first."""
    values = np.asarray(values).ravel()
    n = values.size
    if bits == 0:
        if n and values.any():
            raise ValueError("indices must be 0 when no index bit is stored (k=1)")
        return np.zeros(0, dtype=np.uint8)
    if not 1 <= bits <= 32:
        raise ValueError(f"index width {bits} outside [1, 32]")
    if n and (values.min() < 0 or int(values.max()) >> bits):
        raise ValueError(f"indices do not fit in {bits} bits")
    width = _width(bits)
    out = np.empty(_nbytes(n * bits), dtype=np.uint8)
    for start in range(0, n, _CHUNK):
        chunk = values[start:start + _CHUNK].astype(f">u{width // 8}")
        planes = np.unpackbits(chunk.view(np.uint8).reshape(-1, width // 8), axis=1)[:, width - bits:]
        packed = np.packbits(planes)
        at = start * bits // 8
        out[at:at + packed.size] = packed
    return out


def unpack_bits(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of ``pack_bits``: ``count`` integers of ``bits`` bits each."""
    if bits == 0:
        return np.zeros(count, dtype=np.uint8)
    width = _width(bits)
    packed = np.asarray(packed, dtype=np.uint8).ravel()
    if packed.size != _nbytes(count * bits):
        raise ValueError(f"{packed.size} bytes cannot hold exactly {count} indices of {bits} bits")
    out = np.empty(count, dtype=f"u{width // 8}")
    for start in range(0, count, _CHUNK):
        m = min(_CHUNK, count - start)
        at = start * bits // 8
        planes = np.unpackbits(packed[at:at + _nbytes(m * bits)], count=m * bits).reshape(m, bits)
        wide = np.zeros((m, width), dtype=np.uint8)
        wide[:, width - bits:] = planes
        out[start:start + m] = np.packbits(wide, axis=1).view(f">u{width // 8}").ravel()
    return out


# -- one layer ---------------------------------------------------------------------------------
def _grouped(payload: dict, size: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(codebook groups x k', indices groups x W/groups, granularity) from a weight-sharing payload.

    A per-layer codebook is one group. Grouped codebooks (per output channel, per kernel) come as
    (G, k) values and (G, W/G) indices: group g owns row g of the weights once the axes are put in
    the order that makes its weights contiguous (``_layouts``).
    """
    codebook = np.asarray(payload["codebook"])
    groups = 1 if codebook.ndim == 1 else codebook.shape[0]
    codebook = codebook.reshape(groups, -1)
    indices = np.asarray(payload["indices"]).reshape(groups, -1)
    if indices.shape[1] * groups != size:
        raise InvalidSettingError(f"payload indices cover {indices.size} weights, the layer has {size}")
    return codebook, indices, str(payload.get("granularity", "layer" if groups == 1 else "group"))


def _layouts(shape: tuple, groups: int, hint=None):
    """Axis orders under which each of ``groups`` codebooks owns one contiguous run of the weights:
    the payload's own (``group_axes``) if it names one, then as is, then one axis (channels) or two
    axes (kernels: output x input channels) moved to the front."""
    identity = tuple(range(len(shape)))
    if hint is not None:
        yield tuple(int(a) for a in hint)
    yield identity
    if groups == 1:
        return
    for a in identity:
        rest = tuple(x for x in identity if x != a)
        if shape[a] == groups:
            yield (a,) + rest
        for b in rest:
            if shape[a] * shape[b] == groups:
                yield (a, b) + tuple(x for x in rest if x != b)


def _reconstruct(codebook: np.ndarray, indices: np.ndarray | None, shape, dtype, axes=None) -> np.ndarray:
    """Dense weights from (groups x k) codebook values, (groups x n) indices (None: every weight is
    its group's first value) and the axis order under which the groups are rows (None: the layer's own)."""
    if indices is None:
        groups = codebook.shape[0]
        values = np.repeat(codebook[:, :1].astype(dtype), math.prod(shape) // max(groups, 1), axis=1)
    else:
        values = np.take_along_axis(codebook.astype(dtype), indices.astype(np.intp), axis=1)
    if axes is None or list(axes) == list(range(len(shape))):
        return values.reshape(shape)
    moved = values.reshape(tuple(shape[a] for a in axes))
    return np.ascontiguousarray(np.transpose(moved, np.argsort(axes)))


def sharing_layout(name: str, part, layer, written: np.ndarray, knob: int):
    """(float32 codebook groups x k, indices groups x W/groups, granularity, axis order, k) of one
    layer's weight-sharing payload, checked to reproduce the weights ``wsx.apply`` writes."""
    if set(part.payload) - {"codebook", "indices", "granularity", "group_axes"} or "codebook" not in part.payload:
        raise InvalidSettingError(
            f"layer {name!r}: export writes weight-sharing candidates (codebook + indices); this "
            f"approximation's payload has {sorted(part.payload)}; export a weight-sharing result")
    codebook, indices, granularity = _grouped(part.payload, layer.size)
    groups = codebook.shape[0]
    k = min(int(knob), max(layer.size // groups, 1))  # a codebook never holds more values than weights
    if codebook.shape[1] < k:  # fewer distinct values than k: pad so the file matches the formula
        codebook = np.concatenate([codebook, np.repeat(codebook[:, -1:], k - codebook.shape[1], axis=1)], 1)
    exact = codebook.astype(np.float32)  # apply writes float32 shared values
    written = np.asarray(written, dtype=np.float32)
    axes = next((order for order in _layouts(tuple(layer.shape), groups, part.payload.get("group_axes"))
                 if np.array_equal(_reconstruct(exact, indices, layer.shape, np.float32, order), written)), None)
    if axes is None:
        raise InvalidSettingError(
            f"layer {name!r}: its codebook and indices do not reproduce the shared weights (granularity "
            f"{granularity!r} is laid out in a way this wsx does not know); upgrade wsx or export per layer")
    return exact, indices, granularity, axes, k


def _encode_layer(name: str, part, layer, written: np.ndarray, dense_dtype: np.dtype, knob: int,
                  bits: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """Manifest entry, packed indices and stored codebook of one layer; checks the round trip."""
    store = CODEBOOK_DTYPES.get(bits)
    if store is None:
        raise InvalidSettingError(f"bits={bits}: an artifact stores codebook values as floats of 16, 32 "
                                  "or 64 bits; export with bits=32 (or 16 for a float16 model)")
    exact, indices, granularity, axes, k = sharing_layout(name, part, layer, written, knob)
    groups = exact.shape[0]
    stored = exact.astype(store)
    if not np.array_equal(_reconstruct(stored, indices, layer.shape, dense_dtype, axes), written.astype(dense_dtype)):
        raise InvalidSettingError(
            f"layer {name!r}: {bits}-bit codebook values would change the shared weights (the model "
            f"holds {dense_dtype.name}); export with bits=32, or explore a float16 model for bits=16")
    b = index_bits(k)
    packed = pack_bits(indices, b)
    entry = {"name": name, "shape": list(layer.shape), "dtype": dense_dtype.name, "weights": int(layer.size),
             "knob": int(knob), "k": int(k), "index_bits": b, "groups": int(groups),
             "granularity": granularity, "axes": list(axes), "codebook_dtype": store.name,
             "index_bytes": int(packed.nbytes), "codebook_bytes": int(stored.nbytes)}
    return entry, packed, stored


# -- export --------------------------------------------------------------------------------------
def export(model: Any, candidate: Any, path: str | os.PathLike, *, result: Any = None, backend: Any = None,
           clusterer: Any = None, approximation: Any = None, seed: int | None = None,
           bits: int | None = None) -> dict:
    """Write ``candidate`` (a Candidate, {layer: k}, or an index into ``result.front``) of ``model`` as
    a compressed artifact at ``path``; returns what ``inspect`` reports for it.

    Pass the ``result`` the candidate came from so the clustering is reproduced exactly (same
    clusterer, parameters, seed and B) and the model is checked against the one explored.
    """
    from . import __version__
    from .exporting import candidate_summary, shared_weights
    from .result import Candidate

    candidate, be, weights, parts = shared_weights(model, candidate, result=result, backend=backend,
                                                   clusterer=clusterer, approximation=approximation, seed=seed,
                                                   bits=bits)
    b_value = int(bits if bits is not None else (result.settings.get("bits", 32) if result is not None else 32))
    try:
        tensors = be.tensors()
    except TypeError as exc:  # e.g. bfloat16, which numpy cannot hold
        raise InvalidModelError(f"cannot read the model's tensors as numpy ({exc}); convert the model to "
                                "float32 before exporting") from exc
    aliases = {a: o for a, o in be.tensor_aliases().items() if o in weights}
    by_name = {layer.name: layer for layer in be.layers()}
    clash = [n for n in tensors if n.startswith((INDICES, CODEBOOK))]
    if clash:
        raise InvalidModelError(f"tensor names {clash} collide with the artifact's own names; rename them")
    knobs = candidate.knobs if isinstance(candidate, Candidate) else dict(candidate)
    stored: dict[str, np.ndarray] = {}
    entries = []
    for name, arr in tensors.items():
        if name in weights:
            entry, packed, codebook = _encode_layer(name, parts[name], by_name[name], weights[name],
                                                    np.asarray(arr).dtype, int(knobs[name]), b_value)
            entries.append(entry)
            stored[INDICES + name] = packed
            stored[CODEBOOK + name] = codebook
        elif name not in aliases:
            stored[name] = np.ascontiguousarray(arr)
    missing = sorted(set(weights) - {e["name"] for e in entries})
    if missing:
        raise InvalidModelError(f"layers {missing} are not among the backend's tensors; cannot export")
    compressed = {e["name"]: _size_bits(e, b_value) for e in entries}
    baseline = sum(layer.size * b_value for layer in by_name.values())
    size = sum(compressed.get(n, layer.size * b_value) for n, layer in by_name.items())
    manifest = {
        "format": FORMAT, "version": VERSION, "wsx_version": __version__, "backend": be.name,
        "approximation": result.approximation if result is not None and result.approximation else "weight-sharing",
        "bits": b_value, "bit_order": "msb-first", "tensors": list(tensors), "aliases": aliases,
        "layers": entries, "layers_of_interest": {n: list(layer.shape) for n, layer in by_name.items()},
        "baseline_bits": int(baseline), "size_bits": int(size), "compression_rate": baseline / size,
    }
    if isinstance(candidate, Candidate):
        manifest["candidate"] = candidate_summary(candidate)
    if result is not None:
        manifest["clusterer"] = result.clusterer
        manifest["seed"] = result.settings.get("seed")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    from safetensors.numpy import save_file

    save_file(stored, str(tmp), metadata={"format": FORMAT, "wsx": json.dumps(manifest)})
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # the usual permissions of a new file, not the writer's 0600
    tmp.replace(path)  # a crash never leaves a half-written artifact under the final name
    return inspect(path)


# -- reading -------------------------------------------------------------------------------------
def _fail(path, what: str) -> CorruptFileError:
    return CorruptFileError(f"{path}: {what}; pass a file written by wsx.export / `wsx export` (re-export "
                            "it if it was damaged)")


def read(path: str | os.PathLike) -> tuple[dict, dict]:
    """(manifest, {stored name: array}) of an artifact, validated; raises CorruptFileError."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InvalidSettingError(f"{path} does not exist or is not a file; pass the path `wsx export` wrote")
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            arrays = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own types for bad headers
        raise _fail(path, f"not a readable safetensors file ({type(exc).__name__}: {exc})") from None
    if meta.get("format") != FORMAT or "wsx" not in meta:
        raise _fail(path, "a safetensors file without a wsx manifest (not a wsx artifact)")
    try:
        manifest = json.loads(meta["wsx"])
    except json.JSONDecodeError as exc:
        raise _fail(path, f"its manifest is not valid JSON ({exc})") from None
    _check_manifest(path, manifest, arrays)
    return manifest, arrays


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_manifest(path, m: Any, arrays: dict) -> None:
    """Every field ``load_compressed`` and ``inspect`` read, checked for type and against the stored
    buffers (sizes included), so that reading a damaged or forged manifest raises CorruptFileError."""
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise _fail(path, "its manifest is not a wsx artifact manifest")
    if not _int(m.get("version")) or m["version"] > VERSION:
        raise CorruptFileError(f"{path} was written by a newer wsx (artifact version {m.get('version')!r}, "
                               f"this wsx reads {VERSION}); upgrade wsx to load it")
    aliases = m.get("aliases")
    if not isinstance(m.get("tensors"), list) or not isinstance(m.get("layers"), list) \
            or not isinstance(aliases, dict) or not all(isinstance(v, str) for v in aliases.values()):
        raise _fail(path, "its manifest lacks the tensors / layers lists or the aliases")
    if not _int(m.get("bits")) or m["bits"] not in CODEBOOK_DTYPES:
        raise _fail(path, f"its manifest's bits {m.get('bits')!r} is not one of {sorted(CODEBOOK_DTYPES)}")
    interest = m.get("layers_of_interest", {})
    if not isinstance(interest, dict) or not isinstance(m.get("candidate", {}), (dict, type(None))) or not all(
            isinstance(m.get(key), (int, float, type(None))) for key in ("size_bits", "baseline_bits",
                                                                          "compression_rate")):
        raise _fail(path, "its manifest's summary fields (layers_of_interest, candidate, sizes) are malformed")
    layer_names = set()
    for e in m["layers"]:
        try:
            name, shape, k, b, groups = e["name"], e["shape"], e["k"], e["index_bits"], e["groups"]
            ok = (isinstance(name, str) and isinstance(shape, list) and all(_int(s) and s >= 0 for s in shape)
                  and all(_int(v) for v in (k, b, groups, e["weights"])) and k >= 1 and groups >= 1
                  and b == index_bits(k) and math.prod(shape) == e["weights"]
                  and e["weights"] % groups == 0 and np.dtype(e["dtype"]).kind in "fc"
                  and isinstance(e["granularity"], str)
                  and isinstance(e.get("axes", []), list) and all(_int(a) for a in e.get("axes", []))
                  and sorted(e.get("axes", range(len(shape)))) == list(range(len(shape)))
                  and e["codebook_dtype"] in {d.name for d in CODEBOOK_DTYPES.values()})
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise _fail(path, f"its manifest entry for layer {e.get('name') if isinstance(e, dict) else e!r} "
                        "is malformed")
        cb, ix = arrays.get(CODEBOOK + name), arrays.get(INDICES + name)
        if cb is None or ix is None:
            raise _fail(path, f"the packed tensors of layer {name!r} are missing")
        if cb.shape != (groups, k) or cb.dtype.name != e["codebook_dtype"] or not np.all(np.isfinite(cb)):
            raise _fail(path, f"the codebook of layer {name!r} has shape {cb.shape} / dtype {cb.dtype}, "
                        f"expected ({groups}, {k}) finite {e['codebook_dtype']}")
        if ix.dtype != np.uint8 or ix.ndim != 1 or ix.size != _nbytes(e["weights"] * b):
            raise _fail(path, f"the packed indices of layer {name!r} have {ix.size} bytes, expected "
                        f"{_nbytes(e['weights'] * b)}")
        layer_names.add(name)
    for name in m["tensors"]:
        if not isinstance(name, str) or (name not in layer_names and name not in arrays
                                         and aliases.get(name) not in layer_names):
            raise _fail(path, f"tensor {name!r} is listed in the manifest but not stored")


def dense_bytes(manifest: dict) -> int:
    """Bytes of the dense tensors ``load_compressed`` builds from the packed layers (tied names
    included: each is a copy)."""
    per_layer = {e["name"]: e["weights"] * np.dtype(e["dtype"]).itemsize for e in manifest["layers"]}
    total = sum(per_layer.values())
    for name in manifest["tensors"]:
        owner = manifest["aliases"].get(name)
        if name not in per_layer and owner in per_layer:
            total += per_layer[owner]
    return total


def load_limit(path) -> int:
    """The default bound on the dense bytes an artifact may expand to: a packed index bit becomes at
    most 16 bytes (complex128 at k=2), so a wsx artifact expands at most 128x, with room for tied
    copies; k=1 layers store no index bytes at all and are bounded by this alone."""
    return max(MIN_LOAD_BYTES, EXPANSION * os.path.getsize(path))


def load_compressed(path: str | os.PathLike, *, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """{tensor name: dense numpy array} from an artifact, in the model's order (for torch: a
    state_dict to pass to ``load_state_dict`` after ``torch.from_numpy``).

    Before anything is allocated, the dense size the manifest declares is checked against
    ``max_bytes`` (default ``load_limit``: 256 times the file, at least 256 MiB): a forged manifest
    cannot make a small file take the machine's memory. Pass a larger ``max_bytes`` for a file you
    trust whose k=1 layers hold more than that."""
    manifest, arrays = read(path)
    limit = load_limit(path) if max_bytes is None else int(max_bytes)
    need = dense_bytes(manifest)
    if need > limit:
        implicit = [e["name"] for e in manifest["layers"] if e["index_bits"] == 0]
        why = f" (k=1 layers {implicit[:4]} store no index bytes)" if implicit else ""
        raise _fail(path, f"its manifest declares {need} bytes of dense weights from a {os.path.getsize(path)}-"
                    f"byte file, more than the {limit} allowed{why}; pass max_bytes= to "
                    "wsx.load_compressed if you trust the file")
    dense = {}
    for e in manifest["layers"]:
        name, k, b = e["name"], e["k"], e["index_bits"]
        codebook = arrays[CODEBOOK + name]
        if b == 0:  # one value per codebook: no index array at all
            dense[name] = _reconstruct(codebook, None, tuple(e["shape"]), np.dtype(e["dtype"]), e.get("axes"))
            continue
        idx = unpack_bits(arrays[INDICES + name], b, e["weights"])
        if idx.size and int(idx.max()) >= k:
            raise _fail(path, f"layer {name!r} has an index {int(idx.max())} outside its codebook of {k}")
        dense[name] = _reconstruct(codebook, idx.reshape(e["groups"], -1), tuple(e["shape"]),
                                   np.dtype(e["dtype"]), e.get("axes"))
    out = {}
    for name in manifest["tensors"]:
        owner = manifest["aliases"].get(name)
        out[name] = dense[name] if name in dense else dense[owner].copy() if owner in dense else arrays[name]
    return out


def inspect(path: str | os.PathLike) -> dict:
    """Per-layer k, index bits, stored bytes and formula bytes, plus totals against the baseline."""
    manifest, arrays = read(path)
    bits = manifest["bits"]
    rows, packed_total, formula_total = [], 0, 0
    for e in manifest["layers"]:
        index_bytes = int(arrays[INDICES + e["name"]].nbytes)
        codebook_bytes = int(arrays[CODEBOOK + e["name"]].nbytes)
        size_bits = _size_bits(e, bits)
        rows.append({"name": e["name"], "shape": e["shape"], "weights": e["weights"], "k": e["k"],
                     "groups": e["groups"], "granularity": e["granularity"], "index_bits": e["index_bits"],
                     "index_bytes": index_bytes, "codebook_bytes": codebook_bytes,
                     "bytes": index_bytes + codebook_bytes, "formula_bytes": _nbytes(size_bits),
                     "baseline_bytes": e["weights"] * bits // 8,
                     "compression_rate": e["weights"] * bits / size_bits})
        packed_total += index_bytes + codebook_bytes
        formula_total += _nbytes(size_bits)
    compressed = {e["name"] for e in manifest["layers"]}
    others = {n: a for n, a in arrays.items() if not n.startswith((INDICES, CODEBOOK))}
    uncompressed_interest = [n for n in manifest.get("layers_of_interest", {}) if n not in compressed]
    return {
        "path": str(path), "file_bytes": os.path.getsize(path), "bits": bits,
        "wsx_version": manifest.get("wsx_version"), "backend": manifest.get("backend"),
        "layers": rows, "payload_bytes": packed_total, "formula_bytes": formula_total,
        "baseline_bytes": sum(r["baseline_bytes"] for r in rows),
        "uncompressed_layers_of_interest": uncompressed_interest,
        "other_tensors": len(others), "other_bytes": int(sum(a.nbytes for a in others.values())),
        "size_bits": manifest.get("size_bits"), "baseline_bits": manifest.get("baseline_bits"),
        "compression_rate": manifest.get("compression_rate"), "candidate": manifest.get("candidate"),
    }
