"""Sparsity reports read from the model and the masks."""

from __future__ import annotations

import pytest

from selfdamage import SelfDamagingWrapper
from selfdamage.damage.reports import layer_channel_sparsity

from .helpers import ChannelNet, channel_wrapper, dead


class TestSparsityReports:
    def test_layer_channel_sparsity(self) -> None:
        wrapper = channel_wrapper()
        masks = dict(wrapper.named_masks())
        per_layer = layer_channel_sparsity(wrapper.model, masks)
        assert per_layer["head"] == 0.0  # only its inputs follow the grouped conv
        assert per_layer["stem.0"] == pytest.approx(
            float(dead(masks["stem.0.weight"]).float().mean())
        )
        assert per_layer["stem.0"] == per_layer["stem.1"] == per_layer["dw.0"]

    def test_weight_damage(self) -> None:
        wrapper = SelfDamagingWrapper(ChannelNet(), 0.9)
        assert [n for n, _ in wrapper.named_masks()] == [
            "stem.0.weight",
            "block.0.weight",
            "block.3.weight",
            "dw.0.weight",
            "grouped.0.weight",
        ]
        assert set(layer_channel_sparsity(wrapper.model, dict(wrapper.named_masks()))) == {
            "stem.0",
            "block.0",
            "block.3",
            "dw.0",
            "grouped.0",
        }
        assert isinstance(wrapper.channel_sparsity, float)
        assert 0.0 <= wrapper.channel_sparsity < 0.9
