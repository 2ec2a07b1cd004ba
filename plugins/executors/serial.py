"""The ``serial`` executor: every candidate scored in this process (``wsx.executor.SerialExecutor``)."""
from __future__ import annotations

from wsx.executor import SerialExecutor
from wsx.hookspecs import hookimpl


@hookimpl
def wsx_executors():
    return [SerialExecutor]
