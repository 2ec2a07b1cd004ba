"""Property-based hardening suite (hypothesis): generated arguments, journals, artifacts and
results.json files, valid, truncated, bit-flipped and inconsistent. Every outcome must be a result
or a ``wsx.WsxError`` (never another exception), nothing may be written outside the out directory,
and reading an artifact must stay within a memory bound.

CI runs a fixed, derandomised number of examples (``WSX_HYPOTHESIS_EXAMPLES``, default 25 per
property) so that it is deterministic and fast; raise it locally, and set ``WSX_HYPOTHESIS_SEARCH=1``
for fresh random examples on each run, to search harder.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import wsx  # noqa: E402
from _tiny import TinyBackend, make_mlp  # noqa: E402

EXAMPLES = int(os.environ.get("WSX_HYPOTHESIS_EXAMPLES", "25"))
CI = settings(max_examples=EXAMPLES, derandomize=not os.environ.get("WSX_HYPOTHESIS_SEARCH"), deadline=None,
              database=None, print_blob=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                     HealthCheck.data_too_large])
LOAD_LIMIT = 1 << 20  # max_bytes the artifact property passes to load_compressed

JSON = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.text(max_size=6),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=6)


# -- the guard every property runs its call under ----------------------------------------------
class _Writes:
    """Records paths opened for writing, renamed onto or created while ``active`` (an audit hook:
    it sees Python's own opens and os calls, whoever makes them)."""

    active = False
    seen: list = []

    @classmethod
    def hook(cls, event, args):
        if not cls.active:
            return
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if writing and isinstance(path, (str, bytes, os.PathLike)):
                cls.seen.append(os.fsdecode(path))
        elif event in ("os.rename", "os.replace"):
            cls.seen.append(os.fsdecode(args[1]))
        elif event in ("os.mkdir", "os.remove", "os.truncate"):
            if isinstance(args[0], (str, bytes, os.PathLike)):
                cls.seen.append(os.fsdecode(args[0]))


sys.addaudithook(_Writes.hook)
IGNORED = ("__pycache__", ".cache/matplotlib", ".config/matplotlib", "/dev/", "/proc/")  # the interpreter's and libraries' caches


@contextlib.contextmanager
def guarded(allowed: Path | None, memory: int | None = None):
    """Run a call that must end in a result or a WsxError, write only under ``allowed`` (None:
    nowhere) and, with ``memory``, allocate at most that many bytes at its peak."""
    _Writes.seen = []
    _Writes.active = True
    if memory is not None:
        tracemalloc.start()
    outcome = {}
    try:
        yield outcome
    except wsx.WsxError as exc:
        outcome["error"] = exc
    finally:
        _Writes.active = False
        if memory is not None:
            outcome["peak"] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    root = None if allowed is None else os.path.abspath(allowed)
    outside = [p for p in _Writes.seen if not any(part in p for part in IGNORED)
               and (root is None or not (os.path.abspath(p) + os.sep).startswith(root + os.sep))]
    assert not outside, f"wrote outside {allowed}: {outside}"
    if memory is not None:
        assert outcome["peak"] <= memory, f"peak {outcome['peak']} bytes > bound {memory}"


# -- arguments -------------------------------------------------------------------------------------
def some(*strategies):
    return st.one_of(*strategies, st.none(), st.text(max_size=3), st.floats(), st.booleans())


ARGUMENTS = st.fixed_dictionaries({}, optional={
    "seed": some(st.integers(-3, 3)),
    "subset": some(st.integers(-5, 500), st.floats(0, 1)),
    "budget": some(st.integers(-2, 40)),
    "bits": some(st.sampled_from([0, 7, 8, 16, 32, 64])),
    "batch_size": some(st.integers(-2, 500)),
    "target": some(st.sampled_from(["mlperf-heavy", "mlperf-light", "mlperf-medium"]), st.floats(0, 1.2)),
    "time_limit": some(st.floats(-1, 60)),
    "min_subset": some(st.integers(-2, 2000)),
    "knobs": some(st.lists(some(st.integers(-2, 300)), max_size=4),
                  st.dictionaries(st.sampled_from(["fc1", "fc2", "nope"]),
                                  st.lists(st.integers(-1, 300), max_size=3) | st.none(), max_size=2)),
    "metric": st.sampled_from(["top1", "nope", 3]),
    "strategy": st.sampled_from(["divide-and-conquer", "greedy", "nope"]),
    "approximation": st.sampled_from(["weight-sharing", "pruning", "nope"]),
})


@pytest.fixture(scope="module")
def tiny():
    return make_mlp(n=300)


@CI
@given(kwargs=ARGUMENTS)
def test_any_arguments_give_a_result_or_a_wsx_error(tmp_path_factory, tiny, kwargs):
    weights, data = tiny
    sandbox = tmp_path_factory.mktemp("args")
    out = sandbox / "out"
    budget = kwargs.get("budget")
    if budget is None or (isinstance(budget, int) and budget > 40):
        kwargs["budget"] = 40  # a bound on the work an example may do
    metric = kwargs.pop("metric", "top1")
    with guarded(out) as outcome:
        backend = TinyBackend(weights, data, metric=metric) if metric == "top1" else None
        outcome["result"] = wsx.explore({k: v.copy() for k, v in weights.items()}, data, progress=False,
                                        out=out, backend=backend or TinyBackend, **kwargs)
    if "result" in outcome:
        assert isinstance(outcome["result"], wsx.Result) and (out / "results.json").exists()


# -- journals --------------------------------------------------------------------------------------
def explore_tiny(tiny, out, **kw):
    weights, data = tiny
    dc = wsx.plugins.strategies()["divide-and-conquer"](pop_size=6, generations=2)
    return wsx.explore(weights, data, backend=TinyBackend(weights, data), strategy=dc, knobs=[2, 4, 8, 16, 32],
                       subset=None, target=0.9, progress=False, out=out, **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny):
    """An uninterrupted run: its journal and its scores, by candidate."""
    out = tmp_path_factory.mktemp("reference")
    result = explore_tiny(tiny, out)
    scores = {tuple(sorted(c.knobs.items())): c.accuracy for c in result.history}
    return (out / "journal.jsonl").read_bytes(), scores, [(c.knobs, c.accuracy) for c in result.front], out


def _records(journal: bytes) -> list[bytes]:
    return journal.split(b"\n")[:-1]


@st.composite
def damaged(draw, journal: bytes):
    """A journal truncated, bit-flipped, with lines dropped / repeated / swapped (accidents: a resumed
    run must then equal the uninterrupted one, or be refused)."""
    kind = draw(st.sampled_from(["truncate", "flip", "drop", "repeat", "swap"]))
    if kind == "truncate":
        return journal[:draw(st.integers(0, len(journal)))]
    if kind == "flip":
        data = bytearray(journal)
        for _ in range(draw(st.integers(1, 3))):
            data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    lines = _records(journal)
    i = draw(st.integers(0, len(lines) - 1))
    if kind == "drop":
        del lines[i]
    elif kind == "repeat":
        lines.insert(draw(st.integers(0, len(lines))), lines[i])
    else:
        j = draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines) + b"\n"


@st.composite
def inconsistent(draw, journal: bytes):
    """A record or the header with a field replaced by any JSON value, its checksum recomputed (what
    a hand edit that knows the format does): validation must refuse it or the run must go on."""
    from wsx.journal import checksum

    lines = _records(journal)
    i = draw(st.integers(0, len(lines) - 1))
    rec = json.loads(lines[i])
    key = draw(st.sampled_from(sorted(rec) + ["extra"]))
    value = draw(JSON | st.dictionaries(st.sampled_from(["fc1", "fc2", "fc3"]), JSON, max_size=2))
    rec[key] = value
    if i > 0:
        rec["h"] = checksum(rec)
    lines[i] = json.dumps(rec).encode()
    return b"\n".join(lines) + b"\n"


def resume(tmp_path_factory, tiny, journal: bytes) -> dict:
    """The outcome of the same exploration on a journal made of ``journal`` (guarded)."""
    out = tmp_path_factory.mktemp("journal")
    (out / "journal.jsonl").write_bytes(journal)
    with guarded(out) as outcome:
        outcome["result"] = explore_tiny(tiny, out)
    return outcome


@CI
@given(data=st.data())
def test_any_damaged_journal_resumes_exactly_or_is_refused(tmp_path_factory, tiny, reference, data):
    journal, scores, front, _ = reference
    outcome = resume(tmp_path_factory, tiny, data.draw(damaged(journal)))
    if "result" in outcome:  # resumed: nothing it says may differ from the uninterrupted run
        result = outcome["result"]
        assert all(scores[tuple(sorted(c.knobs.items()))] == c.accuracy for c in result.history)
        assert [(c.knobs, c.accuracy) for c in result.front] == front


@CI
@given(data=st.data())
def test_any_inconsistent_journal_gives_a_result_or_a_wsx_error(tmp_path_factory, tiny, reference, data):
    outcome = resume(tmp_path_factory, tiny, data.draw(inconsistent(reference[0])))
    if "result" in outcome:
        assert isinstance(outcome["result"], wsx.Result)


# -- artifacts -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def artifact(tmp_path_factory, tiny):
    path = tmp_path_factory.mktemp("artifact") / "a.wsx"
    wsx.export(tiny[0], {"fc1": 4, "fc2": 1}, path, backend=TinyBackend)
    return path.read_bytes()


def _rewrite_manifest(data: bytes, edit) -> bytes:
    """The artifact with its manifest edited (tensors as stored)."""
    import tempfile

    from safetensors.numpy import save_file

    from wsx.artifact import read

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.wsx"
        path.write_bytes(data)
        manifest, arrays = read(path)
        edit(manifest)
        save_file(arrays, str(path), metadata={"format": "wsx-artifact", "wsx": json.dumps(manifest)})
        return path.read_bytes()


SIZES = st.integers(0, 2 ** 40) | st.sampled_from([2 ** 28, 2 ** 32, 192, 120, 0, -1])


@st.composite
def artifacts(draw, data: bytes):
    kind = draw(st.sampled_from(["valid", "truncate", "flip", "sizes", "field"]))
    if kind == "valid":
        return data
    if kind == "truncate":
        return data[:draw(st.integers(0, len(data) - 1))]
    if kind == "flip":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            out[draw(st.integers(0, len(out) - 1))] ^= 1 << draw(st.integers(0, 7))
        return bytes(out)
    layer = draw(st.integers(0, 1))
    if kind == "sizes":  # declared sizes inconsistent with the bytes present (decompression bombs)
        weights = draw(SIZES)

        def edit(m):
            e = m["layers"][layer]
            e["weights"], e["shape"] = weights, draw(st.sampled_from([[weights], e["shape"]]))
            e["axes"] = list(range(len(e["shape"])))
            if draw(st.booleans()):
                m["tensors"] += [e["name"]] * draw(st.integers(0, 50))
                m["aliases"] = {**m["aliases"], **{f"tied{i}": e["name"] for i in range(draw(st.integers(0, 50)))}}
                m["tensors"] += list(m["aliases"])
    else:
        key = draw(st.sampled_from(["name", "shape", "dtype", "k", "index_bits", "groups", "weights", "axes",
                                    "granularity", "codebook_dtype", "bits", "tensors", "aliases", "layers",
                                    "layers_of_interest", "size_bits", "compression_rate", "version"]))
        value = draw(JSON)

        def edit(m):
            target = m if key in m else m["layers"][layer]
            if draw(st.booleans()):
                target.pop(key, None)
            else:
                target[key] = value
    return _rewrite_manifest(data, edit)


@settings(CI, max_examples=4 * EXAMPLES)  # no exploration per example: cheap, so search wider
@given(data=st.data())
def test_any_artifact_loads_or_is_refused_within_bounded_memory(tmp_path_factory, artifact, data, capsys):
    from wsx.artifact import inspect
    from wsx.cli import main

    path = tmp_path_factory.mktemp("artifact") / "a.wsx"
    path.write_bytes(data.draw(artifacts(artifact)))
    bound = 4 * LOAD_LIMIT + 64 * path.stat().st_size + (1 << 20)
    with guarded(None, memory=bound) as outcome:
        outcome["dense"] = wsx.load_compressed(path, max_bytes=LOAD_LIMIT)
    if "dense" in outcome:
        assert all(isinstance(a, np.ndarray) for a in outcome["dense"].values())
    with guarded(None, memory=bound) as outcome:
        outcome["info"] = inspect(path)
    assert main(["inspect", str(path), "--json"]) in (0, 2)
    err = capsys.readouterr().err
    assert "Traceback" not in err


# -- results.json and wsx export ------------------------------------------------------------------
@pytest.fixture(scope="module")
def results(reference):
    return json.loads((reference[3] / "results.json").read_text())


def _nodes(tree, path=()):
    yield path
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _nodes(v, path + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _nodes(v, path + (i,))


@CI
@given(data=st.data())
def test_any_results_json_exports_or_is_refused(tmp_path_factory, tiny, results, data):
    import copy

    from wsx.commands.export import pick

    tree = copy.deepcopy(results)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in _nodes(tree) if p]
        where = data.draw(st.sampled_from(paths))
        parent = tree
        for step in where[:-1]:
            parent = parent[step]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[where[-1]]
        else:
            parent[where[-1]] = data.draw(JSON)
    out = tmp_path_factory.mktemp("results")
    (out / "results.json").write_text(json.dumps(tree))
    with guarded(out) as outcome:
        result = wsx.Result.load(out)
        chosen = pick(result, data.draw(st.sampled_from(["best", "0", "1", "x"])))
        outcome["info"] = wsx.export(tiny[0], chosen, out / "a.wsx", result=result, backend=TinyBackend)
    if "info" in outcome:  # a candidate changing no layer (knobs edited to {}) exports none
        assert outcome["info"]["layers"] or not chosen.knobs


def test_the_guard_sees_a_write_outside(tmp_path):
    """The property checks can fail: a write outside the allowed directory is reported."""
    with pytest.raises(AssertionError, match="wrote outside"):
        with guarded(tmp_path / "out"):
            (tmp_path / "elsewhere.txt").write_text("x")
    with pytest.raises(AssertionError, match="peak"):
        with guarded(None, memory=1 << 20):
            np.ones(1 << 21)
    with pytest.raises(ZeroDivisionError):
        with guarded(None):
            1 / 0
    shutil.rmtree(tmp_path, ignore_errors=True)
