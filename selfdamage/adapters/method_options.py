"""The adapters' keywords: declared once for type checkers, read from the builders at run time."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

from selfdamage.adapters.wrapper_options import WrapperOptions
from selfdamage.longtail.temperature import TemperatureSchedule

__all__ = ["MethodOptions"]

# The parameters a builder always has; the ones after them are the method's keywords.
_FIXED = frozenset({"self", "head", "encoder", "default_head"})


class MethodOptions(WrapperOptions, total=False):
    """The keywords an adapter takes besides ``head`` and ``loss``: the methods' and the wrapper's.

    Typed once for ``**options: Unpack[MethodOptions]``. An adapter takes the wrapper options,
    ``predictor`` where it has one, and its builders' keywords (what ``inspect.signature``
    shows; others raise a ``TypeError``); ``temperature`` also takes a ``TemperatureSchedule``
    where the loss has a float ``temperature``. Meanings: each adapter's docstring.

    Examples:
        >>> import inspect
        >>> from selfdamage.adapters import MoCoAdapter
        >>> print(inspect.signature(MoCoAdapter))  # doctest: +NORMALIZE_WHITESPACE
        (backbone: 'nn.Module', feature_dim: 'int' = 512, prune_ratio: 'float' = 0.9, *,
        head: 'nn.Module | None' = None, loss: 'nn.Module | None' = None,
        temperature: 'float | TemperatureSchedule | None' = None,
        memory_bank_size: 'int | None' = None,
        **options: 'Unpack[WrapperOptions]')
    """

    predictor: nn.Module | None
    temperature: float | TemperatureSchedule | None
    memory_bank_size: int | None
    gather_distributed: bool
    beta: float | None
    rho: float | None


def builder_keywords(builder: Callable[..., Any]) -> list[inspect.Parameter]:
    """The named keywords of a default builder (``default_loss``, ``method_modules``).

    Examples:
        >>> def default_loss(head, temperature=None, **unnamed): ...
        >>> [str(parameter) for parameter in builder_keywords(default_loss)]
        ['temperature=None']
    """
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [
        parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for parameter in inspect.signature(builder).parameters.values()
        if parameter.kind in named and parameter.name not in _FIXED
    ]


def take(given: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """Removes ``names`` from ``given`` and returns those that were there, with their values.

    Examples:
        >>> given = {"temperature": 0.5, "baseline": True}
        >>> take(given, ["temperature", "memory_bank_size"]), given
        ({'temperature': 0.5}, {'baseline': True})
    """
    return {name: given.pop(name) for name in names if name in given}


def adapter_signature(
    init: Callable[..., Any], keywords: Iterable[inspect.Parameter]
) -> inspect.Signature:
    """``init``'s signature with ``keywords`` (typed per MethodOptions) before ``**options``."""
    *named, options = list(inspect.signature(init).parameters.values())[1:]  # no self
    declared = [keyword.replace(annotation=_declared_type(keyword)) for keyword in keywords]
    options = options.replace(annotation="Unpack[WrapperOptions]")
    return inspect.Signature([*named, *declared, options])


def _declared_type(keyword: inspect.Parameter) -> object:
    """The keyword's type as :class:`MethodOptions` declares it, else as its builder does."""
    declared = MethodOptions.__annotations__.get(keyword.name)
    return (
        keyword.annotation if declared is None else getattr(declared, "__forward_arg__", declared)
    )
