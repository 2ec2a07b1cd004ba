"""report.html (self-contained figures and tables) and progress output."""
from __future__ import annotations

import base64
import io
import re

import pytest

import wsx
from _tiny import TinyBackend, make_mlp
from wsx.report import chosen_candidates, layer_curves, render
from wsx.result import Baseline, Candidate, Result

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    weights, data = make_mlp()
    out = tmp_path_factory.mktemp("report")
    dc = wsx.plugins.strategies()["divide-and-conquer"](pop_size=6, generations=2)
    result = wsx.explore(weights, data, backend=TinyBackend(weights, data), strategy=dc,
                         knobs=[2, 4, 8, 16, 32, 64], subset=None, target=0.9, progress=False, out=out)
    return out, result


def images(page: str) -> dict:
    """{alt: decoded PNG bytes} of the page's inline images."""
    found = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)">', page)
    return {alt: base64.b64decode(data) for alt, data in found}


def test_report_is_written_and_self_contained(run_dir):
    out, result = run_dir
    page = (out / "report.html").read_text()
    assert {"front.png", "results.json", "results.csv", "report.html", "journal.jsonl"} <= {p.name for p in out.iterdir()}
    imgs = images(page)
    assert set(imgs) == {"front", "per-layer k", "layer sensitivity", "timing"}
    assert all(data.startswith(PNG) and len(data) > 2000 for data in imgs.values())
    assert imgs["front"] == (out / "front.png").read_bytes()
    assert not re.search(r'(src|href)="(?!data:)', page), "the page must not load anything"
    assert "<script" not in page


def test_report_tables_show_front_timings_and_settings(run_dir):
    out, result = run_dir
    page = (out / "report.html").read_text()
    rows = re.search(r"<th>#</th>.*?</table>", page, re.S).group(0)
    assert rows.count("<tr>") == len(result.front)
    for c in result.front:
        assert f"{c.compression_rate:.2f}" in rows
    for part in ("clustering", "scoring", "final scoring", "overhead", "total"):
        assert f"<td>{part}</td>" in page
    assert "&quot;target_fraction&quot;: 0.9" in page and "divide-and-conquer" in page
    assert f"max AL {result.settings['max_accuracy_loss']:.3f} pp" in page


def test_sensitivity_curves_come_from_the_layerwise_step(run_dir):
    _, result = run_dir
    curves = layer_curves(result)
    assert set(curves) == {"fc1", "fc2"}
    assert [p[0] for p in curves["fc1"]] == [2, 4, 8, 16, 32, 64]
    single = [c for c in result.history if list(c.knobs) == ["fc1"]]
    assert [p[1] for p in curves["fc1"]] == [c.accuracy_loss for c in single]


def test_sensitivity_falls_back_to_single_layer_history(run_dir):
    _, result = run_dir
    bare = Result(front=result.front, history=result.history, baseline=result.baseline, timings={},
                  scorings=result.scorings, settings=result.settings, layers=result.layers, extras={})
    assert layer_curves(bare) == {n: [tuple(p) for p in pts] for n, pts in result.extras["layerwise"].items()}


def test_chosen_candidates_are_target_meeting_highest_cr_first(run_dir):
    _, result = run_dir
    chosen = chosen_candidates(result)
    assert chosen and all(c.meets_target for c in chosen) and len(chosen) <= 6
    assert [c.compression_rate for c in chosen] == sorted((c.compression_rate for c in chosen), reverse=True)
    assert chosen[0] is result.best()


def test_report_of_an_empty_result_and_hostile_text():
    result = Result(front=[], history=[], baseline=Baseline(accuracy=0.5, bits=100), timings={}, scorings=0,
                    settings={"target": "<b>x</b>"}, strategy="<script>alert(1)</script>",
                    notes=["<img src=x onerror=alert(1)>"])
    page = render(result)
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;" in page and "nothing to show" in page


def test_k_chart_names_every_layer_of_the_chosen_candidates(run_dir):
    _, result = run_dir
    c = Candidate(knobs={"fc1": 8}, accuracy=1, accuracy_loss=0, compression_rate=2, meets_target=True)
    only = Result(front=[c], history=[c], baseline=result.baseline, timings={}, scorings=1,
                  settings=result.settings, layers=result.layers)
    assert images(render(only))["per-layer k"].startswith(PNG)


# -- progress --------------------------------------------------------------------------------------
def test_progress_bar_shows_count_and_eta():
    from wsx.progress import Progress

    stream = io.StringIO()
    prog = Progress(True, stream=stream)
    prog.start("layer-wise", 10)
    prog.update(4)
    prog.finish()
    text = stream.getvalue()
    assert "layer-wise" in text and "4/10" in text and "<" in text  # tqdm's [elapsed<remaining]


def test_quiet_and_json_silence_progress(tmp_path):
    from wsx.cli import build_parser
    from wsx.commands import explore_kwargs

    for flag in ("--quiet", "--json"):
        args = build_parser().parse_args(["demo", flag])
        assert explore_kwargs(args)["progress"] is False
    assert explore_kwargs(build_parser().parse_args(["demo"]))["progress"] is True


def test_explore_without_progress_writes_nothing_to_stderr(capsys):
    weights, data = make_mlp()
    dc = wsx.plugins.strategies()["divide-and-conquer"](pop_size=4, generations=1)
    wsx.explore(weights, data, backend=TinyBackend(weights, data), strategy=dc, knobs=[2, 4], subset=None,
                progress=False)
    assert capsys.readouterr().err == ""
