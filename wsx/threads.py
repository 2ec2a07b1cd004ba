"""How many threads the frameworks' CPU kernels get, so that wsx does not oversubscribe a machine.

Why: torch, TensorFlow and XLA each start one compute thread per core. Two pytest-xdist workers,
or a demo next to other jobs, then run four or more busy threads on two cores and spin against
each other (measured here: the demo 16x slower with two torch threads on a busy 2-core machine
than with one). ``auto_threads()`` gives each process its share: the usable cores, divided among
pytest-xdist workers, less the cores other processes keep busy (1-minute load average), at least 1.

What can be changed when:

- torch: ``torch.set_num_threads`` at any time (``explore`` lowers it for the run and restores it);
  its inter-op pool only before its first parallel work (``OMP_NUM_THREADS`` before import).
- TensorFlow/Keras: intra- and inter-op pools only before the runtime starts, i.e. before the first
  model is built: ``TF_NUM_INTRAOP_THREADS`` / ``TF_NUM_INTEROP_THREADS`` in the environment or
  ``tf.config.threading.set_*_parallelism_threads``. A Keras model handed to ``explore`` already
  started it, so ``explore`` cannot change it; the CLI and the test suite set it before.
- JAX/XLA: ``XLA_FLAGS`` before the backend starts (``--xla_cpu_multi_thread_eigen=false
  intra_op_parallelism_threads=1`` for one thread), again too late once a model has run.

``WSX_THREADS`` (a whole number) overrides the automatic choice everywhere.
"""
from __future__ import annotations

import os
import sys
from typing import Callable

from .errors import InvalidSettingError

ENV = "WSX_THREADS"


def usable_cpus() -> int:
    """Cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return max(os.cpu_count() or 1, 1)


def auto_threads(*, load: float | None = None) -> int:
    """This process's share of the cores: ``WSX_THREADS`` if set; else the usable cores divided
    among pytest-xdist workers, less the cores that other processes keep busy (``load``: the
    1-minute load average by default), at least 1."""
    fixed = os.environ.get(ENV, "").strip()
    if fixed:
        return check_threads(fixed, f"the environment variable {ENV}")
    cpus = usable_cpus()
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    share = max(cpus // max(workers, 1), 1)
    if workers > 1:
        return share  # the suite's own workers are the load: the split is the answer
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = 0.0
    return max(min(share, int(cpus - load + 0.5)), 1)


def check_threads(value, what: str = "threads") -> int:
    """A thread count from user input, or InvalidSettingError naming ``what``."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if isinstance(value, bool) or n < 1 or (not isinstance(value, str) and n != value):
        raise InvalidSettingError(f"{what}={value!r}: give a whole number of threads >= 1 "
                                  "(or leave it unset for wsx's automatic choice)")
    return n


def environ_for(n: int) -> dict[str, str]:
    """Environment variables that cap every framework at ``n`` threads, for a process that has
    not imported them yet (the CLI, a test worker)."""
    env = {"OMP_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n), "OPENBLAS_NUM_THREADS": str(n),
           "TF_NUM_INTRAOP_THREADS": str(n), "TF_NUM_INTEROP_THREADS": str(min(n, 2))}
    keep = [f for f in os.environ.get("XLA_FLAGS", "").split()  # other flags stay; ours are replaced
            if not f.startswith(("intra_op_parallelism_threads=", "--xla_cpu_multi_thread_eigen="))]
    keep += (["--xla_cpu_multi_thread_eigen=false"] if n == 1 else []) + [f"intra_op_parallelism_threads={n}"]
    env["XLA_FLAGS"] = " ".join(keep)
    return env


def set_process_threads(n: int) -> None:
    """Cap this whole process at ``n`` threads: the environment for frameworks not imported yet,
    and the pools of those already imported where they still can change. The CLI calls it before
    loading a model; the test suite in each worker."""
    n = check_threads(n)
    os.environ.update(environ_for(n))
    _set_imported(n)


def _set_imported(n: int) -> list[str]:
    """Set the thread pools of imported frameworks; returns those whose pools are fixed already."""
    fixed = []
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        try:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(min(n, 2))
        except RuntimeError:  # the runtime already started: its pools are fixed now
            if tf.config.threading.get_intra_op_parallelism_threads() != n:
                fixed.append("tensorflow")
    if "jax" in sys.modules:
        fixed.append("jax")
    return fixed


def limit_threads(threads: int | None) -> tuple[int, list[str], Callable[[], None]]:
    """Threads for one exploration: ``threads``, or when None ``auto_threads()`` but never more
    than torch already uses (a user's lower setting stands). Returns (the count, notes on
    frameworks whose pools could not follow an explicit request, a function restoring torch's
    previous setting). Only torch can change once a model exists; see the module docstring."""
    n = check_threads(threads) if threads is not None else auto_threads()
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(n if threads is not None else min(n, before))
    notes = []
    if threads is not None:
        for name in _set_imported(n):
            if name != "torch":
                notes.append(f"threads={n} could not be applied to {name}: its thread pools are fixed once "
                             f"it has run; set them before building the model (wsx --threads, or {ENV} / "
                             "TF_NUM_INTRAOP_THREADS / XLA_FLAGS in the environment)")

    def restore() -> None:
        if torch is not None:
            torch.set_num_threads(before)

    return (torch.get_num_threads() if torch is not None else n), notes, restore
