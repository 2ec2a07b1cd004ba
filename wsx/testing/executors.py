"""Conformance suite for Executor plugins: an executor must give the serial answer.

    from wsx.testing import check_executor
    check_executor(lambda: MyExecutor(workers=2))    # raises AssertionError naming the broken rule

``make`` builds a fresh executor (the suite starts and closes two). What is checked, on the embedded
LeNet-5 (torch) unless ``model`` / ``data`` are given:

- parameters: keyword-only, stored as given, ``get_params`` rebuilds an equal object; ``name`` set,
  ``available()`` a (bool, str) pair;
- the seam: an empty population gives ``[]``; a population of knob dicts (with a layer named twice at
  different knobs, the original model ``{}`` and repeats) gives, in order, the very ``Scored`` objects
  the serial executor gives (values bit for bit, samples, ``rejected`` and ``bound``) on a subset of the
  search split, on the test split, and with a ``StopRule`` passed through untouched; parts handed to
  ``on_result`` before ``score`` returns (where it takes one) are those same objects, each candidate once;
- an exploration: the same history (knobs and scores, in order), front and test scores as with the
  serial executor for the same seed, and ``stats()`` JSON-able.
"""
from __future__ import annotations

import json
import math
from typing import Any, Callable

import numpy as np

from ..executor import Executor, ScoringSession, SerialExecutor
from ..problem import takes_keyword
from ..scoring import StopRule
from ._common import check_init_params


def same_scores(got: list, want: list) -> bool:
    """Two executors' ``Scored`` lists agree: values, samples, rejections and bounds exactly, output
    distortions to float32 precision (a population forward and one-by-one forwards round
    differently, and the distortion divides by the reference's squared top-two gap)."""
    if len(got) != len(want):
        return False
    for a, b in zip(got, want):
        if (a.value, a.samples, a.rejected, a.bound) != (b.value, b.samples, b.rejected, b.bound):
            return False
        if (a.distortion is None) != (b.distortion is None):
            return False
        if a.distortion is not None and not math.isclose(a.distortion, b.distortion, rel_tol=1e-3, abs_tol=1e-9):
            return False
    return True

__all__ = ["check_executor"]


def _example():
    from .. import zoo

    return zoo.load("lenet5-digits", framework="torch")


def _session(model, search, test) -> tuple[ScoringSession, list]:
    from ..engine import make_backend, resolve_approximation, resolve_clusterer

    backends = {"search": make_backend(model, search), "test": make_backend(model, test)}
    layers = backends["search"].layers()
    appr = resolve_approximation("weight-sharing", None)
    return ScoringSession.create(backends, appr, resolve_clusterer(None, 0), layers), layers


def _population(layers) -> list[dict]:
    a, b = layers[0].name, layers[-1].name
    return [{}, {a: 2}, {a: 8}, {b: 4}, {a: 2, b: 16}, {a: 2}, {b: 2}, {a: 16, b: 2}, {a: 4}]


def check_executor(make: Callable[[], Executor], *, model: Any = None, data: Any = None) -> None:
    import wsx

    if model is None:
        model, data = _example()
    x, y = data
    half = len(y) // 2
    search, test = (x[:half], y[:half]), (x[half:], y[half:])
    ex = make()
    cls = type(ex)
    assert isinstance(ex, Executor), f"{cls.__name__} must subclass wsx.executor.Executor"
    assert isinstance(cls.name, str) and cls.name, f"{cls.__name__}.name must be a non-empty string"
    ok, reason = cls.available()
    assert isinstance(ok, bool) and isinstance(reason, str), "available() must return (bool, str)"
    check_init_params(cls, ex, cls.__name__)

    session, layers = _session(model, search, test)
    serial = SerialExecutor()
    serial.start(session)
    population = _population(layers)
    sub = np.arange(0, half, 3)
    want = serial.score(population, sub)
    threshold = float(np.median([s.value for s in want]))
    stop = StopRule(threshold=threshold, confidence=0.9)
    ex.start(session)
    try:
        assert ex.score([], sub) == [], f"{cls.name}: an empty population must give []"
        got = ex.score(population, sub)
        assert same_scores(got, want), f"{cls.name}: scores on a subset differ from the serial executor's: {got} != {want}"
        if takes_keyword(ex.score, "on_result"):
            parts: dict = {}

            def on_result(indices, scored):
                for i, s in zip(indices, scored):
                    assert i not in parts, f"{cls.name}: on_result was handed candidate {i} twice"
                    parts[i] = s

            got = ex.score(population, sub, on_result=on_result)
            assert same_scores(got, want) and all(parts[i] == got[i] for i in parts), (
                f"{cls.name}: parts handed to on_result differ from what score returned: {parts} != {got}")
        got = ex.score(population, None, split="test")
        want_test = serial.score(population, None, split="test")
        assert same_scores(got, want_test), f"{cls.name}: scores on the test split differ from serial: {got} != {want_test}"
        got = ex.score(population, sub, stop=stop)
        want_stop = serial.score(population, sub, stop=stop)
        assert same_scores(got, want_stop), (f"{cls.name}: with a StopRule the Scored objects (rejected, bound) differ from "
                                  f"serial: {got} != {want_stop}")
    finally:
        ex.close()

    kw = dict(strategy="divide-and-conquer", knobs=[2, 4, 8], subset=0.5, min_subset=0, seed=1, progress=False,
              test_data=test)
    base = wsx.explore(model, search, **kw)
    ex = make()
    res = wsx.explore(model, search, executor=ex, **kw)
    history = [(c.knobs, c.accuracy) for c in res.history]
    assert history == [(c.knobs, c.accuracy) for c in base.history], f"{cls.name}: another history than serial"
    assert [(c.knobs, c.accuracy, c.test_accuracy) for c in res.front] == \
        [(c.knobs, c.accuracy, c.test_accuracy) for c in base.front], f"{cls.name}: another front than serial"
    json.dumps(ex.stats())
