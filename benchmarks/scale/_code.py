"""Run a benchmark child process on wsx as it was at another commit ("old defaults"), side by side.

``python_path(commit)`` extracts that commit's ``wsx``, ``backends`` and ``plugins`` (``git archive``)
into a cache folder and returns a folder of links named as the installed packages (``wsx``,
``wsx_backends``, ``wsx_plugins``); a child started with it first on ``PYTHONPATH`` imports that code,
through the same entry points, with this checkout's installed dependencies. ``None`` runs this
checkout. ``child_env(commit)`` is the environment for such a child.
"""
from __future__ import annotations

import io
import os
import subprocess
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINKS = {"wsx": "wsx", "wsx_backends": "backends", "wsx_plugins": "plugins"}


def python_path(commit: str | None) -> Path | None:
    if commit is None:
        return None
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", commit], capture_output=True, text=True,
                         check=True).stdout.strip()
    base = Path(tempfile.gettempdir()) / f"wsx-code-{sha[:12]}"
    shim = base / "shim"
    if not shim.exists():
        base.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=base))  # this process' own: two children may start at once
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha, *LINKS.values()], capture_output=True,
                                 check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(work / "src")
        staging = work / "shim"
        staging.mkdir()
        for name, folder in LINKS.items():
            (staging / name).symlink_to(work / "src" / folder)
        try:
            staging.rename(shim)
        except OSError:  # another process put the same commit's code there first
            pass
    return shim


def child_env(commit: str | None) -> dict:
    """The environment of a child process running ``commit``'s wsx (None: this checkout's); the
    checkout's root comes after it, for ``benchmarks.*``."""
    env = dict(os.environ)
    shim = python_path(commit)
    parts = ([str(shim)] if shim else []) + [str(ROOT)]
    env["PYTHONPATH"] = os.pathsep.join(parts + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env
