"""``wsx explore``: explore a model given as MODULE:ATTR (this imports and runs that module's code)."""
from __future__ import annotations

import inspect
import os
import sys
from importlib import import_module

from . import add_common, explore_kwargs, record_config, report


def add_parser(sub):
    p = sub.add_parser(
        "explore", help="explore your own model",
        description="Explore a model and data named as MODULE:ATTR, imported the way `python -m` does (the "
        "current directory first). Importing MODULE runs its code: only name modules you trust. ATTR may be "
        "a function or class called with no arguments to build the object. Example, from the folder of "
        "mymodel.py: wsx explore --model mymodel:build_model --data mymodel:load_data --out run1")
    p.add_argument("--model", default=None, help="MODULE:ATTR of the model (torch Module, Keras model, "
                   "or JAX (apply_fn, params)), or of a function / class building it (required; or model = in "
                   "--config)")
    p.add_argument("--data", default=None, help="MODULE:ATTR of (inputs, labels), of inputs alone (label-free "
                   "metrics) or a loader, or of a function returning it (required; or data = in --config)")
    p.add_argument("--test-data", default=None, help="MODULE:ATTR of a disjoint test split")
    add_common(p)
    return p


def load_object(spec: str, what: str = "--model", call: bool = True):
    """The object MODULE:ATTR names; a function or class there is called with no arguments (unless
    ``call`` is False: a metric function is the object itself)."""
    from wsx.errors import InvalidSettingError

    if not isinstance(spec, str):
        raise InvalidSettingError(f"{what} {spec!r} is not MODULE:ATTR (e.g. mypkg.models:build_model)")
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise InvalidSettingError(f"{what} {spec!r} is not MODULE:ATTR (e.g. mypkg.models:build_model)")
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)  # as `python -m` does: a module in the current folder is found
    try:
        obj = import_module(module)
    except ImportError as exc:
        raise InvalidSettingError(f"{what}: cannot import {module!r} ({exc}); run from the folder holding it or "
                                  "add its folder to PYTHONPATH") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InvalidSettingError(f"{what}: module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not call or not builds(obj):
        return obj
    try:
        inspect.signature(obj).bind()
    except TypeError:
        raise InvalidSettingError(f"{what} {spec}: {attr} needs arguments; name an object, or a function or class "
                                  "that takes none") from None
    except ValueError:
        pass  # no signature to check (a builtin): call it
    return obj()


def builds(obj) -> bool:
    """A function, method, class or functools.partial: called to build the object. Instances (a torch
    Module or Keras model is callable too) are used as they are."""
    import functools

    return inspect.isroutine(obj) or inspect.isclass(obj) or isinstance(obj, functools.partial)


def run(args) -> int:
    import wsx
    from wsx.errors import InvalidSettingError

    for option, value in (("--model", args.model), ("--data", args.data)):
        if not value:
            raise InvalidSettingError(f"{option} MODULE:ATTR is required (or {option[2:]} = \"MODULE:ATTR\" in "
                                      "--config)")
    model = load_object(args.model, "--model")
    data = load_object(args.data, "--data")
    test = load_object(args.test_data, "--test-data") if args.test_data else None
    result = wsx.explore(model, data, test_data=test, **explore_kwargs(args))
    record_config(result, args, model=args.model, data=args.data, test_data=args.test_data)
    report(result, args)
    return 0
