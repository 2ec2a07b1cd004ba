"""Bad input: one test per row of docs/errors.md. Each asserts the WsxError subclass and that the
message names what was wrong and what to do."""
from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

import wsx
from _tiny import TinyBackend, make_mlp
from wsx.errors import JournalMismatchError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "errors.md"


@pytest.fixture
def tiny():
    weights, data = make_mlp()
    return weights, data


def run(tiny, **kw):
    weights, data = tiny
    backend = kw.pop("backend", None) or TinyBackend(weights, data, metric=kw.pop("metric", "top1"))
    args = dict(backend=backend, progress=False, knobs=[2, 4], subset=None,
                strategy=wsx.plugins.strategies()["divide-and-conquer"](pop_size=4, generations=1))
    args.update(kw)
    return wsx.explore(weights, data, **args)


def raises(cls, *needles):
    """pytest.raises(cls) whose message must contain every needle (case-insensitive)."""
    return pytest.raises(cls, match="(?is)" + "".join(f"(?=.*{re.escape(n)})" for n in needles))


# -- plugins ---------------------------------------------------------------------------------------
def test_unknown_strategy(tiny):
    with raises(wsx.PluginNotFoundError, "'nope'", "available", "divide-and-conquer"):
        run(tiny, strategy="nope")


def test_unknown_backend(tiny):
    with raises(wsx.PluginNotFoundError, "backend 'nope'", "available", "torch"):
        wsx.explore(tiny[0], tiny[1], backend="nope", progress=False)


def test_unknown_clusterer(tiny):
    with raises(wsx.PluginNotFoundError, "clusterer 'nope'", "available", "sklearn"):
        run(tiny, clusterer="nope")


def test_unknown_approximation(tiny):
    with raises(wsx.PluginNotFoundError, "approximation 'nope'", "available", "weight-sharing"):
        run(tiny, approximation="nope")


def test_model_no_backend_recognises():
    with raises(wsx.BackendNotFoundError, "builtins.object", "pass a torch.nn.Module", "backend="):
        wsx.explore(object(), (np.zeros((2, 2)), np.zeros(2)), progress=False)


# -- model -----------------------------------------------------------------------------------------
def test_model_without_layers_of_interest():
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.ReLU())
    with raises(wsx.InvalidModelError, "Sequential has no layers of interest", "convolution and linear"):
        wsx.explore(model, (np.zeros((4, 3), np.float32), np.zeros(4, int)), progress=False)


def test_backend_with_no_layers(tiny):
    class Empty(TinyBackend):
        def _layers(self):
            return []

    with raises(wsx.InvalidModelError, "no layers of interest", "include/exclude"):
        run(tiny, backend=Empty(*tiny))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights(tiny, bad):
    weights, data = tiny
    weights["fc1"][3, 2] = bad
    with raises(wsx.InvalidModelError, "'fc1'", "NaN or Inf", "fix the model"):
        run((weights, data))


@pytest.mark.parametrize("k", [0, 10_000])
def test_k_outside_range(tiny, k):
    with raises(wsx.InvalidSettingError, f"k={k}", "'fc1'", "outside [1, 192]", "pick"):
        run(tiny, knobs=[k])


# -- data ------------------------------------------------------------------------------------------
def test_empty_data(lenet):
    model, (x, y) = lenet
    with raises(wsx.InvalidDataError, "empty", "at least one sample"):
        wsx.explore(model, (x[:0], y[:0]), progress=False)


def test_empty_loader(lenet):
    with raises(wsx.InvalidDataError, "no batches", "at least one sample"):
        wsx.explore(lenet[0], [], progress=False)


def test_inputs_and_labels_differ_in_length(lenet):
    model, (x, y) = lenet
    with raises(wsx.InvalidDataError, "540 samples", "labels have 539", "one label per input"):
        wsx.explore(model, (x, y[:-1]), progress=False)


def test_labels_outside_output_size(tiny):
    weights, (x, y) = tiny
    with raises(wsx.InvalidDataError, "labels span [5, 9]", "outputs 5 classes", "[0, 4]"):
        run((weights, (x, y + 5)))


# -- settings --------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", [0, 1.5, float("nan")])
def test_target_outside_unit_interval(tiny, target):
    with raises(wsx.InvalidSettingError, "outside (0, 1]", "fraction of the baseline"):
        run(tiny, target=target)


def test_unknown_target_name(tiny):
    with raises(wsx.InvalidSettingError, "'mlperf-medium'", "mlperf-heavy"):
        run(tiny, target="mlperf-medium")


def test_budget_too_small_for_first_step(tiny):
    with raises(wsx.BudgetTooSmallError, "budget=3", "first step (4 scorings)", "raise budget"):
        run(tiny, budget=3)


def test_budget_not_positive(tiny):
    with raises(wsx.InvalidSettingError, "budget=0", "positive number"):
        run(tiny, budget=0)


def test_subset_outside_range(tiny):
    with raises(wsx.InvalidSettingError, "subset=2.0", "fraction in (0, 1]"):
        run(tiny, subset=2.0)


def test_bits_invalid(tiny):
    with raises(wsx.InvalidSettingError, "bits=0", "positive whole number"):
        run(tiny, bits=0)


# -- scoring ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_scorer_returning_non_finite(tiny, bad):
    with raises(wsx.MetricError, "backend 'tiny'", "one finite metric value per candidate"):
        run(tiny, backend=TinyBackend(*tiny, bad_scores=bad))


def test_metric_returning_nan(tiny):
    def always_nan(outputs, labels):
        return float("nan")

    with raises(wsx.MetricError, "'always_nan'", "non-finite", "finite float"):
        run(tiny, metric=always_nan)


def test_metric_callable_raising(tiny):
    def broken(outputs, labels):
        raise RuntimeError("boom")

    with raises(wsx.MetricError, "'broken' raised RuntimeError: boom", "must return a float"):
        run(tiny, metric=broken)


# -- files -----------------------------------------------------------------------------------------
@pytest.fixture
def journal_dir(tmp_path, tiny):
    run(tiny, out=tmp_path)
    return tmp_path


def test_corrupted_journal(journal_dir, tiny):
    path = journal_dir / "journal.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = '{"knobs": {"fc1": 2}, "val\n'  # damaged in the middle, not a torn tail
    path.write_text("".join(lines))
    with raises(wsx.CorruptFileError, "journal.jsonl is damaged", "line 3", "--restart"):
        run(tiny, out=journal_dir)


def test_foreign_journal(tmp_path, tiny):
    (tmp_path / "journal.jsonl").write_text('{"some": "other tool"}\n')
    with raises(wsx.CorruptFileError, "not a wsx journal", "--restart", "another --out"):
        run(tiny, out=tmp_path)


def test_journal_of_another_run(journal_dir, tiny):
    with raises(JournalMismatchError, "settings differ", "seed: 0 -> 1", "--restart", "another --out"):
        run(tiny, out=journal_dir, seed=1)


def test_corrupted_artifact(tmp_path, tiny):
    path = tmp_path / "a.wsx"
    wsx.export(tiny[0], {"fc1": 4}, path, backend=TinyBackend)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    with raises(wsx.CorruptFileError, "a.wsx", "not a readable safetensors file", "re-export"):
        wsx.load_compressed(path)


def test_foreign_artifact_pickle_is_not_loaded(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))
    with raises(wsx.CorruptFileError, "model.pt", "not a readable safetensors file", "wsx export"):
        wsx.load_compressed(path)


def test_foreign_artifact_plain_safetensors(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"w": np.ones(3, np.float32)}, str(path))
    with raises(wsx.CorruptFileError, "without a wsx manifest", "wsx export"):
        wsx.load_compressed(path)


def test_artifact_from_newer_wsx(tmp_path, tiny):
    from safetensors.numpy import save_file

    from wsx.artifact import read

    path = tmp_path / "a.wsx"
    wsx.export(tiny[0], {"fc1": 4}, path, backend=TinyBackend)
    manifest, arrays = read(path)
    manifest["version"] = 99
    save_file(arrays, str(path), metadata={"format": "wsx-artifact", "wsx": json.dumps(manifest)})
    with raises(wsx.CorruptFileError, "newer wsx", "upgrade wsx"):
        wsx.load_compressed(path)


def test_damaged_results_json(tmp_path):
    (tmp_path / "results.json").write_text("{not json")
    with raises(wsx.CorruptFileError, "results.json", "--out"):
        wsx.Result.load(tmp_path)


# -- export ----------------------------------------------------------------------------------------
def test_export_bits_without_float_type(tmp_path, tiny):
    with raises(wsx.InvalidSettingError, "bits=8", "16, 32 or 64", "bits=32"):
        wsx.export(tiny[0], {"fc1": 4}, tmp_path / "a.wsx", backend=TinyBackend, bits=8)


def test_export_16_bits_of_a_float32_model(tmp_path, tiny):
    with raises(wsx.InvalidSettingError, "'fc1'", "16-bit codebook values would change", "bits=32"):
        wsx.export(tiny[0], {"fc1": 4}, tmp_path / "a.wsx", backend=TinyBackend, bits=16)


def test_export_from_a_changed_model(journal_dir, tiny):
    result = wsx.Result.load(journal_dir)
    weights = {k: v.copy() for k, v in tiny[0].items()}
    weights["fc2"][0, 0] += 1.0
    with raises(wsx.InvalidModelError, "differ from the ones the result was explored on", "original model"):
        wsx.export(weights, result.front[0], journal_dir / "a.wsx", result=result, backend=TinyBackend)


def test_export_candidate_index_outside_front(journal_dir, tiny):
    result = wsx.Result.load(journal_dir)
    with raises(wsx.InvalidSettingError, f"candidate {len(result.front)}", "index"):
        wsx.export(tiny[0], len(result.front), journal_dir / "a.wsx", result=result, backend=TinyBackend)


def test_export_unknown_format(tmp_path, tiny):
    with raises(wsx.InvalidSettingError, "format='tflite'", "coreml", "onnx"):
        wsx.export(tiny[0], {"fc1": 4}, tmp_path / "a.tflite", backend=TinyBackend, format="tflite")


# -- export to Core ML, ONNX, Keras ------------------------------------------------------------------
def test_coreml_k_above_256(lenet, tmp_path):
    pytest.importorskip("coremltools")
    model, (x, _) = lenet
    with raises(wsx.InvalidSettingError, "'conv3.weight'", "k=300", "256", "exclude"):
        wsx.export(model, {"conv1.weight": 4, "conv3.weight": 300}, tmp_path / "m.mlpackage", example_inputs=x[:1])


def test_coreml_model_coremltools_cannot_convert(tmp_path):
    pytest.importorskip("coremltools")
    import torch

    class Digamma(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return torch.digamma(self.fc(x))

    with raises(wsx.InvalidModelError, "coremltools cannot convert", "'digamma'", "replace", "format='onnx'"):
        wsx.export(Digamma(), {"fc.weight": 2}, tmp_path / "m.mlpackage", example_inputs=np.ones((1, 4), np.float32))


def test_coreml_weights_merged_into_another_op(tmp_path):
    pytest.importorskip("coremltools")
    import torch

    class Doubled(torch.nn.Module):  # the converter folds 2 * weight into a new constant
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return torch.nn.functional.linear(x, 2 * self.fc.weight)

    with raises(wsx.InvalidModelError, "'fc.weight'", "cannot become lookup tables", "exclude"):
        wsx.export(Doubled(), {"fc.weight": 2}, tmp_path / "m.mlpackage", example_inputs=np.ones((1, 4), np.float32))


def test_coreml_framework_without_converter(tmp_path):
    pytest.importorskip("jax")
    model, _ = wsx.zoo.load("lenet5-digits", framework="jax")
    with raises(wsx.InvalidModelError, "coremltools has no converter for jax", "format='wsx'"):
        wsx.export(model, {"params/fc1/kernel": 4}, tmp_path / "m.mlpackage")


def test_coreml_without_coremltools(lenet, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "coremltools", None)
    model, (x, _) = lenet
    with raises(wsx.PluginUnavailableError, "coremltools is not installed", "pip install 'wsx[coreml]'"):
        wsx.export(model, {"fc1.weight": 4}, tmp_path / "m.mlpackage", example_inputs=x[:1])


def test_coreml_per_channel_luts_before_ios18(lenet, tmp_path):
    pytest.importorskip("coremltools")
    from wsx_plugins.approximations.weight_sharing import WeightSharing

    model, (x, _) = lenet
    with raises(wsx.InvalidSettingError, "'fc1.weight'", "84 codebooks", "target='iOS18'"):
        wsx.export(model, {"fc1.weight": 4}, tmp_path / "m.mlpackage", example_inputs=x[:1], target="iOS16",
                   approximation=WeightSharing(granularity="channel"))


def test_coreml_bad_target_or_precision(lenet, tmp_path):
    pytest.importorskip("coremltools")
    model, (x, _) = lenet
    with raises(wsx.InvalidSettingError, "target='iOS15'", "iOS16", "iOS18"):
        wsx.export(model, {"fc1.weight": 4}, tmp_path / "m.mlpackage", example_inputs=x[:1], target="iOS15")
    with raises(wsx.InvalidSettingError, "precision='int8'", "float16"):
        wsx.export(model, {"fc1.weight": 4}, tmp_path / "m.mlpackage", example_inputs=x[:1], precision="int8")


def test_export_without_example_inputs(lenet, tmp_path):
    pytest.importorskip("coremltools")
    model, _ = lenet
    with raises(wsx.InvalidSettingError, "example inputs", "example_inputs="):
        wsx.export(model, {"fc1.weight": 4}, tmp_path / "m.mlpackage")


def test_dense_export_of_another_framework(lenet, tmp_path):
    model, (x, _) = lenet
    with raises(wsx.InvalidModelError, "format='keras' writes tensorflow models", "torch model", "'onnx'"):
        wsx.export(model, {"fc1.weight": 4}, tmp_path / "m.keras", example_inputs=x[:1])


def test_damaged_mlpackage(tmp_path):
    pytest.importorskip("coremltools")
    from wsx.mlpackage import inspect as inspect_package

    (tmp_path / "fake.mlpackage").mkdir()
    with raises(wsx.CorruptFileError, "fake.mlpackage", "no Manifest.json", ".mlpackage"):
        inspect_package(tmp_path / "fake.mlpackage")
    (tmp_path / "fake.mlpackage" / "Manifest.json").write_text('{"itemInfoEntries": {}}')
    with raises(wsx.CorruptFileError, "does not name the model spec"):
        inspect_package(tmp_path / "fake.mlpackage")


# -- CLI -------------------------------------------------------------------------------------------
def test_cli_model_spec_without_colon(capsys):
    from wsx.cli import main

    assert main(["explore", "--model", "nocolon", "--data", "x:y"]) == 2
    assert "'nocolon' is not MODULE:ATTR" in capsys.readouterr().err


def test_out_is_a_file(tmp_path, tiny):
    target = tmp_path / "file.txt"
    target.write_text("x")
    with raises(wsx.InvalidSettingError, "is a file", "give a directory"):
        run(tiny, out=target)


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    from wsx.cli import main

    assert main(["inspect", str(tmp_path / "missing.wsx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wsx: error:") and "does not exist" in err and "Traceback" not in err


# -- the docs table ------------------------------------------------------------------------------
def test_every_docs_row_names_an_existing_test():
    """docs/errors.md lists each case with its test; every named test exists here and vice versa."""
    text = DOCS.read_text()
    named = set(re.findall(r"`(test_\w+)`", text))
    here = {name for name in globals() if name.startswith("test_") and name != "test_every_docs_row_names_an_existing_test"}
    assert named == here
    for cls in re.findall(r"\| `(\w+Error)` \|", text):
        assert hasattr(wsx.errors, cls)
