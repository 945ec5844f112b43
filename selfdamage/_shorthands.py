"""The wrapper's shorthands: ``prune_ratio``, ``random_ratio``, ``prunable`` for a ``WeightDamage``.

The wrapper and the adapters read ``damage=`` and the shorthands the same way
(:func:`resolve_damage`); the defaults are told apart from the same values passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from selfdamage._deprecated import legacy_damage
from selfdamage.damage.base import Damage, Prunable
from selfdamage.damage.weight import WeightDamage

__all__ = ["DEFAULT_PRUNABLE", "DEFAULT_PRUNE_RATIO", "DEFAULT_RANDOM_RATIO", "resolve_damage"]


class _Default(float):
    """A default that prints as its value but is told apart from the same value passed in.

    Lets the signature read ``prune_ratio=0.9`` while the wrapper still sees whether the
    shorthand was given next to a ``damage=`` strategy (``value is DEFAULT_PRUNE_RATIO``).
    """

    def __repr__(self) -> str:
        return repr(float(self))


DEFAULT_PRUNE_RATIO: float = _Default(0.9)
DEFAULT_RANDOM_RATIO: float = _Default(0.0)
DEFAULT_PRUNABLE: Prunable = (nn.Conv2d,)


def resolve_damage(
    damage: Damage | None,
    *,
    prune_ratio: float,
    random_ratio: float,
    prunable: Prunable,
    deprecated_options: Mapping[str, Any],
    stacklevel: int,
) -> Damage:
    """The strategy for ``damage=`` and the shorthands, as the wrapper and the adapters read them.

    ``damage=None`` means ``WeightDamage(prune_ratio, random_ratio=..., prunable=...)``;
    with a strategy, every shorthand must be left at its default.

    Raises:
        TypeError: If ``damage`` is neither a ``Damage`` nor None (nor a 0.1 string).
        ValueError: If a shorthand is given together with a strategy.
    """
    options = dict(deprecated_options)
    if isinstance(damage, str):
        options.setdefault("kind", damage)
        damage = None
    kind = options.pop("kind", None)
    if damage is None:
        legacy = legacy_damage(
            kind,
            options,
            prune_ratio=prune_ratio,
            random_ratio=random_ratio,
            prunable=prunable,
            stacklevel=stacklevel + 1,
        )
        if legacy is not None:
            return legacy
        return WeightDamage(prune_ratio, random_ratio=random_ratio, prunable=prunable)
    if not isinstance(damage, Damage):
        raise TypeError(
            "damage must be a selfdamage.damage.Damage strategy or None, got "
            f"damage={damage!r}. Pass e.g. damage=WeightDamage(0.9) or "
            "damage=ChannelDamage(0.5, example_inputs=...)."
        )
    given = [
        f"{name}={value!r}"
        for name, value, default in (
            ("prune_ratio", prune_ratio, DEFAULT_PRUNE_RATIO),
            ("random_ratio", random_ratio, DEFAULT_RANDOM_RATIO),
            ("prunable", prunable, DEFAULT_PRUNABLE),
        )
        if value is not default
    ] + [f"{name}=..." for name, value in options.items() if value is not None]
    if given:
        raise ValueError(
            f"{', '.join(given)} given together with damage={damage!r}; the shorthands "
            f"only describe the default WeightDamage. Set them on the strategy instead, "
            f"e.g. {type(damage).__name__}(prune_ratio=...), or drop damage=."
        )
    return damage
