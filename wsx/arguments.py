"""Checks of ``explore``'s arguments, made before anything is loaded or scored: a bad argument costs
the user no baseline scoring and never surfaces as a traceback from deep inside a search."""
from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from .errors import InvalidSettingError

BITS = (8, 16, 32, 64)  # widths of a stored baseline value (B) that a number format has


def is_whole(value: Any) -> bool:
    """An int or numpy integer, not a bool (True is not a count)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value: Any) -> bool:
    return (is_whole(value) or isinstance(value, (float, np.floating))) and not isinstance(value, bool)


def check_seed(seed: Any) -> int:
    if not is_whole(seed) or seed < 0:
        raise InvalidSettingError(f"seed={seed!r}: give a non-negative whole number (the same seed gives the "
                                  "same result)")
    return int(seed)


def check_count(name: str, value: Any, *, allow_none: bool = False, minimum: int = 1, unit: str = "") -> int | None:
    """A whole number >= ``minimum`` (a float such as 100.0 is taken as 100)."""
    if value is None and allow_none:
        return None
    if is_number(value) and math.isfinite(value) and int(value) == value and value >= minimum:
        return int(value)
    what = f"a positive number of {unit}" if unit else (
        "a positive whole number" if minimum == 1 else f"a whole number >= {minimum}")
    raise InvalidSettingError(f"{name}={value!r}: give {what}" + (", or None" if allow_none else ""))


def check_seconds(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if is_number(value) and value > 0 and not math.isnan(value):
        return float(value)
    raise InvalidSettingError(f"{name}={value!r}: give a positive number of seconds, or None")


def check_subset(subset: Any) -> Any:
    """None, "auto", a fraction in (0, 1] or a sample count >= 1."""
    if subset is None or subset == "auto":
        return subset
    if is_whole(subset):
        if subset < 1:
            raise InvalidSettingError(f"subset={subset!r} selects no sample; give a positive count or fraction")
        return int(subset)
    if is_number(subset) and 0.0 < subset <= 1.0:
        return float(subset)
    raise InvalidSettingError(f"subset={subset!r}: give a fraction in (0, 1], a sample count, 'auto' or None")


def check_early_rejection(value: Any) -> str | float | bool:
    """"exact" (True is the same), False (off, None too) or a confidence in (0, 1) such as 0.99; the
    CLI's strings "exact", "off" / "false" and "0.99" are read as those."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("exact", "true", "on"):
            return "exact"
        if text in ("off", "false", "none", "no"):
            return False
        try:
            value = float(text)
        except ValueError:
            value = text
    if value is True:
        return "exact"
    if value is False or value is None:
        return False
    if is_number(value) and 0.0 < value < 1.0:
        return float(value)
    raise InvalidSettingError(f"early_rejection={value!r}: give 'exact' (stop scoring a candidate once it provably "
                              "misses the target), a confidence in (0, 1) such as 0.99 (also stop on a statistical "
                              "bound at that level), or False (score every candidate on every sample)")


def check_bits(bits: Any) -> int | None:
    if bits is None:
        return None
    if not is_number(bits) or not math.isfinite(bits) or int(bits) != bits or bits < 1:
        raise InvalidSettingError(f"bits={bits!r}: the width of a stored value must be a positive whole number "
                                  f"(one of {', '.join(map(str, BITS))})")
    if int(bits) not in BITS:
        raise InvalidSettingError(f"bits={bits!r}: B is the width of a value the baseline stores; no number "
                                  f"format has {bits} bits: give one of {', '.join(map(str, BITS))}")
    return int(bits)


def check_knobs(knobs: Any) -> Any:
    """None, one non-empty list for every layer, or {layer: non-empty list}; layer names are checked
    against the model once its layers are known (``check_knob_layers``)."""
    if knobs is None:
        return None
    if isinstance(knobs, dict):
        for name, values in knobs.items():
            if values is not None and (isinstance(values, (str, bytes)) or not _non_empty(values)):
                raise InvalidSettingError(f"knobs[{name!r}]={values!r}: give a non-empty list of knob values "
                                          "for the layer, or leave the layer out")
        return knobs
    if isinstance(knobs, (str, bytes)) or not _non_empty(knobs):
        raise InvalidSettingError(f"knobs={knobs!r}: give a non-empty list of knob values (e.g. [2, 4, 8, 16]), "
                                  "a dict {layer: [values]}, or None for the defaults")
    return knobs


def check_knob_layers(knobs: Any, layer_names: list[str]) -> None:
    if isinstance(knobs, dict):
        unknown = [name for name in knobs if name not in layer_names]
        if unknown:
            raise InvalidSettingError(f"knobs names {unknown}, which are not layers of interest of this model "
                                      f"(layers: {layer_names}); use these names or leave them out")


def _non_empty(values: Any) -> bool:
    try:
        return len(values) > 0
    except TypeError:
        return False


def check_out(out: Any) -> Any:
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise InvalidSettingError(f"out={out!r}: give a directory path (str or pathlib.Path), or None")
    return out
