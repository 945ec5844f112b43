"""Tracing with torch-pruning: once, on the bare model, modes and state untouched, groups."""

from __future__ import annotations

import copy
import weakref
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


class ShuffleNet(nn.Module):
    """A conv, ShuffleNet's channel shuffle (a 5-d view) and another conv."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x: Tensor) -> Tensor:
        x = self.a(x)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        out: Tensor = self.head(self.b(x).mean((2, 3)))
        return out


class MLPNet(nn.Module):
    """A conv stem whose group is left dense, then a hidden nn.Linear: ConvNeXt's pattern."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.hidden = nn.Linear(8, 16)
        self.out = nn.Linear(16, 4)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.out(torch.relu(self.hidden(self.stem(x).mean((2, 3)))))
        return out


class TestTracingErrors:
    """Each failure says whose it is: the input's, the model's ops', or the graph's."""

    def test_input_the_model_rejects_blames_the_input(self) -> None:
        with pytest.raises(ValueError, match=r"could not trace ChannelNet .* does not run on"):
            channel_wrapper(example_inputs=torch.randn(2, 5, 16, 16))

    def test_unfollowable_reshapes_counted_on_the_autograd_graph(self) -> None:
        from selfdamage.damage import unfollowable_reshapes

        x = torch.randn(2, 8, 4, 4, requires_grad=True)
        windows = x.view(2, 8, 2, 2, 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(8, 8, 2, 2)
        shuffled = x.view(2, 2, 4, 4, 4).transpose(1, 2).reshape(2, 8, 4, 4)
        flat = x.flatten(1).view(2, 8, 16)  # 4-d and lower: torch-pruning follows them
        # By construction: one 6-d input (the window reshape), one 5-d (the shuffle).
        assert dict(unfollowable_reshapes([windows, shuffled, flat])) == {5: 1, 6: 1}
        assert dict(unfollowable_reshapes(flat)) == {}

    def test_every_reshape_of_a_long_chain_is_counted(self) -> None:
        from selfdamage.damage import unfollowable_reshapes

        conv, y = nn.Conv2d(8, 8, 3, padding=1), torch.randn(2, 8, 4, 4)
        for _ in range(20):  # 20 shuffle blocks, so 20 views of a 5-d tensor
            y = conv(y).view(2, 2, 4, 4, 4).transpose(1, 2).reshape(2, 8, 4, 4)
        assert dict(unfollowable_reshapes(y)) == {5: 20}  # counted 1 under torch 2.11 once

    def test_nodes_are_told_apart_while_torch_frees_their_python_objects(self) -> None:
        # torch 2.11 keeps an autograd node's Python object only while it is referenced, so
        # a freed node's id goes to the next one made; a walk that remembers ids of freed
        # nodes skips nodes it never saw. A chain of 20 such nodes, each a 5-d view:
        from selfdamage.damage import unfollowable_reshapes

        live: weakref.WeakValueDictionary[int, Node] = weakref.WeakValueDictionary()

        class Node:
            _saved_self_sym_sizes = (2, 2, 4, 4, 4)

            def __init__(self, depth: int) -> None:
                self.depth = depth

            @staticmethod
            def at(depth: int) -> Node:
                node = live.get(depth)
                if node is None:
                    node = live[depth] = Node(depth)
                return node

            def name(self) -> str:
                return "ViewBackward0"

            @property
            def next_functions(self) -> tuple[tuple[Node, int], ...]:
                return ((Node.at(self.depth + 1), 0),) if self.depth < 19 else ()

        class Output(Tensor):
            @property
            def grad_fn(self) -> Node:  # type: ignore[override]
                return Node.at(0)

        output = Tensor._make_subclass(Output, torch.zeros(1))
        assert dict(unfollowable_reshapes(output)) == {5: 20}

    def test_channel_shuffle_is_rejected_before_torch_pruning_runs(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls: list[object] = []
        build = tp.DependencyGraph.build_dependency

        def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(self)
            return build(self, *args, **kwargs)

        monkeypatch.setattr(tp.DependencyGraph, "build_dependency", spy)
        with pytest.raises(
            ValueError,
            match=r"channel damage does not support ShuffleNet: 1 reshape of a 5-d tensor .*"
            r"Use weight damage",
        ):
            channel_wrapper(ShuffleNet())
        assert calls == []

    def test_dependency_graph_failure_names_the_model_not_the_input(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def broken(self: Any, *args: Any, **kwargs: Any) -> Any:
            raise ZeroDivisionError("integer division or modulo by zero")

        monkeypatch.setattr(tp.DependencyGraph, "build_dependency", broken)
        with pytest.raises(ValueError) as info:
            channel_wrapper()
        message = str(info.value)
        assert "torch-pruning's dependency graph cannot follow ChannelNet" in message
        assert "ZeroDivisionError" in message and "the model runs on example_inputs" in message
        assert "Pass an input" not in message

    def test_runaway_coupling_is_an_error_not_an_out_of_memory(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import selfdamage.damage._torch_pruning_graph as graph

        monkeypatch.setattr(graph, "coupling_limit", lambda model: 10)
        with pytest.raises(
            ValueError,
            match=r"channel coupling did not converge for (stem|block|grouped)\.0 in ChannelNet"
            r": .* grew past 10 entries",
        ):
            channel_wrapper()  # every group maps more than 10 indices

    def test_coupling_budget_leaves_valid_models_alone(self) -> None:
        from selfdamage.damage._torch_pruning_graph import coupling_limit

        assert coupling_limit(ChannelNet()) == 128 * 1024  # the floor; ChannelNet has 57 channels
        wrapper = channel_wrapper()
        assert [g.root for g in plan(wrapper).groups] == ["stem.0", "block.0", "grouped.0"]


class TestPrunableHint:
    def test_no_group_names_the_prunable_that_would_work(self) -> None:
        # The reference: the groups the suggested prunable gives, counted by tracing.
        suggested = channel_wrapper(
            MLPNet(), prunable=(nn.Conv2d, nn.Linear), ignored_layers=["stem"]
        )
        assert [g.root for g in plan(suggested).groups] == ["hidden"]
        with pytest.raises(ValueError) as info:
            channel_wrapper(MLPNet(), ignored_layers=["stem"])  # prunable=(nn.Conv2d,)
        message = str(info.value)
        assert "stem: stem is in ignored_layers" in message
        assert "hidden: hidden is not selected by prunable" in message
        assert (
            "prunable must also select nn.Linear here: prunable=(nn.Conv2d, nn.Linear) would "
            "make 1 channel group prunable" in message
        )

    def test_no_hint_when_prunable_is_not_the_cause(self) -> None:
        net = nn.Sequential(nn.Conv2d(3, 4, 3))
        with pytest.raises(ValueError, match="Check prunable, ignored_layers and importance"):
            channel_wrapper(net)

    def test_convnext_conv_only(self) -> None:
        import torchvision

        x = images(2, 32)

        def convnext() -> nn.Module:
            torch.manual_seed(0)
            return torchvision.models.convnext_tiny(weights=None)

        both = channel_wrapper(convnext(), example_inputs=x, prunable=(nn.Conv2d, nn.Linear))
        count = len(plan(both).groups)
        assert count > 0 and all(".block.3" in g.root for g in plan(both).groups)
        with pytest.raises(ValueError) as info:
            channel_wrapper(convnext(), example_inputs=x)
        assert f"prunable=(nn.Conv2d, nn.Linear) would make {count} channel groups prunable" in str(
            info.value
        )


@pytest.mark.slow
class TestCouplingBudgetOnSwin:
    def test_swin_without_the_reshape_guard_fails_fast_not_out_of_memory(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Unbounded, building Swin-T's plan exhausted 23 GB; the budget stops it at ~1.3 GB.
        import collections

        import torchvision

        import selfdamage.damage.tracing as tracing

        monkeypatch.setattr(tracing, "unfollowable_reshapes", lambda out: collections.Counter())
        model = torchvision.models.swin_t(weights=None)
        with pytest.raises(ValueError, match="channel coupling did not converge for features"):
            channel_wrapper(model, example_inputs=images(2, 32), prunable=(nn.Conv2d, nn.Linear))


def _chain(*convs: nn.Module) -> nn.Sequential:
    """Convolutions (8 channels between them) with BatchNorm and ReLU, pooled into a head."""
    layers: list[nn.Module] = []
    for conv in convs:
        layers += [conv, nn.BatchNorm2d(8), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def _convs(n: int) -> list[nn.Module]:
    torch.manual_seed(0)
    return [nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1) for i in range(n)]


class TestLayersChannelDamageCannotMask:
    """Weights the layer does not use as is, and tied weights: their groups stay dense.

    Masking an input channel of a weight-standardized convolution changes the mean and
    variance it standardizes the live weights with; a tied weight is masked for every
    layer that uses it. Weight damage leaves transformed weights out; channel damage
    leaves every group touching them dense, and says so.
    """

    def test_standardized_convolution_changes_no_live_weight(self) -> None:
        timm_layers = pytest.importorskip("timm.layers")
        torch.manual_seed(0)
        convs = _convs(3)
        convs[1] = timm_layers.StdConv2d(8, 8, 3, padding=1)
        net = _chain(*convs)
        with pytest.warns(UserWarning, match="leaves 2 channel groups dense") as record:
            wrapper = channel_wrapper(net, example_inputs=images(2), compact=False)
        assert "StdConv2d standardizes its weight in forward" in str(record[0].message)
        damage = plan(wrapper)
        # The reference: the groups around the StdConv2d are 0 (its inputs) and 3 (its outputs).
        assert [g.root for g in damage.groups] == ["6"]
        assert set(damage.skipped) == {"0", "3", "11"}
        assert "3.weight" not in dict(wrapper.named_masks())
        # The StdConv2d computes with the same standardized weight in the (masked) twin.
        with outputs_of(net, ["3"]) as seen:
            wrapper.damaged(images())
        twin = seen["3"]
        with outputs_of(net, ["3"]) as seen:
            wrapper(images())
        assert torch.equal(twin, seen["3"])  # nothing before it is pruned either

    def test_model_of_standardized_convolutions_is_an_error_naming_the_cause(self) -> None:
        timm_layers = pytest.importorskip("timm.layers")
        torch.manual_seed(0)
        net = _chain(timm_layers.StdConv2d(3, 8, 3), timm_layers.StdConv2d(8, 8, 3))
        with pytest.raises(ValueError) as info:
            channel_wrapper(net, example_inputs=images(2))
        message = str(info.value)
        assert "cannot mask 0.weight: StdConv2d standardizes its weight in forward" in message
        assert "remove the weight transform" in message
        assert "prunable must also select" not in message

    @pytest.mark.parametrize("transform", ["weight_norm", "spectral_norm"])
    def test_parametrized_convolution(self, transform: str) -> None:
        net = _chain(*_convs(3))
        getattr(nn.utils.parametrizations, transform)(net[3])
        with pytest.warns(UserWarning, match="leaves 2 channel groups dense"):
            wrapper = channel_wrapper(net, example_inputs=images(2))
        assert [g.root for g in plan(wrapper).groups] == ["6"]
        assert plan(wrapper).skipped["3"] == (
            "cannot mask 3.weight: its weight is parametrized (ParametrizationList)"
        )
        only = _chain(*_convs(1))
        getattr(nn.utils.parametrizations, transform)(only[0])
        with pytest.raises(ValueError, match="its weight is parametrized") as info:
            channel_wrapper(only, example_inputs=images(2))
        assert "not parameters" not in str(info.value)

    def test_tied_weights_name_both_layers(self) -> None:
        net = _chain(*_convs(3))
        net[6].weight = net[3].weight
        with pytest.raises(ValueError) as info:
            channel_wrapper(net, example_inputs=images(2))
        message = str(info.value)
        assert "cannot mask 3.weight: tied to 6.weight" in message
        assert "untie the weights" in message
        assert "not parameters" not in message

    def test_inference_mode_is_an_error_naming_it(self) -> None:
        with torch.inference_mode(), pytest.raises(ValueError) as info:
            channel_wrapper()
        assert "under torch.inference_mode()" in str(info.value)
        assert "prunable must also select" not in str(info.value)
        with torch.inference_mode():
            net = ChannelNet()
        with pytest.raises(ValueError, match="parameters were created in it"):
            channel_wrapper(net)
