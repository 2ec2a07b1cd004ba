"""Plugin discovery: built-ins and third-party distributions take the same entry-point path."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import wsx
import wsx.plugins
from conftest import HERE, make_distribution


def test_builtins_are_discovered_through_entry_points():
    rows = {(r.kind, r.name): r for r in wsx.plugins.info()}
    assert rows[("backend", "torch")].distribution == "wsx"
    assert rows[("strategy", "divide-and-conquer")].distribution == "wsx"
    assert rows[("approximation", "weight-sharing")].distribution == "wsx"
    assert any(kind == "clusterer" for kind, _ in rows)


def test_every_hook_is_documented_and_tested():
    """Each hookspec has a docstring, is named wsx_*, is implemented by a test plugin, and appears in
    the README with its exact parameters."""
    import inspect

    from wsx import hookspecs

    hooks = [n for n, f in vars(hookspecs).items() if inspect.isfunction(f) and hasattr(f, "wsx_spec")]
    assert hooks, "no hookspecs found"
    suite = "".join(p.read_text() for p in HERE.glob("**/*.py"))
    readme = (HERE.parent / "README.md").read_text()
    for name in hooks:
        assert name.startswith("wsx_")
        assert (getattr(hookspecs, name).__doc__ or "").strip(), f"{name} has no docstring"
        assert f"def {name}(" in suite, f"no test plugin implements {name}"
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"`{name}({params})`" in readme, f"{name}({params}) is not documented in README.md"


def test_third_party_distribution_adds_strategy_and_backend(toy_dist):
    assert "toy-uniform" in wsx.plugins.strategies()
    assert "toy-numpy" in wsx.plugins.backends()
    row = next(r for r in wsx.plugins.info() if r.name == "toy-numpy")
    assert (row.distribution, row.version) == ("wsx-toy", "1.2.3")
    assert "toy-quantile" in wsx.plugins.clusterers() and "toy-grid" in wsx.plugins.approximations()

    import wsx_toy

    model = wsx_toy.ToyModel()
    data = wsx_toy.toy_data(model)
    # backend=None: the third-party wsx_backend_for hook recognises the model.
    result = wsx.explore(model, data, strategy="toy-uniform", subset=None, progress=False,
                         knobs=[2, 4, 8, 16, 32], target=0.7)
    assert result.backend == "toy-numpy" and result.strategy == "toy-uniform"
    assert result.scorings == 5
    assert {tuple(c.knobs.values()) for c in result.history} == {(k, k) for k in (2, 4, 8, 16, 32)}
    assert result.front and result.best() is not None

    # Third-party clusterer and approximation run through the same engine.
    r2 = wsx.explore(model, data, strategy="toy-uniform", clusterer="toy-quantile", subset=None,
                     progress=False, knobs=[2, 4, 8, 16, 32])
    assert r2.clusterer == "toy-quantile" and r2.scorings == 5
    r3 = wsx.explore(model, data, strategy="toy-uniform", approximation="toy-grid", subset=None,
                     progress=False)
    assert r3.approximation == "toy-grid" and r3.clusterer == ""
    assert {tuple(c.knobs.values()) for c in r3.history} == {(k, k) for k in (1, 2, 3, 6, 8)}

    # A third-party executor, named with its settings, gives the serial answer.
    assert "toy-one-by-one" in wsx.plugins.executors()
    r4 = wsx.explore(model, data, strategy="toy-uniform", executor="toy-one-by-one:reverse=true", subset=None,
                     progress=False, knobs=[2, 4, 8, 16, 32], target=0.7)
    assert [(c.knobs, c.accuracy) for c in r4.history] == [(c.knobs, c.accuracy) for c in result.history]
    assert r4.settings["config"]["executor"] == "toy-one-by-one"
    wsx.testing.check_executor(wsx_toy.OneByOne)


@pytest.mark.parametrize("source, reason", [
    ("import wsx\n@wsx.hookimpl\ndef wsx_strategy():\n    return []\n", "wsx_strategy"),  # misspelt hook
    ("import wsx\n@wsx.hookimpl\ndef wsx_backend_for(modle):\n    return None\n", "modle"),  # wrong argument
    ("import wsx\n@wsx.hookimpl\ndef wsx_strategies():\n    raise RuntimeError('boom')\n", "boom"),
    ("import wsx\n@wsx.hookimpl\ndef wsx_backend_for(model):\n    raise RuntimeError('boom')\n", "boom"),
    ("import wsx\n@wsx.hookimpl\ndef wsx_clusterers():\n    return 42\n", "returned 42"),
])
def test_broken_plugin_is_reported_disabled_and_the_rest_goes_on(tmp_path, monkeypatch, capsys, lenet, source,
                                                                  reason):
    """A third-party plugin pluggy refuses, or whose hook raises or returns garbage, is listed by
    `wsx plugins` as broken with the reason; the built-ins, `wsx plugins` and explore still work."""
    from wsx.cli import main

    root = make_distribution(tmp_path / "site", "wsx-typo", source, {"typo": "wsx_typo"}, "wsx_typo")
    monkeypatch.syspath_prepend(str(root))
    wsx.plugins.reload()
    try:
        with pytest.warns(UserWarning, match="'typo'.*disabled"):
            model, data = lenet
            result = wsx.explore(model, data, strategy="random", budget=3, subset=None, progress=False)
            assert main(["plugins", "--json"]) == 0
            rows = json.loads(capsys.readouterr().out)
        broken = [r for r in rows if r["name"] == "typo"]
        assert len(broken) == 1 and broken[0]["available"] is False and reason in broken[0]["reason"]
        assert broken[0]["distribution"] == "wsx-typo"
        assert any(r["name"] == "divide-and-conquer" and r["available"] for r in rows)
        assert result.backend == "torch" and result.scorings == 3
    finally:
        monkeypatch.undo()
        sys.modules.pop("wsx_typo", None)
        wsx.plugins.reload()


def test_in_process_plugin_with_a_misspelt_hook_raises_and_is_not_kept():
    class Typo:
        @wsx.hookimpl
        def wsx_strategy(self):
            return []

    with pytest.raises(Exception, match="wsx_strategy"):
        wsx.plugins.register(Typo(), name="typo-in-process")
    assert wsx.plugins.manager().pm.get_plugin("typo-in-process") is None


def _run_py(code: str, env_extra: dict, pythonpath: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, **env_extra)
    env["PYTHONPATH"] = os.pathsep.join(pythonpath + [env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_autoload_switch_turns_third_party_plugins_off(tmp_path):
    root = make_distribution(tmp_path / "site", "wsx-toy", HERE / "toy_plugin" / "wsx_toy.py",
                             {"toy": "wsx_toy"}, "wsx_toy")
    code = ("import json, wsx.plugins as p; "
            "print(json.dumps([sorted(p.strategies()), sorted(p.backends())]))")
    on = _run_py(code, {}, [str(root)])
    off = _run_py(code, {"WSX_DISABLE_PLUGIN_AUTOLOAD": "1"}, [str(root)])
    assert on.returncode == 0 and off.returncode == 0, on.stderr + off.stderr
    on_s, on_b = json.loads(on.stdout.strip().splitlines()[-1])
    off_s, off_b = json.loads(off.stdout.strip().splitlines()[-1])
    assert "toy-uniform" in on_s and "toy-numpy" in on_b
    assert "toy-uniform" not in off_s and "toy-numpy" not in off_b
    assert "divide-and-conquer" in off_s and "torch" in off_b  # built-ins still load


def test_missing_framework_does_not_break_import_and_is_reported(tmp_path):
    """With torch made unimportable and a third-party plugin that fails to import, `import wsx` works,
    other plugins load, and `wsx plugins` shows torch unavailable with the extra to install."""
    broken = make_distribution(tmp_path / "site", "wsx-broken", "import not_a_real_framework_xyz\n",
                               {"broken": "wsx_broken"}, "wsx_broken")
    code = ("import sys; sys.modules['torch'] = None\n"
            "import wsx, wsx.plugins as p\n"
            "from wsx.cli import main\n"
            "main(['plugins', '--json'])\n")
    proc = _run_py(code, {}, [str(broken)])
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout[proc.stdout.index("["):])
    torch_row = next(r for r in rows if r["kind"] == "backend" and r["name"] == "torch")
    assert torch_row["available"] is False
    from wsx.plugins import install_hint

    assert install_hint("torch") in torch_row["reason"] and "[torch]" in torch_row["reason"]
    broken_row = next(r for r in rows if r["name"] == "broken")
    assert broken_row["available"] is False and "not_a_real_framework_xyz" in broken_row["reason"]
    assert any(r["name"] == "divide-and-conquer" and r["available"] for r in rows)


def test_import_wsx_imports_no_framework():
    proc = _run_py("import sys, wsx, wsx.plugins as p; p.info(); print(sorted({'torch', 'tensorflow', 'jax', "
                   "'cupy', 'coremltools', 'onnx', 'onnxruntime'} & set(sys.modules)))", {}, [])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_unknown_names_list_the_available_ones(lenet):
    model, data = lenet
    with pytest.raises(wsx.PluginNotFoundError, match="divide-and-conquer"):
        wsx.explore(model, data, strategy="no-such-strategy", progress=False)
    with pytest.raises(wsx.PluginNotFoundError, match="torch"):
        wsx.explore(model, data, backend="no-such-backend", progress=False)
    with pytest.raises(wsx.BackendNotFoundError, match="torch.nn.Module"):
        wsx.explore(object(), data, progress=False)


def test_in_process_register_and_unregister():
    class Plugin:
        class Fixed(wsx.Strategy):
            name = "fixed-test"

            def _run(self, problem):
                problem.evaluate([{}])

        @wsx.hookimpl
        def wsx_strategies(self):
            return [self.Fixed]

    wsx.plugins.register(Plugin(), name="fixed-plugin")
    try:
        assert "fixed-test" in wsx.plugins.strategies()
    finally:
        wsx.plugins.unregister("fixed-plugin")
    assert "fixed-test" not in wsx.plugins.strategies()


def test_install_hint_follows_how_wsx_was_installed(monkeypatch, tmp_path):
    """A source install is told to install the extra from its folder (with its constraints): the name
    wsx on a package index may be another project."""
    import wsx.plugins as p

    (tmp_path / "constraints.txt").write_text("torch==2.13.0\n")
    monkeypatch.setattr(p, "_source_install", lambda: (tmp_path, True))
    assert p.install_hint("torch") == f"pip install -c {tmp_path / 'constraints.txt'} -e '{tmp_path}[torch]'"
    monkeypatch.setattr(p, "_source_install", lambda: (tmp_path / "x", False))
    assert p.install_hint("jax") == f"pip install '{tmp_path / 'x'}[jax]'"
    monkeypatch.setattr(p, "_source_install", lambda: None)
    assert p.install_hint("jax") == "pip install 'wsx[jax]'"
    assert p.unavailable_reason("jax", "jax") == "jax is not installed; pip install 'wsx[jax]'"
