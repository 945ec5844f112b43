"""Warnings that point at the user's line, with no frame inspection.

A public entry point is decorated with :func:`warns_at_caller`: the warnings that
``selfdamage``'s own code raises anywhere below it are held back and raised again, once it
returns (or raises), at the line that called it. Entry points nest: the innermost one
re-raises at the outer one's line, a line of ``selfdamage`` that the outer one holds back in
turn, so what the user sees names the line of their own code (or, through a framework
callback, the framework's line), never a line inside ``selfdamage``.

Warnings from other code (the user's model, torch, a third-party library) keep their own
file and line: the user's filters decide them where they are raised, as without the entry
point, and each is shown once per call of the outermost entry point (a model traced by
several forward passes warns once).
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from typing import Any, TypeVar, cast

__all__ = ["warns_at_caller"]

F = TypeVar("F", bound=Callable[..., Any])

_PACKAGE_DIR = os.path.normcase(os.path.realpath(os.path.dirname(__file__)))
# The package's own modules (a filter's module is a regular expression matched at the start).
_OWN_MODULES = rf"{__name__.partition('.')[0]}(\.|$)"


def warns_at_caller(function: F) -> F:
    """Decorator: ``selfdamage``'s warnings inside ``function`` are raised again at its caller.

    Warnings raised in a file of the package are held back and raised again at the line
    that called ``function``. Others (from the user's code, torch or another library) are
    filtered where they are raised and shown with their own file and line, each distinct
    one once per call.

    Examples:
        >>> import warnings
        >>> @warns_at_caller
        ... def entry(callback):
        ...     callback()
        ...     callback()
        >>> def users_code():
        ...     warnings.warn("from the user's code", UserWarning)
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     entry(users_code)
        >>> [(w.filename.startswith("<doctest"), str(w.message)) for w in caught]
        [(True, "from the user's code")]
    """

    @functools.wraps(function)
    def entry_point(*args: Any, **kwargs: Any) -> Any:
        held: list[warnings.WarningMessage] = []
        try:
            with warnings.catch_warnings(record=True) as held:
                # Ours every time (the caller's filters decide once they point at the
                # caller); others pass the caller's filters where they are raised.
                warnings.filterwarnings("always", module=_OWN_MODULES)
                return function(*args, **kwargs)
        finally:
            shown: set[tuple[type[Warning], str, str, int]] = set()
            for caught in held:
                if in_package(caught.filename):
                    warnings.warn(caught.message, stacklevel=2)
                    continue
                key = (caught.category, str(caught.message), caught.filename, caught.lineno)
                if key not in shown:
                    shown.add(key)
                    warnings.showwarning(
                        caught.message,
                        caught.category,
                        caught.filename,
                        caught.lineno,
                        caught.file,
                        caught.line,
                    )

    return cast(F, entry_point)


def in_package(filename: str) -> bool:
    """Whether ``filename`` (a warning's) is a file of the ``selfdamage`` package.

    Examples:
        >>> in_package(__file__), in_package(os.__file__), in_package("<string>")
        (True, False, False)
    """
    if not filename or filename.startswith("<"):
        return False
    path = os.path.normcase(os.path.realpath(filename))
    return path.startswith(_PACKAGE_DIR + os.sep)
