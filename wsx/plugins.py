"""Discovery of backends, strategies, clusterers and approximations through the ``wsx`` entry points.

Built-ins and third-party plugins take the same path: every entry point of the ``wsx`` group is loaded
and registered with one pluggy PluginManager. Set ``WSX_DISABLE_PLUGIN_AUTOLOAD=1`` to load only the
plugins wsx itself ships. A plugin that fails to import is reported (``wsx plugins``) instead of
breaking ``import wsx`` or the other plugins.
"""
from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import warnings
from dataclasses import dataclass
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginNotFoundError, PluginUnavailableError

DISABLE_ENV = "WSX_DISABLE_PLUGIN_AUTOLOAD"
KINDS = ("backend", "strategy", "clusterer", "approximation")
_HOOKS = {"backend": "wsx_backends", "strategy": "wsx_strategies", "clusterer": "wsx_clusterers",
          "approximation": "wsx_approximations"}


@dataclass
class PluginInfo:
    name: str
    kind: str
    distribution: str
    version: str
    available: bool
    reason: str = ""
    cls: Any = None

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "distribution": self.distribution,
                "version": self.version, "available": self.available, "reason": self.reason}


class _Registry:
    def __init__(self):
        self.pm = pluggy.PluginManager("wsx")
        self.pm.add_hookspecs(hookspecs)
        self.origin: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)
        self.failed: list[PluginInfo] = []
        self._owner: dict[tuple[str, str], str] = {}  # (kind, class name) -> plugin name
        self._load()
        self.pm.check_pending()

    def _load(self) -> None:
        autoload = not os.environ.get(DISABLE_ENV)
        seen: set[str] = set()
        for dist in md.distributions():
            dist_name = dist.metadata["Name"] or "?"
            if dist_name.lower() in seen:  # the same distribution found twice on sys.path
                continue
            seen.add(dist_name.lower())
            builtin = dist_name.lower() == "wsx"
            if not (builtin or autoload):
                continue
            for ep in dist.entry_points:
                if ep.group != "wsx" or self.pm.get_plugin(ep.name) is not None \
                        or self.pm.is_blocked(ep.name):
                    continue
                try:
                    plugin = ep.load()
                except Exception as exc:  # a broken third-party plugin must not break wsx
                    warnings.warn(f"wsx plugin {ep.name!r} from {dist_name} failed to load: {exc!r}",
                                  stacklevel=2)
                    self.failed.append(PluginInfo(ep.name, "plugin", dist_name, dist.version, False,
                                                  f"failed to load: {exc!r}"))
                    continue
                self.pm.register(plugin, name=ep.name)
                self.origin[ep.name] = (dist_name, dist.version)

    def classes(self, kind: str) -> dict[str, type]:
        hook = getattr(self.pm.hook, _HOOKS[kind])
        found: dict[str, type] = {}
        for impl in reversed(hook.get_hookimpls()):  # registration order: first registered wins a name
            for cls in impl.function() or []:
                found.setdefault(cls.name, cls)
                self._owner.setdefault((kind, cls.name), impl.plugin_name)
        return found


_registry: _Registry | None = None


def manager() -> _Registry:
    global _registry
    if _registry is None:
        _registry = _Registry()
    return _registry


def reload() -> None:
    """Forget and re-discover plugins (after installing one in a running interpreter)."""
    global _registry
    _registry = None
    importlib.invalidate_caches()


def register(plugin: Any, name: str | None = None) -> None:
    """Register an in-process plugin object or module (for notebooks and tests)."""
    reg = manager()
    reg.pm.register(plugin, name=name)
    reg.origin[name or reg.pm.get_name(plugin)] = ("(in-process)", "")
    reg.pm.check_pending()


def unregister(name: str) -> None:
    reg = manager()
    plugin = reg.pm.get_plugin(name)
    if plugin is not None:
        reg.pm.unregister(plugin)


def backends() -> dict[str, type]:
    return manager().classes("backend")


def strategies() -> dict[str, type]:
    return manager().classes("strategy")


def clusterers() -> dict[str, type]:
    return manager().classes("clusterer")


def approximations() -> dict[str, type]:
    return manager().classes("approximation")


def info() -> list[PluginInfo]:
    """Every known plugin class with its distribution, version and availability."""
    reg = manager()
    rows = []
    for kind in KINDS:
        for name, cls in reg.classes(kind).items():
            dist, version = reg.origin.get(reg._owner.get((kind, name), ""), ("?", ""))
            ok, reason = cls.available()
            rows.append(PluginInfo(name, kind, dist, version, ok, reason, cls))
    return rows + list(reg.failed)


def get(kind: str, name: str) -> type:
    """The class registered under ``name``; a clear error if unknown or unavailable."""
    table = manager().classes(kind)
    if name not in table:
        raise PluginNotFoundError(f"unknown {kind} {name!r}; available: {', '.join(sorted(table)) or 'none'}"
                                  " (`wsx plugins` lists them)")
    cls = table[name]
    ok, reason = cls.available()
    if not ok:
        raise PluginUnavailableError(f"{kind} {name!r} is not available here: {reason}")
    return cls


def backend_for(model: Any) -> str | None:
    return manager().pm.hook.wsx_backend_for(model=model)


def module_available(module: str, extra: str | None) -> tuple[bool, str]:
    """(True, "") if ``module`` can be imported, without importing it (keeps `wsx plugins` fast)."""
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a None entry in sys.modules also means "missing"
        found = False
    return (True, "") if found else (False, unavailable_reason(extra, module))


def unavailable_reason(extra: str | None, module: str) -> str:
    """Standard message for a plugin whose framework is missing."""
    hint = f"pip install 'wsx[{extra}]'" if extra else f"pip install {module}"
    return f"{module} is not installed; {hint}"
