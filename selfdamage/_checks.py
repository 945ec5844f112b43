"""Argument checks: one vocabulary for every error the package raises on a bad argument.

Every check returns the value (converted where it says so) or raises with one message
form: ``"NAME must be ..., got NAME=VALUE."`` followed, where it helps, by how to fix it.
``TypeError`` for a value of the wrong kind, ``ValueError`` for one out of range. This
module imports nothing from the package, so any module may use it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection

from torch import nn

__all__ = ["check_bool", "check_choice", "check_int", "check_module", "check_real", "name_list"]


def _fail(error: type[Exception], name: str, what: str, value: object, fix: str) -> Exception:
    return error(f"{name} must be {what}, got {name}={value!r}." + (f" {fix}" if fix else ""))


def check_real(
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    high_name: str = "",
    what: str = "",
    fix: str = "",
) -> float:
    """``value`` as a ``float`` if it is a finite real number (not a bool) within the bounds.

    NaN and infinity are always rejected: NaN passes every comparison, and no argument
    of the package means anything at infinity.

    Args:
        name: The argument's name, as the caller spells it.
        value: The value passed.
        low: Lower bound, or None for none.
        high: Upper bound, or None for none.
        low_open: If True, ``low`` itself is excluded.
        high_open: If True, ``high`` itself is excluded.
        high_name: Shown for the upper bound as ``high_name=high`` when it is another
            argument's value.
        what: Replaces the range in the message, e.g. ``"a momentum in [0, 1]"``.
        fix: How to fix it, appended to the message.

    Raises:
        TypeError: If ``value`` is not a real number.
        ValueError: If it is NaN, infinite or out of range.

    Examples:
        >>> check_real("prune_ratio", 0.5, 0.0, 1.0, high_open=True)
        0.5
        >>> check_real("prune_ratio", 1.0, 0.0, 1.0, high_open=True)
        Traceback (most recent call last):
        ...
        ValueError: prune_ratio must be in [0.0, 1.0), got prune_ratio=1.0.
        >>> check_real("prune_ratio", float("nan"), 0.0, 1.0, high_open=True)
        Traceback (most recent call last):
        ...
        ValueError: prune_ratio must be a finite number in [0.0, 1.0), got prune_ratio=nan.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail(TypeError, name, "a float", value, fix)
    number = float(value)
    if not math.isfinite(number):
        bounded = low is not None or high is not None
        shown = f"({what})" if what else _range(low, high, low_open, high_open, high_name)
        finite = f"a finite number {shown}" if what or bounded else "a finite number"
        raise _fail(ValueError, name, finite, number, fix)
    too_low = low is not None and (number <= low if low_open else number < low)
    too_high = high is not None and (number >= high if high_open else number > high)
    if too_low or too_high:
        what = what or _range(low, high, low_open, high_open, high_name)
        raise _fail(ValueError, name, what, number, fix)
    return number


def check_int(
    name: str,
    value: object,
    low: int | None = None,
    high: int | None = None,
    *,
    what: str = "",
    fix: str = "",
) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool) in ``[low, high]``.

    ``what`` replaces the range in the message (e.g. ``"positive"``).

    Raises:
        TypeError: If ``value`` is not an integer.
        ValueError: If it is out of range.

    Examples:
        >>> check_int("n_max", 3, 1)
        3
        >>> check_int("n_max", 0, 1)
        Traceback (most recent call last):
        ...
        ValueError: n_max must be >= 1, got n_max=0.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _fail(TypeError, name, "an int", value, fix)
    number = int(value)
    if (low is not None and number < low) or (high is not None and number > high):
        what = what or (f">= {low}" if high is None else f"in [{low}, {high}]")
        raise _fail(ValueError, name, what, number, fix)
    return number


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is a ``bool``.

    Examples:
        >>> check_bool("twin_norm", 1)
        Traceback (most recent call last):
        ...
        TypeError: twin_norm must be a bool, got twin_norm=1.
    """
    if not isinstance(value, bool):
        raise _fail(TypeError, name, "a bool", value, "")
    return value


def check_choice(name: str, value: object, options: Collection[object], *, fix: str = "") -> str:
    """``value`` if it is one of ``options`` (strings).

    Examples:
        >>> check_choice("importance", "l1", ("magnitude", "lamp"))
        Traceback (most recent call last):
        ...
        ValueError: importance must be one of 'magnitude', 'lamp', got importance='l1'.
    """
    if not isinstance(value, str) or value not in options:
        shown = ", ".join(repr(option) for option in options)
        raise _fail(ValueError, name, f"one of {shown}", value, fix)
    return value


def check_module(name: str, value: object) -> nn.Module:
    """``value`` if it is an ``nn.Module``; the message names the type it got.

    Examples:
        >>> check_module("head", "mlp")
        Traceback (most recent call last):
        ...
        TypeError: head must be a torch.nn.Module, got str.
    """
    if not isinstance(value, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(value).__name__}.")
    return value


def _range(
    low: float | None, high: float | None, low_open: bool, high_open: bool, high_name: str
) -> str:
    # Bounds print as the caller wrote them: 0 and 1 as "0, 1", 0.0 as "0.0".
    if high is None:
        return f"{'>' if low_open else '>='} {low}"
    if low is None:
        return f"{'<' if high_open else '<='} {high}"
    upper = f"{high_name}={high}" if high_name else f"{high}"
    return f"in {'(' if low_open else '['}{low}, {upper}{')' if high_open else ']'}"


def name_list(items: Collection[str], n: int = 5) -> str:
    """The first ``n`` of ``items`` for a message, with how many more; ``"none"`` if empty.

    Examples:
        >>> name_list(["a", "b", "c"], n=2), name_list([])
        ('a, b, ... (1 more)', 'none')
    """
    if not items:
        return "none"
    shown = list(items)[:n]
    more = f", ... ({len(items) - n} more)" if len(items) > n else ""
    return ", ".join(shown) + more
