"""Configurable runs: name:key=value specs, --knobs / --granularity / --min-subset, --config files and
the resolved config in results.json; `wsx explore` importing from the current folder."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import wsx
from _tiny import TinyBackend, TinyPlugin, make_mlp
from wsx.cli import build_parser, main
from wsx.commands import explore_kwargs
from wsx.specs import Spec, parse_value, split_list

HERE = Path(__file__).resolve().parent



@pytest.fixture
def tiny_cli(tmp_path, monkeypatch):
    """A folder holding mymlp_cli.py (weights, data, and builders), as the current directory, with the tiny
    backend registered as a plugin."""
    (tmp_path / "mymlp_cli.py").write_text(
        f"import sys\nsys.path.insert(0, {str(HERE)!r})\nfrom _tiny import make_mlp\n"
        "weights, data = make_mlp()\n"
        "def build():\n    return make_mlp()[0]\n"
        "class Net(dict):\n    def __init__(self):\n        super().__init__(make_mlp()[0])\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.delitem(sys.modules, "mymlp_cli", raising=False)  # this folder's copy, not another test's
    wsx.plugins.register(TinyPlugin(), name="tiny-cli")
    yield tmp_path
    wsx.plugins.unregister("tiny-cli")


def test_spec_values_and_round_trip():
    spec = Spec.parse("divide-and-conquer:combination=regression,pop_size=50,patience=null,x=[2, 4],ok=true")
    assert spec.name == "divide-and-conquer"
    assert spec.params == {"combination": "regression", "pop_size": 50, "patience": None, "x": [2, 4], "ok": True}
    assert Spec.parse(spec.text()) == spec
    assert Spec.parse("greedy-filter:inertia_filter_ratio=0.05:order=last-to-first").params == {
        "inertia_filter_ratio": 0.05, "order": "last-to-first"}
    assert [parse_value(v) for v in ("1e-3", "True", "None", "abc", '"7"')] == [1e-3, True, None, "abc", "7"]
    assert split_list("nsga2:pop_size=50,generations=20,knapsack,random:samples=9") == [
        "nsga2:pop_size=50,generations=20", "knapsack", "random:samples=9"]


def test_explore_takes_specs_for_every_plugin_kind():
    weights, data = make_mlp()
    r = wsx.explore(weights, data, backend=TinyBackend(weights, data), knobs=[2, 4, 8], subset=None,
                    strategy="nsga2:pop_size=6,generations=2,patience=null", clusterer="sorted1d:init=quantile",
                    approximation="weight-sharing:k_max=64,granularity=channel", progress=False)
    assert r.settings["strategy_params"]["pop_size"] == 6 and r.settings["strategy_params"]["patience"] is None
    assert r.settings["clusterer_params"]["init"] == "quantile"
    assert r.settings["approximation_params"]["granularity"] == "channel"
    config = r.settings["config"]
    assert config["strategy"]["name"] == "nsga2" and config["strategy"]["generations"] == 2
    assert config["approximation"]["k_max"] == 64 and config["knobs"] == [2, 4, 8]


def test_cli_run_options_reach_explore():
    args = build_parser().parse_args(["demo", "--strategy", "nsga2:pop_size=8", "--knobs", "2,4,8",
                                      "--granularity", "kernel", "--min-subset", "200",
                                      "--approximation", "weight-sharing:k_max=32"])
    kw = explore_kwargs(args)
    assert kw["strategy"] == "nsga2:pop_size=8" and kw["knobs"] == [2, 4, 8] and kw["min_subset"] == 200
    assert kw["approximation"] == Spec("weight-sharing", {"k_max": 32, "granularity": "kernel"})
    per_layer = build_parser().parse_args(["demo", "--knobs", '{"fc1": [2, 4]}'])
    assert explore_kwargs(per_layer)["knobs"] == {"fc1": [2, 4]}


def test_explore_imports_from_the_current_folder_and_calls_builders(tiny_cli):
    from wsx.commands.explore import load_object

    assert load_object("mymlp_cli:build").keys() == {"fc1", "fc2"}   # a function: called
    assert isinstance(load_object("mymlp_cli:Net"), dict)           # a class: instantiated
    assert isinstance(load_object("mymlp_cli:weights"), dict)       # an object: as it is


def test_config_file_with_cli_override_and_resolved_config(tiny_cli, capsys):
    (tiny_cli / "run.toml").write_text(
        'model = "mymlp_cli:Net"\ndata = "mymlp_cli:data"\nbackend = "tiny"\nsubset = "all"\nknobs = [2, 4, 8]\n'
        'target = 0.9\nbudget = 40\nout = "run1"\nquiet = true\n'
        '[strategy]\nname = "nsga2"\npop_size = 6\ngenerations = 2\n')
    assert main(["explore", "--config", "run.toml", "--budget", "30"]) == 0  # the flag overrides the file
    capsys.readouterr()
    saved = json.loads((tiny_cli / "run1" / "results.json").read_text())
    config = saved["settings"]["config"]
    assert saved["scorings"] <= 30 and config["budget"] == 30
    assert config["strategy"]["pop_size"] == 6 and config["model"] == "mymlp_cli:Net" and config["data"] == "mymlp_cli:data"
    assert config["out"] == "run1" and config["knobs"] == [2, 4, 8]
    # the results.json is a config too: the same run again (here into another directory)
    assert main(["explore", "--config", "run1/results.json", "--out", "run2", "--quiet"]) == 0
    again = json.loads((tiny_cli / "run2" / "results.json").read_text())
    assert again["front"] == saved["front"] and again["settings"]["strategy_params"] == saved["settings"]["strategy_params"]


def test_interrupt_message_says_the_same_command_resumes():
    from wsx.cli import interrupted_message

    with_out = build_parser().parse_args(["demo", "--out", "d"])
    assert "run the same command again to resume" in interrupted_message(with_out)
    assert "d/journal.jsonl" in interrupted_message(with_out)
    assert "--out DIR" in interrupted_message(build_parser().parse_args(["demo"]))
