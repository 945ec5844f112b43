"""The adapters' constructor options: the wrapper options, their checks, and default sizes."""

from __future__ import annotations

from typing import Any, NamedTuple

from lightly.models.modules.memory_bank import MemoryBankModule
from torch import nn
from typing_extensions import TypedDict

from selfdamage._checks import check_bool, check_int, check_module, check_real
from selfdamage._compat.removed import removed_damage_error, removed_option_error
from selfdamage.damage import Damage, Prunable
from selfdamage.wrapper import DEFAULT_PRUNABLE, DEFAULT_RANDOM_RATIO, resolve_damage

__all__ = [
    "WrapperOptions",
    "check_feature_dim",
    "check_predictor",
    "default_temperature",
    "head_output_dim",
    "memory_bank",
    "output_dim",
    "read_wrapper_options",
    "reject_with_loss",
]


class WrapperOptions(TypedDict, total=False):
    """The wrapper options: keyword arguments that every adapter takes and passes on unchanged.

    Every adapter's signature ends in ``**options: Unpack[WrapperOptions]``; together with
    the positional ``prune_ratio`` they mean exactly what they mean on
    :class:`~selfdamage.wrapper.SelfDamagingWrapper`, and they are documented here once.

    - ``damage``: the damage strategy (:mod:`selfdamage.damage`), or None (the default) for
      ``WeightDamage(prune_ratio, random_ratio=..., prunable=...)``. A
      :class:`~selfdamage.damage.ChannelDamage` takes ``example_inputs`` of the *backbone*;
      the adapter traces the whole encoder with them.
    - ``baseline``: if True, no twin in training: the plain method, both online passes
      through the dense model, for fair baselines. The wrapper and its strategy still
      exist, so the baseline's damaged twin can be evaluated after training
      (``refresh_mask()``, then ``wrapper.damaged(x)``); it has no twin normalization
      state (no parameter goes unused, which DDP would reject). Default False.
    - ``random_ratio``: shorthand, the part of ``prune_ratio`` pruned at random instead of
      by magnitude. Default 0.
    - ``prunable``: shorthand, the module types whose weight is pruned, or a predicate
      ``(name, module) -> bool`` over names like ``backbone.0``, ``head.layers.0`` and
      ``predictor.layers.0``. Default ``(nn.Conv2d,)``.
    - ``twin_norm``: if True (the default), the twin has its own BatchNorm parameters and
      statistics.

    0.1's spellings (``damage=True|False|"weight"|"channel"`` and the channel options
    ``example_inputs``, ``importance``, ``ignored_layers``, ``max_channel_ratio``) are
    still accepted with a ``DeprecationWarning``.

    Examples:
        >>> from torch import nn
        >>> from selfdamage.adapters import SimCLRAdapter
        >>> options: WrapperOptions = {"random_ratio": 0.1, "prunable": (nn.Conv2d, nn.Linear)}
        >>> backbone = nn.Sequential(nn.Conv2d(3, 16, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        >>> model = SimCLRAdapter(backbone, 16, prune_ratio=0.9, **options)
        >>> model.wrapper.damage
        WeightDamage(prune_ratio=0.9, random_ratio=0.1, prunable='Conv2d,Linear')
    """

    damage: Damage | None
    baseline: bool
    random_ratio: float
    prunable: Prunable
    twin_norm: bool


class ReadOptions(NamedTuple):
    """What :class:`WrapperOptions` mean: the strategy, the switches, 0.1's damage flag."""

    damage: Damage
    baseline: bool
    twin_norm: bool
    legacy_flag: bool | None  # 0.1's adapter.damage bool, None for the current spelling


def read_wrapper_options(
    prune_ratio: float, options: WrapperOptions | dict[str, Any]
) -> ReadOptions:
    """The damage strategy and switches that ``prune_ratio`` and the wrapper options mean.

    Args:
        prune_ratio: The adapter's ``prune_ratio``.
        options: The wrapper options given (any of :class:`WrapperOptions`); the others
            take the wrapper's defaults.

    Raises:
        TypeError: If an option has the wrong type or is not an option.
        ValueError: If an option is out of range or a shorthand comes with ``damage``.
    """
    given: dict[str, Any] = dict(options)
    twin_norm = check_bool("twin_norm", given.pop("twin_norm", True))
    baseline = check_bool("baseline", given.pop("baseline", False))
    damage = given.pop("damage", None)
    random_ratio = given.pop("random_ratio", DEFAULT_RANDOM_RATIO)
    prunable = given.pop("prunable", DEFAULT_PRUNABLE)
    error = next(filter(None, map(removed_option_error, given)), None)
    if error is None and isinstance(damage, (bool, str)):
        error = removed_damage_error(damage, adapter=True)
    if error is not None:
        raise error
    if given:
        raise TypeError(f"got an unexpected keyword argument {next(iter(given))!r}")
    strategy = resolve_damage(
        damage, prune_ratio=prune_ratio, random_ratio=random_ratio, prunable=prunable
    )
    return ReadOptions(strategy, baseline, twin_norm, None)


def check_feature_dim(feature_dim: object) -> int:
    """Returns ``feature_dim`` if it is a positive int; raises otherwise."""
    return check_int(
        "feature_dim",
        feature_dim,
        1,
        what="positive",
        fix="Pass the number of features per sample that the backbone outputs "
        "(512 for a ResNet-18).",
    )


def default_temperature(temperature: object, default: float) -> float:
    """The default loss's temperature: ``temperature`` if given (it must be > 0), else ``default``.

    Examples:
        >>> default_temperature(None, 0.2), default_temperature(0.5, 0.2)
        (0.2, 0.5)
    """
    return check_real(
        "temperature",
        default if temperature is None else temperature,
        0.0,
        low_open=True,
        fix=f"It divides the similarities; the default is {default}.",
    )


def check_predictor(predictor: object, head: nn.Module) -> nn.Module:
    """Returns ``predictor`` if it maps the head's projections to projections of that size.

    The loss compares each prediction with the other view's projection, so the
    predictor's first and last ``nn.Linear`` must take and give the head's output size.
    Sizes that cannot be read (no ``nn.Linear``) are not checked.

    Raises:
        TypeError: If ``predictor`` is not an ``nn.Module``.
        ValueError: If the sizes differ.
    """
    predictor = check_module("predictor", predictor)
    size = output_dim(head)
    linears = [m for m in predictor.modules() if isinstance(m, nn.Linear)]
    if size is None or not linears:
        return predictor
    takes, gives = linears[0].in_features, linears[-1].out_features
    if (takes, gives) != (size, size):
        raise ValueError(
            f"predictor maps {takes} features to {gives}, but the head's projections have "
            f"{size}: the loss compares each prediction with the other view's projection. "
            f"Use a predictor from {size} to {size} features."
        )
    return predictor


def reject_with_loss(loss: nn.Module | None, **options: object) -> None:
    """Raises if options of the default loss are set while a ``loss`` is given."""
    given = [f"{name}={value!r}" for name, value in options.items() if value is not None]
    if loss is not None and given:
        raise ValueError(
            f"{', '.join(given)} configures the default loss, but loss= was given too. "
            f"Set it on your loss instead, or drop loss= to use the default loss."
        )


def output_dim(head: nn.Module) -> int | None:
    """The ``out_features`` of the head's last ``nn.Linear``, or None if it has none."""
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else None


def memory_bank(loss: nn.Module) -> MemoryBankModule | None:
    """The loss's enabled lightly memory bank, or None if it has none."""
    for module in loss.modules():
        if isinstance(module, MemoryBankModule) and module.size[0] > 0:
            return module
    return None


def head_output_dim(head: nn.Module, *, needed_for: str, fix: str) -> int:
    """:func:`output_dim` of ``head``, for an adapter that cannot do without it.

    Args:
        head: The projection head.
        needed_for: What the dimension sizes, e.g. ``"size the memory bank"``.
        fix: What the user can pass instead, a sentence.

    Raises:
        ValueError: If the head has no ``nn.Linear``.

    Examples:
        >>> head_output_dim(nn.Linear(8, 4), needed_for="size the bank", fix="Pass one.")
        4
    """
    dim = output_dim(head)
    if dim is None:
        raise ValueError(
            f"Cannot read the head's output dimension (it has no nn.Linear) to {needed_for}. {fix}"
        )
    return dim
