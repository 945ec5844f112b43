"""Deprecated since 0.2: channel damage moved to :mod:`selfdamage.damage`.

Every 0.1 name still resolves here, with a ``DeprecationWarning`` that names its new home:

======================================  =====================================================
0.1                                     0.2
======================================  =====================================================
``ChannelDamage`` (the plan)            :class:`selfdamage.damage.ChannelDamage` (strategy)
``layer_channel_sparsity(wrapper)``     ``damage.layer_channel_sparsity(model, masks)``
``weight_channel_sparsity(wrapper)``    ``damage.weight_channel_sparsity(model, masks)``
``check_damage``, ``DAMAGES``           ``damage=`` takes a :class:`~selfdamage.damage.Damage`
``global_channel_masks``, ...           :mod:`selfdamage.damage` (same names)
======================================  =====================================================
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from selfdamage import damage as _damage
from selfdamage._checks import check_module, check_real
from selfdamage._deprecated import deprecated, legacy_damage
from selfdamage.damage.importance import score_groups

if TYPE_CHECKING:
    from selfdamage.wrapper import SelfDamagingWrapper

__all__: list[str] = []  # nothing new lives here


class _ChannelPlan:
    """0.1's ``ChannelDamage``: the channel groups of a model, traced at construction."""

    def __init__(
        self,
        model: nn.Module,
        example_inputs: Any,
        *,
        importance: _damage.ImportanceLike = "magnitude",
        select: Callable[[str, nn.Module], bool] | None = None,
        ignored_layers: Iterable[nn.Module | str] | None = None,
        max_channel_ratio: float = _damage.DEFAULT_MAX_CHANNEL_RATIO,
    ) -> None:
        check_module("model", model)
        self._strategy = _damage.ChannelDamage(
            0.0,
            example_inputs=example_inputs,
            importance=importance,
            ignored_layers=None if ignored_layers is None else list(ignored_layers),
            max_channel_ratio=max_channel_ratio,
            prunable=select or (nn.Conv2d,),
        )
        self.param_names = self._strategy.bind(model)
        self.groups = self._strategy.groups
        self.skipped = self._strategy.skipped
        self.num_channels = self._strategy.num_channels
        self.importance = self._strategy.importance
        self.max_channel_ratio = self._strategy.max_channel_ratio

    def scores(self, model: nn.Module, *, seed: int = 0, initial: bool = False) -> list[Tensor]:
        return score_groups(
            self.importance, model, self.groups, self.param_names, seed=seed, initial=initial
        )

    def compute_masks(
        self,
        model: nn.Module,
        prune_ratio: float,
        *,
        random_ratio: float = 0.0,
        seed: int = 0,
        initial: bool = False,
    ) -> dict[str, Tensor]:
        strategy = self._strategy
        strategy.prune_ratio = check_real("prune_ratio", prune_ratio, 0.0, 1.0, high_open=True)
        strategy.random_ratio = check_real(
            "random_ratio", random_ratio, 0.0, strategy.prune_ratio, high_name="prune_ratio"
        )
        return strategy.compute_masks(model, seed=seed, first=initial)

    def group_channel_sparsity(self, masks: Mapping[str, Tensor]) -> dict[str, float]:
        return self._strategy.group_channel_sparsity(masks)

    def channel_sparsity(self, masks: Mapping[str, Tensor]) -> float:
        return self._strategy.channel_sparsity(nn.Module(), masks)

    def __repr__(self) -> str:
        return (
            f"ChannelDamage(groups={len(self.groups)}, channels={self.num_channels}, "
            f"importance={type(self.importance).__name__}, "
            f"max_channel_ratio={self.max_channel_ratio}, skipped={len(self.skipped)})"
        )


def _layer_channel_sparsity(wrapper: SelfDamagingWrapper) -> dict[str, float]:
    return _damage.layer_channel_sparsity(wrapper.model, dict(wrapper.named_masks()))


def _weight_channel_sparsity(wrapper: SelfDamagingWrapper) -> float:
    return _damage.weight_channel_sparsity(wrapper.model, dict(wrapper.named_masks()))


def _check_damage(damage: object, **channel_args: object) -> str:
    """0.1's check: ``damage`` is ``"weight"`` or ``"channel"`` and the options fit it."""
    if not isinstance(damage, str):
        raise ValueError(f"damage must be one of 'weight', 'channel', got damage={damage!r}.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        legacy_damage(
            damage,
            channel_args,
            prune_ratio=0.0,
            random_ratio=0.0,
            prunable=(nn.Conv2d,),
            stacklevel=3,
        )
    return damage


_MOVED: dict[str, tuple[Any, str]] = {
    "ChannelDamage": (_ChannelPlan, "selfdamage.damage.ChannelDamage (a Damage strategy)"),
    "ChannelGroup": (_damage.ChannelGroup, "selfdamage.damage.ChannelGroup"),
    "DAMAGES": (("weight", "channel"), "damage=WeightDamage(...) or damage=ChannelDamage(...)"),
    "DEFAULT_MAX_CHANNEL_RATIO": (
        _damage.DEFAULT_MAX_CHANNEL_RATIO,
        "selfdamage.damage.DEFAULT_MAX_CHANNEL_RATIO",
    ),
    "IMPORTANCES": (_damage.IMPORTANCES, "selfdamage.damage.IMPORTANCES"),
    "ImportanceLike": (_damage.ImportanceLike, "selfdamage.damage.ImportanceLike"),
    "check_damage": (_check_damage, "damage=<a selfdamage.damage.Damage> (checked on use)"),
    "global_channel_masks": (
        _damage.global_channel_masks,
        "selfdamage.damage.global_channel_masks",
    ),
    "layer_channel_sparsity": (
        _layer_channel_sparsity,
        "selfdamage.damage.layer_channel_sparsity(wrapper.model, dict(wrapper.named_masks()))",
    ),
    "make_importance": (_damage.make_importance, "selfdamage.damage.make_importance"),
    "weight_channel_sparsity": (
        _weight_channel_sparsity,
        "selfdamage.damage.weight_channel_sparsity(wrapper.model, dict(wrapper.named_masks()))",
    ),
}


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value, new = _MOVED[name]
    deprecated(f"selfdamage.channel_damage.{name}", new)
    return value
