"""Plugins named with their settings: ``name:key=value,key=value``.

``divide-and-conquer:combination=regression,doe=auto`` is the strategy ``divide-and-conquer`` built
with ``combination="regression", doe="auto"``. The same form names strategies, clusterers and
approximations on the command line (``--strategy``, ``--clusterer``, ``--approximation``), in
``--config`` files, in ``wsx bench --strategies`` and in ``wsx.explore(strategy="nsga2:pop_size=50")``.
Values are read as JSON (``50``, ``0.5``, ``true``, ``null``, ``[2, 4]``, ``"text"``), then as Python's
``True`` / ``False`` / ``None``, else kept as text. Options may also be separated by ``:`` (the form
earlier benchmark commands used). A key the plugin's constructor does not take is an
InvalidSettingError naming the parameters it does take.
"""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidSettingError

KIND_WORDS = {"strategy": "strategies", "clusterer": "clusterers", "approximation": "approximations",
              "executor": "executors"}


@dataclass
class Spec:
    """A plugin name and the keyword arguments to build it with."""

    name: str
    params: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> "Spec":
        name, _, rest = str(text).strip().partition(":")
        name = name.strip()
        if not name:
            raise InvalidSettingError(f"{text!r}: give a plugin name, optionally with settings as "
                                      "name:key=value,key=value (e.g. nsga2:pop_size=50,generations=20)")
        params = {}
        for option in _options(rest) if rest.strip() else []:
            key, eq, value = option.partition("=")
            if not eq or not key.strip():
                raise InvalidSettingError(f"{text!r}: {option!r} is not key=value; write settings as "
                                          f"{name}:key=value,key=value")
            params[key.strip()] = parse_value(value.strip())
        return cls(name, params)

    def text(self) -> str:
        """The spec written back (``Spec.parse(spec.text()) == spec``)."""
        if not self.params:
            return self.name
        return self.name + ":" + ",".join(f"{k}={_write(v)}" for k, v in self.params.items())

    def build(self, kind: str, **fixed) -> Any:
        """The plugin instance; ``fixed`` are arguments the engine passes (a clusterer's seed) and
        that the spec's settings override."""
        from . import plugins

        cls = plugins.get(kind, self.name)
        check_params(kind, cls, self.params)
        return cls(**{**fixed, **self.params})


def plugin_params(cls: type) -> list[str]:
    """The keyword parameters ``cls(...)`` takes."""
    sig = inspect.signature(cls.__init__)
    return [p.name for p in sig.parameters.values()
            if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def check_params(kind: str, cls: type, params: dict) -> None:
    accepted = plugin_params(cls)
    unknown = [k for k in params if k not in accepted]
    if unknown:
        raise InvalidSettingError(f"{kind} {cls.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                                  f"its parameters are: {', '.join(accepted) or 'none'}")


def parse_value(text: str) -> Any:
    """``50`` -> 50, ``0.5`` -> 0.5, ``true`` / ``True`` -> True, ``null`` / ``None`` -> None,
    ``[2,4]`` -> [2, 4], anything else -> the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    return {"True": True, "False": False, "None": None}.get(text, text)


def _write(value: Any) -> str:
    return value if isinstance(value, str) and parse_value(value) == value and not set(value) & set(",:[]{}") \
        else json.dumps(value)


def _split(text: str, separators: str) -> list[str]:
    """``text`` cut at ``separators`` outside brackets and quotes (``k=[2,4]`` stays whole)."""
    parts, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch in separators and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _options(text: str) -> list[str]:
    """The ``key=value`` options of a spec, separated by ``,`` or ``:``; a ``:`` part holding no ``=``
    continues the value before it, so addresses keep their port (``address=10.0.0.5:6379``,
    ``address=ray://head:10001``)."""
    options: list[str] = []
    for part in _split(text, ","):
        pieces = _split(part, ":")
        for i, piece in enumerate(pieces):
            if i and "=" not in piece and "=" in pieces[0]:
                options[-1] += ":" + piece
            else:
                options.append(piece)
    return options


def split_list(text: str) -> list[str]:
    """A comma-separated list of specs: ``nsga2:pop_size=50,generations=20,knapsack`` is two specs (a
    part holding ``=`` but no ``:`` continues the spec before it)."""
    specs: list[str] = []
    for part in _split(text, ","):
        head = part.split("=", 1)[0]
        if "=" in part and ":" not in head and specs:
            specs[-1] += "," + part
        else:
            specs.append(part)
    return specs


def resolve(kind: str, value: Any, base: type, **fixed) -> Any:
    """An instance of ``base`` from an instance, a class, a name or a ``name:key=value`` spec."""
    if isinstance(value, base):
        return value
    if isinstance(value, type) and issubclass(value, base):
        return value(**fixed)
    if isinstance(value, Spec):
        return value.build(kind, **fixed)
    if isinstance(value, str):
        return Spec.parse(value).build(kind, **fixed)
    raise InvalidSettingError(f"{kind}={value!r}: give a {kind} name (see `wsx plugins`), a "
                              f"name:key=value spec, a {base.__name__} instance or class")


def describe(obj: Any) -> str:
    """The spec of a built plugin: its name and the parameters that differ from the defaults."""
    params = obj.get_params() if hasattr(obj, "get_params") else {}
    defaults = {}
    for p in inspect.signature(type(obj).__init__).parameters.values():
        if p.default is not inspect.Parameter.empty:
            defaults[p.name] = p.default
    changed = {k: v for k, v in params.items() if k in defaults and defaults[k] != v and _plain(v)}
    return Spec(obj.name, changed).text()


def _plain(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except TypeError:
        return False
