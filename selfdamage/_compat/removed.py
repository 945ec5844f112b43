"""The spellings 0.2 deprecated and 1.0 removed: each gets an error that names its replacement."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

__all__ = [
    "REMOVED_OPTIONS",
    "refuses_removed_arguments",
    "removed_damage_error",
    "removed_name_error",
    "removed_option_error",
]

F = TypeVar("F", bound=Callable[..., Any])

REMOVED_OPTIONS = ("importance", "example_inputs", "ignored_layers", "max_channel_ratio")
"""0.1's channel keyword arguments of the wrapper and the adapters, removed in 1.0."""

_REMOVED_NAMES = {
    "selfdamage.channel_damage": "selfdamage.damage (ChannelDamage, layer_channel_sparsity, "
    "weight_channel_sparsity); the wrapper reports wrapper.channel_sparsity",
    "selfdamage.adapters._base": "selfdamage.adapters (SelfDamagingAdapter, MomentumAdapter, "
    "Encoder)",
    "selfdamage.damage.traceability": "selfdamage.damage (unfollowable_reshapes)",
    "selfdamage.study.run_longtail_study": "run_study(StudyConfig(...)) with the same keyword "
    "names",
}


def removed_damage_error(damage: object, *, adapter: bool) -> TypeError | None:
    """The error for a ``damage=`` spelling removed in 1.0, or None for any other value.

    Args:
        damage: The value passed as ``damage=``.
        adapter: Whether an adapter (which has ``baseline=``) received it.

    Examples:
        >>> print(removed_damage_error(False, adapter=True))
        damage=False was removed in selfdamage 1.0; use baseline=True instead.
        >>> removed_damage_error(None, adapter=False) is None
        True
    """
    if damage is False:
        new = "baseline=True" if adapter else "the bare model (no wrapper) for a baseline"
    elif damage is True or damage == "weight":
        new = "damage=None (the default) or damage=WeightDamage(prune_ratio, ...)"
    elif damage == "channel":
        new = "damage=ChannelDamage(prune_ratio, example_inputs=...)"
    else:
        return None
    return TypeError(f"damage={damage!r} was removed in selfdamage 1.0; use {new} instead.")


def removed_option_error(name: str) -> TypeError | None:
    """The error for one of 0.1's channel keyword arguments, or None for any other name.

    Examples:
        >>> print(removed_option_error("importance"))  # doctest: +NORMALIZE_WHITESPACE
        importance= was removed in selfdamage 1.0; use
        damage=ChannelDamage(prune_ratio, example_inputs=..., importance=...) instead.
    """
    if name not in REMOVED_OPTIONS:
        return None
    options = "example_inputs=..." + ("" if name == "example_inputs" else f", {name}=...")
    return TypeError(
        f"{name}= was removed in selfdamage 1.0; use "
        f"damage=ChannelDamage(prune_ratio, {options}) instead."
    )


def removed_name_error(qualified_name: str) -> ImportError | None:
    """The error for importing a module or name removed in 1.0, or None if it was not.

    Examples:
        >>> print(removed_name_error("selfdamage.adapters._base"))
        selfdamage.adapters._base was removed in selfdamage 1.0; use selfdamage.adapters (SelfDamagingAdapter, MomentumAdapter, Encoder) instead.
    """  # noqa: E501
    new = _REMOVED_NAMES.get(qualified_name)
    if new is None:
        return None
    return ImportError(f"{qualified_name} was removed in selfdamage 1.0; use {new} instead.")


def refuses_removed_arguments(init: F) -> F:
    """Decorator for the wrapper's constructor: a removed spelling gets its error.

    The channel keyword arguments get the error of :func:`removed_option_error`,
    ``damage="weight"|"channel"|True|False`` that of :func:`removed_damage_error`; any other call
    reaches ``init`` unchanged (an unknown keyword gets Python's own ``TypeError``).

    Examples:
        >>> @refuses_removed_arguments
        ... def build(model=None, *, damage=None):
        ...     return damage
        >>> build(damage="channel")
        Traceback (most recent call last):
        ...
        TypeError: damage='channel' was removed in selfdamage 1.0; use damage=ChannelDamage(prune_ratio, example_inputs=...) instead.
    """  # noqa: E501

    @functools.wraps(init)
    def checked(*args: Any, **kwargs: Any) -> Any:
        # The option's error first: it names the whole new spelling, option included.
        error = next(filter(None, map(removed_option_error, kwargs)), None)
        damage = kwargs.get("damage")
        if error is None and isinstance(damage, (bool, str)):  # the removed spellings' types
            error = removed_damage_error(damage, adapter=False)
        if error is not None:
            raise error
        return init(*args, **kwargs)

    return cast(F, checked)
