"""Models and helpers shared by the damage tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from selfdamage import ChannelDamage, SelfDamagingWrapper


class ChannelNet(nn.Module):
    """Residual block, depthwise conv, grouped conv, linear head: every coupling kind."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = nn.Sequential(
            nn.Conv2d(8, 12, 3, padding=1, bias=False),
            nn.BatchNorm2d(12),
            nn.ReLU(),
            nn.Conv2d(12, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
        )
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8))
        self.grouped = nn.Sequential(nn.Conv2d(8, 16, 1, groups=2), nn.BatchNorm2d(16))
        self.head = nn.Linear(16, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.block(x))
        x = torch.relu(self.dw(x))
        x = torch.relu(self.grouped(x))
        out: Tensor = self.head(x.mean((2, 3)))
        return out


def images(n: int = 4, size: int = 16, seed: int = 0) -> Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def channel_damage(**kwargs: Any) -> ChannelDamage:
    """A ChannelDamage at prune_ratio 0.5 traced with ``images(2)``, unless told otherwise."""
    kwargs.setdefault("prune_ratio", 0.5)
    kwargs.setdefault("example_inputs", images(2))
    return ChannelDamage(**kwargs)


def channel_wrapper(
    model: nn.Module | None = None, *, twin_norm: bool = True, **kwargs: Any
) -> SelfDamagingWrapper:
    """A wrapper around a seeded ``ChannelNet`` (or ``model``) with :func:`channel_damage`."""
    torch.manual_seed(0)
    model = ChannelNet() if model is None else model
    return SelfDamagingWrapper(model, twin_norm=twin_norm, damage=channel_damage(**kwargs))


def masks_of(wrapper: SelfDamagingWrapper) -> dict[str, Tensor]:
    return {name: mask.clone() for name, mask in wrapper.named_masks()}


def same_masks(a: SelfDamagingWrapper, b: SelfDamagingWrapper) -> bool:
    ma, mb = masks_of(a), masks_of(b)
    return ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma)


def plan(wrapper: SelfDamagingWrapper) -> ChannelDamage:
    assert isinstance(wrapper.damage, ChannelDamage)
    return wrapper.damage


@contextmanager
def outputs_of(model: nn.Module, names: list[str]) -> Iterator[dict[str, Tensor]]:
    """Records the outputs of the named submodules while the block runs."""
    seen: dict[str, Tensor] = {}
    handles = [
        model.get_submodule(name).register_forward_hook(
            lambda _m, _i, out, name=name: seen.__setitem__(name, out.detach())
        )
        for name in names
    ]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def dead(mask: Tensor, dim: int = 0) -> Tensor:
    """Channels along ``dim`` whose whole slice is masked out."""
    return ~mask.movedim(dim, 0).reshape(mask.shape[dim], -1).any(dim=1)
