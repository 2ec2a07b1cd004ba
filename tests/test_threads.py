"""Thread counts: each process takes its share of the cores, overrides are checked, explore restores
torch's setting, and the CLI applies --threads before a model loads."""
from __future__ import annotations

import subprocess
import sys

import pytest

import wsx
from wsx import threads


@pytest.fixture
def four_cores(monkeypatch):
    monkeypatch.setattr(threads, "usable_cpus", lambda: 4)
    monkeypatch.delenv("WSX_THREADS", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)


def test_auto_threads_share_the_cores_with_other_load(four_cores):
    assert threads.auto_threads(load=0.0) == 4
    assert threads.auto_threads(load=2.2) == 2  # two cores busy elsewhere
    assert threads.auto_threads(load=9.0) == 1  # never below one


def test_auto_threads_split_the_cores_among_xdist_workers(four_cores, monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    assert threads.auto_threads(load=3.5) == 2  # the workers are the load: each gets half
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "8")
    assert threads.auto_threads(load=0.0) == 1


def test_wsx_threads_overrides_and_is_checked(four_cores, monkeypatch):
    monkeypatch.setenv("WSX_THREADS", "3")
    assert threads.auto_threads(load=9.0) == 3
    monkeypatch.setenv("WSX_THREADS", "many")
    with pytest.raises(wsx.InvalidSettingError, match="WSX_THREADS"):
        threads.auto_threads()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "two"])
def test_bad_thread_counts_raise(bad):
    with pytest.raises(wsx.InvalidSettingError, match="threads"):
        threads.check_threads(bad)


def test_environment_caps_every_framework(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x intra_op_parallelism_threads=7")
    env = threads.environ_for(1)
    assert env["XLA_FLAGS"].split()[0] == "--xla_dump_to=/tmp/x" and "=7" not in env["XLA_FLAGS"]
    assert env["OMP_NUM_THREADS"] == env["TF_NUM_INTRAOP_THREADS"] == "1"
    assert "--xla_cpu_multi_thread_eigen=false" in env["XLA_FLAGS"]
    assert "intra_op_parallelism_threads=3" in threads.environ_for(3)["XLA_FLAGS"]


def test_explore_sets_and_restores_torch_threads(lenet, monkeypatch):
    torch = pytest.importorskip("torch")
    model, data = lenet
    seen = []
    backend = wsx.plugins.backends()["torch"]
    score = backend.score

    def spy(self, *a, **kw):
        seen.append(torch.get_num_threads())
        return score(self, *a, **kw)

    monkeypatch.setattr(backend, "score", spy)
    before = torch.get_num_threads()
    strategy = wsx.plugins.strategies()["divide-and-conquer"](pop_size=4, generations=1)
    r = wsx.explore(model, data, strategy=strategy, knobs=[4, 16], progress=False, threads=2)
    assert set(seen) == {2} and r.settings["threads"] == 2
    assert torch.get_num_threads() == before
    with pytest.raises(wsx.InvalidSettingError, match="threads"):
        wsx.explore(model, data, threads=0, progress=False)
    assert torch.get_num_threads() == before


def test_cli_applies_threads_before_loading_a_model():
    code = ("import os, sys; from wsx.cli import main; "
            "main(['plugins']); print('OMP_NUM_THREADS' in os.environ); "
            "sys.argv = ['wsx']; rc = main(['demo', '--threads', '0']); print(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={k: v for k, v in __import__("os").environ.items() if k != "OMP_NUM_THREADS"})
    lines = out.stdout.split()
    assert lines[-1] == "2" and "threads=0" in out.stderr
