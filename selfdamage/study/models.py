"""The study's models: backbones, the method table, and the one function that builds them.

The adapter of a method comes from the registry
:data:`selfdamage.adapters.ADAPTERS`; its training defaults from a row of
:data:`METHOD_TABLE`, so adding a method is registering its adapter and adding a row, and
it never inherits another method's settings by accident.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from selfdamage._warnings import warns_at_caller
from selfdamage.adapters import ADAPTERS, SDCLRProjectionHead, SelfDamagingAdapter
from selfdamage.backbones import cifar_resnet18
from selfdamage.damage import ChannelDamage, Damage, WeightDamage
from selfdamage.longtail.temperature import TemperatureSchedule

__all__ = [
    "BACKBONES",
    "HEADS",
    "METHODS",
    "METHOD_TABLE",
    "MethodSpec",
    "build_model",
]

BACKBONES = ("resnet18-cifar", "resnet18")
HEADS = ("lightly", "reference")
"""The projection heads, the method's own (lightly's) or the SDCLR reference code's
(:class:`~selfdamage.adapters.SDCLRProjectionHead`)."""


@dataclass(frozen=True)
class MethodSpec:
    """A base method's own training defaults in the study.

    Its adapter is ``selfdamage.adapters.ADAPTERS[name]``.

    Args:
        defaults: The value of every method-dependent option (``lr``, ``temperature``,
            ``optimizer``, ``weight_decay``) that the user leaves unset; ``None`` for an
            option the method does not have (BYOL and SimSiam have no temperature; DINO's
            two are fixed in its loss).
        adapter_options: Keyword arguments that :func:`build_model` passes to this
            method's adapter besides the common ones; settings of the study, not options
            of it (NNCLR's support set sized for the study's small training sets).
        reference_head: Whether ``head="reference"`` applies: the method's own head is a
            projection from the features to 128 dimensions with a hidden layer as wide
            as the features, which the SDCLR code's head replaces like for like.

    Examples:
        >>> METHOD_TABLE["simclr"].defaults["lr"]
        0.5
        >>> METHOD_TABLE["nnclr"].adapter_options
        {'memory_bank_size': 1024}
    """

    defaults: Mapping[str, float | str | None]
    adapter_options: Mapping[str, Any] = field(default_factory=dict)
    reference_head: bool = False


# The SDCLR paper's scripts.
_CONTRASTIVE: dict[str, float | str | None] = {
    "lr": 0.5,
    "temperature": 0.2,
    "optimizer": "sgd",
    "weight_decay": 1e-4,
}

# NNCLR's support set must stay well below the training set, or a sample's nearest
# neighbour is its own projection from the previous epoch. The study's default training
# set is about 3,700 samples (n_max=1500, ratio 100): 1024 projections are 4 steps of 256,
# 28% of it (lightly's 4096 on CIFAR-10 and the paper's 98304 on ImageNet are about 8%).
_SMALL_SUPPORT_SET = {"memory_bank_size": 1024}

METHOD_TABLE: dict[str, MethodSpec] = {
    "simclr": MethodSpec(_CONTRASTIVE, reference_head=True),
    "moco": MethodSpec(_CONTRASTIVE, reference_head=True),
    "byol": MethodSpec({**_CONTRASTIVE, "temperature": None}),
    # The papers' optimizer (LARS), base learning rate (per 256 samples) and weight decay;
    # lightly's LARS adapts every parameter, where the papers exclude biases and norms.
    "barlowtwins": MethodSpec(
        {"lr": 0.2, "temperature": None, "optimizer": "lars", "weight_decay": 1.5e-6}
    ),
    "vicreg": MethodSpec(
        {"lr": 0.2, "temperature": None, "optimizer": "lars", "weight_decay": 1e-6}
    ),
    # Trained as SimCLR (lightly's benchmarks do), at DCLLoss's temperature (lightly's example).
    "dcl": MethodSpec({**_CONTRASTIVE, "temperature": 0.1}, reference_head=True),
    "dclw": MethodSpec({**_CONTRASTIVE, "temperature": 0.1}, reference_head=True),
    # SimSiam's CIFAR-10 setting (paper, appendix): SGD, lr 0.03 at batch size 256, wd 5e-4.
    "simsiam": MethodSpec(
        {"lr": 0.03, "temperature": None, "optimizer": "sgd", "weight_decay": 5e-4}
    ),
    # DINO's SGD recipe for ResNet-50 (authors' README): lr 0.03 at batch size 256, wd 1e-4.
    # Its teacher and student temperatures (0.04, 0.1) are the loss's own, not this option.
    "dino": MethodSpec({"lr": 0.03, "temperature": None, "optimizer": "sgd", "weight_decay": 1e-4}),
    # lightly's benchmarks train NNCLR with SimCLR's optimizer and temperature.
    "nnclr": MethodSpec(_CONTRASTIVE, adapter_options=_SMALL_SUPPORT_SET, reference_head=True),
    # TiCo's Imagenette benchmark in lightly trains with SGD and weight decay 1e-4, like BYOL.
    "tico": MethodSpec({**_CONTRASTIVE, "temperature": None}),
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


@warns_at_caller
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
    temperature: float | TemperatureSchedule | None,
    head: str = "lightly",
) -> SelfDamagingAdapter:
    """The adapter of one run; the same initial weights for every variant of a seed.

    Args:
        method: A key of :data:`METHOD_TABLE` (and of ``ADAPTERS``).
        backbone_name: One of :data:`BACKBONES`.
        width: First-stage width of ``resnet18-cifar``.
        image_shape: ``(channels, height, width)`` of the training images.
        seed: Seeds the initial weights.
        sdclr: Train through the damaged twin (SDCLR) rather than the plain method.
        damage: ``"weight"`` or ``"channel"`` (structured) damage of the twin.
        prune_ratio: The twin's prune ratio.
        temperature: The loss temperature, or a temperature schedule (the adapter steps
            nothing: the caller does); ``None`` for a method without one.
        head: One of :data:`HEADS`: ``"lightly"``, the adapter's default head, or
            ``"reference"``, ``SDCLRProjectionHead(feature_dim, feature_dim, 128)`` (for a
            method with ``reference_head`` in :data:`METHOD_TABLE`), for every variant.

    Raises:
        ValueError: If ``head="reference"`` is asked for a method without it.

    Examples:
        >>> model = build_model("simclr", "resnet18-cifar", 4, (1, 28, 28), seed=0,
        ...     sdclr=True, damage="weight", prune_ratio=0.9, temperature=0.2)
        >>> model.baseline, model.damage
        (False, WeightDamage(prune_ratio=0.9, random_ratio=0.0, prunable='Conv2d'))
    """
    torch.manual_seed(seed)
    channels = image_shape[0]
    backbone, feature_dim = build_backbone(backbone_name, width, channels)
    damage_strategy: Damage
    if sdclr and damage == "channel":  # zeros: a draw would shift the heads' initial weights
        damage_strategy = ChannelDamage(prune_ratio, example_inputs=torch.zeros(2, *image_shape))
    else:  # a baseline's twin, pruned after training for its damage AUROC, is weight-damaged
        damage_strategy = WeightDamage(prune_ratio)
    options: dict[str, Any] = {"damage": damage_strategy, "baseline": not sdclr}
    options |= METHOD_TABLE[method].adapter_options
    if temperature is not None:
        options["temperature"] = temperature
    if head == "reference":
        if not METHOD_TABLE[method].reference_head:
            raise ValueError(reference_head_error(method))
        options["head"] = SDCLRProjectionHead(feature_dim, feature_dim, 128)
    return ADAPTERS[method](backbone, feature_dim, **options)


def reference_head_error(method: str) -> str:
    """Why ``head="reference"`` does not apply to ``method``, and what does.

    Examples:
        >>> reference_head_error("byol").split(",")[0]
        "head='reference' does not apply to method='byol'"
    """
    takes = ", ".join(repr(name) for name, spec in METHOD_TABLE.items() if spec.reference_head)
    return (
        f"head='reference' does not apply to method={method!r}, whose own head has other "
        "sizes or feeds a predictor; the SDCLR code's head replaces a 128-d projection "
        f"head like for like, in methods {takes}. Leave head unset (lightly's head) or "
        "pick one of those methods."
    )
