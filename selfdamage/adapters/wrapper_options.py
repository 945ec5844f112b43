"""The wrapper options: the keyword arguments every adapter passes on to its wrapper."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from typing_extensions import TypedDict

from selfdamage._checks import check_bool
from selfdamage._compat.removed import removed_damage_error, removed_option_error
from selfdamage.damage import Damage, Prunable

__all__ = ["WrapperOptions"]


class WrapperOptions(TypedDict, total=False):
    """The wrapper options: keyword arguments that every adapter takes and passes on unchanged.

    With the positional ``prune_ratio`` they mean what they mean on
    :class:`~selfdamage.wrapper.SelfDamagingWrapper`:

    - ``damage``: the strategy (:mod:`selfdamage.damage`); None (the default) for
      ``WeightDamage(prune_ratio, random_ratio=..., prunable=...)``. A
      :class:`~selfdamage.damage.ChannelDamage` takes ``example_inputs`` of the *backbone*.
    - ``baseline``: if True, no twin in training: both online passes dense, for fair
      baselines (:doc:`/adapters`). Default False.
    - ``random_ratio``: shorthand, the part of ``prune_ratio`` pruned at random. Default 0.
    - ``prunable``: shorthand, the module types whose weight is pruned, or a predicate
      ``(name, module) -> bool`` over names like ``head.layers.0``. Default ``(nn.Conv2d,)``.
    - ``twin_norm``: if True (the default), the twin has its own BatchNorm state.

    ``damage=True|False|"weight"|"channel"`` and ``example_inputs``, ``importance``,
    ``ignored_layers``, ``max_channel_ratio`` raise a ``TypeError`` naming the spelling to use.

    Examples:
        >>> from torch import nn
        >>> from selfdamage.adapters import SimCLRAdapter
        >>> options: WrapperOptions = {"random_ratio": 0.1, "prunable": (nn.Conv2d, nn.Linear)}
        >>> backbone = nn.Sequential(nn.Conv2d(3, 16, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        >>> model = SimCLRAdapter(backbone, 16, prune_ratio=0.5, **options)
        >>> model.wrapper.damage
        WeightDamage(prune_ratio=0.5, random_ratio=0.1, prunable='Conv2d,Linear')
    """

    damage: Damage | None
    baseline: bool
    random_ratio: float
    prunable: Prunable
    twin_norm: bool


def read_wrapper_options(
    options: Mapping[str, Any], owner: str, keywords: Iterable[str] = ()
) -> tuple[bool, dict[str, Any]]:
    """``baseline``, and the wrapper's keyword arguments, from the wrapper options given.

    ``keywords``: the owner's other keywords, named with the wrapper options when one
    given is unknown.

    Examples:
        >>> read_wrapper_options({"baseline": True}, "SimCLRAdapter")
        (True, {'twin_norm': False})
        >>> read_wrapper_options({"tempreature": 0.1}, "SimCLRAdapter", ["temperature"])
        Traceback (most recent call last):
        TypeError: SimCLRAdapter.__init__() got an unexpected keyword argument 'tempreature'. Did you mean 'temperature'? It takes temperature, damage, baseline, random_ratio, prunable and twin_norm.
        >>> read_wrapper_options({"damage": False}, "SimCLRAdapter")
        Traceback (most recent call last):
        TypeError: damage=False was removed in selfdamage 1.0; use baseline=True instead.
    """  # noqa: E501
    given = dict(options)
    for name in given:
        removed = removed_option_error(name)
        if removed is not None:
            raise removed
        if name not in WrapperOptions.__annotations__:
            raise TypeError(
                _unknown_keyword(owner, name, [*keywords, *WrapperOptions.__annotations__])
            )
    removed = removed_damage_error(given.get("damage"), adapter=True)
    if removed is not None:
        raise removed
    baseline = check_bool("baseline", given.pop("baseline", False))
    twin_norm = check_bool("twin_norm", given.pop("twin_norm", True))
    return baseline, {**given, "twin_norm": twin_norm and not baseline}


def _unknown_keyword(owner: str, name: str, taken: list[str]) -> str:
    """Python's message for an unknown keyword, with the closest one taken and all of them."""
    close = difflib.get_close_matches(name, taken, n=1)
    guess = f" Did you mean {close[0]!r}?" if close else ""
    listed = f"{', '.join(taken[:-1])} and {taken[-1]}"
    return (
        f"{owner}.__init__() got an unexpected keyword argument {name!r}.{guess} It takes {listed}."
    )
