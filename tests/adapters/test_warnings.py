"""Warnings of an adapter's public entry points point at the caller's line, this file."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from selfdamage.adapters import ADAPTERS, SimCLRAdapter

from .helpers import FEATURES


def backbone(tiny_first: bool) -> nn.Module:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, FEATURES, 3), nn.AdaptiveAvgPool2d(1)
    )
    if tiny_first:  # all under the global threshold: the twin loses the whole layer
        with torch.no_grad():
            model[0].weight.mul_(1e-6)
    return model


FULLY_MASKED = "the twin masks every entry of 'backbone.0.weight'"


def fully_masked(caught: list[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    return [w for w in caught if FULLY_MASKED in str(w.message)]


def test_construction_warning_points_at_the_caller() -> None:
    for name in ("simclr", "byol", "dino"):  # bases one, two and three levels up
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ADAPTERS[name](backbone(tiny_first=True), FEATURES, 0.5, prunable=nn.Conv2d)
        (warning,) = fully_masked(caught)
        assert warning.filename == __file__, name


def test_refresh_mask_warning_points_at_the_caller() -> None:
    adapter = SimCLRAdapter(backbone(tiny_first=False), FEATURES, 0.5)
    with torch.no_grad():
        adapter.backbone[0].weight.mul_(1e-6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adapter.refresh_mask()
    (warning,) = fully_masked(caught)
    assert warning.filename == __file__
