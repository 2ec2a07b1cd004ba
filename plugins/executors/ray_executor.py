"""The ``ray`` executor: candidates scored by the workers of a Ray cluster (``pip install 'wsx[ray]'``).

``explore(model, data, executor="ray")`` starts a local Ray instance with one worker per core;
``executor="ray:address=auto"`` (or ``HOST:PORT``, ``ray://HOST:10001``) joins a running cluster;
``workers=N`` caps the workers, ``gpus_per_worker=1`` gives each its own GPU (one worker per GPU).

What travels: the model, the data of each split and the backend settings go to the object store once
(pickled here, so an object that cannot be pickled is named before any worker starts); every worker
builds the same backend and its own approximation cache (wsx.executor.ScoringSpec). A call then carries
a chunk of knob dicts, a subset id (the indices once per worker) and the stop rule; results come back as
``Scored``, each chunk handed to the engine as it finishes (the journal records it then, whatever
the order). The journal, the strategy and the result stay on the driver.

Scheduling: a population is cut into small chunks handed out as workers free up (two in flight per
worker, so a worker never waits for the driver); candidates whose first changed layer is the same go to
the same worker where possible (a layer-wise sweep keeps its prefix cache there). Faults: a worker lost
(actor killed, process killed, node gone) costs the re-scoring of its in-flight chunks on the others,
and a replacement is started where the cluster has room; when none is left the run stops with an
ExecutorError and the journal (``out=``) resumes it.
"""
from __future__ import annotations

import math
import os
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from wsx.errors import (ExecutorError, InvalidDataError, InvalidModelError, InvalidSettingError,
                        PluginUnavailableError, WsxError)
from wsx.executor import Executor, ScoringSpec
from wsx.hookspecs import hookimpl

from .ray_worker import ScoringWorker, wsx_identity

MAX_CHUNK = 16  # candidates per call at most (automatic chunks): small enough to balance uneven scorings
IN_FLIGHT = 2  # chunks queued per worker: the next one is there when the current one ends
MAX_CHUNK_FAILURES = 3  # a chunk that killed this many workers is not sent again


def install_hint() -> str:
    from wsx.plugins import install_hint as hint

    source = hint("ray")
    plain = "pip install 'wsx[ray]'"
    return plain if source == plain else f"{plain} (this wsx came from a source folder: {source})"


@dataclass
class _Chunk:
    key: str  # the candidates' first changed layer: chunks of one key prefer one worker
    indices: list
    failures: int = 0
    sent_at: float = 0.0
    queued_behind: int = 0


@dataclass
class _Worker:
    label: str
    actor: Any
    ready: Any = None  # the setup call's ObjectRef until it returned
    info: dict = field(default_factory=dict)
    alive: bool = True
    inflight: list = field(default_factory=list)
    subsets: set = field(default_factory=set)
    verified: set = field(default_factory=set)
    affinity: str | None = None
    busy_s: float = 0.0
    candidates: int = 0
    chunks: int = 0
    lost_reason: str = ""


class RayExecutor(Executor):
    """Scores candidates on Ray actors; see the module docstring.

    ``address``: None starts a local Ray instance (or uses the one ``ray.init`` started in this
    process), ``"auto"`` joins the cluster this machine belongs to, ``"HOST:PORT"`` a head node's GCS,
    ``"ray://HOST:PORT"`` a Ray Client server. ``workers``: how many actors (default: as many as the
    cluster's CPUs, or GPUs with ``gpus_per_worker``, hold). ``chunk_size``: candidates per call
    (default: a population split in about four chunks per worker, at most 16). ``runtime_env``: Ray's,
    to ship the model's code to the nodes (``{"working_dir": "."}``). ``start_timeout``: seconds the
    workers may take to be placed and set up. ``replace_lost``: start a replacement for a lost worker.
    """

    name = "ray"
    extra = "ray"
    requires = ("ray",)

    def __init__(self, *, address: str | None = None, workers: int | None = None, gpus_per_worker: float = 0,
                 cpus_per_worker: float = 1, chunk_size: int | None = None, runtime_env: dict | None = None,
                 object_store_memory: int | None = None, start_timeout: float = 120.0, replace_lost: bool = True,
                 spread: bool = True, log_to_driver: bool = False):
        self.address = _check_address(address)
        self.workers = _check_number("workers", workers, integer=True, allow_none=True)
        self.gpus_per_worker = _check_number("gpus_per_worker", gpus_per_worker, minimum=0)
        self.cpus_per_worker = _check_number("cpus_per_worker", cpus_per_worker)
        self.chunk_size = _check_number("chunk_size", chunk_size, integer=True, allow_none=True)
        if runtime_env is not None and not isinstance(runtime_env, dict):
            raise InvalidSettingError(f"runtime_env={runtime_env!r}: give Ray's runtime_env dict, e.g. "
                                      "{'working_dir': '.'} or {'py_modules': ['mypkg']}")
        self.runtime_env = runtime_env
        self.object_store_memory = _check_number("object_store_memory", object_store_memory, integer=True,
                                                 allow_none=True)
        self.start_timeout = _check_number("start_timeout", start_timeout)
        self.replace_lost = bool(replace_lost)
        self.spread = bool(spread)
        self.log_to_driver = bool(log_to_driver)
        self.keep_ = False  # inside `with`: workers stay for the next exploration
        self.pool_: list[_Worker] = []
        self.own_ray_ = False
        self.shipped_ = None
        self.session = None
        self._reset_stats()

    @classmethod
    def available(cls) -> tuple[bool, str]:
        from wsx.plugins import module_available

        ok, _ = module_available("ray", "ray")
        return (True, "") if ok else (False, f"ray is not installed; {install_hint()}")

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, session) -> None:
        if session.spec is None:
            raise InvalidSettingError("the ray executor needs a ScoringSession with a spec (ScoringSpec): how "
                                      "to build the backends on the workers; explore gives one")
        ray = _import_ray()
        self.session = session
        self._reset_stats()
        self._connect(ray)
        shipment = self._shipment_key(session.spec)
        if self.shipped_ is not None and shipment == self.shipped_[0] and any(w.alive for w in self.pool_):
            return  # the same model, data and settings: the workers kept everything (wsx.bench)
        self.shipped_ = (shipment, self._ship(ray, session.spec))
        self._start_workers(ray)

    def close(self) -> None:
        self.session = None
        if self.keep_:
            return
        ray = _import_ray(quiet=True)
        if ray is None:
            return
        for w in self.pool_:
            try:
                ray.kill(w.actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.pool_, self.shipped_ = [], None
        if self.own_ray_ and ray.is_initialized():
            ray.shutdown()
        self.own_ray_ = False

    def __enter__(self):
        self.keep_ = True
        return self

    def shutdown(self) -> None:
        self.keep_ = False
        self.close()

    @property
    def candidates_per_call(self) -> int:
        return max(32, 8 * IN_FLIGHT * max(len(self._live()), 1))

    # -- connecting and shipping ------------------------------------------------------------------
    def _connect(self, ray) -> None:
        if ray.is_initialized():  # this process is already connected (by the user's ray.init, or an earlier start)
            if self.runtime_env and not self.own_ray_ and _local_paths(self.runtime_env):
                raise InvalidSettingError(
                    "runtime_env with local folders is taken by ray.init only, and Ray was already initialised in "
                    "this process: pass runtime_env to your ray.init(...), or leave ray.init to the executor")
            return
        common = dict(runtime_env=self.runtime_env, log_to_driver=self.log_to_driver, logging_level="ERROR",
                      include_dashboard=False)
        if self.address is None:
            cpus = None if self.workers is None else max(int(math.ceil(self.workers * self.cpus_per_worker)), 1)
            try:
                ray.init(num_cpus=cpus, object_store_memory=self.object_store_memory, **common)
            except Exception as exc:  # noqa: BLE001 - Ray raises many kinds
                raise ExecutorError(f"could not start a local Ray instance ({type(exc).__name__}: "
                                    f"{str(exc).strip()[:300]}); start one with `ray start --head` and pass "
                                    "address='auto' (--ray-address auto)") from None
        else:
            if self.address != "auto" and not self.address.startswith("ray://"):
                _check_reachable(self.address)
            try:
                ray.init(address=self.address, **{k: v for k, v in common.items() if k != "include_dashboard"})
            except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, TimeoutError ...
                raise ExecutorError(_connect_failure(self.address, exc)) from None
        self.own_ray_ = True

    def _shipment_key(self, spec: ScoringSpec) -> tuple:
        """What the workers were built from: the same objects (identity) and settings reuse them."""
        recipes = tuple((split, r.cls, tuple(map(id, r.given or (r.model, r.data))),
                         repr(sorted(r.kwargs.items(), key=str))) for split, r in sorted(spec.backends.items()))
        keep_alive = tuple(r.given or (r.model, r.data) for r in spec.backends.values())  # ids stay unique while kept
        return (recipes, repr(spec.approximation.get_params()), type(spec.approximation),
                repr(spec.clusterer.get_params()) if spec.clusterer is not None else None, type(spec.clusterer),
                tuple((layer.name, tuple(layer.shape)) for layer in spec.layers), keep_alive)

    def _ship(self, ray, spec: ScoringSpec) -> dict:
        """Pickle the model, each split's data and the settings once and put them in the object store."""
        from dataclasses import replace

        dumps = ray.cloudpickle.dumps
        recipes = dict(spec.backends)
        model = recipes["search"].model
        try:
            model_bytes = dumps(model)
        except Exception as exc:  # noqa: BLE001 - whatever the pickler refuses
            raise InvalidModelError(_unpicklable("the model", model, exc)) from None
        data_bytes = {}
        for split, recipe in recipes.items():
            try:
                data_bytes[split] = dumps(recipe.data)
            except Exception as exc:  # noqa: BLE001
                raise InvalidDataError(_unpicklable(f"the {split} data", recipe.data, exc)) from None
        light = ScoringSpec(backends={s: replace(r, model=None, data=None, given=()) for s, r in recipes.items()},
                            approximation=spec.approximation, clusterer=spec.clusterer, layers=list(spec.layers),
                            importances=spec.importances)
        try:
            spec_bytes = dumps(light)
        except Exception as exc:  # noqa: BLE001
            raise InvalidSettingError(_unpicklable("the backend settings (metric, output, clusterer, "
                                                   "approximation)", light, exc)) from None
        self.stats_["shipped_once_bytes"] = {"model": len(model_bytes), "spec": len(spec_bytes),
                                             **{f"data_{s}": len(b) for s, b in data_bytes.items()}}
        try:
            return {"model": ray.put(model_bytes), "spec": ray.put(spec_bytes),
                    "data": {s: ray.put(b) for s, b in data_bytes.items()}}
        except Exception as exc:  # noqa: BLE001 - object store full
            raise ExecutorError(f"the model and data ({sum(self.stats_['shipped_once_bytes'].values())} bytes) do "
                                f"not fit in Ray's object store ({type(exc).__name__}: {str(exc)[:200]}); start "
                                "Ray with a larger object_store_memory, or score on fewer samples") from None

    # -- workers ------------------------------------------------------------------------------------
    def _options(self) -> dict:
        override = {"device": None} if self.gpus_per_worker else {}  # each GPU worker sees its own GPU
        return {"threads": max(int(self.cpus_per_worker), 1), "override": override}

    def _count(self, ray) -> int:
        resources = ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
        if self.gpus_per_worker and gpus < self.gpus_per_worker:
            raise ExecutorError(f"gpus_per_worker={self.gpus_per_worker:g} but the Ray cluster has {gpus:g} GPUs; "
                                "add GPU nodes, or score on CPUs (gpus_per_worker=0, --gpus-per-worker 0)")
        fits = int(cpus // self.cpus_per_worker)
        if self.gpus_per_worker:
            fits = min(fits, int(gpus // self.gpus_per_worker))
        if self.workers is None:
            return max(fits, 1)
        if self.workers > fits:
            raise ExecutorError(
                f"workers={self.workers} need {self.workers * self.cpus_per_worker:g} CPUs"
                + (f" and {self.workers * self.gpus_per_worker:g} GPUs" if self.gpus_per_worker else "")
                + f" but the Ray cluster has {cpus:g} CPUs and {gpus:g} GPUs; ask for at most {fits} workers")
        return self.workers

    def _new_worker(self, ray, label: str) -> _Worker:
        actor_cls = ray.remote(ScoringWorker)
        opts = dict(num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker, max_restarts=0,
                    max_task_retries=0)
        if self.spread:
            opts["scheduling_strategy"] = "SPREAD"
        if self.runtime_env is not None and not self.own_ray_:
            opts["runtime_env"] = self.runtime_env
        return _Worker(label=label, actor=actor_cls.options(**opts).remote())

    def _setup(self, w: _Worker) -> None:
        refs = self.shipped_[1]
        w.ready = w.actor.setup.remote(wsx_identity(), [refs["model"]], {s: [r] for s, r in refs["data"].items()},
                                       [refs["spec"]], self._options())
        w.subsets, w.verified, w.affinity, w.inflight = set(), set(), None, []

    def _start_workers(self, ray) -> None:
        t0 = time.perf_counter()
        wanted = self._wanted = self._count(ray)
        live = [w for w in self.pool_ if w.alive]
        for w in live[wanted:]:
            ray.kill(w.actor, no_restart=True)
        self.pool_ = live[:wanted]
        while len(self.pool_) < wanted:
            self.pool_.append(self._new_worker(ray, f"worker{len(self.pool_)}"))
        self._replacements = 0
        for w in self.pool_:
            self._setup(w)
        deadline = time.monotonic() + self.start_timeout
        waiting = {w.ready: w for w in self.pool_}
        while waiting and time.monotonic() < deadline:
            done, _ = ray.wait(list(waiting), num_returns=1, timeout=min(1.0, max(deadline - time.monotonic(), 0)))
            for ref in done:
                self._joined(ray, waiting.pop(ref))
        for w in waiting.values():  # never placed or never set up: given up
            w.alive, w.lost_reason = False, f"not ready within start_timeout={self.start_timeout:g} s"
            ray.kill(w.actor, no_restart=True)
        self.pool_ = [w for w in self.pool_ if w.alive]
        if not self.pool_:
            raise ExecutorError(
                f"no Ray worker became ready within {self.start_timeout:g} s ({wanted} asked for, each "
                f"{self.cpus_per_worker:g} CPU and {self.gpus_per_worker:g} GPU; the cluster has "
                f"{ray.cluster_resources()}); free resources on the cluster, ask for fewer workers, or raise "
                "start_timeout")
        self.stats_["setup_s"] = time.perf_counter() - t0

    def _joined(self, ray, w: _Worker) -> bool:
        """Take a finished setup: the worker joins, is found lost, or its error is raised."""
        try:
            w.info = ray.get(w.ready)
        except _lost_errors(ray) as exc:
            text = str(exc)
            if "No module named 'wsx" in text:
                raise ExecutorError(f"the Ray workers cannot import wsx ({_first_line(text)}); install the same wsx "
                                    f"as the driver on every node (pip install 'wsx[ray]=={wsx_identity()['version']}')"
                                    ) from None
            self._mark_lost(ray, w, exc)
            return False
        except Exception as exc:  # noqa: BLE001 - raised by the worker's setup
            raise _from_worker(ray, exc) from None
        finally:
            w.ready = None
        if self.gpus_per_worker and not any(s in w.info["device"].lower() for s in ("cuda", "gpu")):
            raise ExecutorError(f"{w.label} on {w.info['ip']} was given a GPU but its backend scores on "
                                f"{w.info['device']}: install the GPU build of the model's framework on the workers")
        return True

    def _live(self) -> list[_Worker]:
        return [w for w in self.pool_ if w.alive and w.ready is None]

    def _mark_lost(self, ray, w: _Worker, exc: BaseException) -> None:
        w.alive, w.lost_reason = False, f"{type(exc).__name__}: {_first_line(str(exc))}"
        self.stats_["lost_workers"] += 1
        try:
            ray.kill(w.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        if self.replace_lost and self._replacements < self._wanted:  # at most one replacement per worker
            self._replacements += 1
            new = self._new_worker(ray, f"worker{len(self.pool_)}")
            self._setup(new)
            self.pool_.append(new)

    # -- scoring ------------------------------------------------------------------------------------
    def score(self, population, subset, *, stop=None, split="search", on_result=None) -> list:
        population = [dict(c) for c in population]
        if not population:
            return []
        if self.session is None:
            raise InvalidSettingError("the ray executor scores only between start(session) and close()")
        ray = _import_ray()
        t0 = time.perf_counter()
        results: list = [None] * len(population)
        queues = self._plan(population)
        subset_key = None if subset is None else _subset_key(subset)
        refs: dict = {}
        lost_since = None
        while any(r is None for r in results):
            for depth in range(1, IN_FLIGHT + 1):  # every idle worker gets a chunk before any gets a second
                for w in self._live():
                    chunk = self._next_chunk(queues, w) if len(w.inflight) < depth else None
                    if chunk is not None:
                        refs[self._send(w, chunk, population, split, subset_key, subset, stop)] = (w, chunk)
            starting = [w for w in self.pool_ if w.alive and w.ready is not None]
            if not refs and not starting:
                raise ExecutorError(self._all_lost_message())
            if not self._live():
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since > self.start_timeout:
                    raise ExecutorError(self._all_lost_message())
            else:
                lost_since = None
            waiting = list(refs) + [w.ready for w in starting]
            done, _ = ray.wait(waiting, num_returns=1, timeout=1.0)
            for ref in done:
                if ref not in refs:  # a replacement finished its setup
                    w = next(w for w in starting if w.ready == ref)
                    self._joined(ray, w)
                    continue
                w, chunk = refs.pop(ref)
                w.inflight.remove(ref)
                try:
                    scored, info = ray.get(ref)
                except _lost_errors(ray) as exc:
                    self._requeue_all(ray, w, exc, queues, refs, chunk)
                    continue
                except Exception as exc:  # noqa: BLE001 - raised by the worker (metric, mismatch)
                    raise _from_worker(ray, exc) from None
                self._took(w, chunk, scored, info, results)
                if on_result is not None:  # journaled now: a driver killed mid-call keeps it
                    on_result(chunk.indices, scored)
        self.stats_["wall_s"] += time.perf_counter() - t0
        return results

    def _plan(self, population: list) -> dict:
        """Chunks per key (the candidate's first changed layer in forward order), in population order."""
        order = {name: i for i, name in enumerate(self.session.layers)}
        groups: dict[str, list] = {}
        for i, cand in enumerate(population):
            key = min(cand, key=lambda n: order.get(n, len(order))) if cand else ""
            groups.setdefault(key, []).append(i)
        size = self.chunk_size or max(1, min(MAX_CHUNK, math.ceil(len(population) / (4 * max(len(self._live()), 1)))))
        return {key: deque(_Chunk(key, idx[i:i + size]) for i in range(0, len(idx), size))
                for key, idx in groups.items()}

    def _next_chunk(self, queues: dict, w: _Worker) -> _Chunk | None:
        """The next chunk of the worker's own key; else of a key no other worker holds; else the back
        of the longest queue (stealing from its end leaves its owner the chunks in order)."""
        if w.affinity in queues and queues[w.affinity]:
            return queues[w.affinity].popleft()
        held = {v.affinity for v in self._live() if v is not w}
        free = [k for k, q in queues.items() if q and k not in held]
        if free:
            w.affinity = free[0]
            return queues[free[0]].popleft()
        busiest = max(queues, key=lambda k: len(queues[k]), default=None)
        if busiest is None or not queues[busiest]:
            return None
        return queues[busiest].pop()

    def _send(self, w: _Worker, chunk: _Chunk, population, split, subset_key, subset, stop):
        import pickle

        knobs = [population[i] for i in chunk.indices]
        checks = {}
        for cand in knobs:
            for layer, knob in cand.items():
                if layer not in w.verified:
                    checks[layer] = (knob, self._digest(layer, knob))
                    w.verified.add(layer)
        key = (split, subset_key)
        first = subset_key is not None and key not in w.subsets
        w.subsets.add(key)
        args = (knobs, split, subset_key, subset if first else None, stop, checks)
        self.stats_["bytes_to_workers"] += len(pickle.dumps(args, protocol=5))
        chunk.sent_at, chunk.queued_behind = time.perf_counter(), len(w.inflight)
        ref = w.actor.score.remote(*args)
        w.inflight.append(ref)
        return ref

    def _digest(self, layer: str, knob) -> str:
        key = (layer, knob)
        if key not in self._digests:
            self._digests[key] = self.session.digest(layer, knob)
        return self._digests[key]

    def _took(self, w: _Worker, chunk: _Chunk, scored: list, info: dict, results: list) -> None:
        for i, s in zip(chunk.indices, scored):
            results[i] = s
        w.busy_s += info["busy"]
        w.candidates += len(chunk.indices)
        w.chunks += 1
        s = self.stats_
        s["candidates"] += len(chunk.indices)
        s["chunks"] += 1
        s["bytes_from_workers"] += info.get("bytes_back", 0)
        if chunk.queued_behind == 0:  # the round trip was this chunk's alone: its overhead is measurable
            s["overhead_samples"].append((time.perf_counter() - chunk.sent_at - info["busy"]) / len(chunk.indices))

    def _requeue_all(self, ray, w: _Worker, exc: BaseException, queues: dict, refs: dict, chunk: _Chunk) -> None:
        """A lost worker: every chunk it had in flight goes back to the front of its queue."""
        mine = [ref for ref, (v, _) in refs.items() if v is w]
        chunks = [chunk] + [refs.pop(ref)[1] for ref in mine]
        w.inflight = []
        self._mark_lost(ray, w, exc)
        for c in reversed(chunks):
            c.failures += 1
            if c.failures >= MAX_CHUNK_FAILURES:
                raise ExecutorError(f"candidates {c.indices} were in flight on {c.failures} Ray workers that were lost "
                                    f"in turn (last: {w.lost_reason}); scoring them may exhaust a worker's memory: "
                                    "give the workers more memory or score fewer candidates per call (chunk_size=1)")
            queues.setdefault(c.key, deque()).appendleft(c)
            self.stats_["rescored_candidates"] += len(c.indices)

    def _all_lost_message(self) -> str:
        reasons = "; ".join(f"{w.label}: {w.lost_reason}" for w in self.pool_ if w.lost_reason)
        return (f"every Ray worker was lost ({reasons or 'none could be started'}); what was scored so far is in the "
                "journal when the run has out=DIR: run the same command again to resume once the cluster is healthy")

    # -- what the result records --------------------------------------------------------------------
    def _reset_stats(self) -> None:
        self._digests: dict = {}
        self._replacements = getattr(self, "_replacements", 0)
        self._wanted = getattr(self, "_wanted", 0)
        shipped = getattr(self, "stats_", {}).get("shipped_once_bytes", {})
        self.stats_ = {"candidates": 0, "chunks": 0, "bytes_to_workers": 0, "bytes_from_workers": 0,
                       "lost_workers": 0, "rescored_candidates": 0, "wall_s": 0.0, "setup_s": 0.0,
                       "overhead_samples": [], "shipped_once_bytes": shipped}
        for w in self.pool_:
            w.busy_s, w.candidates, w.chunks = 0.0, 0, 0

    def stats(self) -> dict:
        s = self.stats_
        wall = s["wall_s"]
        n = max(s["candidates"], 1)
        workers = []
        timings = {}
        for w in self.pool_:
            util = w.busy_s / wall if wall > 0 else 0.0
            workers.append({"worker": w.label, "node": str(w.info.get("node", ""))[:12], "ip": w.info.get("ip"),
                            "pid": w.info.get("pid"), "device": w.info.get("device"), "candidates": w.candidates,
                            "chunks": w.chunks, "busy_s": round(w.busy_s, 4), "utilisation": round(util, 4),
                            "lost": not w.alive, "lost_reason": w.lost_reason})
            timings[f"{w.label}_utilisation"] = round(util, 4)
            timings[f"{w.label}_busy"] = round(w.busy_s, 4)
        samples = s["overhead_samples"]
        return {"name": self.name, "address": self.address, "workers": workers, "candidates": s["candidates"],
                "chunks": s["chunks"], "lost_workers": s["lost_workers"],
                "rescored_candidates": s["rescored_candidates"], "setup_s": round(s["setup_s"], 3),
                "scoring_wall_s": round(wall, 4),
                "bytes_to_workers_per_candidate": round(s["bytes_to_workers"] / n, 1),
                "bytes_from_workers_per_candidate": round(s["bytes_from_workers"] / n, 1),
                "overhead_ms_per_candidate": round(1000 * sorted(samples)[len(samples) // 2], 3) if samples else None,
                "shipped_once_bytes": s["shipped_once_bytes"], "timings": timings}


# -- helpers ----------------------------------------------------------------------------------------
def _import_ray(quiet: bool = False):
    try:
        import ray
    except ImportError:
        if quiet:
            return None
        raise PluginUnavailableError(f"the ray executor needs Ray, which is not installed; {install_hint()}") from None
    return ray


def _lost_errors(ray) -> tuple:
    e = ray.exceptions
    return (e.RayActorError, e.WorkerCrashedError, e.NodeDiedError, e.ObjectLostError, e.OwnerDiedError,
            e.LocalRayletDiedError)


def _from_worker(ray, exc: BaseException) -> BaseException:
    """The worker's own exception (a WsxError keeps its class and message), without Ray's wrapping."""
    cause = getattr(exc, "cause", None)
    if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(cause, BaseException):
        exc = cause
    if isinstance(exc, ExecutorError) and len(exc.args) > 1:  # the worker could not import a module
        return ExecutorError(_module_hint(exc.args[0], exc.args[1]))
    if isinstance(exc, WsxError):
        return type(exc)(*exc.args)
    return ExecutorError(f"a Ray worker failed: {type(exc).__name__}: {_first_line(str(exc))}")


def _module_hint(message: str, module: str) -> str:
    import sys

    mod = sys.modules.get(str(module).split(".")[0])
    path = getattr(mod, "__file__", None)
    if not path:
        return message
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.basename(path) == "__init__.py":
        folder = os.path.dirname(folder)
    return message.replace("FOLDER", folder)


def _local_paths(runtime_env: dict) -> list:
    """The local folders or files a runtime_env names (working_dir, py_modules)."""
    paths = [runtime_env.get("working_dir")] + list(runtime_env.get("py_modules") or [])
    return [p for p in paths if isinstance(p, (str, os.PathLike)) and "://" not in str(p)]


def _first_line(text: str) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return (lines[0] if lines else "")[:300]


def _unpicklable(what: str, obj: Any, exc: BaseException) -> str:
    return (f"{what} ({type(obj).__module__}.{type(obj).__name__}) cannot be serialised for the Ray workers "
            f"({type(exc).__name__}: {_first_line(str(exc))}); a torch module, a Keras model (custom layers "
            "registered with @keras.saving.register_keras_serializable) or a JAX (apply_fn, params) pair of "
            "importable functions can; drop attributes holding locks, open files or generators, or score with "
            "executor='serial'")


def _subset_key(subset) -> str:
    import hashlib

    import numpy as np

    arr = np.ascontiguousarray(subset)
    return hashlib.sha1(arr.tobytes() + str(arr.dtype).encode()).hexdigest()[:16]


def _check_address(address):
    if address is None:
        return None
    if not isinstance(address, str) or not address.strip():
        raise InvalidSettingError(f"address={address!r}: give 'auto', 'HOST:PORT' of a Ray head node, "
                                  "'ray://HOST:PORT' of a Ray Client server, or None for a local Ray instance")
    address = address.strip()
    if address == "auto" or address.startswith("ray://"):
        return address
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidSettingError(f"address={address!r} is not HOST:PORT (e.g. 10.0.0.5:6379, the port "
                                  "`ray start --head --port=6379` opened); or give 'auto' or 'ray://HOST:PORT'")
    return address


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ExecutorError(
            f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}); start its head node there with "
            f"`ray start --head --port={port}`, check the host, port and firewall, or run on a machine of the "
            "cluster with --ray-address auto") from None


def _connect_failure(address: str, exc: BaseException) -> str:
    text = _first_line(str(exc))
    if address == "auto":
        return (f"no running Ray cluster found from this machine (address='auto': {text}); start one with "
                "`ray start --head`, give HOST:PORT of a head node, or leave the address out for a local Ray")
    return (f"could not join the Ray cluster at {address} ({type(exc).__name__}: {text}); check that a head node "
            f"runs there (`ray status --address {address}`) with the same Ray and Python versions as this machine, "
            "and, if the cluster uses token authentication, set RAY_AUTH_MODE=token and its token here "
            "(RAY_AUTH_TOKEN or ~/.ray/auth_token)")


def _check_number(name: str, value, *, integer: bool = False, allow_none: bool = False, minimum: float | None = None):
    """``value`` checked: finite, > 0 (or >= ``minimum``), whole when ``integer``; None if allowed."""
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (not integer or float(value).is_integer())
    ok = ok and (value >= minimum if minimum is not None else value > 0)
    if not ok:
        what = "a whole number" if integer else "a number"
        bound = f">= {minimum:g}" if minimum is not None else "> 0"
        raise InvalidSettingError(f"{name}={value!r}: give {what} {bound}" + (" or None" if allow_none else ""))
    return int(value) if integer else value


@hookimpl
def wsx_executors():
    return [RayExecutor]
