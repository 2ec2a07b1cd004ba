"""The Table 6.1 runner's approaches and the report that gathers its runs (benchmarks/table61*.py)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from wsx.specs import resolve
from wsx.approximation import Approximation
from wsx.strategy import Strategy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root holds benchmarks/
from benchmarks import table61, table61_report as report  # noqa: E402


def build(settings: str, approach: str) -> Strategy:
    return resolve("strategy", table61.APPROACHES[settings][approach], Strategy)


def test_thesis_settings_are_the_thesis_parameters():
    """Thesis §6.1: filter 15 %; III and V P = 100 x 100 with no early stop; IV P = 500 x 200 on the
    surrogate, fitted once (no refitting rounds)."""
    assert build("thesis", "I").inertia_filter_ratio == 0.15
    assert build("thesis", "II").inertia_filter_ratio == 0.15
    for a in ("III", "V"):
        s = build("thesis", a)
        assert (s.pop_size, s.generations, s.patience) == (100, 100, None)
    iv = build("thesis", "IV")
    assert (iv.combination, iv.surrogate_pop_size, iv.surrogate_generations, iv.rounds) == ("regression", 500, 200, 1)
    assert build("thesis", "III").combination == "scoring"
    assert build("thesis", "III").layerwise == build("thesis", "IV").layerwise == "scan"
    approximation = resolve("approximation", table61.APPROXIMATION["thesis"], Approximation)
    assert approximation.k_grid == "log" and approximation.k_values == 100


def test_defaults_settings_are_the_strategies_defaults():
    for a, spec in table61.APPROACHES["defaults"].items():
        s = build("defaults", a)
        fresh = type(s)()
        changed = {k for k, v in vars(s).items() if v != getattr(fresh, k)}
        assert changed <= {"combination"}, (a, changed)


def test_d_is_what_explore_runs_without_settings():
    import inspect

    import wsx

    default = inspect.signature(wsx.explore).parameters["strategy"].default
    assert table61.APPROACHES["defaults"]["D"] == default
    assert "D" not in table61.APPROACHES["thesis"]


def test_an_approach_the_settings_lack_is_refused(capsys):
    import pytest

    with pytest.raises(SystemExit):
        table61.main(["--settings", "thesis", "--approaches", "III,D"])
    assert "--approaches D: not in the thesis settings" in capsys.readouterr().err


def _write_part(folder, settings, rows, budgets=(500,)):
    import pandas as pd

    folder.mkdir(parents=True)
    spec = table61.APPROACHES[settings]
    pd.DataFrame([{"strategy": spec[a], "budget": b, "seed": s, "best_cr": cr, "hv": cr / 2, "igd": 0.1,
                   "scorings": b, "wall_s": 1.0, "shared_hits": 0} for a, b, s, cr in rows]).to_csv(folder / "runs.csv", index=False)
    (folder / "meta.json").write_text(json.dumps({"command": "cmd", "budgets": list(budgets), "date": "d", "load_before": [1, 1, 1],
                                                  "load_after": [1, 1, 1], "target": "mlperf-heavy", "max_loss": 1.0,
                                                  "test_data": False, "reference": "exhaustive front"}))


def test_report_gathers_parts_and_compares_iv_with_v(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    root = tmp_path / "table61-digits-thesis"
    _write_part(root / "IV-III", "thesis", [("IV", 500, s, 12.0 + 0.1 * s) for s in range(5)])
    _write_part(root / "V", "thesis", [("V", 500, s, 9.0 + 0.2 * s) for s in range(5)])
    text = "\n".join(report.section("digits", "thesis"))
    assert "| IV | 500 | 5 | 12.20 [" in text and "| V | 500 | 5 | 9.40 [" in text
    row = next(line for line in text.splitlines() if line.startswith("| 500 | IV |"))
    assert "V: +2.80 [" in row and row.count(">") == 2  # IV - V excludes 0 on best CR and HV
    assert report.section("fashion", "defaults")[-2] == "Not run."


def test_report_places_d_after_the_thesis_approaches(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    root = tmp_path / "table61-digits-defaults"
    _write_part(root / "D", "defaults", [("D", 500, s, 13.0 + 0.1 * s) for s in range(3)])
    _write_part(root / "III-V", "defaults", [(a, 500, s, 11.0 + s) for a in ("V", "III") for s in range(3)])
    lines = report.section("digits", "defaults")
    rows = [line.split(" | ")[0] for line in lines if line.startswith("| ") and " | 500 | 3 | " in line]
    assert rows == ["| III", "| V", "| D"]
    best = next(line for line in lines if line.startswith("| 500 | "))
    assert best.startswith("| 500 | D | III: +1.10 [") and "V: +1.10 [" in best


def test_report_keeps_the_text_around_the_markers(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    (tmp_path / "TABLE61.md").write_text(f"# head\n{report.START}\nold\n{report.END}\ntail\n")
    report.main()
    text = (tmp_path / "TABLE61.md").read_text()
    assert text.startswith("# head\n") and text.endswith(f"{report.END}\ntail\n") and "old" not in text
    assert "| IV | Divide & Conquer (regr.) | 10268 |" in text


def test_welch_verdict():
    assert report.verdict(*report.welch([2, 3, 4], [0, 1, 2])) == "≈ (interval spans 0)"
    assert report.verdict(*report.welch([10, 11, 12], [0, 1, 2])).startswith(">")
    diff, low, high = report.welch([5, 5], [3, 3])
    assert diff == 2 and low != low
