"""Plumbing shared by the adapters: the wrapped encoder, the two online passes, momentum.

Every adapter wraps ONE module, :class:`Encoder` (``backbone -> flatten(1) -> head``, plus
BYOL's predictor), in a :class:`~selfdamage.wrapper.SelfDamagingWrapper`. The heads'
Linear weights are therefore shared between the dense and the damaged branch while their
BatchNorm layers get twin state, like the backbone's ("dual BN" in the reference code's
projection head). The heads are not pruned with the default ``prunable=(nn.Conv2d,)``.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Iterator, Mapping
from typing import Any, cast

import torch
from lightly.models.modules.memory_bank import MemoryBankModule
from lightly.models.utils import deactivate_requires_grad, update_momentum
from torch import Tensor, nn

from selfdamage.wrapper import Prunable, SelfDamagingWrapper


class Encoder(nn.Module):
    """``backbone -> flatten(start_dim=1) -> head [-> predictor]``: what the twin is made of.

    Its qualified names (``backbone.*``, ``head.*``, ``predictor.*``) are the names that a
    ``prunable`` predicate sees and the keys under ``wrapper.model.`` in a checkpoint.

    Args:
        backbone: Maps an input batch to features of shape ``(N, feature_dim)``, or to any
            shape with ``feature_dim`` entries per sample after ``flatten(start_dim=1)``.
        head: The projection head.
        feature_dim: The backbone's number of features per sample.
        predictor: BYOL's prediction head, applied after ``head``; None for no predictor.
    """

    predictor: nn.Module | None

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        feature_dim: int,
        predictor: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.predictor = predictor
        self.feature_dim = feature_dim

    def features(self, x: Tensor) -> Tensor:
        """The backbone's output flattened to ``(N, feature_dim)``.

        Raises:
            ValueError: If the flattened output does not have ``feature_dim`` columns.
        """
        features: Tensor = self.backbone(x).flatten(start_dim=1)
        if features.shape[1] != self.feature_dim:
            raise ValueError(
                f"The backbone's output flattens to {features.shape[1]} features per sample "
                f"but feature_dim={self.feature_dim}. Pass the backbone's output size as "
                "feature_dim; a backbone that returns a feature map (N, C, H, W) needs its "
                "global pooling included, e.g. nn.Sequential(*children, nn.AdaptiveAvgPool2d(1))."
            )
        return features

    def forward(self, x: Tensor) -> Tensor:
        """Features, projection, and prediction where there is a predictor."""
        out: Tensor = self.head(self.features(x))
        return out if self.predictor is None else self.predictor(out)


class SelfDamagingAdapter(nn.Module):
    """Base of the adapters: one wrapped :class:`Encoder`, a loss, and the ``damage`` switch.

    Subclasses build their default heads and loss and implement ``forward(x0, x1)``. With
    ``damage=False`` the twin is never run, so the wrapper is built without twin
    normalization state (no parameter goes unused, which DDP would reject).
    """

    wrapper: SelfDamagingWrapper
    loss: nn.Module

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        feature_dim: int,
        prune_ratio: float,
        *,
        loss: nn.Module,
        damage: bool | str,
        random_ratio: float,
        prunable: Prunable,
        twin_norm: bool,
        predictor: nn.Module | None = None,
        channel_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_module("backbone", backbone)
        for name, module in backbone.named_modules():
            if isinstance(module, SelfDamagingWrapper):
                raise TypeError(
                    f"backbone contains a SelfDamagingWrapper at {name or 'its root'!r}; the "
                    "adapter builds its own wrapper. Pass the bare backbone (wrapper.model)."
                )
        if not isinstance(twin_norm, bool):
            raise TypeError(f"twin_norm must be a bool, got twin_norm={twin_norm!r}.")
        if damage is True or damage is False:
            kind = "weight"
        elif isinstance(damage, str) and damage in ("weight", "channel"):
            kind = damage
        else:
            error = ValueError if isinstance(damage, str) else TypeError
            raise error(
                "damage must be True, False, 'weight' or 'channel' (True means 'weight'), "
                f"got damage={damage!r}."
            )
        self.damage = damage is not False
        self.wrapper = SelfDamagingWrapper(
            Encoder(backbone, head, feature_dim, predictor),
            prune_ratio,
            random_ratio=random_ratio,
            prunable=prunable,
            twin_norm=twin_norm and self.damage,
            damage=kind,
            **(channel_options or {}),
        )
        self.loss = loss

    @property
    def _encoder(self) -> Encoder:
        """The dense encoder (backbone and heads), the wrapper's model."""
        return cast(Encoder, self.wrapper.model)

    @property
    def backbone(self) -> nn.Module:
        """The backbone passed to the constructor (the same object, trained in place)."""
        return self._encoder.backbone

    def _online(self, x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
        """The two online passes: ``x0`` through the dense encoder, ``x1`` through the twin.

        With ``damage=False`` both go through the dense encoder.
        """
        out0 = self.wrapper(x0)
        return out0, self.wrapper.damaged(x1) if self.damage else self.wrapper(x1)

    def refresh_mask(self) -> None:
        """Re-prunes the twin from the current dense weights; call it once per epoch."""
        self.wrapper.refresh_mask()

    def embed(self, x: Tensor) -> Tensor:
        """Dense backbone features for evaluation, flattened to ``(N, feature_dim)``.

        No head, no twin. The train/eval mode is left as it is: call ``.eval()`` first so
        BatchNorm uses its running statistics, and ``torch.no_grad()`` to extract
        features without building a graph.

        Args:
            x: An input batch, e.g. images of shape ``(N, C, H, W)``.
        """
        return self._encoder.features(x)

    def extra_repr(self) -> str:
        return f"damage={self.damage}"


class MomentumAdapter(SelfDamagingAdapter):
    """An adapter with a momentum (EMA) copy of the dense backbone and projection head.

    The copy is made of the dense modules only, never of the wrapper, so masks and twin
    state are not in it; its parameters do not require gradients. It excludes BYOL's
    predictor: its parameters mirror ``backbone`` and ``head`` one to one.
    """

    momentum_encoder: Encoder

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        feature_dim: int,
        prune_ratio: float,
        **options: Any,
    ) -> None:
        """Same arguments as :class:`SelfDamagingAdapter`."""
        super().__init__(backbone, head, feature_dim, prune_ratio, **options)
        self.momentum_encoder = Encoder(copy.deepcopy(backbone), copy.deepcopy(head), feature_dim)
        deactivate_requires_grad(self.momentum_encoder)

    @torch.no_grad()
    def update_momentum(self, m: float) -> None:
        """Moves the momentum encoder towards the dense one: ``ema = m * ema + (1 - m) * w``.

        Only parameters are averaged (lightly's ``update_momentum``); the momentum
        encoder's BatchNorm running statistics come from its own forward passes. Call it
        once per step, before the forward pass, as lightly's examples do.

        Args:
            m: The momentum, in ``[0, 1]``; 1 leaves the momentum encoder unchanged.

        Raises:
            TypeError: If ``m`` is not a real number.
            ValueError: If ``m`` is not in ``[0, 1]``.
        """
        if isinstance(m, bool) or not isinstance(m, numbers.Real):
            raise TypeError(f"m must be a float, got m={m!r}.")
        if not 0.0 <= m <= 1.0:
            raise ValueError(
                f"m must be a momentum in [0, 1], got m={m!r}; e.g. "
                "lightly.utils.scheduler.cosine_schedule(step, max_steps, 0.996, 1.0)."
            )
        for online, ema in self._momentum_pairs():
            update_momentum(online, ema, float(m))

    @torch.no_grad()
    def _targets(self, x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
        """The momentum encoder's outputs for both views, without gradient."""
        return self.momentum_encoder(x0), self.momentum_encoder(x1)

    def _momentum_pairs(self) -> Iterator[tuple[nn.Module, nn.Module]]:
        yield self._encoder.backbone, self.momentum_encoder.backbone
        yield self._encoder.head, self.momentum_encoder.head


def check_module(name: str, value: object) -> nn.Module:
    """Returns ``value`` if it is an ``nn.Module``; raises a TypeError naming ``name``."""
    if not isinstance(value, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(value).__name__}.")
    return value


def check_feature_dim(feature_dim: object) -> int:
    """Returns ``feature_dim`` if it is a positive int; raises otherwise."""
    if isinstance(feature_dim, bool) or not isinstance(feature_dim, int):
        raise TypeError(f"feature_dim must be an int, got feature_dim={feature_dim!r}.")
    if feature_dim <= 0:
        raise ValueError(
            f"feature_dim must be positive, got feature_dim={feature_dim}; pass the number "
            "of features per sample that the backbone outputs (512 for a ResNet-18)."
        )
    return feature_dim


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
