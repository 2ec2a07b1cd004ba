"""The ray executor on a local Ray instance (``ray.init(num_cpus=2)``), shared by this module's tests.

Same answer as serial on every framework, faults (a worker killed mid-run, every worker lost and the
journal resuming), and the errors a cluster raises (another wsx on the workers, model code they cannot
import, a model that cannot be pickled).
"""
from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest

import wsx

ray = pytest.importorskip("ray")
from wsx.journal import read as read_journal  # noqa: E402
from wsx_plugins.executors import ray_executor  # noqa: E402
from wsx_plugins.executors.ray_executor import RayExecutor  # noqa: E402

pytestmark = pytest.mark.slow

PATIENT = 600.0  # workers importing TensorFlow on a loaded 2-core CI machine took over the default 120 s
SMALL = dict(strategy="divide-and-conquer", knobs=[2, 4, 8, 16], progress=False, seed=0, subset=None)


@pytest.fixture(scope="module", autouse=True)
def local_ray(ray_turn):
    """One local Ray instance for the module: 2 CPUs, a small object store; stopped at the end."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, object_store_memory=100 << 20, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    yield
    ray.shutdown()


def _history(result):
    return [(c.knobs, c.accuracy) for c in result.history]


def _front(result):
    return [(c.knobs, c.accuracy, c.compression_rate) for c in result.front]


def _kill_after(executor, chunks: int, which, kill) -> threading.Thread:
    """A thread that waits until ``executor`` got ``chunks`` chunks back, then kills the workers
    ``which(pool)`` picks with ``kill(worker)``."""
    def run():
        deadline = time.monotonic() + 120
        while executor.stats_["chunks"] < chunks and time.monotonic() < deadline:
            time.sleep(0.005)
        for w in which([w for w in executor.pool_ if w.alive]):
            kill(w)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_ray_executor_passes_the_executor_conformance_suite():
    wsx.testing.check_executor(lambda: RayExecutor(start_timeout=PATIENT, workers=2))


@pytest.mark.parametrize("framework", ["torch", "keras", "jax"])
def test_same_front_history_and_scores_as_serial(framework):
    model, data = wsx.zoo.load("lenet5-digits", framework=framework)
    serial = wsx.explore(model, data, **SMALL)
    ex = RayExecutor(start_timeout=PATIENT, workers=2)
    got = wsx.explore(model, data, executor=ex, **SMALL)
    assert _history(got) == _history(serial)  # bit for bit: the backends are deterministic on CPU
    assert _front(got) == _front(serial) and got.scorings == serial.scorings
    stats = got.extras["executor"]
    assert [w["candidates"] for w in stats["workers"]] and all(w["candidates"] > 0 for w in stats["workers"])
    assert sum(w["candidates"] for w in stats["workers"]) == stats["candidates"]
    assert all(0 < got.timings[f"{w['worker']}_utilisation"] <= 1.0 for w in stats["workers"])
    assert stats["bytes_to_workers_per_candidate"] < 2000  # knobs, not weights
    assert got.settings["executor"] == "serial" or got.settings["config"]["executor"].startswith("ray")
    assert not ex.pool_  # closed: the workers are gone


def test_every_idle_worker_gets_a_chunk_before_any_gets_a_second():
    from wsx.testing.executors import _example, _session, same_scores

    model, (x, y) = _example()
    session, layers = _session(model, (x, y), (x, y))
    ex = RayExecutor(start_timeout=PATIENT, workers=2, chunk_size=1)
    ex.start(session)
    try:
        population = [{layers[0].name: 2}, {layers[-1].name: 2}]  # two chunks of two layers (two affinities)
        got = ex.score(population, None)
        assert sorted(w.candidates for w in ex.pool_) == [1, 1]
        serial = wsx.executor.SerialExecutor()
        serial.start(session)
        assert same_scores(got, serial.score(population, None))
    finally:
        ex.close()


def test_a_worker_killed_mid_run_costs_only_its_in_flight_candidates():
    model, data = wsx.zoo.load("lenet5-digits", framework="torch")
    serial = wsx.explore(model, data, **SMALL)
    ex = RayExecutor(start_timeout=PATIENT, workers=2, chunk_size=2)
    killer = _kill_after(ex, 4, lambda pool: pool[-1:], lambda w: ray.kill(w.actor, no_restart=True))
    got = wsx.explore(model, data, executor=ex, **SMALL)
    killer.join()
    stats = got.extras["executor"]
    assert stats["lost_workers"] == 1 and 0 < stats["rescored_candidates"] <= 4  # two chunks of two at most
    assert any(w["lost"] for w in stats["workers"]) and len(stats["workers"]) == 3  # a replacement joined
    assert _history(got) == _history(serial) and _front(got) == _front(serial)


def test_every_worker_lost_stops_with_a_clear_error_and_the_journal_resumes(tmp_path):
    model, data = wsx.zoo.load("lenet5-digits", framework="torch")
    out = tmp_path / "run"
    # Killed after 22 candidates, mid-call (a call carries 32): the journal took each chunk as it came back.
    ex = RayExecutor(start_timeout=PATIENT, workers=2, chunk_size=1, replace_lost=False)
    killer = _kill_after(ex, 22, lambda pool: pool, lambda w: ray.kill(w.actor, no_restart=True))
    with pytest.raises(wsx.ExecutorError, match="every Ray worker was lost.*run the same command again to resume"):
        wsx.explore(model, data, executor=ex, out=out, **SMALL)
    killer.join()
    assert not (out / "results.json").exists()  # nothing written as final
    saved = read_journal(out / "journal.jsonl")[1]
    assert len(saved) == ex.stats_["candidates"] - 1 >= 21  # every candidate scored but the baseline
    resumed = wsx.explore(model, data, out=out, **SMALL)  # the serial executor takes over from the journal
    assert resumed.extras["journal"] == {"path": "journal.jsonl", "replayed": len(saved),
                                         "scored": resumed.scorings - len(saved)}  # only the rest scored
    fresh = wsx.explore(model, data, **SMALL)
    assert _history(resumed) == _history(fresh) and _front(resumed) == _front(fresh)


def test_workers_running_another_wsx_are_refused(monkeypatch, tmp_path):
    model, data = wsx.zoo.load("lenet5-digits", framework="torch")
    monkeypatch.setattr(ray_executor, "wsx_identity", lambda: {"version": "0.0.9", "sources": "0123456789abcdef"})
    with pytest.raises(wsx.ExecutorError, match=r"runs wsx 0\.1\.0 .* driver runs wsx 0\.0\.9 .*install the same wsx "
                                                 r"on every node"):
        wsx.explore(model, data, executor=RayExecutor(start_timeout=PATIENT, workers=1), out=tmp_path / "run", **SMALL)
    assert not (tmp_path / "run" / "results.json").exists()


def test_a_worker_that_cannot_import_the_model_code_names_the_module_and_the_fix(tmp_path, monkeypatch):
    folder = tmp_path / "usercode"
    folder.mkdir()
    (folder / "wsx_user_net.py").write_text(
        "import torch\n\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = torch.nn.Linear(64, 10)\n\n"
        "    def forward(self, x):\n"
        "        return self.fc(x.flatten(1))\n")
    monkeypatch.syspath_prepend(str(folder))  # the driver imports it; the workers' path does not hold it
    import wsx_user_net

    try:
        _, (x, y) = wsx.zoo.load("lenet5-digits", framework="torch")
        with pytest.raises(wsx.ExecutorError, match=rf"cannot import 'wsx_user_net'.*importable on every node.*"
                                                    rf"working_dir': '{folder}'"):
            wsx.explore(wsx_user_net.Net(), (x, y), executor=RayExecutor(start_timeout=PATIENT, workers=1), out=tmp_path / "run", **SMALL)
        assert not (tmp_path / "run" / "results.json").exists()
    finally:
        sys.modules.pop("wsx_user_net", None)


def test_a_model_that_cannot_be_serialised_is_named():
    (apply_fn, params), data = wsx.zoo.load("lenet5-digits", framework="jax")
    lock = threading.Lock()  # a lock cannot travel to another process

    def guarded(p, x):
        with lock:
            return apply_fn(p, x)

    with pytest.raises(wsx.InvalidModelError, match=r"the model \(builtins.tuple\) cannot be serialised for the Ray "
                                                    r"workers \(TypeError: .*lock"):
        wsx.explore((guarded, params), data, executor=RayExecutor(start_timeout=PATIENT, workers=1), **SMALL)


def test_workers_are_kept_between_explorations_inside_with_and_by_bench():
    model, data = wsx.zoo.load("lenet5-digits", framework="torch")
    kw = dict(SMALL, strategy="random", budget=12)
    with RayExecutor(start_timeout=PATIENT, workers=2) as ex:
        first = wsx.explore(model, data, executor=ex, seed=1, **{k: v for k, v in kw.items() if k != "seed"})
        pids = sorted(w["pid"] for w in first.extras["executor"]["workers"])
        second = wsx.explore(model, data, executor=ex, seed=2, **{k: v for k, v in kw.items() if k != "seed"})
        assert sorted(w["pid"] for w in second.extras["executor"]["workers"]) == pids  # not shipped again
    assert not ex.pool_
    serial = wsx.explore(model, data, seed=2, **{k: v for k, v in kw.items() if k != "seed"})
    assert _history(second) == _history(serial)
    bench = wsx.bench(model, data, strategies="random", budgets=[10], seeds=2, subset=None, knobs=[2, 4, 8],
                      executor="ray:workers=2,start_timeout=600", log=None)
    assert len(bench.runs) == 2 and bench.meta["executor"].startswith("ray")


def test_more_workers_than_the_cluster_holds_is_an_error():
    model, data = wsx.zoo.load("lenet5-digits", framework="torch")
    with pytest.raises(wsx.ExecutorError, match="workers=5 need 5 CPUs but the Ray cluster has 2 CPUs"):
        wsx.explore(model, data, executor=RayExecutor(start_timeout=PATIENT, workers=5), **SMALL)
    if not ray.cluster_resources().get("GPU"):
        with pytest.raises(wsx.ExecutorError, match="gpus_per_worker=1 but the Ray cluster has 0 GPUs"):
            wsx.explore(model, data, executor=RayExecutor(gpus_per_worker=1), **SMALL)


def test_one_worker_per_gpu_scores_on_its_gpu():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available() or not ray.cluster_resources().get("GPU"):
        pytest.skip("no GPU here (the ray executor's GPU path is checked on a machine with one)")
    model, data = wsx.zoo.load("lenet5-digits", framework="torch")
    got = wsx.explore(model, data, executor=RayExecutor(gpus_per_worker=1), **SMALL)
    assert all("cuda" in w["device"] for w in got.extras["executor"]["workers"])
    serial = wsx.explore(model, data, device="cuda", **SMALL)
    assert _front(got) == _front(serial)


def test_a_worker_that_clusters_differently_fails_loudly():
    import os

    from wsx.clusterer import Clustering

    class PerProcess(wsx.Clusterer):
        """Quantile centroids shifted by a per-process amount: another process clusters to other weights."""

        name = "per-process"
        driver = os.getpid()  # pickled with the class: a worker knows it is not the driver

        def _cluster(self, w, k):
            # any other process shifts by 1e-6 (pid % 97 could coincide with the driver's)
            centroids = np.unique(np.quantile(w, (np.arange(k) + 0.5) / k)) + 1e-6 * (os.getpid() != self.driver)
            labels = np.searchsorted((centroids[1:] + centroids[:-1]) / 2, w)
            return Clustering(centroids, labels, float(((w - centroids[labels]) ** 2).sum()))

    model, data = wsx.zoo.load("lenet5-digits", framework="torch")
    with pytest.raises(wsx.ExecutorError, match=r"approximates layer '[\w.]+' at knob \d+ to other weights than the "
                                                r"driver .*install the same versions on every node"):
        wsx.explore(model, data, executor=RayExecutor(start_timeout=PATIENT, workers=1), clusterer=PerProcess(seed=0), **SMALL)


def test_candidates_that_kill_every_worker_stop_the_run():
    import os

    torch_backend = wsx.plugins.backends()["torch"]

    class Crashing(torch_backend):
        """Kills the process scoring any compressed candidate, unless it is the driver (as an OOM kill would)."""

        def __init__(self, model, data=None, *, driver=0, **kw):
            super().__init__(model, data, **kw)
            self.driver = driver

        def _prepare(self, population):
            if os.getpid() != self.driver and any(population):
                os._exit(1)
            return super()._prepare(population)

    model, data = wsx.zoo.load("lenet5-digits", framework="torch")
    backend = Crashing(model, data, driver=os.getpid())
    # Which limit is reached first depends on Ray's timing: a chunk that killed 3 workers, or the pool
    # out of replacements (one per worker); either way the run stops with a message saying what to do.
    with pytest.raises(wsx.ExecutorError, match=r"candidates \[\d+\] were in flight on 3 Ray workers that were lost "
                                                r"in turn.*chunk_size=1|every Ray worker was lost \(worker0: .*"
                                                r"run the same command again to resume"):
        wsx.explore(model, data, backend=backend, executor=RayExecutor(start_timeout=PATIENT, workers=2, chunk_size=1), **SMALL)
