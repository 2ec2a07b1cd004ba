"""``--config FILE``: a command's settings from a TOML file (or a results.json's resolved config).

Keys are the command's option names (``time_limit`` or ``time-limit``). Strategies, clusterers,
approximations and executors are a ``name:key=value`` string or a table with ``name`` and the settings::

    model = "mymodel:build"
    data = "mymodel:data"
    budget = 2000
    [strategy]
    name = "divide-and-conquer"
    combination = "regression"

Options given on the command line override the file.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from wsx.errors import InvalidSettingError

PLUGIN_KEYS = ("strategy", "clusterer", "approximation", "executor")
INTERNAL = {"help", "config", "_run", "_parser", "version"}


def read(path: str) -> dict:
    """The settings a TOML file or a results.json holds."""
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as exc:
        raise InvalidSettingError(f"--config {path}: cannot read it ({exc.strerror or exc}); give a TOML file") from None
    if p.suffix == ".json":
        try:
            d = json.loads(text)
        except ValueError as exc:
            raise InvalidSettingError(f"--config {path}: not JSON ({exc}); give a TOML file or a results.json") from None
        if isinstance(d, dict) and isinstance(d.get("settings"), dict) and "config" in d["settings"]:
            d = d["settings"]["config"]  # a results.json: the settings it was made with
    else:
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            import tomli as tomllib
        try:
            d = tomllib.loads(text.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise InvalidSettingError(f"--config {path}: not valid TOML ({exc})") from None
    if not isinstance(d, dict):
        raise InvalidSettingError(f"--config {path}: holds {type(d).__name__}, not a table of settings")
    return d


def defaults_from(path: str, parser) -> dict:
    """The file's settings as argparse defaults of ``parser``; unknown keys are an error naming the
    keys the command takes."""
    from wsx.specs import Spec

    accepted = {a.dest for a in parser._actions} - INTERNAL
    out = {}
    for key, value in read(path).items():
        dest = key.replace("-", "_")
        if dest not in accepted:
            raise InvalidSettingError(f"--config {path}: unknown setting {key!r} for `{parser.prog}`; its settings "
                                      f"are: {', '.join(sorted(accepted))}")
        if dest in PLUGIN_KEYS and isinstance(value, dict):
            params = dict(value)
            name = params.pop("name", None)
            if not isinstance(name, str):
                raise InvalidSettingError(f"--config {path}: the {key} table needs name = \"...\" (the plugin's "
                                          "name) besides its settings")
            value = Spec(name, params)
        out[dest] = value
    return out
