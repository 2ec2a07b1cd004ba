"""Discovery of backends, strategies, clusterers, approximations and executors through the ``wsx`` entry points.

Built-ins and third-party plugins take the same path: every entry point of the ``wsx`` group is loaded
and registered with one pluggy PluginManager. Set ``WSX_DISABLE_PLUGIN_AUTOLOAD=1`` to load only the
plugins wsx itself ships. A plugin that fails to import, that pluggy refuses (a misspelt hook, a
hook with wrong arguments) or whose hook raises or returns something unusable is reported (a
warning, and ``wsx plugins`` lists it as broken with the reason) and disabled, instead of breaking
``import wsx``, every command or the other plugins.
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
KINDS = ("backend", "strategy", "clusterer", "approximation", "executor")
_HOOKS = {"backend": "wsx_backends", "strategy": "wsx_strategies", "clusterer": "wsx_clusterers",
          "approximation": "wsx_approximations", "executor": "wsx_executors"}


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
                    self._broken(ep.name, f"failed to load: {exc!r}", (dist_name, dist.version))
                    continue
                self.origin[ep.name] = (dist_name, dist.version)
                try:
                    self.pm.register(plugin, name=ep.name)
                    self.pm.check_pending()  # what is pending now is this plugin's: earlier ones passed
                except Exception as exc:  # pluggy's PluginValidationError: a misspelt or malformed hook
                    self.disable(ep.name, f"refused by pluggy: {exc}")

    def _broken(self, name: str, reason: str, origin: tuple[str, str]) -> None:
        warnings.warn(f"wsx plugin {name!r} from {origin[0]} is disabled: {reason}", stacklevel=3)
        self.failed.append(PluginInfo(name, "plugin", origin[0], origin[1], False, reason))

    def disable(self, name: str, reason: str) -> None:
        """Unregister a plugin that misbehaved and report it (a warning now, `wsx plugins` later)."""
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        self.pm.set_blocked(name)
        self._broken(name, reason, self.origin.get(name, ("?", "")))

    def call(self, hook_name: str, **kwargs) -> list[tuple[str, Any]]:
        """(plugin name, result) of every implementation of a hook, in pluggy's call order; one that
        raises is disabled and skipped, so that one broken plugin does not break the others."""
        out = []
        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            try:
                value = impl.function(*[kwargs[arg] for arg in impl.argnames])
            except Exception as exc:  # noqa: BLE001 - a third-party hook; reported and disabled
                self.disable(impl.plugin_name, f"hook {hook_name} raised {type(exc).__name__}: {exc}")
                continue
            out.append((impl.plugin_name, value))
        return out

    def classes(self, kind: str) -> dict[str, type]:
        found: dict[str, type] = {}
        for plugin_name, classes in self.call(_HOOKS[kind]):  # first registered wins a name
            try:
                valid = [c for c in classes or [] if isinstance(c, type) and isinstance(c.name, str)]
                if len(valid) != len(classes or []):
                    raise TypeError("not a list of plugin classes with a name")
            except Exception as exc:  # noqa: BLE001 - not iterable, no .name
                self.disable(plugin_name, f"hook {_HOOKS[kind]} returned {classes!r:.80}: {exc}")
                continue
            for cls in valid:
                found.setdefault(cls.name, cls)
                self._owner.setdefault((kind, cls.name), plugin_name)
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
    try:
        reg.pm.check_pending()  # in-process: the caller's own mistake, raised at once
    except Exception:
        reg.pm.unregister(plugin)
        raise


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


def executors() -> dict[str, type]:
    return manager().classes("executor")


def info() -> list[PluginInfo]:
    """Every known plugin class with its distribution, version and availability."""
    reg = manager()
    rows = []
    for kind in KINDS:
        for name, cls in reg.classes(kind).items():
            dist, version = reg.origin.get(reg._owner.get((kind, name), ""), ("?", ""))
            try:
                ok, reason = cls.available()
            except Exception as exc:  # noqa: BLE001 - a third-party class; reported, not raised
                ok, reason = False, f"available() raised {type(exc).__name__}: {exc}"
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
    """The first backend name a ``wsx_backend_for`` hook gives for ``model`` (firstresult)."""
    for _, name in manager().call("wsx_backend_for", model=model):
        if name is not None:
            return name
    return None


def module_available(module: str, extra: str | None) -> tuple[bool, str]:
    """(True, "") if ``module`` can be imported, without importing it (keeps `wsx plugins` fast)."""
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a None entry in sys.modules also means "missing"
        found = False
    return (True, "") if found else (False, unavailable_reason(extra, module))


def modules_available(modules, extra: str | None) -> tuple[bool, str]:
    """``module_available`` for each of ``modules``: the first missing one's reason."""
    for module in modules:
        ok, reason = module_available(module, extra)
        if not ok:
            return ok, reason
    return True, ""


def unavailable_reason(extra: str | None, module: str) -> str:
    """Standard message for a plugin whose framework is missing."""
    hint = install_hint(extra) if extra else f"pip install {module}"
    return f"{module} is not installed; {hint}"


def install_hint(extra: str) -> str:
    """The command installing wsx's ``extra`` the way this wsx was installed: from its source folder
    (``pip install -e .``: the folder, with its constraints.txt) or as a published distribution."""
    source = _source_install()
    if source is None:
        return f"pip install 'wsx[{extra}]'"
    root, editable = source
    constraints = f"-c {root / 'constraints.txt'} " if (root / "constraints.txt").is_file() else ""
    return f"pip install {constraints}{'-e ' if editable else ''}'{root}[{extra}]'"


def _source_install():
    """(folder, editable) when wsx was installed from a local folder (PEP 610 direct_url.json), else None."""
    import json
    from pathlib import Path
    from urllib.parse import unquote, urlparse

    for dist in md.distributions():  # a source folder's own wsx.egg-info has no direct_url.json: skip it
        if (dist.metadata["Name"] or "").lower() != "wsx":
            continue
        try:
            info = json.loads(dist.read_text("direct_url.json") or "null")
        except ValueError:
            continue
        if isinstance(info, dict) and "dir_info" in info and str(info.get("url", "")).startswith("file:"):
            return Path(unquote(urlparse(info["url"]).path)), bool(info["dir_info"].get("editable"))
    return None
