"""Tracing with torch-pruning: once, on the bare model, modes and state untouched, groups."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch_pruning as tp
from torch import Tensor, nn

from .helpers import ChannelNet, channel_wrapper, dead, images, outputs_of, plan


class TestConstruction:
    def test_graph_built_on_bare_model(self, monkeypatch: pytest.MonkeyPatch) -> None:
        traced: list[nn.Module] = []
        build = tp.DependencyGraph.build_dependency

        def spy(self: Any, model: nn.Module, *args: Any, **kwargs: Any) -> Any:
            traced.append(model)
            return build(self, model, *args, **kwargs)

        monkeypatch.setattr(tp.DependencyGraph, "build_dependency", spy)
        wrapper = channel_wrapper()
        assert len(traced) == 1 and traced[0] is wrapper.model
        wrapper.refresh_mask()  # refreshing never re-traces
        assert len(traced) == 1

    @pytest.mark.parametrize("mode", ["train", "eval", "mixed"])
    def test_modes_restored(self, mode: str) -> None:
        net = ChannelNet().train(mode != "eval")
        if mode == "mixed":
            net.block[1].eval()
        before = {name: m.training for name, m in net.named_modules()}
        channel_wrapper(net)
        assert {name: m.training for name, m in net.named_modules()} == before

    def test_model_state_untouched(self) -> None:
        net = ChannelNet()
        before = copy.deepcopy(net.state_dict())
        wrapper = channel_wrapper(net)
        after = wrapper.model.state_dict()
        assert before.keys() == after.keys()
        assert all(torch.equal(before[k], after[k]) for k in before)

    def test_works_under_no_grad(self) -> None:
        with torch.no_grad():
            wrapper = channel_wrapper()
        assert wrapper.channel_sparsity == pytest.approx(0.5, abs=0.02)

    def test_tuple_example_inputs(self) -> None:
        class TwoInputs(ChannelNet):
            def forward(self, x: Tensor, scale: Tensor) -> Tensor:  # type: ignore[override]
                return super().forward(x * scale)

        wrapper = channel_wrapper(TwoInputs(), example_inputs=(images(2), torch.tensor(2.0)))
        x = images()
        assert torch.equal(wrapper(x, torch.tensor(2.0)), wrapper.model(x, torch.tensor(2.0)))

    def test_groups_and_masked_parameters(self) -> None:
        wrapper = channel_wrapper()
        groups = {g.root: g for g in plan(wrapper).groups}
        # The residual stream couples stem, block output, the depthwise conv and the
        # grouped conv's input; the block's inner conv and the grouped conv's output
        # are groups of their own; the head is the model output.
        assert set(groups) == {"stem.0", "block.0", "grouped.0"}
        assert {"stem.1", "block.3", "block.4", "dw.0", "dw.1", "grouped.0"} <= set(
            groups["stem.0"].layers
        )
        assert plan(wrapper).skipped == {"head": "model output"}
        names = dict(wrapper.named_masks())
        assert {"stem.0.bias", "stem.1.weight", "stem.1.bias", "head.weight"} <= set(names)
        assert "head.bias" not in names

    def test_sequential_with_prelu(self) -> None:
        net = nn.Sequential(
            nn.Conv2d(3, 8, 3),
            nn.BatchNorm2d(8),
            nn.PReLU(),  # one shared slope: nothing to mask
            nn.Conv2d(8, 8, 3),
            nn.PReLU(8),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 4),
        )
        wrapper = channel_wrapper(net, prune_ratio=0.5, compact=False)  # hooks: masked twin
        assert [g.root for g in plan(wrapper).groups] == ["0", "3"]
        masks = dict(wrapper.named_masks())
        assert "2.weight" not in masks
        assert torch.equal(dead(masks["4.weight"]), dead(masks["3.weight"]))
        with outputs_of(wrapper.model, ["4"]) as seen:
            wrapper.damaged(images())
        assert torch.all(seen["4"][:, dead(masks["4.weight"])] == 0)

    def test_random_ratio_supported(self) -> None:
        wrapper = channel_wrapper(random_ratio=0.2)
        assert wrapper.channel_sparsity == pytest.approx(0.5, abs=0.02)
