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
    assert set(imgs) == {"per-layer k", "layer sensitivity", "timing"}
    assert all(data.startswith(PNG) and len(data) > 2000 for data in imgs.values())
    assert not re.search(r'(src|href)="(?!data:)', page), "the page must not load anything"
    assert page.count("<script") == 1 and "<script src" not in page  # the front's inline hover script
    assert page.count('<svg id="wsx-front"') == 1


def test_report_front_is_explorable(run_dir):
    """Each front point carries its CR, metric value and k per layer (tooltip and hover panel)."""
    import html as html_mod

    out, result = run_dir
    page = (out / "report.html").read_text()
    infos = [html_mod.unescape(i) for i in re.findall(r'<circle data-i="([^"]+)"', page)]
    assert len(infos) == len(result.history) + len(result.front)
    for c in result.front:
        knobs = ", ".join(f"{name} k={k}" for name, k in c.knobs.items())
        assert any(f"CR {c.compression_rate:.2f}" in i and f"top1 {c.accuracy:.4f} (AL " in i and knobs in i
                   for i in infos), (c, infos[:3])


def test_report_shows_test_columns_and_rounded_settings():
    weights, data = make_mlp()
    x, y = data
    dc = wsx.plugins.strategies()["divide-and-conquer"](pop_size=6, generations=2)
    result = wsx.explore(weights, (x[:200], y[:200]), backend=TinyBackend(weights, (x[:200], y[:200])), strategy=dc,
                         knobs=[2, 4, 8, 16], subset=None, target=0.95, progress=False, test_data=(x[200:], y[200:]))
    page = render(result)
    head = re.search(r"<th>#</th>.*?</tr>", page, re.S).group(0)
    assert "<th>test top1</th>" in head and "<th>test AL (pp)</th>" in head
    for c in result.front:
        assert f"<td>{c.test_accuracy:.4f}</td>" in page
    assert re.search(r"<rect data-i=\"[^\"]*test top1", page)  # the test front in the chart
    settings = re.search(r"<pre>(.*?)</pre>", page, re.S).group(1)
    assert not re.search(r"\d\.\d{6,}", settings), "settings are rounded for reading"


def test_front_axes_hold_the_test_front():
    from wsx.plot import y_range

    c = Candidate(knobs={"a": 2}, accuracy=0.9, accuracy_loss=1.0, compression_rate=3.0, meets_target=True,
                  test_accuracy=0.7, test_accuracy_loss=30.0, test_meets_target=False)
    r = Result(front=[c], history=[c], baseline=Baseline(accuracy=1.0, bits=10), timings={}, scorings=1,
               settings={"max_accuracy_loss": 1.0})
    low, high = y_range(r, 1.0)
    assert low < 0.0 and high > 30.0


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
    assert f"max AL (pp) {result.settings['max_accuracy_loss']:.2f}" in page
    assert "top1, higher is better" in page  # the metric, its direction and loss unit are named


def test_sensitivity_curves_come_from_the_layerwise_step(run_dir):
    _, result = run_dir
    curves = layer_curves(result)
    assert set(curves) == {"fc1", "fc2"}
    single = {c.knobs["fc1"]: c for c in result.history if c.origin == "layer-wise:fc1"}
    assert [p[0] for p in curves["fc1"]] == sorted(single)  # what the search scored, in knob order
    assert [p[1:] for p in curves["fc1"]] == [(c.accuracy_loss, c.meets_target, c.rejected)
                                              for _, c in sorted(single.items())]


def test_sensitivity_falls_back_to_single_layer_history(run_dir):
    _, result = run_dir
    bare = Result(front=result.front, history=result.history, baseline=result.baseline, timings={},
                  scorings=result.scorings, settings=result.settings, layers=result.layers, extras={})
    curves = layer_curves(bare)
    for name, points in result.extras["layerwise"].items():  # the layer-wise step's, among the single-layer ones
        assert set(map(tuple, points)) <= set(curves[name])
        assert [p[0] for p in curves[name]] == sorted(p[0] for p in curves[name])


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
def test_progress_bar_shows_count_and_eta_and_ends_at_its_end():
    from wsx.progress import Progress

    stream = io.StringIO()
    prog = Progress(True, stream=stream)
    prog.start("layer-wise", 10)
    prog.update(4)
    prog.note("generation 2/5")
    prog._bar.refresh()  # tqdm draws at most every 0.1 s by itself
    assert "4/10" in stream.getvalue() and "<" in stream.getvalue()  # tqdm's [elapsed<remaining]
    prog.skip(3)  # known candidates leave the total
    assert prog._bar.total == 7
    prog.update(1)
    prog.finish()  # the step ended before its planned total: the bar ends at 100 %
    last = stream.getvalue().split("\r")[-1]
    assert "5/5" in last and "100%" in last


class _DiesOnLayerTwo(TinyBackend):
    """Interrupted (Ctrl-C) when the layer-wise step reaches the second layer."""

    def score(self, population, subset=None):
        if any("fc2" in c for c in population):
            raise KeyboardInterrupt
        return super().score(population, subset)


def test_progress_of_a_resumed_run_counts_what_is_left(tmp_path):
    import contextlib

    weights, data = make_mlp()
    kw = dict(knobs=[2, 4, 8, 16], subset=None, out=tmp_path,
              strategy=wsx.plugins.strategies()["divide-and-conquer"](pop_size=4, generations=1, layerwise="scan"))
    with pytest.raises(KeyboardInterrupt):
        wsx.explore(weights, data, backend=_DiesOnLayerTwo(weights, data), progress=False, **kw)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):  # resumes: fc1's 4 scorings replayed, fc2's 4 left
        wsx.explore(weights, data, backend=TinyBackend(weights, data), progress=True, **kw)
    layerwise = [line for line in err.getvalue().replace("\r", "\n").splitlines() if "layer-wise" in line]
    assert "4/4" in layerwise[-1] and "100%" in layerwise[-1], layerwise
    assert not any("8/8" in line for line in layerwise)


def test_nsga2_bar_has_no_made_up_total(capsys):
    weights, data = make_mlp()
    nsga = wsx.plugins.strategies()["nsga2"](pop_size=6, generations=3)
    wsx.explore(weights, data, backend=TinyBackend(weights, data), strategy=nsga, knobs=[2, 4, 8], subset=None,
                progress=True)
    bars = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if line.startswith("nsga2")]
    assert bars and "100%" in bars[-1] and "generation 3/3" in bars[-1], bars
    assert not any("/600" in line or "/18 " in line for line in bars)  # no pop_size x generations total


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
