"""Behaviour under hostile conditions that is not an error: one run per out dir (a killed holder does
not block), whole files after a failed write, which data decides ``best()``, the chance-level warning
and the timings of a resumed run. The error cases are in test_errors.py, the generated ones in
test_properties.py."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import wsx
from _tiny import TinyBackend, make_mlp
from wsx.files import OutDirLock
from wsx.result import Baseline, Candidate, Result


@pytest.fixture
def tiny():
    return make_mlp()


def run(tiny, **kw):
    weights, data = tiny
    args = dict(backend=kw.pop("backend", None) or TinyBackend(weights, data), progress=False, subset=None,
                knobs=[2, 4, 8, 16], target=0.9,
                strategy=wsx.plugins.strategies()["divide-and-conquer"](pop_size=6, generations=2))
    args.update(kw)
    return wsx.explore(weights, data, **args)


# -- finding 7: one writer per out dir; whole files ------------------------------------------------
def test_lock_of_a_killed_run_does_not_block(tmp_path, tiny):
    code = ("import sys, time\nfrom wsx.files import OutDirLock\n"
            "lock = OutDirLock(sys.argv[1])\nprint('locked', flush=True)\ntime.sleep(300)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(wsx.OutputError, match=f"in use by another wsx run \\(process {proc.pid}\\)"):
            run(tiny, out=tmp_path)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    result = run(tiny, out=tmp_path)  # the kernel dropped the dead holder's lock
    assert (tmp_path / "results.json").exists() and result.scorings > 0


def test_lock_is_released_when_explore_returns_or_raises(tmp_path, tiny):
    run(tiny, out=tmp_path)
    with pytest.raises(wsx.InvalidSettingError):
        run(tiny, out=tmp_path, knobs=[0])
    with OutDirLock(tmp_path):  # free again after both
        pass


@pytest.mark.parametrize("name", ["results.json", "results.csv", "front.png", "report.html"])
def test_a_failed_save_leaves_the_previous_file_whole(tmp_path, tiny, monkeypatch, name):
    """A write that dies half way (a kill, a full disk) leaves the previous version, not half of one."""
    import wsx.files

    first = run(tiny, out=tmp_path)
    before = (tmp_path / name).read_bytes()
    real = wsx.files.atomic_write

    def dying(path, write):
        if path.name == name:
            def half(tmp):
                write(tmp)
                data = tmp.read_bytes()
                tmp.write_bytes(data[: len(data) // 2])
                raise OSError(28, "No space left on device")
            return real(path, half)
        return real(path, write)

    monkeypatch.setattr(wsx.files, "atomic_write", dying)
    with pytest.raises(wsx.OutputError, match=name):
        first.save(tmp_path)
    assert (tmp_path / name).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if "tmp" in p.name) == []


# -- finding 5: which data decides best() -------------------------------------------------------------
def candidate(cr, meets, test_meets=None):
    return Candidate(knobs={"fc1": int(cr)}, accuracy=0.9, accuracy_loss=1.0, compression_rate=cr,
                     meets_target=meets, test_accuracy=None if test_meets is None else 0.9,
                     test_accuracy_loss=None if test_meets is None else 1.0, test_meets_target=test_meets)


def result_of(front, samples=540):
    return Result(front=front, history=list(front), baseline=Baseline(accuracy=0.95, bits=1000), timings={},
                  scorings=len(front), settings={"target": "mlperf-heavy", "samples": samples, "seed": 0})


def test_best_meets_the_target_on_all_data_and_on_test_data():
    passes_test_only = candidate(8.0, False, True)   # the case: AL 1.27 pp on all data
    passes_full_only = candidate(6.0, True, False)
    passes_both = candidate(4.0, True, True)
    r = result_of([passes_both, passes_full_only, passes_test_only])
    assert r.best() is passes_both
    assert r.best_basis() == "all 540 samples of the search data and the test data"
    assert result_of([candidate(8.0, False), candidate(4.0, True)]).best().compression_rate == 4.0
    assert result_of([candidate(4.0, True)]).best_basis() == "all 540 samples of the search data"
    assert result_of([passes_full_only, passes_test_only]).best() is None


def test_report_and_export_use_the_same_best(tmp_path, tiny, capsys):
    """report.html names the data that decided; `wsx export` exports best(), never a candidate that
    fails the target on all data."""
    from wsx.cli import main
    from wsx.report import render

    weights, (x, y) = tiny
    result = run(tiny, out=tmp_path, test_data=(x[:200], y[:200]))
    assert all(c.test_meets_target is not None for c in result.front)
    page = render(result)
    assert "decided on all 400 samples of the search data and the test data" in page
    best = result.best()
    assert best is not None and best.meets_target and best.test_meets_target

    from wsx.commands.export import pick

    assert main(["export", str(tmp_path), "--out", str(tmp_path / "a.wsx")]) == 2  # tiny is not a zoo model
    assert pick(result, "best") is best
    failing = [c for c in result.front if not c.meets_target or not c.test_meets_target]
    for c in failing:
        c.meets_target = c.test_meets_target = False
    assert pick(result, "best") is best


# -- finding 3: a baseline at chance level is warned about -------------------------------------------
def test_baseline_at_chance_level_is_warned_about(tiny):
    weights, (x, y) = tiny
    shuffled = np.random.default_rng(0).permutation(y)  # labels that no longer match the inputs
    constant = np.zeros_like(y) + np.bincount(y).argmin()
    for labels in (shuffled, constant):
        with pytest.warns(UserWarning, match="chance level"):
            result = run((weights, (x, labels)), backend=TinyBackend(weights, (x, labels)))
        assert any("chance level" in note for note in result.notes)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = run(tiny)
    assert not any("chance" in note for note in result.notes)


def test_chance_level_applies_to_top1_only(tiny):
    from wsx.sanity import chance_level

    def top1(outputs, labels):
        return float((outputs.argmax(axis=1) == labels).mean())

    top1_builtin = TinyBackend(*tiny).metric_
    assert chance_level(top1_builtin, 10) == 0.1
    assert chance_level(top1_builtin, 10, np.array([5, 1, 1, 1])) == 5 / 8  # always answering label 0
    assert chance_level(TinyBackend(*tiny, metric=top1).metric_, 10) is None  # a callable: chance unknown
    assert chance_level(top1_builtin, None) is None


# -- finding 8: a resumed run reports the time its journal cost -------------------------------------
def test_a_fully_replayed_run_keeps_the_original_timings(tmp_path, tiny):
    first = run(tiny, out=tmp_path)
    again = run(tiny, out=tmp_path)
    assert again.extras["journal"] == {"path": "journal.jsonl", "replayed": first.scorings, "scored": 0}
    records = wsx.journal.read(tmp_path / "journal.jsonl")[1]
    spent = np.sum([r["t"] for r in records], axis=0)
    assert spent[0] == pytest.approx(first.timings["scoring"], abs=1e-3)
    assert again.timings["scoring"] >= spent[0] - 1e-6 and again.timings["from_journal"] == pytest.approx(spent[2])
    assert again.timings["total"] >= spent[2]
    assert json.loads((tmp_path / "results.json").read_text())["timings"] == again.timings


def test_journal_timings_survive_a_kill_mid_search(tmp_path, tiny):
    knobs = [2, 4, 8, 16, 32, 64]
    part = run(tiny, out=tmp_path, budget=13, knobs=knobs)
    rest = run(tiny, out=tmp_path, knobs=knobs)
    assert rest.extras["journal"]["replayed"] == 13 and rest.extras["journal"]["scored"] > 0
    assert rest.timings["scoring"] >= part.timings["scoring"] - 1e-3


# -- finding 1: the journal's header names the computation ------------------------------------------
@pytest.mark.parametrize("framework", ["torch", "keras", "jax"])
def test_computation_digest_tells_forwards_apart(framework):
    from wsx.engine import make_backend

    pytest.importorskip({"keras": "tensorflow"}.get(framework, framework))
    model, data = wsx.zoo.load("lenet5-digits", framework=framework)
    digest = make_backend(model, data).fingerprint()["computation"]
    assert digest and digest == make_backend(model, data).fingerprint()["computation"]  # stable
    if framework == "torch":
        from test_errors import relu_to_tanh

        other = relu_to_tanh(model)
    elif framework == "jax":
        import jax

        apply_fn, params = model
        other = (lambda p, x: jax.nn.softmax(apply_fn(p, x)), params)
    else:
        import keras

        other = keras.Sequential([model, keras.layers.Activation("softmax")])
    assert make_backend(other, data).fingerprint()["computation"] != digest


def test_metric_identity_follows_code_and_captured_values():
    from wsx.engine import metric_identity
    from wsx.metrics import resolve_metric

    def make(threshold):
        def score(outputs, labels):
            return float((outputs.max(axis=1) > threshold).mean())
        return score

    same = metric_identity(resolve_metric(make(0.5)))
    assert metric_identity(resolve_metric(make(0.5))) == same
    assert metric_identity(resolve_metric(make(0.7))) != same
    assert metric_identity(resolve_metric("top1")) == "top1:builtin:labels:higher"


def test_resume_rescores_a_few_replayed_candidates(tmp_path, tiny):
    """Re-scoring a few replayed candidates costs a few scorings, never counted as the run's."""
    full = run(tiny, out=tmp_path / "a")
    calls = []

    class Counting(TinyBackend):
        def score(self, population, subset=None):
            calls.append(len(population))
            return super().score(population, subset)

    weights, data = tiny
    again = run(tiny, out=tmp_path / "a", backend=Counting(weights, data))
    assert again.scorings == full.scorings and again.extras["journal"]["scored"] == 0
    # the baseline, then the 3 re-scored replayed candidates: those scored in full in one call, those
    # rejected early in another (re-scored under the same stop rule)
    assert calls[0] == 1 and sum(calls[1:]) == 3 and len(calls) <= 3


def test_computation_digest_follows_what_the_forward_reaches():
    """A helper the forward calls is part of the computation; a method it never reaches is not, so a
    per-process value there (transformers' telemetry session id) cannot stop a run from resuming."""
    torch = pytest.importorskip("torch")
    from wsx.identity import classes_digest

    def net(scale, session):
        ns = {"torch": torch, "SESSION": session, "__name__": "user_model"}
        exec("class Net(torch.nn.Module):\n"
             "    def forward(self, x):\n        return self.helper(x)\n"
             f"    def helper(self, x):\n        return x * {scale}\n"
             "    def telemetry(self):\n        return SESSION\n", ns)
        return ns["Net"]()

    digest = classes_digest([net(2, "a1")], ("torch.",))
    assert digest == classes_digest([net(2, "b2")], ("torch.",))
    assert digest != classes_digest([net(3, "a1")], ("torch.",))
