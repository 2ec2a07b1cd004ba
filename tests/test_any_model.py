"""Any model, any metric, end to end: a BERT-style encoder fed tokenizer-style dict inputs without
labels explored with metric="cosine" on each backend (its best candidate, applied, reproduces the
reported metric); a regression MLP explored with MSE and max_increase=; a metric given both to
explore and to a configured backend; labels as given; reference outputs within their memory bound."""
from __future__ import annotations

import copy
import functools
import json

import numpy as np
import pytest

import wsx
from wsx.testing import models


def cosine(a, b) -> float:
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    return float(np.mean((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


def strategy():
    return wsx.plugins.strategies()["divide-and-conquer"](pop_size=12, generations=6)


def explore_cosine(model, data, **kwargs):
    result = wsx.explore(model, data, metric="cosine", target=0.99, strategy=strategy(), knobs=[4, 16, 64],
                         subset=None, progress=False, **kwargs)
    assert result.metric["name"] == "cosine" and result.metric["needs_reference"]
    best = result.best()
    assert best is not None and best.compression_rate > 1.5 and best.accuracy >= 0.99 - 1e-9
    assert best.measured_on == "full" and abs(best.accuracy_loss - (1.0 - best.accuracy)) < 1e-9
    return result, best


# -- done when: a 4-layer BERT, dict inputs, no labels, cosine, target 0.99 -------------------------------
def test_bert_from_transformers_explored_with_cosine_and_reproduced_by_apply():
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    ex = models.torch_bert(layers=4, n=24)
    model, data = ex.model, ex.data
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result, best = explore_cosine(model, data)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "explore changed the model"
    assert result.unused_layers == ["pooler.dense.weight"]  # last_hidden_state never reads the pooler
    names = [layer["name"] for layer in result.layers]
    assert "pooler.dense.weight" not in names and "embeddings.word_embeddings.weight" in names
    assert len(names) == 3 + 4 * 6  # three embedding tables, six matrices per encoder layer
    inputs = {k: torch.from_numpy(v) for k, v in data.items()}
    with torch.no_grad():
        reference = model(**inputs).last_hidden_state.numpy()
        compressed = copy.deepcopy(model)
        wsx.apply(compressed, best, result=result)
        outputs = compressed(**inputs).last_hidden_state.numpy()
    assert cosine(outputs, reference) == pytest.approx(best.accuracy, abs=1e-6)


def test_keras_encoder_explored_with_cosine_and_reproduced_by_apply():
    pytest.importorskip("tensorflow")
    ex = models.keras_encoder(layers=4, n=24)
    be = wsx.plugins.backends()["tensorflow"](ex.model, ex.data, vmap=False, prefix_cache=False)
    result, best = explore_cosine(ex.model, ex.data, backend=be)
    assert result.unused_layers == ["pooler/kernel"]
    reference = np.asarray(ex.model(ex.data, training=False)["last_hidden_state"])
    wsx.apply(ex.model, best, result=result)
    outputs = np.asarray(ex.model(ex.data, training=False)["last_hidden_state"])
    assert cosine(outputs, reference) == pytest.approx(best.accuracy, abs=1e-6)


def test_flax_encoder_explored_with_cosine_and_reproduced_by_apply():
    pytest.importorskip("flax")
    ex = models.flax_encoder(layers=4, n=24)
    apply_fn, variables = ex.model
    be = wsx.plugins.backends()["jax"](ex.model, ex.data, vmap=False, prefix_cache=False)
    result, best = explore_cosine(ex.model, ex.data, backend=be)
    assert result.unused_layers == ["params/pooler/kernel"]
    assert {"params/tokens/embedding", "params/attention3/query/kernel"} <= {l["name"] for l in result.layers}
    reference = np.asarray(apply_fn(variables, ex.data)["last_hidden_state"])
    new_variables = wsx.apply(ex.model, best, result=result)
    outputs = np.asarray(apply_fn(new_variables, ex.data)["last_hidden_state"])
    assert cosine(outputs, reference) == pytest.approx(best.accuracy, abs=1e-6)


# -- done when: a regression MLP with MSE and max_increase ----------------------------------------------
def regression(seed: int = 0):
    """A small MLP fitted to a smooth function of 6 inputs (float targets), and its data (a fresh
    copy of the model each call; it is fitted once)."""
    pytest.importorskip("torch")
    model, data = _fitted(seed)
    return copy.deepcopy(model), data


@functools.lru_cache(maxsize=None)
def _fitted(seed: int):
    import torch
    from torch import nn

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, 6)).astype(np.float32)
    y = (np.sin(x[:, :1] * 2) + 0.5 * x[:, 1:2] * x[:, 2:3] + 0.1 * rng.normal(size=(600, 1))).astype(np.float32)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(300):
        opt.zero_grad()
        loss = ((model(xt) - yt) ** 2).mean()
        loss.backward()
        opt.step()
    return model.eval(), (x, y)


def test_regression_mlp_with_mse_and_max_increase(tmp_path):
    model, data = regression()
    result = wsx.explore(model, data, metric="mse", max_increase=0.01, strategy=strategy(), knobs=[4, 8, 16, 32, 64],
                         subset=None, progress=False, out=tmp_path)
    base = result.baseline.accuracy
    x, y = data
    import torch

    with torch.no_grad():
        assert base == pytest.approx(float(((model(torch.from_numpy(x)).numpy() - y) ** 2).mean()), rel=1e-5)
    assert 0 < base < 0.2  # fitted: far below the targets' variance (~1.2)
    for c in result.front:  # loss = increase of MSE; meeting the target = at most 0.01 more than the baseline
        assert c.accuracy_loss == pytest.approx(c.accuracy - base)
        assert c.meets_target == (c.accuracy <= base + 0.01 + 1e-9)
    best = result.best()
    assert best is not None and best.compression_rate > 2.5 and best.accuracy <= base + 0.01 + 1e-9
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["metric"]["name"] == "mse" and saved["metric"]["greater_is_better"] is False
    assert saved["metric"]["loss"] == "increase" and saved["settings"]["max_increase"] == 0.01
    assert saved["settings"]["target"] == "max_increase=0.01" and saved["settings"]["max_accuracy_loss"] == 0.01
    page = (tmp_path / "report.html").read_text()
    assert "mse, lower is better" in page and "mse increase (lower is better)" in page and "AL (pp)" not in page
    assert "metric mse (lower is better)" in result.summary() and " increase " in result.summary()
    assert (tmp_path / "front.png").stat().st_size > 10_000
    from wsx.plot import plot_front

    import matplotlib.pyplot as plt

    captured = {}
    real = plt.Figure.savefig

    def keep(fig, *a, **k):
        captured["ylabel"] = fig.axes[0].get_ylabel()
        captured["title"] = fig.axes[0].get_title()
        return real(fig, *a, **k)

    plt.Figure.savefig = keep
    try:
        plot_front(result, tmp_path / "again.png")
    finally:
        plt.Figure.savefig = real
    assert captured["ylabel"] == "mse increase, lower is better" and "mse (lower is better)" in captured["title"]


def test_cli_explores_a_regression_with_max_increase(tmp_path, monkeypatch, capsys):
    (tmp_path / "regmodels.py").write_text(
        "import test_any_model\nmodel, data = test_any_model.regression()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from wsx.cli import main

    code = main(["explore", "--model", "regmodels:model", "--data", "regmodels:data", "--metric", "mse",
                 "--max-increase", "0.01", "--strategy", "greedy", "--budget", "30", "--quiet",
                 "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0 and "metric mse (lower is better)" in out and "increase" in out
    assert main(["explore", "--model", "regmodels:model", "--data", "regmodels:data", "--metric", "mse",
                 "--quiet"]) == 2
    assert "max_increase" in capsys.readouterr().err


# -- metrics given twice, labels as given, reference outputs -----------------------------------------------
def test_explore_metric_and_a_configured_backend():
    model, data = regression()
    backend_cls = wsx.plugins.backends()["torch"]
    be = backend_cls(model, data, include=["0.weight", "2.weight"])  # created without a metric
    result = wsx.explore(model, data, backend=be, metric="mse", max_increase=0.05, strategy="random", budget=5,
                         knobs=[4, 8], subset=None, progress=False)
    assert result.metric["name"] == "mse" and be.metric_.name == "mse"  # applied, not ignored
    assert {layer["name"] for layer in result.layers} == {"0.weight", "2.weight"}
    same = backend_cls(model, data, metric="mse")
    wsx.explore(model, data, backend=same, metric="mse", max_increase=0.05, strategy="random", budget=3,
                knobs=[4], subset=None, progress=False)  # the same metric twice is fine
    other = backend_cls(model, data, metric="cosine")
    with pytest.raises(wsx.InvalidSettingError, match="created with metric 'cosine'"):
        wsx.explore(model, data, backend=other, metric="mse", max_increase=0.05, progress=False)


def test_float_labels_reach_a_custom_metric_unchanged():
    model, (x, y) = regression()
    seen = []

    def r2(outputs, labels):
        seen.append(labels)
        return float(1 - ((outputs[:, 0] - labels) ** 2).mean() / labels.var())

    be = wsx.plugins.backends()["torch"](model, (x, y[:, 0].astype(np.float64)), metric=r2)
    value = be.score([{}])[0]
    assert seen[0].dtype == np.float64 and np.allclose(seen[0], y[:, 0]) and 0.8 < value <= 1.0


def test_reference_outputs_are_cached_within_their_memory_bound():
    torch = pytest.importorskip("torch")
    ex = models.torch_encoder()
    cls = wsx.plugins.backends()["torch"]
    cached = cls(ex.model, ex.data, metric="cosine", batch_size=5)
    bounded = cls(ex.model, ex.data, metric="cosine", batch_size=5, reference_bytes=0)
    calls = {"n": 0}
    hook = ex.model.tokens.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
    try:
        pop = [{"tokens.weight": cached.get_weights("tokens.weight") * s} for s in (0.5, 0.8)]
        a = [cached.score(pop) for _ in range(3)]
        cached_calls, calls["n"] = calls["n"], 0
        b = [bounded.score(pop) for _ in range(3)]
        bounded_calls = calls["n"]
    finally:
        hook.remove()
    assert cached.reference_cached_ is True and bounded.reference_cached_ is False
    assert np.allclose(a, b, rtol=0, atol=1e-12)
    batches = 4  # 16 samples, 5 per batch: the reference costs one forward per batch per call beyond the bound
    assert bounded_calls - cached_calls == 2 * batches
    assert torch is not None
