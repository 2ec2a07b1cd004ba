"""The executor seam: candidates cross it as knob dicts, results come back as Scored."""
from __future__ import annotations

import numpy as np
import pytest

import wsx
from wsx.executor import ScoringSession, SerialExecutor
from wsx.problem import ApproximationCache, Timers
from wsx.scoring import Scored


class Recording(SerialExecutor):
    """The serial executor, recording what it is handed and how often it is started and closed."""

    name = "recording"

    def __init__(self):
        self.populations, self.splits, self.events = [], [], []

    def start(self, session):
        self.events.append("start")
        super().start(session)

    def score(self, population, subset, *, stop=None, split="search"):
        population = list(population)
        self.populations.append(population)
        self.splits.append(split)
        return super().score(population, subset, stop=stop, split=split)

    def close(self):
        self.events.append("close")


def _front(result):
    return [(c.knobs, c.accuracy, c.compression_rate) for c in result.front]


def test_executor_is_handed_knob_dicts_and_gives_the_serial_answer(lenet):
    model, (x, y) = lenet
    data, test = (x[:300], y[:300]), (x[300:], y[300:])
    rec = Recording()
    kw = dict(strategy="random", budget=24, knobs=[2, 4, 8], progress=False, test_data=test, seed=3)
    got = wsx.explore(model, data, executor=rec, **kw)
    want = wsx.explore(model, data, **kw)
    assert _front(got) == _front(want)
    assert [c.test_accuracy for c in got.front] == [c.test_accuracy for c in want.front]
    assert rec.events == ["start", "close"]
    assert "test" in rec.splits and "search" in rec.splits
    for population in rec.populations:  # knobs, never arrays
        for cand in population:
            assert all(isinstance(k, (int, np.integer)) for k in cand.values()), cand


def test_session_materialises_a_population_as_one_k_at_a_time():
    rng = np.random.default_rng(0)
    weights = {"a": rng.normal(size=(40, 30)).astype(np.float32), "b": rng.normal(size=(50,)).astype(np.float32)}
    layers = {n: wsx.LayerInfo(n, w.shape, w.size, "Linear") for n, w in weights.items()}
    appr = wsx.plugins.approximations()["weight-sharing"]()
    clus = wsx.plugins.clusterers()["sorted1d"](seed=0)

    def session():
        cache = ApproximationCache(appr, clus, weights.__getitem__, Timers())
        return ScoringSession(backends={}, cache=cache, layers=layers), cache

    population = [{"a": 3, "b": 5}, {"a": 17}, {"b": 2, "a": 3}, {}]
    together, cache = session()
    got = together.materialise(population)
    assert cache.computed == 4  # a: 3, 17; b: 5, 2 -- each once
    for cand, subs in zip(population, got):
        assert set(subs) == set(cand)
        for name, k in cand.items():
            alone, _ = session()
            np.testing.assert_array_equal(subs[name], alone.materialise([{name: k}])[0][name])
            assert np.unique(subs[name]).size <= k


def test_backend_score_detailed_reports_samples(lenet):
    model, data = lenet
    be = wsx.plugins.backends()["torch"](model, data)
    subset = np.arange(0, 100, 3)
    out = be.score_detailed([{}, {}], subset)
    assert all(isinstance(s, Scored) and s.samples == subset.size and not s.rejected for s in out)
    np.testing.assert_array_equal([s.value for s in out], be.score([{}, {}], subset))


# -- executors as plugins ---------------------------------------------------------------------------
def test_serial_executor_passes_the_executor_conformance_suite():
    wsx.testing.check_executor(SerialExecutor)


def test_executors_are_plugins_named_like_the_others(lenet, capsys):
    from wsx.cli import main

    table = wsx.plugins.executors()
    assert {"serial", "ray"} <= set(table) and table["serial"] is SerialExecutor
    rows = {(r.kind, r.name): r for r in wsx.plugins.info()}
    assert rows[("executor", "serial")].distribution == "wsx" and rows[("executor", "ray")].distribution == "wsx"
    assert main(["plugins"]) == 0 and "executor" in capsys.readouterr().out
    model, data = lenet
    result = wsx.explore(model, data, executor="serial", strategy="random", budget=4, knobs=[2, 4], progress=False)
    assert result.settings["config"]["executor"] == "serial" and result.settings["executor"] == "serial"


def test_executor_specs_keep_addresses_with_their_port():
    from wsx.specs import Spec

    assert Spec.parse("ray:address=10.0.0.5:6379,workers=8,gpus_per_worker=1").params == \
        {"address": "10.0.0.5:6379", "workers": 8, "gpus_per_worker": 1}
    assert Spec.parse("ray:workers=2:address=ray://head:10001").params == {"workers": 2, "address": "ray://head:10001"}
    spec = Spec("ray", {"address": "10.0.0.5:6379", "workers": 2})
    assert Spec.parse(spec.text()) == spec
    with pytest.raises(wsx.InvalidSettingError, match="'junk' is not key=value"):
        Spec.parse("ray:workers=2,junk")


def test_cli_ray_options_fold_into_the_executor():
    import argparse

    from wsx.commands import executor_of
    from wsx.specs import Spec

    def args(**kw):
        base = dict(executor=None, ray_address=None, workers=None, gpus_per_worker=None)
        return argparse.Namespace(**{**base, **kw})

    assert executor_of(args()) is None
    assert executor_of(args(executor="serial")) == "serial"
    assert executor_of(args(ray_address="auto", workers=4, gpus_per_worker=1.0)) == \
        Spec("ray", {"address": "auto", "workers": 4, "gpus_per_worker": 1.0})
    assert executor_of(args(executor="ray:chunk_size=2", workers=2)) == Spec("ray", {"chunk_size": 2, "workers": 2})


def test_backends_record_how_to_build_them_again(lenet):
    from wsx.executor import BackendRecipe

    model, data = lenet
    be = wsx.plugins.backends()["torch"](model, data, batch_size=64, prefix_cache=False)
    recipe = BackendRecipe.of(be)
    assert recipe.model is model and recipe.kwargs == {"batch_size": 64, "prefix_cache": False}
    again = recipe.build(model, recipe.data)
    assert again.batch_size == 64 and again.prefix_cache is False
    np.testing.assert_array_equal(again.score([{}]), be.score([{}]))


def test_the_conformance_suite_checks_parts_handed_back_early():
    class Twice(SerialExecutor):
        name = "twice"

        def score(self, population, subset, *, stop=None, split="search", on_result=None):
            out = super().score(population, subset, stop=stop, split=split)
            if on_result is not None and out:
                on_result([0], out[:1])
                on_result([0], out[:1])
            return out

    with pytest.raises(AssertionError, match="on_result was handed candidate 0 twice"):
        wsx.testing.check_executor(Twice)
