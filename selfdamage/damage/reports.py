"""Sparsity reports: how much of the model the twin loses, read from the masks.

Functions of the model and the masks (``dict(wrapper.named_masks())``), never of the
wrapper, so they work for any damage strategy and on masks loaded from a checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

if TYPE_CHECKING:
    from selfdamage.damage.tracing import ChannelGroup

__all__ = ["group_channel_sparsity", "layer_channel_sparsity", "weight_channel_sparsity"]


def layer_channel_sparsity(model: nn.Module, masks: Mapping[str, Tensor]) -> dict[str, float]:
    """Fraction of each masked layer's output channels that the twin loses entirely.

    For every module whose ``weight`` is masked: the share of its output channels (dim 0;
    dim 1 for transposed convolutions; each entry of a 1-d norm or PReLU weight) whose
    weights are all masked out. Works for every damage strategy: with
    :class:`~selfdamage.damage.WeightDamage` it shows how many channels unstructured
    pruning kills by chance; with :class:`~selfdamage.damage.ChannelDamage` layers
    coupled only through their inputs (the ``fc`` after the last stage) report 0.

    Args:
        model: The bare model (``wrapper.model``).
        masks: ``{qualified parameter name: bool mask}``, e.g. ``dict(wrapper.named_masks())``.

    Returns:
        ``{qualified module name: fraction}`` in the order of ``masks``.

    Examples:
        >>> import torchvision
        >>> from selfdamage import ChannelDamage, SelfDamagingWrapper
        >>> backbone = torchvision.models.resnet18(num_classes=10)
        >>> damage = ChannelDamage(0.5, example_inputs=torch.randn(1, 3, 32, 32))
        >>> wrapper = SelfDamagingWrapper(backbone, damage=damage)
        >>> per_layer = layer_channel_sparsity(backbone, dict(wrapper.named_masks()))
        >>> per_layer["fc"], 0.3 < per_layer["layer1.0.conv1"] < 0.7
        (0.0, True)
    """
    return {path: float(dead.float().mean()) for path, dead in _dead_by_layer(model, masks)}


def weight_channel_sparsity(model: nn.Module, masks: Mapping[str, Tensor]) -> float:
    """Fraction of the masked layers' output channels whose weights are all masked out.

    The ``channel_sparsity`` of a weight-level twin: how many whole channels unstructured
    pruning happens to remove, pooled over every masked weight.

    Args:
        model: The bare model (``wrapper.model``).
        masks: ``{qualified parameter name: bool mask}``, e.g. ``dict(wrapper.named_masks())``.
    """
    dead = total = 0
    for _, channels in _dead_by_layer(model, masks):
        dead += int(channels.sum())
        total += channels.numel()
    return dead / total if total else 0.0


def group_channel_sparsity(
    groups: Iterable[ChannelGroup], masks: Mapping[str, Tensor]
) -> dict[str, float]:
    """Realised fraction of each channel group's channels that output zero under ``masks``.

    A channel counts as pruned when every output slice of it (weights and bias of the
    layers producing it, scale and shift of its norms) is masked out.

    Returns:
        ``{root layer name: fraction}`` in the order of ``groups``.
    """
    return {g.root: float(dead_channels(g, masks).float().mean()) for g in groups}


def _dead_by_layer(model: nn.Module, masks: Mapping[str, Tensor]) -> Iterable[tuple[str, Tensor]]:
    """``(module name, dead output channels)`` for every masked ``weight``."""
    for name, mask in masks.items():
        path, _, attr = name.rpartition(".")
        if attr == "weight":
            yield path, _dead_outputs(model.get_submodule(path), mask)


def _dead_outputs(module: nn.Module, mask: Tensor) -> Tensor:
    """Per output channel of ``module``: True if its whole weight slice is masked out."""
    dim = 1 if isinstance(module, _ConvNd) and module.transposed else 0
    if mask.dim() <= 1:
        return ~mask.reshape(-1)
    return ~mask.movedim(dim, 0).reshape(mask.shape[dim], -1).any(dim=1)


def dead_channels(group: ChannelGroup, masks: Mapping[str, Tensor]) -> Tensor:
    """Per root channel of ``group``: True if every output slice of it is masked out."""
    dead = torch.ones(group.channels, dtype=torch.bool)
    for s in group.slices:
        if not s.output:
            continue
        mask = masks[s.param].detach().cpu()
        slice_dead = ~mask.movedim(s.dim, 0).reshape(mask.shape[s.dim], -1).any(dim=1)
        alive = torch.zeros(group.channels, dtype=torch.bool)
        alive[s.root[~slice_dead[s.index]]] = True
        dead &= ~alive
    return dead
