"""Compressed artifacts: bit packing, bit-identity with wsx.apply, size to the byte, safety."""
from __future__ import annotations

import copy
import json
import math
import pickle

import numpy as np
import pytest

import wsx
from _tiny import TinyBackend, make_mlp
from wsx.artifact import CODEBOOK, INDICES, pack_bits, read, unpack_bits
from wsx.artifact import inspect as inspect_artifact
from wsx.engine import make_backend
from wsx.metrics import index_bits, weight_sharing_bits

LENET_KNOBS = {"conv1.weight": 7, "conv2.weight": 18, "conv3.weight": 12, "fc1.weight": 4, "fc2.weight": 1}


# -- packing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [1, 2, 3, 5, 7, 8, 9, 12, 15, 16, 17, 23, 31, 32])
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1001])
def test_pack_round_trip_and_size(bits, n):
    rng = np.random.default_rng(bits * 1000 + n)
    values = rng.integers(0, 2 ** bits, n, dtype=np.uint64)
    packed = pack_bits(values, bits)
    assert packed.dtype == np.uint8 and packed.size == math.ceil(n * bits / 8)
    assert np.array_equal(unpack_bits(packed, bits, n).astype(np.uint64), values)


def test_pack_layout_is_msb_first_and_back_to_back():
    # 3-bit fields 5, 3, 7 -> 101 011 11(1) -> 0b10101111, 0b10000000
    assert pack_bits(np.array([5, 3, 7]), 3).tolist() == [0b10101111, 0b10000000]


def test_pack_large_layer_spans_chunks():
    values = np.random.default_rng(0).integers(0, 2 ** 11, 1_200_000)
    packed = pack_bits(values, 11)
    assert packed.size == math.ceil(1_200_000 * 11 / 8)
    assert np.array_equal(unpack_bits(packed, 11, values.size), values)


def test_pack_refuses_values_that_do_not_fit():
    with pytest.raises(ValueError):
        pack_bits(np.array([8]), 3)
    with pytest.raises(ValueError):
        unpack_bits(np.zeros(3, np.uint8), 3, 9)  # 9 * 3 bits need 4 bytes


# -- torch: bit-identical with apply, formula to the byte ------------------------------------------
def applied_state(model, candidate, **kw):
    clone = copy.deepcopy(model)
    wsx.apply(clone, candidate, **kw)
    return {k: v.detach().numpy() for k, v in clone.state_dict().items()}


def test_load_compressed_equals_apply_bit_for_bit(lenet, tmp_path):
    model, _ = lenet
    knobs = {k: v for k, v in LENET_KNOBS.items() if k != "conv2.weight"}  # one layer left as is
    before = {k: v.clone() for k, v in model.state_dict().items()}
    wsx.export(model, knobs, tmp_path / "a.wsx")
    dense = wsx.load_compressed(tmp_path / "a.wsx")
    expected = applied_state(model, knobs)
    assert list(dense) == list(expected)  # every state_dict tensor, in order, biases included
    for name, arr in expected.items():
        assert dense[name].dtype == arr.dtype and dense[name].shape == arr.shape
        assert dense[name].tobytes() == arr.tobytes(), name
    assert all(np.array_equal(v.numpy(), model.state_dict()[k].numpy()) for k, v in before.items())
    # the dense tensors load into a fresh model and give the same outputs as apply
    torch = pytest.importorskip("torch")
    fresh = copy.deepcopy(model)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in dense.items()})
    assert len(np.unique(fresh.conv1.weight.detach().numpy())) <= 7


def test_payload_matches_formula_to_the_byte(lenet, tmp_path):
    model, _ = lenet
    info = wsx.export(model, LENET_KNOBS, tmp_path / "a.wsx")
    sizes = {e.name: e.size for e in make_backend(model, None).layers()}
    formula = sum(math.ceil(weight_sharing_bits(sizes[n], k, 32) / 8) for n, k in LENET_KNOBS.items())
    _, arrays = read(tmp_path / "a.wsx")
    stored = sum(arrays[INDICES + n].nbytes + arrays[CODEBOOK + n].nbytes for n in LENET_KNOBS)
    assert stored == formula == info["payload_bytes"] == info["formula_bytes"]
    for row in info["layers"]:
        assert row["index_bytes"] == math.ceil(sizes[row["name"]] * index_bits(row["k"]) / 8)
        assert row["codebook_bytes"] == row["k"] * 4
    total_bits = sum(weight_sharing_bits(sizes[n], k, 32) for n, k in LENET_KNOBS.items())
    assert info["compression_rate"] == pytest.approx(32 * sum(sizes.values()) / total_bits)


@pytest.mark.parametrize("granularity,axis", [("channel", 0), ("kernel", 0), ("channel", -1), ("kernel", -1)])
def test_grouped_codebooks(lenet, tmp_path, granularity, axis):
    """Per-channel / per-kernel codebooks: bit-identical with apply, bytes equal to the size formula."""
    import inspect as pyinspect

    ws = wsx.plugins.approximations()["weight-sharing"]
    if "granularity" not in pyinspect.signature(ws.__init__).parameters:
        pytest.skip("this weight-sharing plugin has no granularity")
    model, _ = lenet
    knobs = {"conv1.weight": 3, "conv2.weight": 5, "conv3.weight": 4, "fc1.weight": 4, "fc2.weight": 64}
    info = wsx.export(model, knobs, tmp_path / "g.wsx", approximation=ws(granularity=granularity, channel_axis=axis))
    dense = wsx.load_compressed(tmp_path / "g.wsx")
    expected = applied_state(model, knobs, approximation=ws(granularity=granularity, channel_axis=axis))
    assert all(dense[k].tobytes() == v.tobytes() for k, v in expected.items())
    appr = ws(granularity=granularity, channel_axis=axis)
    layers = make_backend(model, None).layers()
    assert info["payload_bytes"] == sum(math.ceil(appr.size_bits(lay, knobs[lay.name]) / 8) for lay in layers)
    assert any(row["groups"] > 1 for row in info["layers"])
    manifest, _ = read(tmp_path / "g.wsx")
    assert {e["granularity"] for e in manifest["layers"]} <= {"layer", "channel", "kernel"}


@pytest.mark.parametrize("framework,module", [("jax", "jax"), ("keras", "tensorflow")])
def test_other_frameworks_round_trip(tmp_path, framework, module):
    """The artifact is framework-neutral: the JAX and Keras LeNets export and load bit for bit."""
    pytest.importorskip(module)
    model, _ = wsx.zoo.load("lenet5-digits", framework=framework)
    be = make_backend(model, None)
    knobs = {layer.name: 4 for layer in be.layers()}
    info = wsx.export(model, knobs, tmp_path / "f.wsx")
    new = wsx.apply(model, knobs)  # JAX: new params; Keras: the model, written in place
    after = make_backend((model[0], new) if framework == "jax" else model, None).tensors()
    dense = wsx.load_compressed(tmp_path / "f.wsx")
    assert set(dense) == set(after) and info["payload_bytes"] == info["formula_bytes"]
    assert all(dense[k].tobytes() == v.tobytes() for k, v in after.items())


def test_k_above_distinct_values_pads_the_codebook(tmp_path):
    weights, _ = make_mlp()
    weights["fc1"] = np.round(weights["fc1"]).astype(np.float32)  # few distinct values
    distinct = np.unique(weights["fc1"]).size
    k = distinct + 5
    info = wsx.export(weights, {"fc1": k}, tmp_path / "a.wsx", backend=TinyBackend)
    assert info["layers"][0]["codebook_bytes"] == 4 * k
    assert info["payload_bytes"] == math.ceil(weight_sharing_bits(weights["fc1"].size, k) / 8)
    assert np.array_equal(wsx.load_compressed(tmp_path / "a.wsx")["fc1"], weights["fc1"])


def test_float16_model_at_16_bits(lenet, tmp_path):
    model, _ = lenet
    half = copy.deepcopy(model).half()
    wsx.export(half, LENET_KNOBS, tmp_path / "h.wsx", bits=16)
    info = inspect_artifact(tmp_path / "h.wsx")
    assert all(row["codebook_bytes"] == 2 * row["k"] for row in info["layers"])
    assert info["payload_bytes"] == info["formula_bytes"]
    dense = wsx.load_compressed(tmp_path / "h.wsx")
    for name, arr in applied_state(half, LENET_KNOBS).items():
        assert dense[name].dtype == np.float16 and dense[name].tobytes() == arr.tobytes(), name


def test_tied_weights_are_restored_under_every_name(tmp_path):
    torch = pytest.importorskip("torch")

    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(6, 6)
            self.b = torch.nn.Linear(6, 6)
            self.b.weight = self.a.weight

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    torch.manual_seed(0)
    model = Tied()
    wsx.export(model, {"a.weight": 3}, tmp_path / "t.wsx")
    dense = wsx.load_compressed(tmp_path / "t.wsx")
    expected = applied_state(model, {"a.weight": 3})
    assert list(dense) == list(expected)
    assert dense["b.weight"].tobytes() == expected["b.weight"].tobytes() == dense["a.weight"].tobytes()
    assert INDICES + "b.weight" not in read(tmp_path / "t.wsx")[1]


def test_export_from_a_result_reproduces_its_clustering(tmp_path):
    weights, data = make_mlp()
    dc = wsx.plugins.strategies()["divide-and-conquer"](pop_size=4, generations=1)
    result = wsx.explore(weights, data, backend=TinyBackend(weights, data), strategy=dc, knobs=[3, 6, 12],
                         subset=None, progress=False, seed=3, out=tmp_path / "run")
    loaded = wsx.Result.load(tmp_path / "run")
    candidate = loaded.front[-1]
    info = wsx.export(weights, len(loaded.front) - 1, tmp_path / "r.wsx", result=loaded, backend=TinyBackend)
    assert info["candidate"]["knobs"] == candidate.knobs
    applied = {k: v.copy() for k, v in weights.items()}
    wsx.apply(applied, candidate, result=result, backend=TinyBackend)
    dense = wsx.load_compressed(tmp_path / "r.wsx")
    assert all(dense[n].tobytes() == applied[n].tobytes() for n in weights)
    manifest, _ = read(tmp_path / "r.wsx")
    assert manifest["seed"] == 3 and manifest["bits"] == 32 and manifest["wsx_version"] == wsx.__version__
    assert {e["name"]: e["k"] for e in manifest["layers"]} == candidate.knobs
    assert all(e["granularity"] == "layer" and e["groups"] == 1 for e in manifest["layers"])


# -- safety and damage -----------------------------------------------------------------------------
class Boom:
    """Unpickling this would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_loading_never_executes_code(tmp_path):
    marker = tmp_path / "pwned"
    for name in ("evil.wsx", "journal.jsonl"):
        (tmp_path / name).write_bytes(pickle.dumps(Boom(str(marker))))
    with pytest.raises(wsx.CorruptFileError):
        wsx.load_compressed(tmp_path / "evil.wsx")
    with pytest.raises(wsx.CorruptFileError):
        inspect_artifact(tmp_path / "evil.wsx")
    from wsx.journal import read as read_journal

    with pytest.raises(wsx.CorruptFileError):
        read_journal(tmp_path / "journal.jsonl")
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["index_bytes", "codebook_shape", "index_out_of_range", "missing_tensor",
                                    "shape_vs_weights"])
def test_manifest_is_checked_against_the_buffers(tmp_path, damage):
    from safetensors.numpy import save_file

    weights, _ = make_mlp()
    path = tmp_path / "a.wsx"
    wsx.export(weights, {"fc1": 5}, path, backend=TinyBackend)
    manifest, arrays = read(path)
    entry = manifest["layers"][0]
    if damage == "index_bytes":
        arrays[INDICES + "fc1"] = arrays[INDICES + "fc1"][:-1]
    elif damage == "codebook_shape":
        arrays[CODEBOOK + "fc1"] = arrays[CODEBOOK + "fc1"][:, :-1].copy()
    elif damage == "index_out_of_range":  # k=5 stores 3-bit indices; 7 points past the codebook
        arrays[INDICES + "fc1"] = np.full_like(arrays[INDICES + "fc1"], 0xFF)
    elif damage == "missing_tensor":
        manifest["tensors"].append("ghost")
    else:
        entry["shape"] = [10 ** 6, 10 ** 6]
    save_file(arrays, str(path), metadata={"format": "wsx-artifact", "wsx": json.dumps(manifest)})
    with pytest.raises(wsx.CorruptFileError, match="a.wsx"):
        wsx.load_compressed(path)


# -- CLI -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    """A small exploration of the embedded LeNet written with --out (module-scoped: ~10 s)."""
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("lenet_run")
    model, data = wsx.zoo.load("lenet5-digits")
    dc = wsx.plugins.strategies()["divide-and-conquer"](pop_size=4, generations=2)
    wsx.explore(model, data, strategy=dc, knobs=[4, 8, 16], subset=200, min_subset=200, target=0.97,
                progress=False, out=out)
    return out


def test_cli_export_and_inspect(lenet_run, tmp_path, capsys):
    from wsx.cli import main

    result = wsx.Result.load(lenet_run)
    art = tmp_path / "best.wsx"
    assert main(["export", str(lenet_run), "--candidate", "0", "--out", str(art)]) == 0  # zoo model found
    out = capsys.readouterr().out
    assert "equals the formula" in out and "conv1.weight" in out
    assert main(["inspect", str(art), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["candidate"]["knobs"] == result.front[0].knobs
    assert info["payload_bytes"] == info["formula_bytes"]
    assert info["compression_rate"] == pytest.approx(result.front[0].compression_rate, rel=1e-12)
    assert [row["k"] for row in info["layers"]] == [result.front[0].knobs[r["name"]] for r in info["layers"]]
    model, _ = wsx.zoo.load("lenet5-digits")
    expected = applied_state(model, result.front[0], result=result)
    dense = wsx.load_compressed(art)
    assert all(dense[k].tobytes() == v.tobytes() for k, v in expected.items())
    assert main(["export", str(lenet_run), "--candidate", "99", "--out", str(art)]) == 2
    assert "--candidate '99'" in capsys.readouterr().err
