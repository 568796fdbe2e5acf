"""Argument checks shared by the public functions: one line naming the argument and the fix.

Numpy scalars count as numbers; bools and strings never do (``True`` is not a
class count and ``'8'`` is not a batch size). Each check returns the value as
a plain Python int or float, so callers store clean values.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def check_int(name: str, value: Any, *, min: Optional[int] = None, max: Optional[int] = None) -> int:
    """`value` as an int in [min, max]; integral floats such as 8.0 are refused too (8.9 would be a typo)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {_describe(value)}.")
    value = int(value)
    _check_range(name, value, min, max)
    return value


def check_float(
    name: str,
    value: Any,
    *,
    min: Optional[float] = None,
    max: Optional[float] = None,
    min_open: bool = False,
    max_open: bool = False,
) -> float:
    """`value` as a finite float in the range; the `_open` flags exclude that bound."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {_describe(value)}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}.")
    _check_range(name, value, min, max, min_open, max_open)
    return value


def _check_range(name, value, low, high, low_open=False, high_open=False) -> None:
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        span = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ValueError(f"{name} must be in {span}, got {value}.")


def check_choice(name: str, value: Any, choices: tuple) -> Any:
    if not any(value is c or (isinstance(value, str) and value == c) for c in choices):
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}.")
    return value
