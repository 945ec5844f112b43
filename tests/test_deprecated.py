"""0.1 spellings keep working in 0.2, each with a DeprecationWarning naming the new one."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
import torch
from fixtures.make_v0_1_checkpoints import tiny_model
from torch import nn

from selfdamage import ChannelDamage, SelfDamagingWrapper, WeightDamage


def net() -> nn.Module:
    torch.manual_seed(0)
    return tiny_model()


def x(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class TestWrapper:
    def test_damage_weight(self) -> None:
        with pytest.warns(DeprecationWarning, match=r"damage='weight' .* use damage=None"):
            old = SelfDamagingWrapper(net(), 0.5, damage="weight")  # type: ignore[arg-type]
        assert isinstance(old.damage, WeightDamage)
        torch.manual_seed(1)
        new = SelfDamagingWrapper(net(), 0.5)
        assert old.damage.settings == new.damage.settings

    def test_damage_channel_with_options(self) -> None:
        options: dict[str, Any] = {"importance": "lamp", "max_channel_ratio": 0.8}
        torch.manual_seed(1)
        with pytest.warns(DeprecationWarning, match=r"use damage=ChannelDamage\(prune_ratio, "):
            old = SelfDamagingWrapper(
                net(),
                0.5,
                damage="channel",
                example_inputs=x(),
                **options,  # type: ignore[arg-type]
            )
        torch.manual_seed(1)
        new = SelfDamagingWrapper(net(), damage=ChannelDamage(0.5, example_inputs=x(), **options))
        assert old.damage.settings == new.damage.settings
        assert same_state(old, new)  # same masks, same seed

    def test_channel_options_need_channel_damage(self) -> None:
        with pytest.raises(ValueError, match=r"importance='lamp' only applies to channel damage"):
            SelfDamagingWrapper(net(), 0.5, importance="lamp")

    def test_channel_needs_example_inputs(self) -> None:
        with pytest.raises(ValueError, match="damage='channel' needs example_inputs"):
            SelfDamagingWrapper(net(), 0.5, damage="channel")  # type: ignore[arg-type]

    def test_unknown_damage_string(self) -> None:
        with pytest.raises(ValueError, match="got damage='filter'"):
            SelfDamagingWrapper(net(), 0.5, damage="filter")  # type: ignore[arg-type]


class TestChannelDamageModule:
    @pytest.mark.parametrize(
        "name",
        [
            "ChannelDamage",
            "ChannelGroup",
            "DAMAGES",
            "DEFAULT_MAX_CHANNEL_RATIO",
            "IMPORTANCES",
            "check_damage",
            "global_channel_masks",
            "layer_channel_sparsity",
            "make_importance",
            "weight_channel_sparsity",
        ],
    )
    def test_every_name_warns(self, name: str) -> None:
        module = importlib.import_module("selfdamage.channel_damage")
        with pytest.warns(DeprecationWarning, match=f"selfdamage.channel_damage.{name} is"):
            getattr(module, name)

    def test_old_plan_and_reports(self) -> None:
        with pytest.warns(DeprecationWarning):
            from selfdamage.channel_damage import (
                ChannelDamage as Plan,
            )
            from selfdamage.channel_damage import (
                check_damage,
                layer_channel_sparsity,
                weight_channel_sparsity,
            )
        model = net()
        plan = Plan(model, x())
        masks = plan.compute_masks(model, 0.5)
        assert plan.channel_sparsity(masks) == pytest.approx(0.5, abs=0.1)
        assert set(plan.group_channel_sparsity(masks)) == {g.root for g in plan.groups}
        wrapper = SelfDamagingWrapper(net(), 0.5)
        assert set(layer_channel_sparsity(wrapper)) == {"0", "3"}
        assert weight_channel_sparsity(wrapper) == wrapper.channel_sparsity
        assert check_damage("weight", importance=None) == "weight"
        with pytest.raises(ValueError, match="only applies to channel damage"):
            check_damage("weight", importance="lamp")

    def test_unknown_name(self) -> None:
        module = importlib.import_module("selfdamage.channel_damage")
        with pytest.raises(AttributeError):
            module.nope  # noqa: B018
