"""Shared fixtures: the embedded torch LeNet, and a third-party plugin distribution built on the fly."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from wsx.threads import auto_threads, set_process_threads, usable_cpus

HERE = Path(__file__).parent

# Each xdist worker gets its share of the cores before any framework is imported: two workers with
# a thread per core each ran the suite 5x slower on 2 cores. WSX_THREADS overrides.
set_process_threads(auto_threads())


@pytest.hookimpl(optionalhook=True)  # known only when pytest-xdist is loaded
def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per usable core (CPU affinity respected), each single-threaded."""
    return usable_cpus()


def make_distribution(root: Path, name: str, module_source: Path | str, entry_points: dict[str, str],
                      module_name: str) -> Path:
    """Write an installed-looking distribution (a module + NAME.dist-info) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{module_name}.py"
    if isinstance(module_source, Path):
        shutil.copy(module_source, target)
    else:
        target.write_text(module_source)
    info = root / f"{name.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    lines = ["[wsx]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def toy_dist(tmp_path, monkeypatch):
    """The toy plugin installed as distribution ``wsx-toy`` and discovered through its entry point."""
    import wsx.plugins

    root = make_distribution(tmp_path / "site", "wsx-toy", HERE / "toy_plugin" / "wsx_toy.py",
                             {"toy": "wsx_toy"}, "wsx_toy")
    monkeypatch.syspath_prepend(str(root))
    wsx.plugins.reload()
    yield root
    sys.modules.pop("wsx_toy", None)
    monkeypatch.undo()
    wsx.plugins.reload()


@pytest.fixture(scope="session")
def lenet():
    """(model, (inputs, labels)) of the embedded LeNet-5 in torch."""
    pytest.importorskip("torch")
    import wsx

    return wsx.zoo.load("lenet5-digits", framework="torch")


def torch_state_bytes(model) -> dict:
    return {k: v.detach().cpu().numpy().tobytes() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def ray_turn():
    """One Ray cluster at a time on this machine: pytest-xdist may spread a Ray module's tests over
    both workers (its xdist_group marks do not hold under pytest 9), and two clusters starting at once
    on two cores time out; each module holds this lock while its cluster runs."""
    import fcntl
    import tempfile

    with open(Path(tempfile.gettempdir()) / "wsx-ray-tests.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
