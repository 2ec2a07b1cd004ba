"""Bad input: one test per row of docs/errors.md. Each asserts the WsxError subclass and that the
message names what was wrong and what to do."""
from __future__ import annotations

import errno
import json
import os
import pickle
import re
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

import wsx
from _tiny import TinyBackend, make_mlp
import wsx.threads
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
    with raises(wsx.InvalidModelError, "Sequential has no layers of interest", "convolution, linear, embedding"):
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


def test_early_rejection_setting(tiny):
    with raises(wsx.InvalidSettingError, "early_rejection=1.5", "exact", "confidence", "False"):
        run(tiny, early_rejection=1.5)


def test_metric_outside_its_declared_bounds(tiny):
    wrong = wsx.metric(lambda out, y: 3.0 * (out.argmax(1) == y), per_sample=True, bounds=(0, 1), name="wrong")
    weights, data = tiny
    with raises(wsx.MetricError, "'wrong'", "declares per-sample values in [0.0, 1.0]", "bounds=", "early_rejection=False"):
        run(tiny, backend=TinyBackend(weights, data, batch_size=64, metric=wrong), knobs=[2, 4], target=0.99)


def test_unknown_k_grid(tiny):
    with raises(wsx.InvalidSettingError, "k_grid='every'", "'bits'", "'log'"):
        run(tiny, knobs=None, approximation=wsx.plugins.approximations()["weight-sharing"](k_grid="every"))


def test_unknown_layerwise_step(tiny):
    with raises(wsx.InvalidSettingError, "layerwise='all'", "'search'", "'scan'"):
        run(tiny, strategy=wsx.plugins.strategies()["divide-and-conquer"](layerwise="all"))


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


def test_data_of_unknown_form(tiny):
    with raises(wsx.InvalidDataError, "data must be", "(inputs, labels)", "got str"):
        run(tiny, backend=TinyBackend(tiny[0], "data.csv"))


def test_dict_inputs_of_different_lengths():
    torch = pytest.importorskip("torch")
    model = _TwoInputs()
    data = {"input_ids": np.zeros((6, 4), np.int64), "attention_mask": np.ones((5, 4), np.int64)}
    with raises(wsx.InvalidDataError, "inputs['attention_mask'] has 5 samples", "inputs['input_ids'] has 6",
                "one row per sample"):
        wsx.explore(model, data, metric="cosine", target=0.99, progress=False)
    assert torch is not None


def test_loader_batches_differ():
    pytest.importorskip("torch")
    batches = [{"input_ids": np.zeros((2, 4), np.int64), "attention_mask": np.ones((2, 4), np.int64)},
               {"input_ids": np.zeros((2, 4), np.int64)}]
    with raises(wsx.InvalidDataError, "batch 1", "other entries", "same inputs and labels"):
        wsx.explore(_TwoInputs(), batches, metric="cosine", target=0.99, progress=False)


def test_top1_labels_not_integral(tiny):
    weights, (x, y) = tiny
    with raises(wsx.InvalidDataError, "integral class indices", "3.7", "not rounded"):
        run((weights, (x, np.where(np.arange(len(y)) == 0, 3.7, y))))


def test_top1_without_labels(tiny):
    weights, (x, _) = tiny
    with raises(wsx.InvalidDataError, "'top1' compares the outputs with labels", "data has none",
                "'agreement', 'cosine'"):
        run(tiny, backend=TinyBackend(weights, (x, None)))


def test_labels_shaped_unlike_outputs(tiny):
    weights, (x, y) = tiny
    with raises(wsx.InvalidDataError, "'mse' compares outputs of shape (128, 5)", "labels of shape (128,)"):
        run((weights, (x, y.astype(float))), metric="mse", max_increase=0.1)


def test_output_key_that_does_not_exist():
    pytest.importorskip("torch")
    data = {"input_ids": np.zeros((6, 4), np.int64), "attention_mask": np.ones((6, 4), np.int64)}
    with raises(wsx.InvalidSettingError, "output='logits' is not among the model's outputs",
                "'last_hidden_state'", "'pooler_output'"):
        wsx.explore(_TwoInputs(), data, metric="cosine", target=0.99, output="logits", progress=False)


def test_metric_returning_non_scalar(tiny):
    def per_sample(outputs, labels):
        return (outputs.argmax(1) == labels).astype(float)

    with raises(wsx.MetricError, "'per_sample' returned an array of shape", "not a scalar", "per_sample=True"):
        run(tiny, metric=per_sample)


def test_unknown_metric(tiny):
    with raises(wsx.InvalidSettingError, "unknown metric 'f1'", "top1", "cosine", "wsx.metric"):
        run(tiny, metric="f1")


def test_metric_differs_from_the_backends(tiny):
    weights, data = tiny
    with raises(wsx.InvalidSettingError, "explore(metric=...) gives 'agreement'", "created with metric 'top1'",
                "one place"):
        run(tiny, backend=TinyBackend(weights, data, metric="top1"), metric="agreement")


class _TwoInputs:
    """A torch module taking (input_ids, attention_mask) and returning a dict (built lazily)."""

    def __new__(cls):
        import torch
        from torch import nn

        class TwoInputs(nn.Module):
            def __init__(self):
                super().__init__()
                self.embed = nn.Embedding(10, 4)
                self.proj = nn.Linear(4, 4)
                self.pool = nn.Linear(4, 4)

            def forward(self, input_ids, attention_mask):
                h = self.proj(self.embed(input_ids)) * attention_mask[..., None]
                return {"last_hidden_state": h, "pooler_output": torch.tanh(self.pool(h[:, 0]))}

        torch.manual_seed(0)
        return TwoInputs().eval()


# -- settings --------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", [0, 1.5, float("nan")])
def test_target_outside_unit_interval(tiny, target):
    with raises(wsx.InvalidSettingError, "outside (0, 1]", "fraction of the baseline"):
        run(tiny, target=target)


def test_unknown_target_name(tiny):
    with raises(wsx.InvalidSettingError, "'mlperf-medium'", "mlperf-heavy"):
        run(tiny, target="mlperf-medium")


@pytest.mark.parametrize("kwargs", [{}, {"target": 0.99}, {"target": "mlperf-light"}])
def test_fraction_target_on_a_lower_is_better_metric(tiny, kwargs):
    with raises(wsx.InvalidSettingError, "'mse' is lower-is-better", "max_increase="):
        run(tiny, metric="mse", **kwargs)


@pytest.mark.parametrize("metric, kwargs, needles", [
    ("mse", {"max_drop": 0.1}, ["max_drop is for higher-is-better", "max_increase="]),
    ("top1", {"max_increase": 0.1}, ["max_increase is for lower-is-better", "max_drop="])])
def test_tolerance_of_the_wrong_direction(tiny, metric, kwargs, needles):
    with raises(wsx.InvalidSettingError, *needles):
        run(tiny, metric=metric, **kwargs)


def test_target_and_tolerance_together(tiny):
    with raises(wsx.InvalidSettingError, "target and max_drop are given", "pass one target"):
        run(tiny, target=0.99, max_drop=0.5)


def test_target_true(tiny):
    with raises(wsx.InvalidSettingError, "target=True", "fraction in (0, 1]"):
        run(tiny, target=True)


def test_fraction_of_a_negative_baseline(tiny):
    def log_likelihood(outputs, labels):
        return -1.5

    with raises(wsx.InvalidSettingError, "'log_likelihood' is -1.5", "fraction of a negative value",
                "max_drop="):
        run(tiny, metric=log_likelihood)


def test_budget_too_small_for_first_step(tiny):
    with raises(wsx.BudgetTooSmallError, "budget=3", "first step (4 scorings)", "raise budget"):
        run(tiny, budget=3)


def test_budget_not_positive(tiny):
    with raises(wsx.InvalidSettingError, "budget=0", "positive number"):
        run(tiny, budget=0)


def test_threads_not_positive(tiny, monkeypatch):
    with raises(wsx.InvalidSettingError, "threads=0", "whole number of threads"):
        run(tiny, threads=0)
    monkeypatch.setenv("WSX_THREADS", "lots")
    with raises(wsx.InvalidSettingError, "WSX_THREADS", "whole number of threads"):
        wsx.threads.auto_threads()


def test_scoring_precision_invalid():
    torch = pytest.importorskip("torch")
    cls = wsx.plugins.backends()["torch"]
    model, x = torch.nn.Linear(3, 2), np.zeros((4, 3), np.float32)
    with raises(wsx.InvalidSettingError, "precision='int8'", "'fp32', 'bf16' or 'fp16'"):
        cls(model, x, precision="int8")
    with raises(wsx.InvalidSettingError, "precision='fp16' needs a GPU", "'bf16'"):
        cls(model, x, precision="fp16", device="cpu")


def test_prefix_path_unknown():
    torch = pytest.importorskip("torch")
    with raises(wsx.InvalidSettingError, "prefix_path='trace'", "auto, fx, hooks"):
        wsx.plugins.backends()["torch"](torch.nn.Linear(3, 2), np.zeros((4, 3), np.float32), prefix_path="trace")


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
    from wsx.plugins import install_hint

    with raises(wsx.PluginUnavailableError, "coremltools is not installed", install_hint("coreml")):
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


# -- hardening: arguments are checked before anything is scored (issue 15) ---------------------------
class Counting(TinyBackend):
    """Counts score() calls: a refused argument must cost no scoring."""

    calls = 0

    def score(self, population, subset=None):
        Counting.calls += 1
        return super().score(population, subset)


def refused_before_scoring(tiny, cls, *needles, **kw):
    Counting.calls = 0
    with raises(cls, *needles):
        run(tiny, backend=Counting(*tiny), **kw)
    assert Counting.calls == 0


@pytest.mark.parametrize("seed", [-1, "abc", 1.5, None, True])
def test_seed_invalid(tiny, seed):
    refused_before_scoring(tiny, wsx.InvalidSettingError, f"seed={seed!r}", "non-negative whole number", seed=seed)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, "8"])
def test_batch_size_invalid(tiny, batch_size):
    refused_before_scoring(tiny, wsx.InvalidSettingError, f"batch_size={batch_size!r}", "positive whole number",
                           batch_size=batch_size)


@pytest.mark.parametrize("knobs", [[], {"fc1": []}, "4", {"fc1": "4"}])
def test_knobs_empty(tiny, knobs):
    refused_before_scoring(tiny, wsx.InvalidSettingError, "non-empty list", knobs=knobs)


def test_knobs_naming_an_unknown_layer(tiny):
    refused_before_scoring(tiny, wsx.InvalidSettingError, "'no-such-layer'", "not layers of interest", "fc1",
                           knobs={"no-such-layer": [2, 4]})


@pytest.mark.parametrize("knob", ["abc", None, float("nan")])
def test_knob_of_the_wrong_type(tiny, knob):
    refused_before_scoring(tiny, wsx.InvalidSettingError, f"{knob!r}", "'fc1'", knobs={"fc1": [knob]})


@pytest.mark.parametrize("bits", [7, 12, 2.5])
def test_bits_without_a_number_format(tiny, bits):
    refused_before_scoring(tiny, wsx.InvalidSettingError, f"bits={bits!r}", "8, 16, 32, 64", bits=bits)


@pytest.mark.parametrize("kw", [{"subset": "abc"}, {"subset": float("nan")}, {"budget": "10"},
                                {"time_limit": "1s"}, {"min_subset": -5}, {"out": 3}])
def test_other_arguments_of_the_wrong_type(tiny, kw):
    (name, value), = kw.items()
    refused_before_scoring(tiny, wsx.InvalidSettingError, f"{name}={value!r}", **kw)


def test_data_none(lenet):
    with raises(wsx.InvalidDataError, "data=None", "(inputs, labels)"):
        wsx.explore(lenet[0], None, progress=False)


def test_inputs_that_are_strings(lenet):
    model, (x, y) = lenet
    with raises(wsx.InvalidDataError, "numeric arrays", "cannot read"):
        wsx.explore(model, (np.full((len(y), 1, 8, 8), "a"), y), progress=False)


@pytest.mark.parametrize("change", ["uint8", "shape"])
def test_inputs_the_model_cannot_take(lenet, change):
    model, (x, y) = lenet
    x = np.asarray(x)
    bad = (x * 16).astype(np.uint8) if change == "uint8" else x.reshape(len(x), 4, 4, 4)
    with raises(wsx.InvalidDataError, "cannot run on the scoring data", "dtype and shape"):
        wsx.explore(model, (bad, y), progress=False)


def test_device_that_is_not_there(lenet):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with raises(wsx.InvalidSettingError, "device='cuda'", "device='cpu'"):
        wsx.explore(lenet[0], lenet[1], device="cuda", progress=False)


# -- hardening: the model and data are sane before a front is believed ------------------------------
@pytest.mark.parametrize("tensor", ["fc1.bias", "conv2.bias"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_tensor_outside_the_layers(lenet, tensor, bad):
    import copy

    torch = pytest.importorskip("torch")
    model = copy.deepcopy(lenet[0])
    with torch.no_grad():
        model.get_parameter(tensor)[0] = bad
    with raises(wsx.InvalidModelError, "NaN or Inf outputs", tensor, "fix the model"):
        wsx.explore(model, lenet[1], progress=False)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_inputs(tiny, bad):
    weights, (x, y) = tiny
    x = x.copy()
    x[7, 3] = bad
    with raises(wsx.InvalidDataError, "inputs hold NaN or Inf", "sample 7"):
        run((weights, (x, y)), backend=TinyBackend(weights, (x, y)))


# -- hardening: one run per out dir, OS errors name the path ----------------------------------------
def test_out_dir_in_use_by_another_run(tmp_path, tiny):
    from wsx.files import OutDirLock

    with OutDirLock(tmp_path):
        refused_before_scoring(tiny, wsx.OutputError, "in use by another wsx run", f"process {os.getpid()}",
                               "another --out", out=tmp_path)
    assert not (tmp_path / "journal.jsonl").exists()


def test_out_under_a_file(tmp_path, tiny):
    (tmp_path / "file.txt").write_text("x")
    refused_before_scoring(tiny, wsx.InvalidSettingError, "file.txt, which is a file", out=tmp_path / "file.txt" / "run")


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_out_dir_not_writable(tmp_path, tiny, monkeypatch, code):
    real = os.open

    def refuse(path, *args, **kw):
        if str(path).startswith(str(tmp_path)):
            raise OSError(code, os.strerror(code), str(path))
        return real(path, *args, **kw)

    monkeypatch.setattr(os, "open", refuse)
    refused_before_scoring(tiny, wsx.OutputError, str(tmp_path), os.strerror(code), out=tmp_path)


def test_full_disk_keeps_the_journal(tmp_path, tiny, monkeypatch):
    """ENOSPC while journaling: OutputError naming the journal, no partial line; the same call then resumes."""
    real = os.write
    writes = {"n": 0}

    def full(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("journal.jsonl"):
            writes["n"] += 1
            if writes["n"] > 5:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", full)
    # the scan of 2 layers x 4 k makes more than 5 scorings
    kw = dict(knobs=[2, 4, 8, 16], strategy=wsx.plugins.strategies()["divide-and-conquer"](
        pop_size=4, generations=1, layerwise="scan"))
    with raises(wsx.OutputError, "journal.jsonl", "disk is full", "resumes"):
        run(tiny, out=tmp_path, **kw)
    monkeypatch.undo()
    from wsx.journal import read as read_journal

    assert len(read_journal(tmp_path / "journal.jsonl")[1]) == 5
    assert (tmp_path / "journal.jsonl").read_bytes().endswith(b"\n")
    result = run(tiny, out=tmp_path, **kw)
    assert result.extras["journal"]["replayed"] == 5


def test_full_disk_while_saving_results(tmp_path, tiny, monkeypatch):
    import pandas as pd

    def full(*args, **kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    with raises(wsx.OutputError, "results.csv", "disk is full"):
        run(tiny, out=tmp_path)
    monkeypatch.undo()
    assert not list(tmp_path.glob(".*tmp*")) and not (tmp_path / "results.csv").exists()
    again = run(tiny, out=tmp_path)
    assert again.extras["journal"]["scored"] == 0 and again.scorings == len(again.history)


def test_export_to_a_path_that_cannot_be_written(tmp_path, tiny, monkeypatch):
    (tmp_path / "file.txt").write_text("x")
    with raises(wsx.OutputError, "file.txt", "pick another --out"):
        wsx.export(tiny[0], {"fc1": 4}, tmp_path / "file.txt" / "a.wsx", backend=TinyBackend)
    from safetensors import numpy as st_numpy

    def full(*args, **kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(st_numpy, "save_file", full)
    with raises(wsx.OutputError, "a.wsx", "disk is full"):
        wsx.export(tiny[0], {"fc1": 4}, tmp_path / "a.wsx", backend=TinyBackend)
    assert not list(tmp_path.glob("a.wsx*"))


# -- hardening: a journal is trusted only when it checks out ---------------------------------------
def relu_to_tanh(model):
    """The same weights under another forward (tanh for relu), in a class of the same name."""
    import copy

    torch = pytest.importorskip("torch")
    base = type(model)

    def forward(self, x):
        x = self.pool(torch.tanh(self.conv1(x)))
        x = self.pool(torch.tanh(self.conv2(x)))
        x = torch.tanh(self.conv3(x)).flatten(1)
        return self.fc2(torch.tanh(self.fc1(x)))

    other = copy.deepcopy(model)
    other.__class__ = type(base.__name__, (base,), {"forward": forward, "__qualname__": base.__qualname__})
    assert repr(other) == repr(model)
    return other


def test_journal_of_a_model_with_another_forward(tmp_path, lenet):
    model, data = lenet
    kw = dict(strategy="random", budget=4, subset=None, progress=False, out=tmp_path)
    wsx.explore(model, data, **kw)
    with raises(JournalMismatchError, "computation differs", "--restart"):
        wsx.explore(relu_to_tanh(model), data, **kw)


def test_journal_of_another_metric_with_the_same_name(journal_dir, tiny):
    def top1(outputs, labels):
        return float((outputs.argmax(axis=1) == labels).mean())

    def other(outputs, labels):
        return float((outputs.argmax(axis=1) != labels).mean())

    other.__name__ = other.__qualname__ = "top1"
    run(tiny, out=journal_dir, metric=top1, restart=True)
    with raises(JournalMismatchError, "metric's code differs", "--restart"):
        run(tiny, out=journal_dir, metric=other)


def edit_record(path, index, **fields):
    """Change fields of record ``index`` (1 = the first after the header), keeping its checksum valid."""
    from wsx.journal import checksum

    lines = path.read_text().splitlines()
    rec = json.loads(lines[index])
    rec.update(fields)
    rec["h"] = checksum(rec)
    lines[index] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("knob", [10 ** 6, "abc", 2.5, None])
def test_journal_record_with_an_invalid_knob(journal_dir, tiny, knob):
    edit_record(journal_dir / "journal.jsonl", 2, knobs={"fc1": knob}, value=0.99)
    with raises(wsx.CorruptFileError, "record 3", "invalid knob", "'fc1'", "--restart"):
        run(tiny, out=journal_dir)


def test_journal_record_naming_an_unknown_layer(journal_dir, tiny):
    edit_record(journal_dir / "journal.jsonl", 1, knobs={"fc9": 2})
    with raises(wsx.CorruptFileError, "record 2", "'fc9'", "does not have"):
        run(tiny, out=journal_dir)


@pytest.mark.parametrize("value", [1.5, -0.1])
def test_journal_record_outside_the_metric_range(journal_dir, tiny, value):
    edit_record(journal_dir / "journal.jsonl", 1, value=value)
    with raises(wsx.CorruptFileError, "record 2", "outside the metric's range"):
        run(tiny, out=journal_dir)


def test_journal_record_edited_by_hand(journal_dir, tiny):
    path = journal_dir / "journal.jsonl"
    lines = path.read_text().splitlines()
    rec = json.loads(lines[1])
    rec["value"] = 0.99  # the checksum no longer matches
    lines[1] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    with raises(wsx.CorruptFileError, "record 2", "checksum", "--restart"):
        run(tiny, out=journal_dir)


def test_journal_that_does_not_reproduce(journal_dir, tiny):
    """In-range values with valid checksums that a re-scoring contradicts (forged, or a change no
    fingerprint shows) are refused: a few replayed candidates are re-scored first."""
    path = journal_dir / "journal.jsonl"
    for i in range(1, len(path.read_text().splitlines())):
        rec = json.loads(path.read_text().splitlines()[i])
        edit_record(path, i, value=round(min(rec["value"] + 0.05, 1.0) if rec["value"] < 0.9 else 0.5, 6))
    with raises(JournalMismatchError, "does not reproduce", "journal says", "--restart"):
        run(tiny, out=journal_dir)


def edit_header(path, **fields):
    lines = path.read_text().splitlines()
    path.write_text("\n".join([json.dumps({**json.loads(lines[0]), **fields})] + lines[1:]) + "\n")


def test_journal_with_another_baseline(journal_dir, tiny):
    edit_header(journal_dir / "journal.jsonl", baseline=0.5)
    with raises(JournalMismatchError, "unmodified model scores", "recorded 0.5", "--restart"):
        run(tiny, out=journal_dir)


def test_journal_of_an_older_wsx(journal_dir, tiny):
    edit_header(journal_dir / "journal.jsonl", version=1)
    with raises(JournalMismatchError, "older wsx", "--restart"):
        run(tiny, out=journal_dir)


# -- hardening: files wsx reads are checked before they are believed -------------------------------
def forge_artifact(path, edit):
    from safetensors.numpy import save_file

    from wsx.artifact import read

    manifest, arrays = read(path)
    edit(manifest, arrays)
    save_file(arrays, str(path), metadata={"format": "wsx-artifact", "wsx": json.dumps(manifest)})


@pytest.mark.parametrize("weights", [2 ** 28, 2 ** 32, 2 ** 40])
def test_artifact_declaring_more_weights_than_its_bytes(tmp_path, tiny, weights):
    """A k=1 layer stores no index bytes; its declared size is bounded before anything is allocated."""
    import tracemalloc

    path = tmp_path / "a.wsx"
    wsx.export(tiny[0], {"fc1": 1}, path, backend=TinyBackend)

    def bomb(manifest, arrays):
        entry = next(e for e in manifest["layers"] if e["name"] == "fc1")
        entry["shape"], entry["weights"] = [weights], weights
        entry["axes"] = [0]

    forge_artifact(path, bomb)
    assert path.stat().st_size < 10_000
    tracemalloc.start()
    try:
        with raises(wsx.CorruptFileError, "a.wsx", f"declares {weights * 4}", "max_bytes"):
            wsx.load_compressed(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 ** 22
    assert wsx.artifact.inspect(path)["layers"][0]["weights"] == weights  # reading the manifest allocates nothing


@pytest.mark.parametrize("field", ["bits", "granularity", "dtype", "aliases", "tensors", "layers_of_interest"])
def test_artifact_manifest_with_a_missing_or_wrong_field(tmp_path, tiny, field):
    path = tmp_path / "a.wsx"
    wsx.export(tiny[0], {"fc1": 4}, path, backend=TinyBackend)

    def edit(manifest, arrays):
        if field in ("granularity", "dtype"):
            manifest["layers"][0][field] = ["x"]
        elif field == "aliases":
            manifest["aliases"] = {"fc2": ["fc1"]}
        elif field == "layers_of_interest":
            manifest[field] = ["fc1"]
        else:
            del manifest[field]

    forge_artifact(path, edit)
    from wsx.cli import main

    for read in (wsx.load_compressed, wsx.artifact.inspect):
        with raises(wsx.CorruptFileError, "a.wsx", "manifest"):
            read(path)
    assert main(["inspect", str(path)]) == 2


@pytest.mark.parametrize("edit", ["front-not-objects", "knobs-a-string", "accuracy-text", "baseline-list",
                                  "settings-list", "meets-target-text"])
def test_tampered_results_json(journal_dir, edit, capsys):
    from wsx.cli import main

    path = journal_dir / "results.json"
    d = json.loads(path.read_text())
    if edit == "front-not-objects":
        d["front"] = ["x", 3]
    elif edit == "knobs-a-string":
        d["front"][0]["knobs"] = "fc1=4"
    elif edit == "accuracy-text":
        d["front"][0]["accuracy"] = "high"
    elif edit == "baseline-list":
        d["baseline"] = [0.9]
    elif edit == "settings-list":
        d["settings"] = [1]
    else:
        d["front"][0]["meets_target"] = "yes"
    path.write_text(json.dumps(d))
    with raises(wsx.CorruptFileError, "results.json", "malformed"):
        wsx.Result.load(journal_dir)
    assert main(["export", str(journal_dir), "--out", str(journal_dir / "a.wsx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wsx: error:") and "Traceback" not in err


# -- hardening: the CLI says `wsx: error:` for every user error --------------------------------------
@pytest.mark.parametrize("argv, needle", [
    (["demo", "--subset", "abc"], "--subset 'abc'"),
    (["demo", "--seed", "abc"], "invalid int value: 'abc'"),
    (["demo", "--seed", "-1"], "seed=-1"),
    (["demo", "--bits", "7"], "bits=7"),
    (["demo", "--budget", "x"], "invalid int value"),
    (["nope"], "invalid choice"),
])
def test_cli_user_errors(argv, needle, capsys):
    from wsx.cli import main

    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's own errors exit from parse_args
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err
    assert "wsx: error:" in err and needle in err and "Traceback" not in err


# -- plugin settings, --config, bench -------------------------------------------------------------
def test_unknown_plugin_setting(tiny):
    with raises(wsx.InvalidSettingError, "strategy 'nsga2' has no parameter 'pop'", "pop_size", "generations"):
        run(tiny, strategy="nsga2:pop=3")
    with raises(wsx.InvalidSettingError, "approximation 'pruning' has no parameter 'granularity'", "sparsities"):
        run(tiny, approximation="pruning:granularity=channel")
    with raises(wsx.InvalidSettingError, "clusterer 'sorted1d' has no parameter 'k'", "init"):
        run(tiny, clusterer="sorted1d:k=3")


def test_malformed_plugin_spec(tiny):
    with raises(wsx.InvalidSettingError, "'nsga2:pop_size'", "not key=value", "nsga2:key=value"):
        run(tiny, strategy="nsga2:pop_size")
    with raises(wsx.InvalidSettingError, "give a plugin name"):
        run(tiny, strategy=":pop_size=3")


def test_config_file_errors(tmp_path, capsys):
    from wsx.cli import main

    cases = [("run.toml", 'strategee = "nsga2"\n', "unknown setting 'strategee'", "strategy"),
             ("run.toml", "budget = \n", "not valid TOML", "run.toml"),
             ("run.toml", '[strategy]\npop_size = 3\n', "needs name =", "strategy table"),
             ("run.json", "[1, 2]", "not a table of settings", "run.json")]
    for name, text, *needles in cases:
        (tmp_path / name).write_text(text)
        assert main(["explore", "--config", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert all(n in err for n in needles), err
    assert main(["explore", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read it" in capsys.readouterr().err


def test_model_attr_needing_arguments(tmp_path, monkeypatch, capsys):
    from wsx.cli import main

    (tmp_path / "needs_args.py").write_text("def build(width):\n    return width\n")
    monkeypatch.chdir(tmp_path)
    assert main(["explore", "--model", "needs_args:build", "--data", "needs_args:build"]) == 2
    assert "build needs arguments" in capsys.readouterr().err
    assert main(["explore", "--data", "needs_args:build"]) == 2
    assert "--model MODULE:ATTR is required" in capsys.readouterr().err


def test_bench_budget_below_a_first_step(tiny):
    with raises(wsx.BudgetTooSmallError, "divide-and-conquer needs 6 scorings", "budget 5", "nothing was run"):
        wsx.bench(tiny[0], tiny[1], strategies=["divide-and-conquer", "random"], budgets=[5, 50], seeds=1,
                  backend=TinyBackend, knobs=[2, 4, 8, 16], subset=None, log=None)


def test_bench_seeds_and_budgets(tiny):
    kw = dict(strategies=["random"], backend=TinyBackend, knobs=[2, 4], subset=None, log=None)
    with raises(wsx.InvalidSettingError, "seeds=[3, 3]", "distinct"):
        wsx.bench(tiny[0], tiny[1], seeds=[3, 3], **kw)
    with raises(wsx.InvalidSettingError, "budgets=-1", "positive"):
        wsx.bench(tiny[0], tiny[1], budgets=[-1], **kw)
    with raises(wsx.InvalidSettingError, "strategies", "distinct"):
        wsx.bench(tiny[0], tiny[1], **{**kw, "strategies": ["random", "random"]})


def test_bench_exhaustive_front_unusable(tiny, tmp_path):
    kw = dict(strategies=["random"], backend=TinyBackend, knobs=[2, 4], subset=None, log=None, seeds=1)
    (tmp_path / "f.csv").write_text("cr,al\n1,2\n")
    with raises(wsx.InvalidSettingError, "f.csv", "compression_rate", "accuracy_loss"):
        wsx.bench(tiny[0], tiny[1], exhaustive_front=tmp_path / "f.csv", **kw)
    with raises(wsx.InvalidSettingError, "(loss, CR) rows"):
        wsx.bench(tiny[0], tiny[1], exhaustive_front=[[1.0, float("nan")]], **kw)


# -- executors (issue 11): the cases a Ray cluster raises are in test_ray.py / test_ray_cluster.py --------
def test_unknown_executor(tiny):
    with raises(wsx.PluginNotFoundError, "unknown executor 'dask'", "available", "ray", "serial"):
        run(tiny, executor="dask")


@pytest.mark.parametrize("spec, needles", [
    ("ray:workers=0", ("workers=0", "whole number > 0")),
    ("ray:workers=1.5", ("workers=1.5", "whole number > 0")),
    ("ray:gpus_per_worker=-1", ("gpus_per_worker=-1", "number >= 0")),
    ("ray:address=headnode", ("address='headnode' is not HOST:PORT", "ray start --head --port=6379")),
    ("ray:nodes=3", ("executor 'ray' has no parameter 'nodes'", "its parameters are: address, workers")),
])
def test_executor_settings_out_of_range(spec, needles):
    pytest.importorskip("ray")
    from wsx.executor import resolve_executor

    with raises(wsx.InvalidSettingError, *needles):
        resolve_executor(spec)


def test_cli_ray_options_with_another_executor(capsys):
    from wsx.cli import main

    assert main(["demo", "--executor", "serial", "--workers", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--workers set(s) the ray executor, but --executor is 'serial'" in err and "--executor ray" in err


def test_ray_not_installed(tiny, monkeypatch):
    from wsx_plugins.executors.ray_executor import RayExecutor

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with raises(wsx.PluginUnavailableError, "executor 'ray' is not available", "ray is not installed",
                "pip install 'wsx[ray]'"):
        run(tiny, executor="ray")
    with raises(wsx.PluginUnavailableError, "needs Ray, which is not installed", "pip install 'wsx[ray]'"):
        run(tiny, executor=RayExecutor(workers=2))
    row = next(r for r in wsx.plugins.info() if (r.kind, r.name) == ("executor", "ray"))
    assert not row.available and "wsx[ray]" in row.reason
    assert run(tiny, budget=4).scorings == 4  # nothing else breaks: the serial executor runs


def test_ray_address_unreachable(tiny, tmp_path):
    ray = pytest.importorskip("ray")
    from wsx_plugins.executors.ray_executor import RayExecutor

    assert not ray.is_initialized()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with raises(wsx.ExecutorError, f"cannot reach a Ray cluster at 127.0.0.1:{port}",
                f"ray start --head --port={port}", "--ray-address auto"):
        run(tiny, executor=RayExecutor(address=f"127.0.0.1:{port}"), out=tmp_path / "run")
    assert not (tmp_path / "run" / "results.json").exists()  # no partial result written as final
    assert not ray.is_initialized()


# -- the docs table ------------------------------------------------------------------------------
def test_every_docs_row_names_an_existing_test():
    """docs/errors.md lists each case with its test; every named test exists here and vice versa."""
    text = DOCS.read_text()
    named = set(re.findall(r"`(test_\w+)`", text))
    here = {name for name in globals() if name.startswith("test_") and name != "test_every_docs_row_names_an_existing_test"}
    assert named == here
    for cls in re.findall(r"\| `(\w+Error)` \|", text):
        assert hasattr(wsx.errors, cls)


# -- sensitivity-weighted clustering -------------------------------------------------------------------
def _sharing(**kw):
    return wsx.plugins.approximations()["weight-sharing"](**kw)


def test_sensitivity_unknown(tiny):
    with raises(wsx.InvalidSettingError, "sensitivity='hessian'", "None", "'fisher'"):
        run(tiny, approximation=_sharing(sensitivity="hessian"))


def test_sensitivity_on_a_backend_without_gradients(tiny):
    with raises(wsx.InvalidSettingError, "needs gradients", "tiny", "sensitivity=None"):
        run(tiny, approximation=_sharing(sensitivity="fisher"))


def test_sensitivity_without_importances(tiny):
    from wsx.layers import LayerInfo

    layer = LayerInfo("fc1", (24, 8), 192, "Linear", ("fc1",))
    clus = wsx.plugins.clusterers()["sorted1d"]()
    with raises(wsx.InvalidSettingError, "sensitivity='fisher'", "importance=", "'fc1'"):
        _sharing(sensitivity="fisher").apply(tiny[0]["fc1"], 4, layer=layer, clusterer=clus)
    with raises(wsx.InvalidSettingError, "importance for layer 'fc1'", "shape (5,)", "(24, 8)"):
        _sharing(sensitivity="fisher").apply(tiny[0]["fc1"], 4, layer=layer, clusterer=clus, importance=np.ones(5))
