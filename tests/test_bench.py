"""wsx.bench / `wsx bench`: strategies head to head over budgets and seeds, from the installed package."""
from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

import wsx
from _tiny import TinyBackend, TinyPlugin, make_mlp
from wsx.benchmark import anytime, igd, mean_ci, union_front

SMALL = ["divide-and-conquer:pop_size=6,generations=3", "nsga2:pop_size=8,generations=3", "random"]


@pytest.fixture(scope="module")
def tiny():
    return make_mlp()


def run_bench(tiny, **kw):
    weights, data = tiny
    args = dict(strategies=SMALL, budgets=[12, 30], seeds=2, backend=TinyBackend, knobs=[2, 4, 8, 16],
                subset=None, target=0.9, log=None)
    args.update(kw)
    return wsx.bench(weights, data, **args)


@pytest.fixture(scope="module")
def benched(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    return out, run_bench(tiny, out=out)


def test_summary_has_mean_and_ci_per_strategy_and_budget(benched):
    out, res = benched
    assert len(res.runs) == 3 * 2 * 2
    assert list(zip(res.summary.strategy, res.summary.budget)) == [(s, b) for s in SMALL for b in (12, 30)]
    for _, row in res.summary.iterrows():
        runs = res.runs[(res.runs.strategy == row.strategy) & (res.runs.budget == row.budget)]
        assert row.runs == 2
        for m in ("best_cr", "hv", "scorings", "wall_s"):
            mean, low, high = mean_ci(runs[m].to_numpy())
            assert row[m] == pytest.approx(runs[m].mean())
            assert (low != low and high != high) or low <= row[m] <= high
    assert (res.runs.scorings <= res.runs.budget).all()
    # every file the command promises, the summary CSV readable with the same rows
    assert {"bench.csv", "runs.csv", "fronts.csv", "curves.csv", "meta.json", "report.html", "results.md"} <= {
        p.name for p in out.iterdir()}
    import pandas as pd

    assert len(pd.read_csv(out / "bench.csv")) == len(res.summary)
    page = (out / "results.md").read_text()
    assert res.markdown() in page and f"seeds {res.meta['seeds']}" in page


def test_confidence_interval_is_students_t():
    from scipy import stats

    mean, low, high = mean_ci([1.0, 2.0, 4.0])
    half = stats.t.ppf(0.975, 2) * np.std([1, 2, 4], ddof=1) / math.sqrt(3)
    assert mean == pytest.approx(7 / 3) and high - mean == pytest.approx(half) and mean - low == pytest.approx(half)
    assert mean_ci([3.0, 3.0]) == (3.0, 3.0, 3.0)
    assert math.isnan(mean_ci([3.0])[1])


def test_best_cr_is_the_highest_legal_front_cr(benched):
    _, res = benched
    for r in res.runs.itertuples():
        f = res.fronts[(res.fronts.strategy == r.strategy) & (res.fronts.budget == r.budget) & (res.fronts.seed == r.seed)]
        legal = f[f.meets_target]
        assert r.best_cr == pytest.approx(legal.compression_rate.max() if len(legal) else 1.0)


def test_igd_reference_is_the_union_of_all_fronts(benched):
    _, res = benched
    pts = res.fronts[["loss", "compression_rate"]].to_numpy(dtype=float)
    assert np.allclose(np.sort(res.reference, axis=0), np.sort(union_front(pts, res.meta["max_loss"]), axis=0))
    # the run holding the reference itself has IGD 0; a worse front a positive one
    ref = res.reference
    assert igd(ref, ref, res.meta["max_loss"]) == pytest.approx(0.0)
    worse = ref.copy()
    worse[:, 1] -= 0.5
    assert igd(worse, ref, res.meta["max_loss"]) > 0


def test_exhaustive_front_is_the_reference_when_given(tiny, tmp_path):
    csv = tmp_path / "front.csv"
    csv.write_text("accuracy_loss,compression_rate\n0.0,1.5\n1.0,20.0\n")
    res = run_bench(tiny, strategies=["random"], budgets=[10], exhaustive_front=csv)
    assert res.meta["reference"] == "exhaustive front"
    assert np.allclose(res.reference, [[0.0, 1.5], [1.0, 20.0]])
    with pytest.raises(wsx.InvalidSettingError, match="loss, CR"):
        run_bench(tiny, strategies=["random"], budgets=[10], exhaustive_front=[[1.0]])
    (tmp_path / "bad.csv").write_text("cr,al\n1,2\n")
    with pytest.raises(wsx.InvalidSettingError, match="compression_rate"):
        run_bench(tiny, strategies=["random"], budgets=[10], exhaustive_front=tmp_path / "bad.csv")


def test_anytime_curve_is_the_running_best_legal_cr(benched):
    _, res = benched
    for (s, b, seed), g in res.curves.groupby(["strategy", "budget", "seed"]):
        assert g.scorings.is_monotonic_increasing and g.best_cr.is_monotonic_increasing
        run = res.runs[(res.runs.strategy == s) & (res.runs.budget == b) & (res.runs.seed == seed)].iloc[0]
        assert g.scorings.iloc[-1] == run.scorings


def test_anytime_of_a_history():
    from wsx.result import Candidate

    def cand(cr, ok):
        return Candidate(knobs={}, accuracy=1.0, accuracy_loss=0.0, compression_rate=cr, meets_target=ok)

    class R:
        history = [cand(3.0, False), cand(2.0, True), cand(1.5, True), cand(4.0, True), cand(9.0, False)]

    assert anytime(R) == [(0, 1.0), (2, 2.0), (4, 4.0), (5, 4.0)]


def test_every_budget_is_checked_before_anything_runs(tiny, monkeypatch):
    import wsx.engine

    calls = []
    monkeypatch.setattr(wsx.engine, "explore", lambda *a, **k: calls.append(1))
    with pytest.raises(wsx.BudgetTooSmallError) as err:
        run_bench(tiny, strategies=["random", "divide-and-conquer", "knapsack"], budgets=[5, 100])
    text = str(err.value)
    # layer-wise steps: a search of about 3 scorings per layer (divide-and-conquer) and a scan of
    # 4 knob values per layer (knapsack), 2 layers: 6 and 8 scorings > 5
    assert "divide-and-conquer needs 6 scorings" in text and "knapsack needs 8" in text and "budget 5" in text
    assert "budget 100" not in text and not calls


def test_bad_arguments_are_refused_before_running(tiny):
    with pytest.raises(wsx.InvalidSettingError, match="seeds"):
        run_bench(tiny, seeds=[1, 1])
    with pytest.raises(wsx.InvalidSettingError, match="budgets"):
        run_bench(tiny, budgets=[0])
    with pytest.raises(wsx.InvalidSettingError, match="has no parameter 'pop'.*pop_size"):
        run_bench(tiny, strategies=["nsga2:pop=3"])
    with pytest.raises(wsx.PluginNotFoundError):
        run_bench(tiny, strategies=["no-such-strategy"])


def test_shared_scores_change_nothing_but_time(tiny):
    shared = run_bench(tiny, budgets=[30], share_scores=True)
    alone = run_bench(tiny, budgets=[30], share_scores=False)
    cols = ["strategy", "budget", "seed", "best_cr", "hv", "scorings", "front_size"]
    assert shared.runs[cols].equals(alone.runs[cols])
    assert shared.runs.shared_hits.sum() > 0 and alone.runs.shared_hits.sum() == 0
    assert shared.fronts.drop(columns=[]).equals(alone.fronts)


def test_a_shared_dict_carries_scores_to_the_next_bench(tiny):
    """One dict given to two benches: the second replays what the first scored, results unchanged."""
    table: dict = {}
    first = run_bench(tiny, budgets=[30], share_scores=table)
    again = run_bench(tiny, budgets=[30], share_scores=table)
    assert table and again.meta["share_scores"] is True
    assert (again.runs.shared_hits == again.runs.scorings).all()
    cols = ["strategy", "budget", "seed", "best_cr", "hv", "scorings", "front_size"]
    assert again.runs[cols].equals(first.runs[cols])


def test_cli_bench_on_a_model_module(tmp_path, monkeypatch, capsys):
    """`wsx bench --model MODULE:ATTR` from the folder holding the module (no PYTHONPATH)."""
    (tmp_path / "mymlp_bench.py").write_text(
        "import sys\nsys.path.insert(0, %r)\n" % str(Path(__file__).parent)
        + "from _tiny import make_mlp\nweights, data = make_mlp()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    wsx.plugins.register(TinyPlugin(), name="tiny-bench")
    try:
        from wsx.cli import main

        code = main(["bench", "--model", "mymlp_bench:weights", "--data", "mymlp_bench:data", "--backend", "tiny",
                     "--strategies", "nsga2:pop_size=6,generations=2,random", "--budgets", "10,20", "--seeds", "2",
                     "--knobs", "2,4,8", "--subset", "all", "--target", "0.9", "--out", "b", "--quiet"])
    finally:
        wsx.plugins.unregister("tiny-bench")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "| `nsga2:pop_size=6,generations=2` | 10 | 2 |" in out and "| `random` | 20 | 2 |" in out
    meta = json.loads((tmp_path / "b" / "meta.json").read_text())
    assert meta["seeds"] == [0, 1] and meta["budgets"] == [10, 20]


def test_cli_bench_parses_old_and_new_forms():
    from wsx.cli import build_parser

    args = build_parser().parse_args(["bench", "--problem", "lenet5-digits", "--strategies", "nsga2,knapsack",
                                      "--budget", "50", "--seeds", "0,1", "--out", "x"])
    assert args.command == "bench" and args.budgets == "50" and args.seeds == "0,1"


def test_cli_bench_seeds_zero_says_it_is_a_count(tmp_path, capsys):
    """`--seeds 0` reads as "seed 0" to many users; one number is a count, and the error says how to
    name seed 0 (before any model is loaded)."""
    from wsx.cli import main

    code = main(["bench", "--problem", "lenet5-digits", "--seeds", "0", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code != 0 and "--seeds 0: one number is a count of seeds" in err and "--seeds 1" in err
    assert not (tmp_path / "b").exists()


def test_report_is_self_contained_with_figures_and_tables(benched):
    out, res = benched
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 3
    assert not re.search(r'(src|href)="(http|//)', page)
    for strategy in SMALL:
        assert strategy in page
    assert "95 % CI" in page


def test_wsx_does_not_import_benchmarks():
    """benchmarks/ holds scripts and results; the package never imports it."""
    root = Path(wsx.__file__).parent
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            assert not any(n == "benchmarks" or n.startswith("benchmarks.") for n in names), path
        assert "benchmarks/" not in path.read_text().replace("benchmarks/strategies/README", ""), path


def test_benchmark_module_records_its_command_and_problem(tmp_path):
    """`python -m benchmarks.strategies` runs the CLI with translated arguments; its report names the
    problem and the command as typed, so that the committed results say how to run them again."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    args = ["-m", "benchmarks.strategies", "--problem", "lenet5-digits", "--strategies", "random",
            "--budget", "12", "--seeds", "1", "--out", str(tmp_path / "b"), "--quiet"]
    done = subprocess.run([sys.executable, *args], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "WSX_THREADS": "1", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    meta = json.loads((tmp_path / "b" / "meta.json").read_text())
    assert meta["name"] == "lenet5-digits"
    assert meta["command"] == "python " + " ".join(args)
