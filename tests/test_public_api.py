"""What a newcomer sees first: dir(wsx), help(wsx.explore), install hints, TensorFlow's start-up noise."""
from __future__ import annotations

import inspect
import os
import subprocess
import sys

import pytest

import wsx


def test_dir_lists_only_the_public_api():
    names = dir(wsx)
    assert set(names) == set(wsx.__all__) | {"__version__"}
    for private in ("Any", "annotations", "import_module", "engine", "specs"):
        assert private not in names
    for name in wsx.__all__:
        assert getattr(wsx, name) is not None


def test_public_functions_show_their_signature_and_docstring():
    from wsx import benchmark, engine, exporting

    assert wsx.explore is engine.explore and wsx.bench is benchmark.bench and wsx.export is exporting.export
    params = inspect.signature(wsx.explore).parameters
    assert {"strategy", "target", "subset", "budget", "test_data", "knobs", "min_subset"} <= set(params)
    assert not any(p.kind is p.VAR_KEYWORD for p in params.values())
    assert len(wsx.explore.__doc__.splitlines()) > 10 and "time_limit" in wsx.explore.__doc__
    for fn in (wsx.apply, wsx.export, wsx.load_compressed, wsx.bench):
        assert fn.__doc__ and len(fn.__doc__.splitlines()) > 2, fn


def test_import_wsx_stays_light():
    code = "import sys, wsx; print(sorted(m for m in ('wsx.engine', 'wsx.benchmark', 'wsx.exporting') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_tensorflow_loads_without_banners():
    pytest.importorskip("tensorflow")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    code = "import wsx; wsx.zoo.load('lenet5-digits', framework='keras'); print('loaded')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and "loaded" in proc.stdout, proc.stderr
    from wsx_backends.tensorflow import BANNERS

    noise = [line for line in proc.stderr.splitlines() if any(b in line for b in BANNERS) or "cuda" in line.lower()]
    assert not noise, proc.stderr


def test_an_explicit_tensorflow_log_level_is_kept():
    """A user who sets TF_CPP_MIN_LOG_LEVEL gets TensorFlow's logs as they asked."""
    code = ("import os; from wsx_backends.tensorflow import quiet_import; quiet_import(); import sys; "
            "print(os.environ['TF_CPP_MIN_LOG_LEVEL'], 'tensorflow' in sys.modules)")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["0", "False"]


def test_native_stderr_filter_passes_other_lines(capfd):
    from wsx_backends.tensorflow import _stderr_without

    with _stderr_without(["noise"]):
        os.write(2, b"some noise here\nreal problem\n")
    err = capfd.readouterr().err
    assert "real problem" in err and "noise" not in err
