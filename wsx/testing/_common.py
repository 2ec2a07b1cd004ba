"""Checks the conformance suites share: every plugin kind follows one parameter contract."""
from __future__ import annotations

import inspect
from typing import Any, Sequence


def check_init_params(cls: type, obj: Any, name: str, required: Sequence[str] = ()) -> None:
    """``cls.__init__`` parameters keyword-only and stored as attributes of ``obj``, ``get_params``
    listing them all, and ``cls(**get_params())`` an equal object (results record the parameters and
    ``wsx.apply`` rebuilds the plugin from them)."""
    sig = inspect.signature(cls.__init__)
    params = {p: v for p, v in sig.parameters.items() if p != "self"}
    for p in required:
        assert p in params, f"{name}.__init__ must take {p}="
    for p, v in params.items():
        assert v.kind in (v.KEYWORD_ONLY, v.VAR_KEYWORD), \
            f"{name}.__init__ parameter {p!r} must be keyword-only (def __init__(self, *, ...))"
        if v.kind == v.KEYWORD_ONLY:
            assert hasattr(obj, p), f"{name} must store constructor parameter {p!r} as self.{p}"
    got = obj.get_params()
    missing = [p for p, v in params.items() if v.kind == v.KEYWORD_ONLY and p not in got]
    assert not missing, f"{name}.get_params() lacks constructor parameters {missing}"
    assert cls(**got).get_params() == got, f"{name}(**get_params()) does not rebuild an equal object"
