"""The worker side of the ``ray`` executor: one Ray actor that scores knob dicts.

An actor is set up once per exploration: it checks that it runs the driver's wsx, fetches the model and
the data from the object store (shipped once), builds the same backend(s) and its own approximation
cache with the driver's approximation, clusterer and seed. Each call then carries only knob dicts, a
subset id (the indices themselves the first time) and the stop rule; the first time a layer is used,
its approximated weights are compared with the driver's by sha256, so a worker that would cluster
differently fails loudly instead of scoring other candidates than the driver thinks.

This module is imported on the workers: it must not import Ray or a framework at import time.
"""
from __future__ import annotations

import functools
import hashlib
import os
import pickle
import time
from pathlib import Path
from typing import Any

from wsx.errors import ExecutorError
from wsx.executor import ScoringSession

MAX_SUBSETS = 4  # subsets a worker keeps (search subset, all samples, test: a run uses at most three)


@functools.lru_cache(maxsize=1)
def wsx_identity() -> dict:
    """wsx's version and a digest of its installed sources (wsx, the built-in backends and plugins):
    two installs score alike only if both agree."""
    import wsx
    import wsx_backends
    import wsx_plugins

    h = hashlib.sha256()
    for package in (wsx, wsx_backends, wsx_plugins):
        root = Path(package.__file__).parent
        for path in sorted(root.rglob("*.py")):
            h.update(str(path.relative_to(root.parent)).encode())
            h.update(path.read_bytes())
    return {"version": wsx.__version__, "sources": h.hexdigest()[:16]}


def where() -> str:
    """This worker, as error messages name it: node address and process id."""
    try:
        import ray

        ip = ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - only for a message
        ip = "?"
    return f"worker pid {os.getpid()} on {ip}"


def missing_module(exc: BaseException) -> str | None:
    """The module a failed unpickling could not import (None if the failure was something else)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ModuleNotFoundError) and exc.name:
            return exc.name
        if isinstance(exc, (ImportError, AttributeError)) and ("import" in str(exc) or "Can't get attribute"
                                                               in str(exc)):
            return getattr(exc, "name", None) or str(exc)
        text = str(exc)
        if "No module named" in text:
            return text.split("No module named", 1)[1].strip().strip("'\"").split("'")[0]
        exc = exc.__cause__ or exc.__context__ or getattr(exc, "cause", None)
    return None


class ScoringWorker:
    """One scoring worker (a Ray actor; see the module docstring)."""

    def __init__(self):
        self.session = None
        self.names: dict[str, str] = {}
        self.subsets: dict[str, Any] = {}

    def ping(self) -> int:
        return os.getpid()

    def setup(self, driver: dict, model_ref: list, data_refs: dict, spec_ref: list, options: dict) -> dict:
        """Build this worker's backends and approximation cache; returns where and how it runs."""
        t0 = time.perf_counter()
        mine = wsx_identity()
        if mine != driver:
            raise ExecutorError(
                f"the Ray {where()} runs wsx {mine['version']} (sources {mine['sources']}) but the driver runs wsx "
                f"{driver['version']} (sources {driver['sources']}); install the same wsx on every node (pip install "
                f"'wsx[ray]=={driver['version']}', or the same source tree) and restart the cluster's workers")
        if options.get("threads"):
            from wsx.threads import set_process_threads

            set_process_threads(int(options["threads"]))
        import ray

        spec = self._fetch(ray, spec_ref[0], "the backend settings (metric, clusterer)")
        for recipe in spec.backends.values():
            recipe.cls.prepare_import()  # before the model's framework is imported by unpickling it
        model = self._fetch(ray, model_ref[0], "the model")
        backends = {}
        for split, recipe in spec.backends.items():
            data = self._fetch(ray, data_refs[split][0], f"the {split} data")
            backends[split] = recipe.build(model, data, **options.get("override", {}))
        be = backends["search"]
        self.names = self._match_layers(be, spec.layers)
        self.session = ScoringSession.create(backends, spec.approximation, spec.clusterer, spec.layers,
                                             weights_of=lambda name: be.get_weights(self.names[name]),
                                             importances=spec.importances)
        self.subsets = {}
        device = getattr(be, "device_", None) or getattr(be, "device", None) or "cpu"
        ctx = ray.get_runtime_context()
        return {"pid": os.getpid(), "node": ctx.get_node_id(), "ip": ray.util.get_node_ip_address(),
                "device": str(device), "setup_s": time.perf_counter() - t0}

    @staticmethod
    def _fetch(ray, ref, what: str) -> Any:
        try:
            return pickle.loads(ray.get(ref))  # pickled by the driver (ray.cloudpickle)
        except Exception as exc:  # noqa: BLE001 - an unpickling failure, named below
            module = missing_module(exc)
            if module is None:
                raise ExecutorError(f"the Ray {where()} cannot load {what}: {type(exc).__name__}: "
                                    f"{str(exc).strip()[:400]}") from None
            raise ExecutorError(
                f"the Ray {where()} cannot import {module!r}, which {what} needs; make that code importable on "
                "every node: install it there, or ship it with the job: RayExecutor(runtime_env={'working_dir': "
                "'FOLDER'}), the folder holding it (or ray.init(runtime_env=...) if you connect to Ray yourself)",
                module) from None

    @staticmethod
    def _match_layers(be, layers) -> dict:
        """{driver's layer name: this worker's}: the same names, or, where unpickling renamed them (Keras
        drops the model's name scope from variable paths), the same layers in the same order and shapes.
        The weights digests compared on first use catch a wrong match."""
        mine = be.layers()
        if {layer.name for layer in layers} <= {layer.name for layer in mine}:
            return {layer.name: layer.name for layer in layers}
        shapes = [tuple(layer.shape) for layer in mine]
        if shapes != [tuple(layer.shape) for layer in layers]:
            raise ExecutorError(
                f"the Ray {where()} built a model with other layers than the driver's ({len(mine)} layers "
                f"{[layer.name for layer in mine][:4]}... where the driver has {len(layers)}: "
                f"{[layer.name for layer in layers][:4]}...): the workers run other versions of the model's code "
                "or framework; install the same on every node")
        return {theirs.name: ours.name for theirs, ours in zip(layers, mine)}

    def score(self, population: list, split: str, subset_key: str | None, subset: Any, stop: Any,
              checks: dict) -> tuple[list, dict]:
        """Score a chunk of knob dicts; ``checks`` {layer: (knob, sha256)} are compared first use."""
        if self.session is None:
            raise ExecutorError(f"the Ray {where()} was asked to score before it was set up")
        t0 = time.perf_counter()
        if subset is not None:
            self.subsets[subset_key] = subset
            while len(self.subsets) > MAX_SUBSETS:
                self.subsets.pop(next(iter(self.subsets)))
        indices = None if subset_key is None else self.subsets[subset_key]
        clustered = self.session.cache.timers.get("clustering")
        weights = [{self.names[n]: w for n, w in cand.items()} for cand in self.session.materialise(population)]
        for layer, (knob, expected) in checks.items():
            got = self.session.digest(layer, knob)
            if got != expected:
                raise ExecutorError(
                    f"the Ray {where()} approximates layer {layer!r} at knob {knob!r} to other weights than the "
                    f"driver (sha256 {got[:12]} vs {expected[:12]}): its clusterer, numpy or model weights differ; "
                    "install the same versions on every node (a clusterer must be deterministic for its seed)")
        scored = self.session.backends[split].score_detailed(weights, indices, stop=stop)
        busy = time.perf_counter() - t0
        info = {"busy": busy, "clustering": self.session.cache.timers.get("clustering") - clustered}
        info["bytes_back"] = len(pickle.dumps((scored, info), protocol=5))
        return scored, info
