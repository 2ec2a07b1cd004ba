"""``wsx explore``: explore a model given as MODULE:ATTR (this imports and runs that module's code)."""
from __future__ import annotations

import inspect
from importlib import import_module

from . import add_common, explore_kwargs, report


def add_parser(sub):
    p = sub.add_parser(
        "explore", help="explore your own model",
        description="Explore a model and data named as MODULE:ATTR. Importing MODULE runs its code: only "
        "name modules you trust. ATTR may be a zero-argument callable returning the object.")
    p.add_argument("--model", required=True, help="MODULE:ATTR of the model (torch Module, Keras model, "
                   "or JAX (apply_fn, params))")
    p.add_argument("--data", required=True, help="MODULE:ATTR of (inputs, labels) or a loader")
    p.add_argument("--test-data", default=None, help="MODULE:ATTR of a disjoint test split")
    add_common(p)
    return p


def load_object(spec: str):
    from wsx.errors import InvalidSettingError

    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise InvalidSettingError(f"{spec!r} is not MODULE:ATTR (e.g. mypkg.models:build_model)")
    try:
        obj = import_module(module)
    except ImportError as exc:
        raise InvalidSettingError(f"cannot import {module!r} ({exc}); check the name and PYTHONPATH") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InvalidSettingError(f"{module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj() if inspect.isfunction(obj) else obj  # a factory function is called, objects used as is


def run(args) -> int:
    import wsx

    model = load_object(args.model)
    data = load_object(args.data)
    test = load_object(args.test_data) if args.test_data else None
    result = wsx.explore(model, data, test_data=test, **explore_kwargs(args))
    report(result, args)
    return 0
