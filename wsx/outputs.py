"""Which of a model's outputs the metric sees (framework-free).

Models return a tensor, a tuple / list, a dict, or an object such as Hugging Face's ``ModelOutput``
(an ordered dict of tensors). ``output=`` picks the entry: a key (``"last_hidden_state"``), an index
(``0``), or a callable ``outputs -> array`` (e.g. ``lambda o: o.last_hidden_state[:, 0]``); it runs
on the framework's own outputs, inside traced or vectorised functions, so a callable should use the
framework's operations. By default a plain tensor is taken as it is; a dict or ModelOutput gives
``"logits"`` if present, else its first entry; a tuple or list its first element.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import InvalidSettingError

OUTPUT_FORMS = "a key, an index, or a callable(outputs) -> array"


def _is_tensor(x: Any) -> bool:
    return hasattr(x, "shape") and not isinstance(x, (Mapping, tuple, list))


def _keys(outputs: Any) -> list:
    if isinstance(outputs, Mapping):
        return list(outputs.keys())
    if isinstance(outputs, (tuple, list)):
        return list(range(len(outputs)))
    return [k for k in vars(outputs) if not k.startswith("_")] if hasattr(outputs, "__dict__") else []


def choose(outputs: Any, selector: Any = None) -> Any:
    """The key or index ``select`` takes for ``outputs`` (None: the outputs as they are)."""
    if selector is not None and not isinstance(selector, (str, int)):
        return selector
    if selector is None:
        if _is_tensor(outputs):
            return None
        if isinstance(outputs, Mapping):
            keys = _keys(outputs)
            if not keys:
                raise InvalidSettingError("the model returned an empty dict; it must return the array the metric "
                                          "reads")
            return "logits" if "logits" in keys else keys[0]
        if isinstance(outputs, (tuple, list)):
            if not outputs:
                raise InvalidSettingError("the model returned an empty tuple; it must return the array the metric "
                                          "reads")
            return 0
        return None
    return selector


def select(outputs: Any, selector: Any = None) -> Any:
    """The entry of ``outputs`` named by ``selector`` (see the module docstring)."""
    if callable(selector) and not isinstance(selector, (str, int)):
        try:
            return selector(outputs)
        except InvalidSettingError:
            raise
        except Exception as exc:  # the user's selector: say which
            raise InvalidSettingError(f"output={getattr(selector, '__name__', selector)!r} raised "
                                      f"{type(exc).__name__}: {exc}; it is called with the model's outputs "
                                      "and must return the array the metric reads") from exc
    if isinstance(selector, bool) or (selector is not None and not isinstance(selector, (str, int))):
        raise InvalidSettingError(f"output={selector!r}: give {OUTPUT_FORMS}")
    key = choose(outputs, selector)
    if key is None:
        return outputs
    if isinstance(key, str):
        if isinstance(outputs, Mapping):
            if key in outputs:
                return outputs[key]
        elif hasattr(outputs, key) and not isinstance(outputs, (tuple, list)):
            return getattr(outputs, key)
        raise InvalidSettingError(f"output={key!r} is not among the model's outputs "
                                  f"({_available(outputs)}); pass output= {OUTPUT_FORMS}")
    if isinstance(outputs, (tuple, list)):
        seq = outputs
    elif isinstance(outputs, Mapping):
        seq = list(outputs.values())
    else:
        raise InvalidSettingError(f"output={key!r} indexes the model's outputs, but it returned one "
                                  f"{type(outputs).__name__}; leave output= out to take it as it is")
    if not -len(seq) <= key < len(seq):
        raise InvalidSettingError(f"output={key} is outside the model's {len(seq)} outputs "
                                  f"({_available(outputs)}); pass output= {OUTPUT_FORMS}")
    return seq[key]


def _available(outputs: Any) -> str:
    keys = _keys(outputs)
    if _is_tensor(outputs) or not keys:
        return f"it returns one {type(outputs).__name__}"
    return "available: " + ", ".join(repr(k) for k in keys)


def describe(outputs: Any, selector: Any = None) -> str | None:
    """What ``select`` takes from ``outputs`` in words, when there was a choice (a note for results)."""
    if _is_tensor(outputs):
        return None
    key = choose(outputs, selector)
    if key is None or callable(key):
        return None if key is None else f"output: {getattr(key, '__name__', 'a callable')} of the model's outputs"
    how = "chosen with output=" if selector is not None else "by default; pass output= to choose"
    return f"output: {key!r} of the model's outputs ({_available(outputs)}; {how})"
