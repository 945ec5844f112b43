"""Channel importances: torch-pruning criteria that score every channel of every group.

- [1] DepGraph, 2023, https://arxiv.org/abs/2301.12900
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Union

import torch
import torch_pruning as tp
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

from selfdamage._checks import check_choice
from selfdamage._modules import device_of
from selfdamage.damage._torch_pruning_graph import scoring_group
from selfdamage.damage.base import non_finite_error
from selfdamage.damage.tracing import ChannelGroup

__all__ = ["IMPORTANCES", "ImportanceLike", "make_importance"]

IMPORTANCES = ("magnitude", "taylor", "lamp", "bn_scale", "random")
"""Names accepted for ``importance``; see :func:`make_importance`."""

ImportanceLike = Union[str, "tp.importance.Importance"]
"""A name from :data:`IMPORTANCES` or a ``torch_pruning.importance.Importance`` instance."""

# Offset of the importance RNG's seed from the random part's, so the two streams differ.
_IMPORTANCE_SEED_SALT = 0x5DC1_2021


def make_importance(importance: ImportanceLike) -> Any:
    """The torch-pruning importance criterion for a name, or the instance passed in.

    Scores are comparable across groups for every named criterion (each group's scores
    are normalized by their mean, or by LAMP), which global selection needs.

    - ``"magnitude"``: ``GroupMagnitudeImportance(p=2)``, the group's L2 norm per channel
      (convolution and linear slices and BatchNorm scales), divided by the group mean.
    - ``"taylor"``: ``GroupTaylorImportance()``, ``|w * dL/dw|`` from the ``.grad`` of the
      last backward pass; call ``refresh_mask()`` before the gradients are cleared.
    - ``"lamp"``: ``LAMPImportance(p=2)``, layer-adaptive magnitude scores.
    - ``"bn_scale"``: ``BNScaleImportance()``, ``|gamma|`` of the BatchNorm layers (Network
      Slimming); groups without a BatchNorm are not pruned.
    - ``"random"``: ``RandomImportance()``; the wrapper seeds it from its ``mask_seed``.

    Args:
        importance: A name from :data:`IMPORTANCES` or a ``tp.importance.Importance``.

    Returns:
        A callable ``group -> Tensor`` of per-channel scores.

    Raises:
        ValueError: If ``importance`` is an unknown name.
        TypeError: If ``importance`` is neither a string nor an ``Importance``.

    Examples:
        >>> type(make_importance("magnitude")).__name__
        'GroupMagnitudeImportance'
        >>> make_importance("l1")
        Traceback (most recent call last):
        ...
        ValueError: importance must be one of 'magnitude', 'taylor', 'lamp', 'bn_scale', 'random', got importance='l1'. Or pass a torch_pruning.importance.Importance instance.
    """  # noqa: E501
    if isinstance(importance, tp.importance.Importance):
        return importance
    fix = "Or pass a torch_pruning.importance.Importance instance."
    if not isinstance(importance, str):
        raise TypeError(
            f"importance must be one of {', '.join(map(repr, IMPORTANCES))}, got "
            f"{type(importance).__name__}: importance={importance!r}. {fix}"
        )
    imp = tp.importance
    factories: dict[str, Callable[[], Any]] = {
        "magnitude": lambda: imp.GroupMagnitudeImportance(p=2),
        "taylor": imp.GroupTaylorImportance,
        "lamp": lambda: imp.LAMPImportance(p=2),
        "bn_scale": imp.BNScaleImportance,
        "random": imp.RandomImportance,
    }
    return factories[check_choice("importance", importance, IMPORTANCES, fix=fix)]()


@torch.no_grad()
def score_groups(
    importance: Any,
    model: nn.Module,
    groups: Sequence[ChannelGroup],
    param_names: Sequence[str],
    *,
    seed: int = 0,
    initial: bool = False,
) -> list[Tensor]:
    """Per-channel importance of every group, from ``model``'s current state.

    The importance runs with the global CPU (and the model's CUDA device) random state
    forked and seeded from ``seed``, so a random criterion draws the same scores on every
    process and the caller's random state is left untouched.

    Args:
        importance: A torch-pruning importance (see :func:`make_importance`).
        model: The model the groups were traced on, or a copy of it.
        groups: The channel groups to score.
        param_names: The masked parameters, checked for NaN when scores are not finite.
        seed: Seed of the importance's random draws.
        initial: If True and the importance needs gradients that do not exist yet
            (``"taylor"`` before the first backward pass), magnitude is used instead.

    Returns:
        One 1-d CPU ``float64`` tensor per group, shape ``(channels,)``.

    Raises:
        ValueError: If scores are not finite because a masked parameter holds NaN or
            infinite values, gradients are missing for a gradient-based importance,
            or the importance returns no or wrongly shaped scores for a group.
    """
    if isinstance(importance, tp.importance.GroupTaylorImportance):
        scored = dict.fromkeys(s.module for g in groups for s in g.scored)
        missing = [
            name
            for name in scored
            if isinstance(module := model.get_submodule(name), (_ConvNd, nn.Linear))
            and module.weight.grad is None
        ]
        if missing and initial:
            importance = make_importance("magnitude")
        elif missing:
            raise ValueError(
                f"importance={type(importance).__name__} needs the gradients of the last "
                f"backward pass, but {missing[:5]} have none. Call refresh_mask() after "
                "loss.backward() and before optimizer.zero_grad()."
            )
    device = device_of(model)
    cuda = [device.index or 0] if device.type == "cuda" else []
    out = []
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(as_seed(seed + _IMPORTANCE_SEED_SALT))
        if cuda:
            torch.cuda.manual_seed(as_seed(seed + _IMPORTANCE_SEED_SALT))
        for group in groups:
            imp = importance(_scoring_group(model, group))
            if imp is None or imp.dim() != 1 or imp.numel() != group.channels:
                got = None if imp is None else tuple(imp.shape)
                raise ValueError(
                    f"importance {type(importance).__name__} returned {got} for the group "
                    f"of {group.root!r}, expected shape ({group.channels},)."
                )
            out.append(imp.detach().to("cpu", torch.float64))
    # Non-finite weights make non-finite scores; check the weights only then (an
    # all-zero group also scores NaN under mean normalization, which is harmless).
    if not all(bool(torch.isfinite(s).all()) for s in out):
        error = non_finite_error(model, param_names, "channel importance")
        if error is not None:
            raise error
    return out


def as_seed(value: int) -> int:
    """A valid ``manual_seed`` argument for any integer."""
    return value % (2**63)


def _scoring_group(model: nn.Module, group: ChannelGroup) -> Any:
    """The torch-pruning group an importance scores ``group`` by, over ``model``'s layers."""
    layers = group.scored
    return scoring_group(
        (s.module, model.get_submodule(s.module), s.handler, s.idxs, s.root_idxs) for s in layers
    )
