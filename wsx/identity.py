"""Identities of code, so that a journal is resumed only under the same model computation and metric.

``code_digest`` hashes what a Python callable computes: its bytecode, constants and the names it
uses, its defaults, the values in its closure and the module globals it reads (numbers, strings,
arrays, and functions recursively). Two definitions of a metric with the same name but another body
or another captured threshold differ; redefining the very same function does not. Bytecode differs
between Python versions, so a journal is not resumed across them (``--restart`` starts over).
"""
from __future__ import annotations

import functools
import hashlib
import re
import types
from typing import Any

import numpy as np

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_MAX_DEPTH = 6


def strip_addresses(text: str) -> str:
    """``text`` without object addresses, which differ between processes."""
    return _ADDRESS.sub("", text)


def code_digest(obj: Any) -> str:
    h = hashlib.sha256()
    _feed(h, obj, 0, set())
    return h.hexdigest()


def classes_digest(objects, skip_prefixes: tuple[str, ...]) -> str:
    """Digest of the code of every class of ``objects`` (and their bases) not defined in a module
    starting with one of ``skip_prefixes`` (the framework's own classes, identified by their config):
    the methods ``forward`` / ``call`` / ``__call__`` reach by name, transitively."""
    classes = list(dict.fromkeys(
        cls for obj in objects for cls in type(obj).__mro__
        if cls is not object and not (cls.__module__ or "").startswith(skip_prefixes) and cls.__module__ != "builtins"))
    methods: dict[str, list] = {}  # name -> the functions of that name, over all classes
    for cls in classes:
        for name, attr in vars(cls).items():
            if (fn := _function(attr)) is not None:
                methods.setdefault(name, []).append(fn)
    # Only what the forward reaches (the methods it names, and theirs): other methods' globals can
    # hold per-process values (a library's session id) that would tell the same model apart.
    reached, todo = set(), list(COMPUTE_ROOTS)
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo += [m for fn in methods.get(name, ()) for m in _global_names(fn.__code__)]
    h = hashlib.sha256()
    for cls in classes:
        h.update(f"class {cls.__module__}.{cls.__qualname__}\n".encode())
        for name in sorted(n for n in vars(cls) if n in reached and _function(vars(cls)[n]) is not None):
            h.update(f"{name}:".encode())
            _feed(h, _function(vars(cls)[name]), 1, set())
    return h.hexdigest()


COMPUTE_ROOTS = ("forward", "call", "__call__")  # torch, Keras, plain callables


def _function(attr: Any):
    """The function behind a class attribute (method, static or class method, property), else None."""
    if isinstance(attr, (staticmethod, classmethod)):
        attr = attr.__func__
    if isinstance(attr, property):
        attr = attr.fget
    return attr if isinstance(attr, types.FunctionType) else None


def _feed(h, obj: Any, depth: int, seen: set) -> None:
    if depth > _MAX_DEPTH:
        h.update(b"<deep>")
        return
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
        return
    if id(obj) in seen:
        h.update(b"<seen>")
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray) or isinstance(obj, np.generic):
        arr = np.ascontiguousarray(obj)
        h.update(f"array:{arr.dtype.str}{arr.shape};".encode())
        h.update(arr.tobytes() if arr.dtype.kind != "O" else repr(arr.tolist()).encode())
    elif isinstance(obj, types.FunctionType):
        h.update(f"function {obj.__qualname__};".encode())  # not its module: __main__ in a script
        _code(h, obj.__code__, depth, seen)
        _feed(h, obj.__defaults__, depth + 1, seen)
        _feed(h, obj.__kwdefaults__, depth + 1, seen)
        for cell in obj.__closure__ or ():
            try:
                _feed(h, cell.cell_contents, depth + 1, seen)
            except ValueError:  # an empty cell
                h.update(b"<empty cell>")
        for name in sorted(_global_names(obj.__code__)):
            if name in obj.__globals__:
                h.update(f"global {name}=".encode())
                _feed(h, obj.__globals__[name], depth + 1, seen)
    elif isinstance(obj, types.MethodType):
        _feed(h, obj.__func__, depth + 1, seen)
        _feed(h, obj.__self__, depth + 1, seen)
    elif isinstance(obj, functools.partial):
        h.update(b"partial;")
        for part in (obj.func, obj.args, obj.keywords):
            _feed(h, part, depth + 1, seen)
    elif isinstance(obj, (tuple, list, set, frozenset)):
        h.update(f"{type(obj).__name__}[{len(obj)}];".encode())
        items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
        for item in items:
            _feed(h, item, depth + 1, seen)
    elif isinstance(obj, dict):
        h.update(f"dict[{len(obj)}];".encode())
        for key in sorted(obj, key=repr):
            _feed(h, key, depth + 1, seen)
            _feed(h, obj[key], depth + 1, seen)
    elif isinstance(obj, (type, types.ModuleType, types.BuiltinFunctionType)):
        h.update(f"{type(obj).__name__} {getattr(obj, '__module__', '')}."
                 f"{getattr(obj, '__qualname__', getattr(obj, '__name__', ''))};".encode())
    elif callable(obj) and isinstance(getattr(type(obj), "__call__", None), types.FunctionType):
        h.update(f"callable {type(obj).__module__}.{type(obj).__qualname__};".encode())  # a metric object
        _feed(h, type(obj).__call__, depth + 1, seen)
        _feed(h, getattr(obj, "__dict__", None), depth + 1, seen)
    else:  # an object whose value cannot be read generically: its type stands for it
        h.update(f"object {type(obj).__module__}.{type(obj).__qualname__};".encode())


def _code(h, code: types.CodeType, depth: int, seen: set) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _code(h, const, depth + 1, seen)
        else:
            _feed(h, const, depth + 1, seen)


def _global_names(code: types.CodeType) -> set:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names
