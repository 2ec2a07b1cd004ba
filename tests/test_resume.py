"""Resumable runs: the journal is written as candidates are scored, a run killed with SIGKILL resumes
without rescoring anything and ends on the front of an uninterrupted run; other runs are refused."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import wsx
from _tiny import TinyBackend, make_mlp
from wsx.errors import JournalMismatchError
from wsx.executor import SerialExecutor
from wsx.journal import read as read_journal

# The exploration the SIGKILL test runs, in a subprocess and in this process alike. WSX_TEST_SLOW
# seconds per scored candidate give the test time to kill it mid-search; scores do not depend on it,
# and the metric's code (part of the journal's fingerprint) is the same in both.
SCRIPT = """
import json, os, sys, time
import wsx

def pause():
    time.sleep(float(os.environ.get("WSX_TEST_SLOW", "0")))

def top1(outputs, labels):
    pause()
    return float((outputs.argmax(axis=1) == labels).mean())

def main(out):
    model, data = wsx.zoo.load("lenet5-digits")
    dc = wsx.plugins.strategies()["divide-and-conquer"](pop_size=6, generations=3)
    return wsx.explore(model, data, metric=top1, strategy=dc, knobs=[2, 4, 8, 16], subset=150,
                       min_subset=150, target=0.97, progress=False, out=out)

if __name__ == "__main__":
    main(sys.argv[1])
"""


@pytest.fixture(autouse=True)
def no_figures(monkeypatch):
    """The report is tested in test_report.py; here saving results.json is enough (and fast)."""
    save = wsx.Result.save
    monkeypatch.setattr(wsx.Result, "save", lambda self, out, plot=True: save(self, out, plot=False))


def journal_records(out) -> list:
    return read_journal(Path(out) / "journal.jsonl")[1]


def scorings_of(out) -> list:
    """The journal's scorings without the seconds they took (and the checksum that covers them)."""
    return [{k: v for k, v in r.items() if k not in ("t", "h")} for r in journal_records(out)]


def front_of(result) -> list:
    return [(c.knobs, c.accuracy, c.compression_rate, c.meets_target) for c in result.front]


def in_process(out):
    pytest.importorskip("torch")
    ns: dict = {}
    exec(SCRIPT, ns)
    return ns["main"](out)


def test_sigkill_mid_search_resumes_without_rescoring(tmp_path):
    pytest.importorskip("torch")
    reference = in_process(tmp_path / "uninterrupted")
    total = reference.scorings
    assert total > 16

    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ, WSX_TEST_SLOW="0.25"))
    journal = out / "journal.jsonl"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.exists() and journal.read_bytes().count(b"\n") >= 1 + 8:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    saved = journal_records(out)
    assert 8 <= len(saved) < total
    assert not (out / "results.json").exists()

    resumed = in_process(out)
    info = resumed.extras["journal"]
    assert info == {"path": "journal.jsonl", "replayed": len(saved), "scored": total - len(saved)}
    assert resumed.scorings == total
    assert front_of(resumed) == front_of(reference)
    assert scorings_of(out) == scorings_of(tmp_path / "uninterrupted")  # same scorings, same order
    assert [c.to_dict() for c in resumed.history] == [c.to_dict() for c in reference.history]


# -- the tiny backend: fast checks of the journal's behaviour ----------------------------------------
@pytest.fixture
def tiny():
    return make_mlp()


def explore(tiny, out, **kw):
    weights, data = tiny
    backend = kw.pop("backend", None) or TinyBackend(weights, data)
    dc = wsx.plugins.strategies()["divide-and-conquer"](pop_size=6, generations=3)
    args = dict(backend=backend, strategy=dc, knobs=[2, 4, 8, 16, 32, 64], subset=None, target=0.9,
                progress=False, out=out)
    args.update(kw)
    return wsx.explore(weights, data, **args)


def test_each_scoring_is_on_disk_before_the_next_is_scored(tiny, tmp_path):
    seen = []

    class Watching(TinyBackend):
        def score(self, population, subset=None):
            path = tmp_path / "journal.jsonl"
            if path.exists():  # the baseline is scored before the journal exists
                seen.append((len(read_journal(path)[1]), len(population)))
            return super().score(population, subset)

    result = explore(tiny, tmp_path, backend=Watching(*tiny))
    done = 0
    for on_disk, size in seen:  # subset=None: the front is not re-scored at the end
        assert on_disk == done
        done += size
    assert done == result.scorings == len(journal_records(tmp_path))


def test_budget_stop_then_continue_equals_one_run(tiny, tmp_path):
    """Budget and time limit only decide where a run stops: a larger budget continues the journal."""
    full = explore(tiny, tmp_path / "full")
    part = explore(tiny, tmp_path / "part", budget=15)
    assert part.scorings == 15 and len(journal_records(tmp_path / "part")) == 15
    rest = explore(tiny, tmp_path / "part")
    assert rest.extras["journal"] == {"path": "journal.jsonl", "replayed": 15, "scored": full.scorings - 15}
    assert front_of(rest) == front_of(full)
    again = explore(tiny, tmp_path / "part")  # a finished run: nothing left to score
    assert again.extras["journal"]["scored"] == 0 and front_of(again) == front_of(full)


def test_torn_last_line_is_ignored_and_dropped(tiny, tmp_path):
    full = explore(tiny, tmp_path)
    path = tmp_path / "journal.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:10]) + lines[10][:17])  # killed in the middle of record 10
    resumed = explore(tiny, tmp_path)
    assert resumed.extras["journal"]["replayed"] == 9
    assert front_of(resumed) == front_of(full)
    text = path.read_text()
    assert text.endswith("\n") and all(json.loads(line) for line in text.splitlines())
    assert len(journal_records(tmp_path)) == full.scorings


@pytest.mark.parametrize("change", ["model", "data", "settings"])
def test_another_run_is_refused_then_restart_discards(tiny, tmp_path, change):
    explore(tiny, tmp_path)
    weights, (x, y) = tiny
    kw = {}
    if change == "model":
        weights = {k: v.copy() for k, v in weights.items()}
        weights["fc2"][0, 0] *= 1.01
        kw["backend"] = TinyBackend(weights, (x, y))
    elif change == "data":
        kw["backend"] = TinyBackend(weights, (x[:-1], y[:-1]))
    else:
        kw["knobs"] = [2, 4, 8]
    message = {"model": "the model's weights differ", "data": "the scoring data differ",
               "settings": "knob_values"}[change]
    with pytest.raises(JournalMismatchError, match=message) as err:
        explore((weights, (x, y)), tmp_path, **kw)
    assert "--restart" in str(err.value) and "another --out" in str(err.value)
    fresh = explore((weights, (x, y)), tmp_path, restart=True, **kw)
    assert fresh.extras["journal"]["replayed"] == 0
    assert len(journal_records(tmp_path)) == fresh.scorings


def test_resume_leaves_the_model_bit_identical(tiny, tmp_path):
    weights, data = tiny
    explore(tiny, tmp_path, budget=12)
    before = {k: v.tobytes() for k, v in weights.items()}
    explore(tiny, tmp_path)
    assert {k: v.tobytes() for k, v in weights.items()} == before


def test_journal_header_names_model_data_and_settings(tiny, tmp_path):
    result = explore(tiny, tmp_path, seed=5)
    header, records, _ = read_journal(tmp_path / "journal.jsonl")
    assert header["format"] == "wsx-journal" and header["settings"]["seed"] == 5
    assert set(header["fingerprint"]) == {"model", "computation", "data", "metric", "settings"}
    assert header["baseline"] == result.baseline.subset_accuracy
    assert result.settings["fingerprint"] == header["fingerprint"]
    full = {"knobs", "value", "origin", "at", "t", "h", "distortion"}
    assert all(set(r) in (full, full | {"rejected", "samples", "bound"}) for r in records)
    assert any(r.get("rejected") for r in records) and any("rejected" not in r for r in records)
    assert [r["value"] for r in records] == [c.accuracy for c in result.history]
    assert [r["at"] for r in records] == list(range(len(records)))  # serial: in history order


def test_cli_restart_flag(tmp_path, monkeypatch):
    from wsx.cli import build_parser
    from wsx.commands import explore_kwargs

    args = build_parser().parse_args(["demo", "--out", str(tmp_path), "--restart", "--quiet"])
    kwargs = explore_kwargs(args)
    assert kwargs["restart"] is True and kwargs["out"] == str(tmp_path) and kwargs["progress"] is False


def test_tuple_knobs_survive_the_journal(tiny, tmp_path):
    """Knobs such as (sparsity, k) come back from JSON as tuples, so replayed keys match new ones."""
    if "weight-sharing+pruning" not in wsx.plugins.approximations():
        pytest.skip("no weight-sharing+pruning approximation installed")
    # the scan scores every knob value (6), then the combination step: a budget short of the whole stops part-way
    dc = wsx.plugins.strategies()["divide-and-conquer"](pop_size=6, generations=3, layerwise="scan")
    kw = dict(approximation="weight-sharing+pruning", knobs=[(0.0, 4), (0.5, 4), (0.5, 8)], strategy=dc)
    full = explore(tiny, tmp_path / "full", **kw)
    budget = full.scorings - 1
    assert budget >= 6
    explore(tiny, tmp_path / "part", budget=budget, **kw)
    rest = explore(tiny, tmp_path / "part", **kw)
    assert rest.extras["journal"]["replayed"] == budget and rest.scorings == full.scorings
    assert front_of(rest) == front_of(full)
    assert all(isinstance(k, tuple) for c in rest.history for k in c.knobs.values())


def test_data_fingerprint_depends_on_the_samples_only(lenet):
    """Batch size (and a backend's batch bookkeeping) do not change it; one sample less does."""
    from wsx.engine import make_backend

    model, (x, y) = lenet
    a = make_backend(model, (x, y), batch_size=256).fingerprint()
    assert make_backend(model, (x, y), batch_size=97).fingerprint() == a
    fewer = make_backend(model, (x[:-1], y[:-1])).fingerprint()
    relabelled = make_backend(model, (x, (y + 1) % 10)).fingerprint()
    assert fewer["data"] != a["data"] and relabelled["data"] != a["data"] and fewer["model"] == a["model"]


def test_time_limit_is_not_part_of_the_fingerprint(tiny, tmp_path):
    first = explore(tiny, tmp_path, time_limit=1e-9)  # stops at once
    assert first.scorings < 30 and np.isfinite(first.baseline.accuracy)
    second = explore(tiny, tmp_path)
    assert second.extras["journal"]["replayed"] == first.scorings


class Killed(Exception):
    """The driver dying mid-call, as far as the journal can tell."""


class InParts(SerialExecutor):
    """Scores each call one candidate at a time and hands them back last first (as Ray workers may
    finish); on its ``die_in``-th call of three candidates or more it stops dead after two of them."""

    name = "in-parts"

    def __init__(self, *, die_in: int | None = None):
        self.die_in = die_in
        self.big_calls = 0

    def score(self, population, subset, *, stop=None, split="search", on_result=None):
        population = list(population)
        self.big_calls += len(population) >= 3
        results = [None] * len(population)
        for n, i in enumerate(reversed(range(len(population)))):
            if n == 2 and self.big_calls == self.die_in:
                raise Killed
            results[i], = super().score([population[i]], subset, stop=stop, split=split)
            if on_result is not None:
                on_result([i], [results[i]])
        return results


def test_parts_of_a_call_are_journaled_as_they_finish_and_a_resume_scores_only_the_rest(tiny, tmp_path):
    fresh = explore(tiny, tmp_path / "fresh")
    whole = explore(tiny, tmp_path / "whole", executor=InParts())
    assert [c.to_dict() for c in whole.history] == [c.to_dict() for c in fresh.history]  # same order as serial

    out = tmp_path / "killed"
    with pytest.raises(Killed):
        explore(tiny, out, executor=InParts(die_in=1))
    saved = journal_records(out)
    at = [r["at"] for r in saved]
    assert at != sorted(at) and sorted(at) != list(range(len(at)))  # the call's last parts, out of order
    assert 0 < len(saved) < fresh.scorings

    resumed = explore(tiny, out)
    assert resumed.extras["journal"] == {"path": "journal.jsonl", "replayed": len(saved),
                                         "scored": fresh.scorings - len(saved)}
    assert [c.to_dict() for c in resumed.history] == [c.to_dict() for c in fresh.history]
    assert sorted(scorings_of(out), key=lambda r: r["at"]) == scorings_of(tmp_path / "fresh")


def test_records_without_a_place_replay_in_file_order(tiny, tmp_path):
    """Journals written before records had ``at`` (or with ``at`` null) resume as before."""
    from wsx.journal import checksum

    full = explore(tiny, tmp_path)
    path = tmp_path / "journal.jsonl"
    header, *lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    for n, rec in enumerate(records):
        if n % 2:
            rec["at"] = None
        else:
            del rec["at"]
        rec["h"] = checksum(rec)
    path.write_text("\n".join([header] + [json.dumps(r) for r in records]) + "\n")
    resumed = explore(tiny, tmp_path)
    assert resumed.extras["journal"] == {"path": "journal.jsonl", "replayed": full.scorings, "scored": 0}
    assert [c.to_dict() for c in resumed.history] == [c.to_dict() for c in full.history]
