"""The engine: CR formula, targets, subset, budget, determinism, re-scoring and the restore guarantee."""
from __future__ import annotations

import json

import numpy as np
import pytest

import wsx
from conftest import HERE, torch_state_bytes
from wsx.engine import subset_indices
from wsx.metrics import compression_rate, index_bits, resolve_target, weight_sharing_bits

SMALL_DC = {"pop_size": 8, "generations": 3}


def small_dc(**kw):
    return wsx.plugins.strategies()["divide-and-conquer"](**{**SMALL_DC, **kw})


# -- formula -------------------------------------------------------------------------------------
def test_cr_formula_thesis_example():
    """Thesis 5x5 example: 25 weights of 32 bits shared with k=5 -> 25*3 + 5*32 = 235 bits, CR 800/235."""
    assert index_bits(5) == 3 and index_bits(2) == 1 and index_bits(1) == 0 and index_bits(1024) == 10
    assert weight_sharing_bits(25, 5, 32) == 235
    assert compression_rate([800], [235]) == pytest.approx(3.404, abs=1e-3)
    assert weight_sharing_bits(25, 5, 8) == 25 * 3 + 5 * 8


def test_problem_cr_counts_untouched_layers_at_full_size(lenet):
    model, data = lenet
    r = wsx.explore(model, data, strategy=small_dc(), knobs=[4, 16], progress=False, budget=40, bits=16)
    sizes = {layer["name"]: layer["size"] for layer in r.layers}
    assert r.baseline.bits == 16 * sum(sizes.values())
    for c in r.history:
        expected = sum(weight_sharing_bits(sizes[n], c.knobs[n], 16) if n in c.knobs else 16 * sizes[n]
                       for n in sizes)
        assert c.size_bits == expected
        assert c.compression_rate == pytest.approx(r.baseline.bits / expected)


@pytest.mark.parametrize("target,frac", [("mlperf-heavy", 0.99), ("mlperf-light", 0.98), (0.95, 0.95), (1, 1.0)])
def test_targets(target, frac):
    assert resolve_target(target) == frac


@pytest.mark.parametrize("bad", [0, 1.5, -0.1, "mlperf-medium", float("nan")])
def test_bad_targets_are_refused(bad):
    with pytest.raises(wsx.InvalidSettingError, match="target"):
        resolve_target(bad)


# -- subset ----------------------------------------------------------------------------------------
def test_subset_is_seeded_sorted_and_floored():
    a = subset_indices(20000, 0.1, seed=3)
    b = subset_indices(20000, 0.1, seed=3)
    c = subset_indices(20000, 0.1, seed=4)
    assert a.size == 2000 and np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.all(np.diff(a) > 0)
    assert subset_indices(20000, 0.01, seed=0).size == 1000  # raised to the floor
    assert subset_indices(20000, 0.01, seed=0, min_samples=10).size == 200
    assert subset_indices(500, 0.1, seed=0) is None  # floor above n: all samples
    assert subset_indices(20000, 300, seed=0, min_samples=1).size == 300
    with pytest.raises(wsx.InvalidSettingError):
        subset_indices(100, 1.5, seed=0)


# -- exploration -------------------------------------------------------------------------------
def test_explore_front_is_rescored_on_all_data_and_deterministic(lenet):
    model, data = lenet
    kw = dict(strategy=small_dc(), knobs=[2, 4, 8, 16, 32, 64], subset=200, min_subset=100, seed=5,
              progress=False)
    r1 = wsx.explore(model, data, **kw)
    r2 = wsx.explore(model, data, **kw)
    assert [c.knobs for c in r1.history] == [c.knobs for c in r2.history]
    assert [(c.knobs, c.accuracy) for c in r1.front] == [(c.knobs, c.accuracy) for c in r2.front]
    assert all(c.measured_on == "subset" for c in r1.history)
    assert r1.front and all(c.measured_on == "full" for c in r1.front)
    assert r1.settings["subset_samples"] == 200
    # Full-data accuracies are multiples of 1/540, subset ones of 1/200.
    n = len(data[1])
    for c in r1.front:
        assert c.accuracy * n == pytest.approx(round(c.accuracy * n))
    # The front is Pareto-efficient on full data.
    for a in r1.front:
        assert not any(b.accuracy_loss < a.accuracy_loss and b.compression_rate > a.compression_rate
                       for b in r1.front)


def test_budget_caps_scorings(lenet):
    model, data = lenet
    r = wsx.explore(model, data, strategy=small_dc(pop_size=20, generations=50), knobs=[2, 4, 8, 16],
                    budget=30, progress=False)
    assert r.scorings == 30 == len(r.history)
    assert "budget" in r.settings["stop_reason"]
    with pytest.raises(wsx.BudgetTooSmallError, match="first step"):
        wsx.explore(model, data, strategy=small_dc(), knobs=[2, 4, 8, 16], budget=10, progress=False)


def test_test_data_rescores_front_on_disjoint_split(lenet):
    model, data = lenet
    train = wsx.zoo.digits_split("train")
    r = wsx.explore(model, data, strategy=small_dc(), knobs=[4, 16, 64], progress=False, test_data=train)
    assert r.baseline.test_accuracy is not None and r.baseline.test_accuracy > 0.95
    assert all(c.test_accuracy is not None and c.test_meets_target is not None for c in r.front)


def test_metric_callable(lenet):
    model, data = lenet

    def top1_percent(outputs, labels):
        return float((outputs.argmax(1) == labels).mean())

    r = wsx.explore(model, data, metric=top1_percent, strategy=small_dc(), knobs=[8, 32],
                    progress=False)
    base = wsx.explore(model, data, strategy=small_dc(), knobs=[8, 32], progress=False)
    assert r.baseline.accuracy == pytest.approx(base.baseline.accuracy)
    assert r.settings["metric"] == "top1_percent"


def test_apply_writes_what_was_scored(lenet):
    import copy

    import torch

    model, data = lenet
    r = wsx.explore(model, data, strategy=small_dc(), knobs=[4, 8, 16], progress=False)
    cand = max(r.front, key=lambda c: c.compression_rate)
    target = copy.deepcopy(model)
    wsx.apply(target, cand, result=r)
    for name, k in cand.knobs.items():
        assert len(np.unique(dict(target.named_parameters())[name].detach().numpy())) <= k
    with torch.no_grad():
        acc = float((target(torch.from_numpy(data[0])).argmax(1).numpy() == data[1]).mean())
    assert acc == pytest.approx(cand.accuracy)
    assert torch_state_bytes(target) != torch_state_bytes(model)


# -- the restore guarantee ----------------------------------------------------------------------
class Boom(Exception):
    pass


def _raising_metric(after: int, exc: type):
    calls = {"n": 0}

    def metric(outputs, labels):
        calls["n"] += 1
        if calls["n"] > after:
            raise exc("stop here")
        return float((outputs.argmax(1) == labels).mean())

    return metric


@pytest.mark.parametrize("outcome", ["success", "raises", "interrupt"])
def test_torch_model_bit_identical_after_explore(lenet, outcome):
    model, data = lenet
    model.train()  # the mode must come back too
    before = torch_state_bytes(model)
    metric = {"success": "top1", "raises": _raising_metric(12, Boom),
              "interrupt": _raising_metric(12, KeyboardInterrupt)}[outcome]
    try:
        if outcome == "success":
            wsx.explore(model, data, metric=metric, strategy=small_dc(), knobs=[4, 16], progress=False)
        else:
            with pytest.raises((KeyboardInterrupt, wsx.MetricError)):
                wsx.explore(model, data, metric=metric, strategy=small_dc(), knobs=[4, 16], progress=False)
        assert torch_state_bytes(model) == before
        assert model.training and all(m.training for m in model.modules())
    finally:
        model.eval()


@pytest.mark.parametrize("outcome", ["success", "raises", "interrupt"])
def test_mutating_backend_is_restored(toy_dist, outcome):
    """A backend that writes weights into the model while scoring: only the engine's restore saves it."""
    import wsx_toy

    model = wsx_toy.ToyModel()
    data = wsx_toy.toy_data(model)
    before = {k: v.tobytes() for k, v in model.params.items()}
    metric = {"success": "top1", "raises": _raising_metric(3, Boom),
              "interrupt": _raising_metric(3, KeyboardInterrupt)}[outcome]
    if outcome == "success":
        wsx.explore(model, data, metric=metric, strategy="toy-uniform", knobs=[2, 4, 8, 16, 32],
                    progress=False)
    else:
        with pytest.raises((KeyboardInterrupt, wsx.MetricError)):
            wsx.explore(model, data, metric=metric, strategy="toy-uniform", knobs=[2, 4, 8, 16, 32],
                        progress=False)
    assert {k: v.tobytes() for k, v in model.params.items()} == before


# -- CLI -------------------------------------------------------------------------------------------
def test_cli_help_lists_every_command(capsys):
    from wsx.cli import COMMANDS, main

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name, _ in COMMANDS:
        assert name in out
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert "usage: wsx " + name in capsys.readouterr().out


def test_cli_plugins_json(capsys):
    from wsx.cli import main

    assert main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"name", "kind", "distribution", "version", "available"} <= set(rows[0])


def test_cli_explore_module_attr(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    (tmp_path / "mymodels.py").write_text(
        "import wsx\n"
        "model, data = wsx.zoo.load('lenet5-digits')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from wsx.cli import main

    code = main(["explore", "--model", "mymodels:model", "--data", "mymodels:data", "--strategy", "nsga2",
                 "--budget", "200",
                 "--quiet", "--json", "--out", str(tmp_path / "out")])
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    assert res["backend"] == "torch" and res["scorings"] <= 200
    assert main(["explore", "--model", "nocolon", "--data", "mymodels:data"]) == 2
    assert "MODULE:ATTR" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_meets_heavy_target_with_cr_4(tmp_path, capsys):
    """`wsx demo` (budget-capped here) finds CR >= 4 within mlperf-heavy on all test data."""
    pytest.importorskip("torch")
    from wsx.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--budget", "900", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "best meeting mlperf-heavy" in text
    res = json.loads((out / "results.json").read_text())
    for key in ("baseline", "front", "strategy", "backend", "clusterer", "scorings", "timings"):
        assert key in res
    assert {"accuracy", "bits"} <= set(res["baseline"])
    best = max((c for c in res["front"] if c["meets_target"]), key=lambda c: c["compression_rate"])
    assert best["compression_rate"] >= 4 and best["measured_on"] == "full"
    assert set(best) >= {"knobs", "accuracy", "accuracy_loss", "compression_rate", "meets_target"}
    assert (out / "results.csv").stat().st_size > 0 and (out / "front.png").stat().st_size > 0
