"""``ADAPTERS``: the adapters by method name, so a caller picks one without an ``if`` chain."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from selfdamage.adapters.base import SelfDamagingAdapter

__all__ = ["ADAPTERS", "register_adapter"]

ADAPTERS: dict[str, type[SelfDamagingAdapter]] = {}
"""Method name -> adapter class; each adapter registers itself with :func:`register_adapter`."""

A = TypeVar("A", bound=type[SelfDamagingAdapter])


def register_adapter(name: str) -> Callable[[A], A]:
    """Class decorator that adds an adapter to :data:`ADAPTERS` under ``name``.

    The decorator returns the class it decorates (``A``, a ``SelfDamagingAdapter``
    subclass) unchanged.

    Raises:
        TypeError: If ``name`` is not a string or the class not a ``SelfDamagingAdapter``.
        ValueError: If ``name`` is taken.

    Examples:
        >>> from selfdamage.adapters import SimCLRAdapter
        >>> @register_adapter("simclr_t05")
        ... class HotSimCLR(SimCLRAdapter):
        ...     '''SimCLR at temperature 0.5.'''
        >>> ADAPTERS["simclr_t05"].__name__
        'HotSimCLR'
        >>> del ADAPTERS["simclr_t05"]
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got name={name!r}.")
    if name in ADAPTERS:
        raise ValueError(
            f"name must be a new method name, got name={name!r}, which is taken by "
            f"{ADAPTERS[name].__name__}. Pick another name or del ADAPTERS[{name!r}] first."
        )

    def register(cls: A) -> A:
        if not (isinstance(cls, type) and issubclass(cls, SelfDamagingAdapter)):
            raise TypeError(
                f"register_adapter({name!r}) decorates a SelfDamagingAdapter subclass, got {cls!r}."
            )
        ADAPTERS[name] = cls
        return cls

    return register
