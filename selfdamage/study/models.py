"""The models of the study: backbones, and the method table that builds an adapter.

This is the ONE place where the study constructs adapters (:func:`build_model`); each
method is a row of :data:`METHOD_TABLE` (its builder and its training defaults), so adding
a method is adding a row, and it never inherits another method's settings by accident.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from selfdamage.adapters import BYOLAdapter, MoCoAdapter, SimCLRAdapter
from selfdamage.adapters._base import SelfDamagingAdapter
from selfdamage.backbones import cifar_resnet18

__all__ = ["BACKBONES", "METHODS", "METHOD_TABLE", "MethodSpec", "build_model"]

BACKBONES = ("resnet18-cifar", "resnet18")


@dataclass(frozen=True)
class MethodSpec:
    """How the study builds one base method, and the method's own training defaults.

    Args:
        adapter: The adapter class, called as
            ``adapter(backbone, feature_dim, prune_ratio, **options)``.
        defaults: The value of every method-dependent option (``lr``, ``temperature``,
            ``weight_decay``) that the user leaves unset; ``None`` for an option the method
            does not have (BYOL has no temperature).

    Examples:
        >>> METHOD_TABLE["simclr"].defaults["lr"]
        0.5
    """

    adapter: Callable[..., SelfDamagingAdapter]
    defaults: Mapping[str, float | None]


_CONTRASTIVE = {"lr": 0.5, "temperature": 0.2, "weight_decay": 1e-4}  # the paper's scripts

METHOD_TABLE: dict[str, MethodSpec] = {
    "simclr": MethodSpec(SimCLRAdapter, _CONTRASTIVE),
    "moco": MethodSpec(MoCoAdapter, _CONTRASTIVE),
    "byol": MethodSpec(BYOLAdapter, {**_CONTRASTIVE, "temperature": None}),
}
METHODS = tuple(METHOD_TABLE)


def build_backbone(name: str, width: int, channels: int) -> tuple[nn.Module, int]:
    """A backbone by name and its number of output features.

    Examples:
        >>> build_backbone("resnet18-cifar", width=4, channels=1)[1]
        32
    """
    if name == "resnet18-cifar":
        return cifar_resnet18(width=width, in_channels=channels), 8 * width
    import torchvision

    backbone = torchvision.models.resnet18()
    backbone.fc = nn.Identity()
    return backbone, 512


def build_model(
    method: str,
    backbone_name: str,
    width: int,
    image_shape: tuple[int, int, int],
    *,
    seed: int,
    sdclr: bool,
    damage: str,
    prune_ratio: float,
    temperature: float | None,
) -> SelfDamagingAdapter:
    """The adapter of one run; the same initial weights for every variant of a seed.

    Args:
        method: A key of :data:`METHOD_TABLE`.
        backbone_name: One of :data:`BACKBONES`.
        width: First-stage width of ``resnet18-cifar``.
        image_shape: ``(channels, height, width)`` of the training images.
        seed: Seeds the initial weights.
        sdclr: Train through the damaged twin (SDCLR) rather than the plain method.
        damage: ``"weight"`` or ``"channel"`` (structured) damage of the twin.
        prune_ratio: The twin's prune ratio.
        temperature: The loss temperature; ``None`` for a method without one.

    Examples:
        >>> model = build_model("simclr", "resnet18-cifar", 4, (1, 28, 28), seed=0,
        ...     sdclr=True, damage="weight", prune_ratio=0.9, temperature=0.2)
        >>> model.damage
        True
    """
    torch.manual_seed(seed)
    channels = image_shape[0]
    backbone, feature_dim = build_backbone(backbone_name, width, channels)
    # Today's adapter API: damage=True/False/"channel" (+ example_inputs for channels).
    options: dict[str, Any] = {"damage": sdclr}
    if sdclr and damage == "channel":
        options = {"damage": "channel", "example_inputs": torch.randn(2, *image_shape)}
    if temperature is not None:
        options["temperature"] = temperature
    return METHOD_TABLE[method].adapter(backbone, feature_dim, prune_ratio, **options)
