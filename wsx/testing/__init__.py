"""Conformance suites shipped with wsx, like scikit-learn's ``check_estimator``.

A plugin author runs the one for the interface they implement on their class::

    from wsx.testing import check_backend, check_clusterer, check_strategy, check_approximation, check_executor

Each raises AssertionError naming the first broken expectation.
"""
from __future__ import annotations

from importlib import import_module

_SUITES = {"check_backend": "backends", "check_clusterer": "clusterers", "check_strategy": "strategies",
           "check_approximation": "approximations", "check_executor": "executors"}


def __getattr__(name: str):
    if name in _SUITES:
        return getattr(import_module(f".{_SUITES[name]}", __name__), name)
    raise AttributeError(f"module 'wsx.testing' has no attribute {name!r}")
