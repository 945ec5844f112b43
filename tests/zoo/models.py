"""The model zoo: which models the zoo suite wraps, how to build them, what they accept.

Every model is built with random weights (``weights=None`` / ``pretrained=False``): the
suite checks the wrapper's mechanics, which do not depend on trained values, and never
downloads anything. Inputs are as small as each model accepts, batch 2.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torchvision
from torch import nn

__all__ = [
    "BATCH",
    "EXPECTED_FAILURES",
    "ISOLATED",
    "MODELS",
    "ExpectedFailure",
    "ZooModel",
    "has_timm",
    "zoo_model",
]

BATCH = 2
"""Batch size of every zoo input: the smallest for which BatchNorm trains."""

CONV: tuple[type[nn.Module], ...] = (nn.Conv2d,)
CONV_LINEAR: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)


def has_timm() -> bool:
    """Whether timm is installed (the timm half of the zoo is skipped without it)."""
    return importlib.util.find_spec("timm") is not None


@dataclass(frozen=True)
class ZooModel:
    """One model of the zoo.

    Attributes:
        name: ``"torchvision/<builder>"`` or ``"timm/<model name>"``.
        build: Builds the model with random weights.
        size: Height and width of the square input image.
        prunable: ``prunable`` of the weight-damage wrapper: ``(nn.Conv2d,)`` (the default)
            for convolutional networks, ``(nn.Conv2d, nn.Linear)`` for transformers, whose
            weights are mostly in linear layers.
        channel_prunable: ``prunable`` of the channel-damage wrapper.
        kinds: The checks run on it: ``"weight"`` and/or ``"channel"`` damage.
    """

    name: str
    build: Callable[[], nn.Module]
    size: int = 32
    prunable: tuple[type[nn.Module], ...] = CONV
    channel_prunable: tuple[type[nn.Module], ...] = CONV
    kinds: tuple[str, ...] = ("weight", "channel")

    @property
    def library(self) -> str:
        return self.name.split("/", 1)[0]

    def inputs(self, seed: int = 0) -> torch.Tensor:
        """A batch of ``BATCH`` random images the model accepts."""
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(BATCH, 3, self.size, self.size, generator=generator)


def _tv(builder: str, **kwargs: Any) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        model: nn.Module = getattr(torchvision.models, builder)(weights=None, **kwargs)
        return model

    return build


def _vit_b_16() -> nn.Module:
    # torchvision initializes the classification head to zero, so every output of the
    # dense model and of any twin is exactly 0; a random head makes outputs comparable.
    model: nn.Module = torchvision.models.vit_b_16(weights=None, image_size=32)
    head = model.get_submodule("heads.head")
    assert isinstance(head, nn.Linear)
    nn.init.normal_(head.weight, std=0.02)
    return model


def _timm(name: str, **kwargs: Any) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm

        model: nn.Module = timm.create_model(name, pretrained=False, **kwargs)
        return model

    return build


MODELS: tuple[ZooModel, ...] = (
    ZooModel("torchvision/resnet18", _tv("resnet18")),
    ZooModel("torchvision/resnet50", _tv("resnet50")),
    ZooModel("torchvision/mobilenet_v3_small", _tv("mobilenet_v3_small")),
    ZooModel("torchvision/efficientnet_b0", _tv("efficientnet_b0")),
    # ConvNeXt's pointwise convolutions are nn.Linear layers: with (nn.Conv2d,) alone no
    # channel group is prunable (see EXPECTED_FAILURES), with nn.Linear it works.
    ZooModel("torchvision/convnext_tiny", _tv("convnext_tiny"), channel_prunable=CONV_LINEAR),
    ZooModel("torchvision/convnext_tiny[conv-only]", _tv("convnext_tiny"), kinds=("channel",)),
    ZooModel("torchvision/regnet_y_400mf", _tv("regnet_y_400mf")),
    ZooModel("torchvision/densenet121", _tv("densenet121")),
    # GoogLeNet needs 64 px: its auxiliary heads pool to 4x4 and flatten into a fixed Linear.
    ZooModel("torchvision/googlenet", _tv("googlenet", init_weights=True), size=64),
    ZooModel("torchvision/shufflenet_v2_x0_5", _tv("shufflenet_v2_x0_5")),
    ZooModel("torchvision/squeezenet1_1", _tv("squeezenet1_1")),
    ZooModel("torchvision/mnasnet0_5", _tv("mnasnet0_5")),
    # image_size=32 gives 2x2 patches instead of 14x14 (the class token makes 5 tokens).
    ZooModel(
        "torchvision/vit_b_16",
        _vit_b_16,
        prunable=CONV_LINEAR,
        channel_prunable=CONV_LINEAR,
    ),
    ZooModel(
        "torchvision/swin_t", _tv("swin_t"), prunable=CONV_LINEAR, channel_prunable=CONV_LINEAR
    ),
    ZooModel("timm/resnet18", _timm("resnet18")),
    ZooModel("timm/efficientnet_b0", _timm("efficientnet_b0")),
    ZooModel("timm/convnext_atto", _timm("convnext_atto")),
    ZooModel(
        "timm/vit_tiny_patch16_224",
        _timm("vit_tiny_patch16_224", img_size=32),
        prunable=CONV_LINEAR,
        channel_prunable=CONV_LINEAR,
    ),
    ZooModel("timm/regnetx_002", _timm("regnetx_002")),
    # CoaT shares each stage's position-encoding convolutions between its blocks: the
    # same submodules are reachable under several names (issue 19.1).
    ZooModel(
        "timm/coat_lite_tiny",
        _timm("coat_lite_tiny", img_size=32),
        prunable=CONV_LINEAR,
        channel_prunable=CONV_LINEAR,
    ),
    ZooModel("torchvision/mobilenet_v2", _tv("mobilenet_v2")),
    # Inception-v3 needs 75 px: its stem and reduction blocks shrink the map by 32.
    ZooModel(
        "torchvision/inception_v3",
        _tv("inception_v3", init_weights=True, aux_logits=False),
        size=75,
    ),
    # BiT: every convolution is a weight-standardizing StdConv2d (its head is a 1x1 Conv2d).
    ZooModel("timm/resnetv2_50x1_bit", _timm("resnetv2_50x1_bit")),
    ZooModel(
        "timm/levit_128s",
        _timm("levit_128s", img_size=32),
        prunable=CONV_LINEAR,
        channel_prunable=CONV_LINEAR,
    ),
)
"""Every model of the zoo, torchvision's first."""


def zoo_model(name: str) -> ZooModel:
    """The zoo entry called ``name``."""
    for model in MODELS:
        if model.name == name:
            return model
    raise KeyError(f"no zoo model {name!r}; known: {[m.name for m in MODELS]}")


@dataclass(frozen=True)
class ExpectedFailure:
    """A check that fails today, and how: the suite asserts exactly this outcome.

    Attributes:
        error: Name of the exception type raised (``"Timeout"`` if the isolated child
            ran out of time, ``"Killed"`` if it died of a signal).
        fragment: Text the error message contains.
        reason: One line on the root cause, shown in the table.
    """

    error: str
    fragment: str
    reason: str


_DEGENERATE_TWIN = ExpectedFailure(
    "AssertionError",
    "the twin gradient is zero on every kept entry",
    "one global magnitude threshold at 0.9 masks whole layers whose initial weights are "
    "small (depthwise, squeeze-excitation, final 1x1 convolutions): the twin's output is "
    "constant",
)

EXPECTED_FAILURES: dict[tuple[str, str], ExpectedFailure] = {
    **{
        (name, "weight"): _DEGENERATE_TWIN
        for name in (
            "torchvision/mobilenet_v3_small",
            "torchvision/efficientnet_b0",
            "torchvision/shufflenet_v2_x0_5",
            "torchvision/squeezenet1_1",
            "torchvision/mnasnet0_5",
            "timm/efficientnet_b0",
            "torchvision/mobilenet_v2",
            "timm/levit_128s",
        )
    },
    ("torchvision/shufflenet_v2_x0_5", "channel"): ExpectedFailure(
        "ValueError",
        "channel damage does not support ShuffleNetV2: 16 reshapes of 5-d tensors",
        "channel_shuffle views 4-d maps as 5-d; torch-pruning follows reshapes of at most "
        "4-d tensors (it would take the view for a flatten and divide by zero), so the "
        "reshape guard rejects the model before tracing",
    ),
    ("torchvision/swin_t", "channel"): ExpectedFailure(
        "ValueError",
        "channel damage does not support SwinTransformer: 1 reshape of a 5-d tensor and "
        "24 reshapes of 6-d tensors",
        "the window partition's 5-d and 6-d views are rejected before tracing; "
        "torch-pruning would take them for flattens and build index lists of millions of "
        "entries (23 GB before the guard)",
    ),
    ("torchvision/convnext_tiny[conv-only]", "channel"): ExpectedFailure(
        "ValueError",
        "prunable must also select nn.Linear here: prunable=(nn.Conv2d, nn.Linear) would "
        "make 18 channel groups prunable",
        "the residual-stream groups touch the layer-scale parameter and the MLP groups are "
        "rooted at the pointwise nn.Linear layers; the message says which prunable works",
    ),
    ("timm/resnetv2_50x1_bit", "channel"): ExpectedFailure(
        "ValueError",
        "cannot mask stem.conv.weight: StdConv2d standardizes its weight in forward",
        "every convolution but the head is a weight-standardizing StdConv2d: masking one "
        "of its input channels changes the standardization of the live weights, so every "
        "group is left dense (weight damage leaves these layers out too, and masks only "
        "the 1x1 convolution head)",
    ),
}
"""``(model name, "weight" | "channel") -> ExpectedFailure`` for the known failures.

The test is a strict expected failure: when a fix makes one of these pass, the test fails
and asks for the entry to be removed (and the table regenerated).
"""

ISOLATED: frozenset[tuple[str, str]] = frozenset({("torchvision/swin_t", "channel")})
"""Cases run in a child process under a memory limit and a timeout.

Swin-T's channel case exhausted memory before the reshape guard; it now fails in under a
second, and stays isolated as a cheap safeguard.
"""
