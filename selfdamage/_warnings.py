"""Warnings that point at the user's line, with no frame inspection.

A public entry point is decorated with :func:`warns_at_caller`: the warnings raised anywhere
below it are held back and raised again, once it returns (or raises), at the line that
called it. Entry points nest: the innermost one re-raises at the outer one's line, which
holds the warning back in turn, so what the user sees names the line of their own code (or,
through a framework callback, the framework's line), never a line inside ``selfdamage``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar, cast

__all__ = ["warns_at_caller"]

F = TypeVar("F", bound=Callable[..., Any])


def warns_at_caller(function: F) -> F:
    """Decorator: warnings raised inside ``function`` are raised again at its caller's line.

    Examples:
        >>> import warnings
        >>> @warns_at_caller
        ... def entry():
        ...     warnings.warn("deep inside", UserWarning)
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     entry()
        >>> caught[0].filename.startswith("<doctest")  # the caller's line, not entry()'s
        True
    """

    @functools.wraps(function)
    def entry_point(*args: Any, **kwargs: Any) -> Any:
        held: list[warnings.WarningMessage] = []
        try:
            with warnings.catch_warnings(record=True) as held:
                warnings.simplefilter("always")
                return function(*args, **kwargs)
        finally:
            for caught in held:
                warnings.warn(caught.message, stacklevel=2)

    return cast(F, entry_point)
