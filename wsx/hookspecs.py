"""Every hook a wsx plugin may implement.

A plugin is a module (or object) published in the ``wsx`` entry-point group of its distribution::

    [project.entry-points.wsx]
    my-strategy = "my_package.wsx_plugin"

and implements any of the hooks below with ``@wsx.hookimpl``. The built-in backends, strategies,
clusterers, approximations and executors are published the same way. Hook names start with ``wsx_``; a
misspelt hook makes plugin loading fail (``check_pending``).
"""
from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("wsx")
hookimpl = pluggy.HookimplMarker("wsx")


@hookspec
def wsx_backends() -> list:
    """Return Backend subclasses this plugin provides (``wsx.Backend``).

    Each class has a unique ``name``; ``available()`` says whether its framework is installed and
    ``extra`` names the pip extra that installs it. Import the framework lazily, inside methods.

    The constructor takes ``(model, data=None, *, metric=None, output=None, batch_size, device, ...)``
    and passes them to ``wsx.Backend.__init__`` (``metric=None``: not given, top-1). ``data`` comes in
    any form ``wsx.data.as_data`` normalises (inputs and labels as arrays, dicts or tuples; labels may
    be absent); ``_iter_batches`` yields ``(native inputs, labels, sample indices)`` (or the first
    two), and ``_forward_population`` returns each candidate's output after ``select_output``. The
    base class runs the metric, computes the reference outputs of fidelity metrics and finds
    ``unused_layers``; ``wsx.testing.check_backend`` checks all of it.
    """


@hookspec
def wsx_strategies() -> list:
    """Return Strategy subclasses this plugin provides (``wsx.Strategy``)."""


@hookspec
def wsx_clusterers() -> list:
    """Return Clusterer subclasses this plugin provides (``wsx.Clusterer``)."""


@hookspec
def wsx_approximations() -> list:
    """Return Approximation subclasses this plugin provides (``wsx.Approximation``)."""


@hookspec
def wsx_executors() -> list:
    """Return Executor subclasses this plugin provides (``wsx.executor.Executor``): where candidates
    are scored (``serial``: this process; ``ray``: a Ray cluster's workers).

    An executor is started once per exploration with a ``wsx.executor.ScoringSession`` (the backends,
    the approximation cache, and ``spec``: a ``ScoringSpec`` that rebuilds them in another process),
    then ``score(knob dicts, subset, stop=, split=)`` returns one ``wsx.scoring.Scored`` per candidate,
    then ``close()``. Keyword-only constructor parameters (``explore(executor="name:key=value")``);
    ``available()`` and ``extra`` as for backends; ``stats()`` is what the result records about the run
    (per-worker utilisation). ``wsx.testing.check_executor`` checks it gives the serial answer.
    """


@hookspec(firstresult=True)
def wsx_backend_for(model: Any) -> str | None:
    """Return the name of the backend that handles ``model``, or None if this plugin does not know it.

    The first non-None answer wins; it is how ``explore(backend=None)`` picks a backend.
    """
