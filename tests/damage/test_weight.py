"""WeightDamage: the paper's strategy on its own (the wrapper tests cover the twin)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from selfdamage import SelfDamagingWrapper, WeightDamage


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))


class TestWeightDamage:
    def test_defaults_are_the_paper_s(self) -> None:
        damage = WeightDamage()
        assert damage.settings == {"prune_ratio": 0.9, "random_ratio": 0.0, "prunable": "Conv2d"}

    def test_selects_weights_in_module_order(self) -> None:
        damage = WeightDamage(0.5, prunable=(nn.Conv2d, nn.Linear))
        assert damage.bind(net()) == ["0.weight", "3.weight"]

    def test_masks_are_global_magnitude_masks(self) -> None:
        model = net()
        damage = WeightDamage(0.5)
        damage.bind(model)
        masks = damage.compute_masks(model, seed=0, first=True)
        weight = model[0].weight.detach().abs().flatten()
        assert masks["0.weight"].flatten().tolist() == (weight > weight.median()).tolist()

    def test_bad_prunable_fails_at_construction(self) -> None:
        with pytest.raises(TypeError, match="prunable must be a module type"):
            WeightDamage(0.5, prunable="conv")  # type: ignore[arg-type]

    def test_nothing_selected(self) -> None:
        with pytest.raises(ValueError, match="no prunable weights"):
            SelfDamagingWrapper(nn.Sequential(nn.Linear(2, 2)), damage=WeightDamage(0.5))

    def test_non_finite_weights(self) -> None:
        wrapper = SelfDamagingWrapper(net(), damage=WeightDamage(0.5))
        with torch.no_grad():
            wrapper.model[0].weight[0, 0, 0, 0] = float("inf")
        with pytest.raises(ValueError, match=r"NaN or infinite values in \['0\.weight'\]"):
            wrapper.refresh_mask()
