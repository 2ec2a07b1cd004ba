"""The one place candidates are handed to a backend for scoring.

Strategies and backends never call each other; the engine sends every population through an
executor, so scoring can be spread over processes, devices or machines by swapping this object
alone. What crosses the seam is knob dicts ({layer name: knob}), never weights: the scoring side
materialises candidates from its own approximation cache (clustering is deterministic for a
clusterer and seed), and returns one ``wsx.scoring.Scored`` per candidate.

An executor is started once per exploration with a ``ScoringSession`` (the backends by data split,
the in-process approximation cache, and a ``ScoringSpec`` that builds the same in another process),
then asked to ``score`` populations, then closed. Executors are plugins (``wsx_executors``): ``serial``
scores in this process, ``ray`` on the workers of a Ray cluster (``wsx_plugins.executors``).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from .scoring import Scored, StopRule


@dataclass
class BackendRecipe:
    """How to build a backend again in another process: its class, the model, the data (as
    ``Backend.portable_data`` gives it) and the other constructor arguments."""

    cls: type
    model: Any
    data: Any
    kwargs: dict
    given: tuple = ()  # (model, data) as the user gave them: the same objects need not be shipped again

    @classmethod
    def of(cls, backend) -> "BackendRecipe":
        """The recipe of a built backend, with the metric and output explore gave it."""
        kwargs = backend.init_arguments()
        kwargs.pop("data", None)
        model = kwargs.pop("model", backend.model)
        for name in ("metric", "output"):  # explore may have set them on a configured backend
            if getattr(backend, name, None) is not None:
                kwargs[name] = getattr(backend, name)
        return cls(type(backend), model, backend.portable_data(), kwargs, given=(backend.model, backend.data))

    def build(self, model: Any, data: Any, **override):
        """The backend on ``model`` and ``data`` (this process' copies of the recipe's)."""
        return self.cls(model, data, **{**self.kwargs, **override})


@dataclass
class ScoringSpec:
    """What a worker needs to score candidates as this process does: a recipe per data split, the
    approximation and clusterer (their parameters and seed decide the shared weights) and the
    layers of interest."""

    backends: dict
    approximation: Any
    clusterer: Any
    layers: list
    importances: Any = None  # per-weight importances the approximation weights its clustering with


@dataclass
class ScoringSession:
    """What scoring needs in this process: ``backends`` by split ("search"; "test" when test data
    was given), the approximation ``cache`` that turns knobs into weights, and the ``layers`` of
    interest by name. Executors that score elsewhere rebuild the same from the ``spec``."""

    backends: dict
    cache: Any
    layers: dict
    spec: ScoringSpec | None = None

    @classmethod
    def create(cls, backends: dict, approximation, clusterer, layers, *, weights_of=None,
               timers=None, importances=None) -> "ScoringSession":
        """A session scoring ``layers`` (LayerInfo list) on ``backends`` {split: Backend} with a new
        approximation cache (``weights_of(name)``: the original weights, default the search backend's),
        and the spec that builds the same elsewhere."""
        from .problem import ApproximationCache, Timers

        cache = ApproximationCache(approximation, clusterer, weights_of or backends["search"].get_weights,
                                   timers or Timers(), importances=importances)
        spec = ScoringSpec(backends={split: BackendRecipe.of(b) for split, b in backends.items()},
                           approximation=approximation, clusterer=clusterer, layers=list(layers),
                           importances=importances)
        return cls(backends=backends, cache=cache, layers={layer.name: layer for layer in layers}, spec=spec)

    def materialise(self, population: Sequence[Mapping[str, Any]]) -> list[dict[str, np.ndarray]]:
        """Each candidate's substituted weights; every layer's missing knobs are approximated in one
        call, so a clusterer sweeps a layer's k values at once (results equal one k at a time)."""
        wanted: dict[str, list] = {}
        for cand in population:
            for name, knob in cand.items():
                wanted.setdefault(name, []).append(knob)
        for name, knobs in wanted.items():
            self.cache.fill(self.layers[name], knobs)
        return [{name: self.cache.get(self.layers[name], knob).weights for name, knob in cand.items()}
                for cand in population]

    def digest(self, layer: str, knob: Any) -> str:
        """sha256 of a layer's approximated weights at ``knob``: equal on every process that clusters
        the same weights with the same clusterer and seed (executors compare it to catch one that does not)."""
        return weights_digest(self.cache.get(self.layers[layer], knob).weights)


def weights_digest(weights: np.ndarray) -> str:
    arr = np.ascontiguousarray(weights)
    h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


class Executor:
    """Scores populations of knob dicts on a session's backends; see the module docstring.

    Plugins subclass it: keyword-only constructor parameters stored as given (``get_params``),
    ``name``, ``extra`` / ``requires`` as for backends. Used as a context manager, an executor may keep
    its workers between explorations (``wsx.bench`` does) and releases them on exit.
    """

    name: ClassVar[str] = ""
    extra: ClassVar[str | None] = None
    requires: ClassVar[tuple[str, ...]] = ()  # modules it imports when used

    def __init__(self) -> None:
        """Subclasses take keyword-only settings and store them under their own names."""

    @classmethod
    def available(cls) -> tuple[bool, str]:
        from .plugins import modules_available

        return modules_available(cls.requires, cls.extra)

    def get_params(self) -> dict:
        """The constructor's parameters as stored (``type(self)(**get_params())`` builds the same)."""
        from .specs import plugin_params

        return {p: getattr(self, p) for p in plugin_params(type(self)) if hasattr(self, p)}

    @property
    def candidates_per_call(self) -> int:
        """How many candidates one ``score`` call should carry to keep every worker busy."""
        return 32

    def start(self, session: ScoringSession) -> None:
        self.session = session

    def score(self, population: Sequence[Mapping[str, Any]], subset: np.ndarray | None, *,
              stop: StopRule | None = None, split: str = "search", on_result=None) -> list[Scored]:
        """One ``Scored`` per candidate, in order, on the ``subset`` of ``split``'s data (all if None).

        ``on_result(indices, scored)``, when given, takes parts of the population as they finish,
        before ``score`` returns (any order, each index at most once; the return value still holds
        every candidate): the engine journals them at once, so a driver killed mid-call keeps them."""
        raise NotImplementedError

    def stats(self) -> dict:
        """What the result records about where candidates were scored (JSON-able; ``result.extras
        ["executor"]``). Numbers under ``"timings"`` join ``result.timings`` (per-worker utilisation)."""
        return {}

    def close(self) -> None:
        """End the exploration: release workers and what they hold (unless inside ``with``)."""

    def shutdown(self) -> None:
        """Release everything, also what a ``with`` block kept between explorations."""
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


class SerialExecutor(Executor):
    """Scores a population in this process, in one pass over the data."""

    name = "serial"

    def score(self, population, subset, *, stop=None, split="search", on_result=None) -> list[Scored]:
        # one pass over the data scores the whole population: its results come back together
        population = list(population)
        if not population:
            return []
        weights = self.session.materialise(population)
        return self.session.backends[split].score_detailed(weights, subset, stop=stop)


def resolve_executor(executor: Any) -> Executor:
    """An Executor from None (serial), an instance, a class, a name or a ``name:key=value`` spec
    (``"ray:address=auto,workers=8"``)."""
    from . import specs

    if executor is None:
        return SerialExecutor()
    return specs.resolve("executor", executor, Executor)
