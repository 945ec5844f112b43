"""The default damage and its shorthands: ``prune_ratio``, ``random_ratio``, ``prunable``.

The wrapper (and every adapter) takes either a strategy, ``damage=``, or the shorthands,
which describe the default strategy, ``WeightDamage(prune_ratio, random_ratio=...,
prunable=...)``. :func:`resolve_damage` reads both the same way for all of them; the
shorthands' defaults are told apart from the same values passed in.
"""

from __future__ import annotations

from torch import nn

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
    damage: Damage | None, *, prune_ratio: float, random_ratio: float, prunable: Prunable
) -> Damage:
    """The strategy that ``damage=`` and the shorthands mean.

    ``damage=None`` means ``WeightDamage(prune_ratio, random_ratio=..., prunable=...)``;
    with a strategy, every shorthand must be left at its default.

    Raises:
        TypeError: If ``damage`` is neither a ``Damage`` nor None.
        ValueError: If a shorthand is given together with a strategy, or a shorthand is
            out of range.

    Examples:
        >>> resolve_damage(None, prune_ratio=0.5, random_ratio=0.1, prunable=(nn.Linear,))
        WeightDamage(prune_ratio=0.5, random_ratio=0.1, prunable='Linear')
        >>> resolve_damage(
        ...     WeightDamage(0.5), prune_ratio=0.5, random_ratio=DEFAULT_RANDOM_RATIO,
        ...     prunable=DEFAULT_PRUNABLE,
        ... )  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: prune_ratio=0.5 given together with damage=WeightDamage(...), ...
    """
    if damage is None:
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
    ]
    if given:
        raise ValueError(
            f"{', '.join(given)} given together with damage={damage!r}; the shorthands "
            f"only describe the default WeightDamage. Set them on the strategy instead, "
            f"e.g. {type(damage).__name__}(prune_ratio=...), or drop damage=."
        )
    return damage
