"""The ray executor on this machine: 1 vs 2 workers, per-candidate overhead, bytes shipped.

    python benchmarks/distributed/bench_distributed.py [--images 64] [--size 176] [--candidates 32] [--rounds 3]

Four cases, each variant timed in interleaved rounds (serial, ray 1 worker, ray 2 workers, ...)
so that a busy machine slows them alike; the best round is reported:

* ``mobilenet`` (CPU-bound, memory-heavy): a MobileNetV2-shaped torch network
  (benchmarks/scoring/mobilenet.py, random weights, ``--images`` random inputs of ``--size`` px,
  labels its own predictions) where one scoring costs >= 0.5 s on one thread; ``--candidates``
  layer-wise candidates (two knobs each of evenly spaced layers). Its activations (tens of MB per
  batch) stream through memory, so two processes on two cores compete for the memory system.
* ``mlp`` (CPU-bound, compute-heavy): an MLP (4 x 512-wide hidden layers, ``--mlp-samples`` inputs)
  whose activations per batch fit a core's L2 cache; one scoring costs >= 0.5 s.
* For both, the **ceiling** (``bare-2``): two plain processes (no Ray, no executor), each with its own
  model, score the whole population at the same time; 2 x serial time / their wall time is the
  throughput two cores reach on that workload, the most any two workers can. On a shared machine
  the kernel's autogroup scheduling gives all of one session's processes one share of the CPU
  against the other sessions, so under load both ratios measure the machine, not the executor.
* ``device-bound``: the embedded LeNet-5 with a backend that waits ``--delay`` 0.5 s per candidate
  before scoring it, as a worker waits for its GPU: what the executor itself loses when scoring does
  not compete for the driver's cores (1, 2 and 4 workers).
* ``lenet`` (overhead): the embedded LeNet-5 / digits model (a scoring costs milliseconds), ``--small``
  candidates: (ray time - serial time) / candidates with one worker is the per-candidate cost of
  the executor (driver bookkeeping, the round trip, (de)serialising knobs and ``Scored``); the
  executor's own median of that, and the bytes each candidate sends and receives, against the bytes
  of the weights shipping the candidate's layers (or the whole model) would cost.

Every call carries ``--chunk`` candidates for every variant (the serial executor is fed the same
chunks: population scoring batches a chunk's candidates; equal chunks compare the executors, not the
batching); every process scores on one torch thread (the workers: ``cpus_per_worker=1``).
Every variant is warmed up once (clustering, tracing, the prefix cache), so the rounds time scoring
alone; the one-off setup (shipping model and data, building the workers) is reported apart. Writes
results.json and results.md next to this file (or --out). The load averages before and after are
recorded: on a machine other processes keep busy, 2 workers on 2 cores cannot reach 2x.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))


def self_labelled(model, shape: tuple):
    """(model, (seeded random inputs of ``shape``, the model's own predictions as labels))."""
    import torch

    x = torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    with torch.no_grad():
        y = model(x).argmax(1).numpy()
    return model, (x.numpy(), y)


def mobilenet_problem(images: int, size: int):
    from benchmarks.scoring.mobilenet import mobilenet_v2

    return self_labelled(mobilenet_v2(num_classes=10, seed=0), (images, 3, size, size))


def mlp_problem(samples: int, width: int = 512, depth: int = 4):
    """Compute-bound: an MLP whose activations per batch fit a core's L2 cache, so two processes on two
    cores do not fight over memory bandwidth as a convolutional network's large activations do."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(*[m for _ in range(depth) for m in (nn.Linear(width, width), nn.ReLU())],
                          nn.Linear(width, 10)).eval()
    return self_labelled(model, (samples, width))


def device_bound(model, data, delay: float):
    """A torch backend that waits ``delay`` s per candidate, as a worker waits for its GPU."""
    import wsx

    class DeviceBound(wsx.plugins.backends()["torch"]):
        def __init__(self, model, data=None, *, delay: float = 0.5, **kw):
            super().__init__(model, data, **kw)
            self.delay = delay

        def score_detailed(self, population, subset=None, *, stop=None):
            time.sleep(self.delay * len(population))
            return super().score_detailed(population, subset, stop=stop)

    return DeviceBound(model, data, delay=delay)


def session_for(model, data, backend=None):
    from wsx.engine import make_backend, resolve_approximation, resolve_clusterer
    from wsx.executor import ScoringSession

    be = backend if backend is not None else make_backend(model, data)
    layers = be.layers()
    return ScoringSession.create({"search": be}, resolve_approximation("weight-sharing", None),
                                 resolve_clusterer(None, 0), layers), layers


def layerwise(layers, n: int, knobs=(4, 16)) -> list[dict]:
    picks = np.linspace(0, len(layers) - 1, max(-(-n // len(knobs)), 1)).round().astype(int)
    return [{layers[i].name: k} for i in picks for k in knobs][:n]


class ChunkedSerial:
    """The serial executor fed the chunks the ray executor sends (population scoring batches a chunk's
    candidates: equal chunks compare the executors, not the batching)."""

    def __init__(self, chunk: int):
        from wsx.executor import SerialExecutor

        self.inner, self.chunk = SerialExecutor(), chunk

    def start(self, session):
        self.inner.start(session)

    def score(self, population, subset):
        return [s for i in range(0, len(population), self.chunk)
                for s in self.inner.score(population[i:i + self.chunk], subset)]

    def close(self):
        self.inner.close()


_BARE = {}


def _bare_init(chunk, build, *args):
    import torch

    torch.set_num_threads(1)
    session, _ = session_for(*build(*args))  # rebuilt in the process: a model's class may be local
    _BARE["ex"] = ChunkedSerial(chunk)
    _BARE["ex"].start(session)


def _bare_score(population):
    return _BARE["ex"].score(population, None)


class Ceiling:
    """What the hardware gives, no executor at all: ``n`` plain processes (no Ray), each with its own
    model, score the whole population at the same time on one thread each. n x serial time / their
    wall time is the throughput n cores reach on this workload: the most any n workers can."""

    def __init__(self, n: int, chunk: int, build, *args):
        self.n, self.chunk, self.build, self.args = n, chunk, build, args

    def start(self, session):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.pools = [ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                          initializer=_bare_init, initargs=(self.chunk, self.build, *self.args))
                      for _ in range(self.n)]
        for f in [pool.submit(_bare_score, []) for pool in self.pools]:
            f.result()

    def score(self, population, subset):
        futures = [pool.submit(_bare_score, population) for pool in self.pools]
        return [f.result() for f in futures][0]

    def close(self):
        for pool in self.pools:
            pool.shutdown()


def timed_rounds(variants: dict, population: list, rounds: int) -> dict:
    """Best wall time of ``score(population)`` per variant, interleaved; the scores of each must agree."""
    best = {name: float("inf") for name in variants}
    values = {}
    for ex in variants.values():  # warm-up: clustering, prefix cache, tracing
        ex.score(population, None)
    for _ in range(rounds):
        for name, ex in variants.items():
            t0 = time.perf_counter()
            got = ex.score(population, None)
            best[name] = min(best[name], time.perf_counter() - t0)
            values.setdefault(name, [s.value for s in got])
    ref = values["serial"]
    for name, vals in values.items():
        assert vals == ref, f"{name} scored other values than serial"
    return best


def weights_bytes(session, population) -> tuple[float, int]:
    """Mean bytes of the weights a candidate changes, and of all the model's layers of interest."""
    size = {name: int(np.prod(layer.shape)) * 4 for name, layer in session.layers.items()}
    per = [sum(size[n] for n in cand) for cand in population]
    return float(np.mean(per)), sum(size.values())


def measure(args) -> dict:
    import ray
    import torch

    import wsx
    from wsx_plugins.executors.ray_executor import RayExecutor

    torch.set_num_threads(1)
    ray.init(num_cpus=7, include_dashboard=False, log_to_driver=False, logging_level="ERROR")  # logical CPUs
    lenet = wsx.zoo.load("lenet5-digits", framework="torch")
    ceilings = {"mobilenet": (mobilenet_problem, args.images, args.size), "mlp": (mlp_problem, args.mlp_samples)}
    cases = (("mobilenet", mobilenet_problem(args.images, args.size), None, args.candidates, (1, 2)),
             ("mlp", mlp_problem(args.mlp_samples), None, args.candidates, (1, 2)),
             ("device-bound", lenet, device_bound(*lenet, args.delay), args.candidates, (1, 2, 4)),
             ("lenet", lenet, None, args.small, (1, 2)))
    out = {}
    try:
        for label, (model, data), backend, n, counts in cases:
            if label not in args.cases.split(","):
                continue
            session, layers = session_for(model, data, backend)
            population = layerwise(layers, n, knobs=(2, 4, 8, 16, 32, 64, 128) if label == "mlp" else (4, 16))
            variants = {"serial": ChunkedSerial(args.chunk),
                        **{f"ray-{w}": RayExecutor(workers=w, chunk_size=args.chunk) for w in counts}}
            if label in ceilings:
                variants["bare-2"] = Ceiling(2, args.chunk, *ceilings[label])
            setup = {}
            for name, ex in variants.items():
                t0 = time.perf_counter()
                ex.start(session)
                setup[name] = time.perf_counter() - t0
            try:
                best = timed_rounds(variants, population, args.rounds)
                stats = {name: ex.stats() for name, ex in variants.items() if name.startswith("ray-")}
            finally:
                for ex in variants.values():
                    ex.close()
            changed, whole = weights_bytes(session, population)
            s1 = stats["ray-1"]
            out[label] = {
                "candidates": len(population), "layers": len(layers), "seconds": best,
                "per_scoring_serial_s": best["serial"] / len(population),
                "speedup_vs_1": {name: best["ray-1"] / sec for name, sec in best.items() if name.startswith("ray-")},
                "ceiling_throughput_vs_serial": {name: int(name[5:]) * best["serial"] / sec
                                                 for name, sec in best.items() if name.startswith("bare-")},
                "overhead_ms_per_candidate": 1000 * (best["ray-1"] - best["serial"]) / len(population),
                "executor_overhead_ms_median": s1["overhead_ms_per_candidate"],
                "bytes_to_workers_per_candidate": s1["bytes_to_workers_per_candidate"],
                "bytes_from_workers_per_candidate": s1["bytes_from_workers_per_candidate"],
                "weights_bytes_changed_per_candidate": changed, "weights_bytes_whole_model": whole,
                "shipped_once_bytes": s1["shipped_once_bytes"], "setup_s": setup,
                "utilisation": {name: {w["worker"]: w["utilisation"] for w in st["workers"]}
                                for name, st in stats.items()},
            }
            (args.out / "partial.json").write_text(json.dumps(out, indent=1) + "\n")  # a later case may fail
    finally:
        ray.shutdown()
    return out


def report(res: dict, meta: dict) -> str:
    lines = [f"# ray executor on this machine ({meta['date']}, {meta['cpus']} cores, load "
             f"{meta['load_before'][0]:.1f} before / {meta['load_after'][0]:.1f} after)", "",
             f"`{meta['command']}`", "",
             "| case | candidates | serial s | ray s (workers) | per scoring (serial) s | speed-up vs 1 worker "
             "| ceiling: 2 plain processes each scoring all (throughput vs serial) "
             "| overhead ms/candidate (1 worker - serial) | executor's median ms "
             "| bytes out / back per candidate | weights bytes changed / whole model |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, r in res.items():
        s = r["seconds"]
        ray_s = ", ".join(f"{s[k]:.2f} ({k[4:]})" for k in s if k.startswith("ray-"))
        bare = "; ".join(f"{s[k]:.2f} s, {v:.2f}x" for k, v in r.get("ceiling_throughput_vs_serial", {}).items()) or "-"
        speed = ", ".join(f"{v:.2f}x ({k[4:]})" for k, v in r["speedup_vs_1"].items() if k != "ray-1")
        lines.append(f"| {label} | {r['candidates']} | {s['serial']:.2f} | {ray_s} | {r['per_scoring_serial_s']:.3f} "
                     f"| {speed} | {bare} | {r['overhead_ms_per_candidate']:.1f} | {r['executor_overhead_ms_median']} "
                     f"| {r['bytes_to_workers_per_candidate']:.0f} / {r['bytes_from_workers_per_candidate']:.0f} "
                     f"| {r['weights_bytes_changed_per_candidate']:.0f} / {r['weights_bytes_whole_model']} |")
    lines += ["", "Shipped once per worker (bytes), setup seconds (start: ship, build workers), utilisation per worker:",
              ""]
    for label, r in res.items():
        lines.append(f"- {label}: {r['shipped_once_bytes']}; setup "
                     f"{json.dumps({k: round(v, 2) for k, v in r['setup_s'].items()})}; {r['utilisation']}")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--size", type=int, default=176)
    p.add_argument("--candidates", type=int, default=16)
    p.add_argument("--mlp-samples", type=int, default=24576, help="inputs of the compute-bound MLP case")
    p.add_argument("--cases", default="mobilenet,mlp,device-bound,lenet", help="comma-separated cases to run")
    p.add_argument("--small", type=int, default=64, help="LeNet candidates of the overhead measurement")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--delay", type=float, default=0.5, help="seconds per candidate of the device-bound case")
    p.add_argument("--chunk", type=int, default=2, help="candidates per call, the same for every variant")
    p.add_argument("--out", type=Path, default=HERE)
    args = p.parse_args()
    os.environ.setdefault("WSX_THREADS", "1")
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.platform(), "cpus": os.cpu_count(),
            "command": "python benchmarks/distributed/bench_distributed.py " + " ".join(sys.argv[1:]),
            "load_before": os.getloadavg()}
    args.out.mkdir(parents=True, exist_ok=True)
    res = measure(args)
    meta["load_after"] = os.getloadavg()
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "results": res}, indent=1) + "\n")
    (args.out / "results.md").write_text(report(res, meta))
    print(report(res, meta))


if __name__ == "__main__":
    main()
