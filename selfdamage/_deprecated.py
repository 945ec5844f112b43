"""The 0.1 spellings that still work in 0.2, each with a ``DeprecationWarning``.

One place for every old spelling, so removing them later is one deletion. Nothing else
in the package may grow compatibility branches.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping
from types import FrameType
from typing import Any

from torch import Tensor

from selfdamage.damage.base import Damage, Prunable
from selfdamage.damage.channel import ChannelDamage
from selfdamage.damage.weight import WeightDamage

__all__ = [
    "CHANNEL_OPTIONS",
    "deprecated",
    "init_stacklevel",
    "legacy_adapter_damage",
    "legacy_damage",
]

CHANNEL_OPTIONS = ("importance", "example_inputs", "ignored_layers", "max_channel_ratio")
"""0.1's channel-only keyword arguments of the wrapper and the adapters."""


def deprecated(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warns that ``old`` is deprecated, showing ``new``, the spelling to use instead."""
    warnings.warn(
        f"{old} is deprecated since selfdamage 0.2 and will be removed in 0.3; use {new} instead.",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def init_stacklevel(obj: object) -> int:
    """The ``stacklevel`` that points a warning at the code constructing ``obj``.

    For a warning raised two calls below the ``__init__`` that calls this (as
    :func:`legacy_adapter_damage` and the shorthands raise theirs below the adapters'
    base): it counts the chain of ``__init__`` frames of ``obj`` above that one (an
    adapter's own ``__init__``, :class:`~selfdamage.adapters.TwoViewAdapter`'s, ...), so
    the warning names the user's line however deep the subclass is.
    """
    frame: FrameType | None = sys._getframe(1)
    depth = 0
    while frame is not None and frame.f_locals.get("self") is obj:
        depth += 1
        frame = frame.f_back
    return depth + 3


def legacy_adapter_damage(
    damage: Any, baseline: bool, *, stacklevel: int
) -> tuple[Any, bool, bool | None]:
    """Reads 0.1's adapter spelling ``damage=True|False|"weight"|"channel"``.

    Returns:
        ``damage`` as the wrapper reads it (None for a bool), ``baseline``, and 0.1's
        ``adapter.damage`` bool for an old spelling (None for the new one).
    """
    if isinstance(damage, bool):
        if damage:
            deprecated("damage=True", "the default damage=None", stacklevel=stacklevel)
        else:
            deprecated("damage=False", "baseline=True", stacklevel=stacklevel)
        return None, baseline or not damage, not (baseline or not damage)
    if isinstance(damage, str):
        return damage, baseline, not baseline
    return damage, baseline, None


def legacy_damage(
    kind: str | None,
    options: Mapping[str, Any],
    *,
    prune_ratio: float,
    random_ratio: float,
    prunable: Prunable,
    stacklevel: int,
) -> Damage | None:
    """The strategy that 0.1's ``damage="weight"|"channel"`` plus channel options meant.

    Returns None when nothing old was used (``kind`` None and no channel option).

    Raises:
        TypeError: If ``options`` holds a name that was never an argument.
        ValueError: If ``kind`` is unknown, channel options come without channel damage,
            or ``example_inputs`` is missing for channel damage.
    """
    unknown = [name for name in options if name not in CHANNEL_OPTIONS]
    if unknown:
        raise TypeError(f"got an unexpected keyword argument {unknown[0]!r}")
    given = {name: value for name, value in options.items() if value is not None}
    if kind is None and not given:
        return None
    if kind not in ("weight", "channel", None):
        raise ValueError(
            f"damage must be a Damage strategy or None, got damage={kind!r}. Pass "
            "damage=WeightDamage(...) or damage=ChannelDamage(..., example_inputs=...)."
        )
    if kind != "channel" and given:
        name, value = next(iter(given.items()))
        shown = type(value).__name__ if isinstance(value, Tensor) else repr(value)
        raise ValueError(
            f"{name}={shown} only applies to channel damage, got damage={kind!r}. Pass "
            f"damage=ChannelDamage(prune_ratio, example_inputs=..., {name}=...) or drop {name}."
        )
    if kind == "weight":
        deprecated(
            "damage='weight'",
            "damage=None (the default) or damage=WeightDamage(prune_ratio, ...)",
            stacklevel=stacklevel,
        )
        return WeightDamage(prune_ratio, random_ratio=random_ratio, prunable=prunable)
    if given.get("example_inputs") is None:
        raise ValueError(
            "damage='channel' needs example_inputs: torch-pruning traces one forward pass "
            "of the model to find the coupled channels. Pass a small input the model "
            "accepts: damage=ChannelDamage(prune_ratio, example_inputs=torch.randn(2, 3, 32, 32))."
        )
    shown = ", ".join(f"{name}=..." for name in given)
    deprecated(
        f"damage='channel' with {shown}",
        f"damage=ChannelDamage(prune_ratio, {shown}, random_ratio=..., prunable=...)",
        stacklevel=stacklevel,
    )
    return ChannelDamage(prune_ratio, random_ratio=random_ratio, prunable=prunable, **given)
