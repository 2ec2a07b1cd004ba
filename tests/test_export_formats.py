"""Export formats: Core ML packages with lookup-table weights read back on Linux (spec and weight
blobs, decoded by wsx and by coremltools itself) and compared bit for bit with wsx.apply; sizes
against the formula; dense ONNX and Keras files loading back with equal outputs."""
from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

import wsx
from wsx.engine import make_backend

# k=7 takes 3 index bits (4 before iOS 18), k=18 takes 5 (padded to 6), k=1 none (padded to 1)
KNOBS = {"conv1.weight": 7, "conv2.weight": 18, "conv3.weight": 12, "fc1.weight": 4, "fc2.weight": 1}


@pytest.fixture(scope="module")
def ct():
    pytest.importorskip("coremltools")
    from wsx.mlpackage import coremltools

    return coremltools()


def applied(model, candidate, **kw) -> dict:
    """{layer: the weights wsx.apply writes} for a copy of ``model``."""
    clone = copy.deepcopy(model) if not hasattr(model, "get_config") else _keras_clone(model)
    wsx.apply(clone, candidate, **kw)
    be = make_backend(clone, None)
    return {layer.name: be.get_weights(layer.name) for layer in be.layers()}


def _keras_clone(model):
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def coremltools_decoded(ct, path) -> dict:
    """{op name: dense tensor} as coremltools itself decodes the package's lookup-table ops."""
    from coremltools.converters.mil.frontend.milproto.load import load

    spec = ct.utils.load_spec(str(path))
    prog = load(spec, spec.specificationVersion, str(path / "Data" / "com.apple.CoreML" / "weights"))
    return {op.name: op.materialized_val_inference() for op in prog.functions["main"].operations
            if op.op_type == "constexpr_lut_to_dense"}


def manifest_perms(path) -> dict:
    from wsx.mlpackage import Package, layer_ops

    package = Package(path)
    layers = package.manifest["layers"]
    return {op["name"]: (layers[n]["name"], layers[n]["perms"][copy_])
            for n, found in layer_ops(package.lut_ops(), len(layers)).items() for copy_, op in found}


# -- Core ML: torch ----------------------------------------------------------------------------------
@pytest.mark.parametrize("target, nbits", [("iOS18", {"conv1.weight": 3, "conv2.weight": 6, "fc2.weight": 1}),
                                           ("iOS16", {"conv1.weight": 4, "conv2.weight": 6, "fc2.weight": 1})])
def test_coreml_torch_luts_equal_apply_bit_for_bit(ct, lenet, tmp_path, target, nbits):
    model, (x, _) = lenet
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / "lenet.mlpackage"
    info = wsx.export(model, KNOBS, path, example_inputs=x[:1], target=target)
    assert all(np.array_equal(v, model.state_dict()[k]) for k, v in before.items())  # model untouched
    expected = applied(model, KNOBS)
    perms = manifest_perms(path)
    by_coremltools = coremltools_decoded(ct, path)
    assert sorted(name for name, _ in perms.values()) == sorted(KNOBS)
    for op, dense in by_coremltools.items():
        layer, perm = perms[op]
        assert dense.dtype == np.float32
        assert np.array_equal(dense, np.transpose(expected[layer], perm)), layer
    from wsx.mlpackage import load_palettized

    ours = load_palettized(path)
    assert all(np.array_equal(ours[n], expected[n]) for n in KNOBS)
    rows = {r["layer"]: r for r in info["layers"]}
    for name, bits in nbits.items():
        assert rows[name]["nbits"] == bits and rows[name]["lut_entries"] == 2 ** bits
        assert rows[name]["padding_bits"] == bits - (math.ceil(math.log2(KNOBS[name])) if KNOBS[name] > 1 else 0)
    for r in info["layers"]:  # bytes found in the package = the formula for its bit-widths, to the byte
        assert r["index_bytes"] == math.ceil(r["weights"] * r["nbits"] / 8)
        assert r["lut_bytes"] == r["lut_entries"] * 4
        assert r["bytes"] == r["formula_bytes"]
    assert info["payload_bytes"] == info["formula_bytes"] and info["bit_exact"]


def test_coreml_float16_rounds_lut_values_and_other_weights(ct, lenet, tmp_path):
    model, (x, _) = lenet
    path = tmp_path / "half.mlpackage"
    info = wsx.export(model, KNOBS, path, example_inputs=x[:1], precision="float16")
    expected = applied(model, KNOBS)
    perms = manifest_perms(path)
    for op, dense in coremltools_decoded(ct, path).items():
        layer, perm = perms[op]
        assert dense.dtype == np.float16
        assert np.array_equal(dense, np.transpose(expected[layer], perm).astype(np.float16))
    assert {r["lut_dtype"] for r in info["layers"]} == {"FLOAT16"}
    assert info["payload_bytes"] == info["formula_bytes"]
    assert info["precision"] == "float16"


def test_coreml_per_kernel_luts_torch(ct, lenet, tmp_path):
    from wsx_plugins.approximations.weight_sharing import WeightSharing

    model, (x, _) = lenet
    appr = WeightSharing(granularity="kernel")
    knobs = {"conv2.weight": 5, "fc1.weight": 3}
    info = wsx.export(model, knobs, tmp_path / "k.mlpackage", example_inputs=x[:1], approximation=appr)
    rows = {r["layer"]: r for r in info["layers"]}
    assert rows["conv2.weight"]["luts"] == 16 * 6 and rows["fc1.weight"]["luts"] == 84  # a Linear has no kernels
    expected = applied(model, knobs, approximation=appr)
    perms = manifest_perms(tmp_path / "k.mlpackage")
    for op, dense in coremltools_decoded(ct, tmp_path / "k.mlpackage").items():
        layer, perm = perms[op]
        assert np.array_equal(dense, np.transpose(expected[layer], perm))
    assert info["payload_bytes"] == info["formula_bytes"]


# -- Core ML: Keras ----------------------------------------------------------------------------------
def test_coreml_keras_per_channel_luts_equal_apply(ct, tmp_path):
    pytest.importorskip("tensorflow")
    from wsx_plugins.approximations.weight_sharing import WeightSharing

    model, _ = wsx.zoo.load("lenet5-digits", framework="keras")
    appr = WeightSharing(granularity="channel", channel_axis=-1)
    knobs = {"lenet5/conv2/kernel": 6, "lenet5/conv3/kernel": 3, "lenet5/fc1/kernel": 20}
    path = tmp_path / "keras.mlpackage"
    info = wsx.export(model, knobs, path, approximation=appr)
    rows = {r["layer"]: r for r in info["layers"]}
    assert rows["lenet5/conv2/kernel"]["luts"] == 16 and rows["lenet5/fc1/kernel"]["luts"] == 84
    assert rows["lenet5/fc1/kernel"]["nbits"] == 6 and rows["lenet5/fc1/kernel"]["padding_bits"] == 1
    expected = applied(model, knobs, approximation=appr)
    perms = manifest_perms(path)
    for op, dense in coremltools_decoded(ct, path).items():
        layer, perm = perms[op]
        assert np.array_equal(dense, np.transpose(expected[layer], perm))
    from wsx.mlpackage import load_palettized

    ours = load_palettized(path)
    assert all(np.array_equal(ours[n], expected[n]) for n in knobs)
    assert info["payload_bytes"] == info["formula_bytes"]
    assert set(info["uncompressed_layers_of_interest"]) == {"lenet5/conv1/kernel", "lenet5/fc2/kernel"}


# -- reading packages --------------------------------------------------------------------------------
def test_lsb_packing_matches_coremltools(ct):
    from coremltools.optimize._utils import pack_elements_into_bits

    from wsx.mlpackage import pack_lsb, unpack_lsb

    rng = np.random.default_rng(0)
    for bits in (1, 2, 3, 4, 6, 8):
        values = rng.integers(0, 2 ** bits, 1001).astype(np.uint8)
        packed = pack_lsb(values, bits)
        assert np.array_equal(packed, pack_elements_into_bits(values, bits))
        assert np.array_equal(unpack_lsb(packed, bits, values.size), values)


def test_cli_export_and_inspect_mlpackage(ct, tmp_path, capsys):
    """`wsx export --format coreml` from a results directory, then `wsx inspect` of the package."""
    pytest.importorskip("torch")
    from wsx.cli import main

    model, data = wsx.zoo.load("lenet5-digits", framework="torch")
    result = wsx.explore(model, data, knobs=[4, 9, 40], subset=200, min_subset=200, progress=False,
                         out=tmp_path / "run", target=0.97,
                         strategy=wsx.plugins.strategies()["divide-and-conquer"](pop_size=4, generations=1))
    out = tmp_path / "best.mlpackage"
    assert main(["export", str(tmp_path / "run"), "--candidate", "0", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    knobs = result.front[0].knobs
    assert {r["layer"]: r["k"] for r in info["layers"]} == knobs
    assert info["payload_bytes"] == info["formula_bytes"]
    formula = sum(math.ceil((r["weights"] * (math.ceil(math.log2(k)) if k > 1 else 0) + k * 32) / 8)
                  for r, k in ((r, r["k"]) for r in info["layers"]))
    assert info["wsx_formula_bytes"] == formula
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "against the formula's" in text and "conv1.weight" in text


# -- dense exports -----------------------------------------------------------------------------------
def test_onnx_outputs_equal_torch_on_the_scoring_data(lenet, tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    import torch

    model, (x, _) = lenet
    info = wsx.export(model, KNOBS, tmp_path / "lenet.onnx", example_inputs=x[:1])
    assert info["dense"] and info["format"] == "onnx" and info["max_abs_diff"] < 1e-4
    assert info["shared_values"]["fc2.weight"] == 1
    clone = copy.deepcopy(model)
    wsx.apply(clone, KNOBS)
    with torch.no_grad():
        expected = clone(torch.as_tensor(np.asarray(x))).numpy()
    session = ort.InferenceSession(str(tmp_path / "lenet.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: np.asarray(x, dtype=np.float32)})[0]
    assert got.shape == expected.shape == (len(x), 10)  # the batch axis is free: all samples at once
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    assert (got.argmax(1) == expected.argmax(1)).mean() > 0.99


def test_keras_file_loads_back_with_equal_outputs(tmp_path):
    pytest.importorskip("tensorflow")
    import keras

    model, (x, _) = wsx.zoo.load("lenet5-digits", framework="keras")
    knobs = {"lenet5/conv1/kernel": 7, "lenet5/fc1/kernel": 4}
    before = [w.copy() for w in model.get_weights()]
    info = wsx.export(model, knobs, tmp_path / "lenet.keras")
    assert info["dense"] and info["max_abs_diff"] == 0.0
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # model untouched
    loaded = keras.saving.load_model(str(tmp_path / "lenet.keras"), compile=False)
    clone = _keras_clone(model)
    wsx.apply(clone, knobs)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), clone.predict(x, verbose=0))
    kernel = next(v for v in loaded.weights if v.path.endswith("fc1/kernel")).numpy()
    assert len(np.unique(kernel)) == 4
