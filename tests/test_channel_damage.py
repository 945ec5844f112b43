from __future__ import annotations

import copy
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch_pruning as tp
import torchvision
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from selfdamage import SelfDamagingWrapper
from selfdamage.channel_damage import (
    IMPORTANCES,
    ChannelDamage,
    global_channel_masks,
    layer_channel_sparsity,
    make_importance,
)
from selfdamage.masks import num_to_prune


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


def channel_wrapper(model: nn.Module | None = None, **kwargs: Any) -> SelfDamagingWrapper:
    torch.manual_seed(0)
    model = ChannelNet() if model is None else model
    kwargs.setdefault("prune_ratio", 0.5)
    kwargs.setdefault("example_inputs", images(2))
    return SelfDamagingWrapper(model, damage="channel", **kwargs)


def masks_of(wrapper: SelfDamagingWrapper) -> dict[str, Tensor]:
    return {name: mask.clone() for name, mask in wrapper.named_masks()}


def same_masks(a: SelfDamagingWrapper, b: SelfDamagingWrapper) -> bool:
    ma, mb = masks_of(a), masks_of(b)
    return ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma)


def plan(wrapper: SelfDamagingWrapper) -> ChannelDamage:
    assert wrapper._channel is not None
    return wrapper._channel


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


@pytest.fixture(scope="module")
def resnet_wrappers() -> dict[float, SelfDamagingWrapper]:
    out = {}
    for ratio in (0.3, 0.5):
        torch.manual_seed(0)
        backbone = torchvision.models.resnet18(weights=None, num_classes=10)
        out[ratio] = SelfDamagingWrapper(
            backbone, ratio, damage="channel", example_inputs=torch.randn(1, 3, 32, 32)
        )
    return out


class TestGlobalChannelMasks:
    @pytest.mark.parametrize("ratio", [0.0, 0.1, 0.3, 0.5, 0.8])
    def test_exact_count_and_cap(self, ratio: float) -> None:
        gen = torch.Generator().manual_seed(0)
        scores = [torch.rand(n, generator=gen) * s for n, s in [(8, 1.0), (32, 100.0), (5, 0.01)]]
        keep = global_channel_masks(scores, ratio, max_channel_ratio=0.9)
        pruned = sum(int((~k).sum()) for k in keep)
        assert pruned == num_to_prune(45, ratio)
        for k in keep:
            assert int((~k).sum()) <= int(0.9 * k.numel()) and bool(k.any())

    def test_lowest_scores_go_first_across_groups(self) -> None:
        keep = global_channel_masks([torch.tensor([0.1, 5.0]), torch.tensor([0.2, 0.3])], 0.5)
        assert [k.tolist() for k in keep] == [[False, True], [False, True]]

    def test_cap_redirects_to_next_group(self) -> None:
        # Group 0 holds all the lowest scores, but may lose only half of its channels.
        keep = global_channel_masks([torch.zeros(4), torch.ones(4)], 0.5, max_channel_ratio=0.5)
        assert [int((~k).sum()) for k in keep] == [2, 2]

    def test_ties_are_deterministic_and_spread_evenly(self) -> None:
        sizes = [64, 64, 128, 256, 512]
        first = global_channel_masks([torch.ones(n) for n in sizes], 0.3)
        again = global_channel_masks([torch.ones(n) for n in sizes], 0.3)
        assert all(torch.equal(a, b) for a, b in zip(first, again))
        for keep, n in zip(first, sizes):
            assert abs(int((~keep).sum()) - 0.3 * n) <= 1

    def test_random_part(self) -> None:
        scores = [torch.arange(10.0), torch.arange(10.0)]

        def draw(seed: int) -> list[Tensor]:
            gen = torch.Generator().manual_seed(seed)
            return global_channel_masks(scores, 0.5, random_ratio=0.2, generator=gen)

        a, b, c = draw(1), draw(1), draw(2)
        assert all(torch.equal(x, y) for x, y in zip(a, b))
        assert sum(int((~k).sum()) for k in a) == 10
        # The 6 importance picks are the lowest scores; the rest are random.
        assert all(not k[:3].any() for k in a)
        assert any(not torch.equal(x, y) for x, y in zip(a, c))

    def test_nan_counts_as_zero(self) -> None:
        keep = global_channel_masks([torch.tensor([float("nan"), 1.0, 2.0, 3.0])], 0.25)
        assert keep[0].tolist() == [False, True, True, True]

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"prune_ratio": 1.0}, "prune_ratio"),
            ({"prune_ratio": 0.5, "max_channel_ratio": 0.0}, "max_channel_ratio"),
            ({"prune_ratio": 0.5, "random_ratio": 0.6}, "random_ratio"),
            ({"prune_ratio": 0.8, "max_channel_ratio": 0.5}, "allows at most"),
        ],
    )
    def test_errors(self, kwargs: dict[str, Any], match: str) -> None:
        with pytest.raises(ValueError, match=match):
            global_channel_masks([torch.ones(10)], **kwargs)


class TestImportance:
    def test_names(self) -> None:
        expected = {
            "magnitude": tp.importance.GroupMagnitudeImportance,
            "taylor": tp.importance.GroupTaylorImportance,
            "lamp": tp.importance.LAMPImportance,
            "bn_scale": tp.importance.BNScaleImportance,
            "random": tp.importance.RandomImportance,
        }
        assert set(expected) == set(IMPORTANCES)
        for name, cls in expected.items():
            assert type(make_importance(name)) is cls

    def test_instance_passes_through(self) -> None:
        imp = tp.importance.GroupMagnitudeImportance(p=1)
        assert make_importance(imp) is imp

    def test_unknown_name_lists_options(self) -> None:
        with pytest.raises(ValueError, match="'magnitude', 'taylor', 'lamp', 'bn_scale', 'random'"):
            make_importance("l1")
        with pytest.raises(TypeError, match="importance"):
            make_importance(3)  # type: ignore[arg-type]


class TestArguments:
    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("importance", "magnitude"),
            ("example_inputs", torch.randn(1, 3, 8, 8)),
            ("ignored_layers", []),
            ("max_channel_ratio", 0.5),
        ],
    )
    def test_channel_args_rejected_with_weight_damage(self, name: str, value: Any) -> None:
        with pytest.raises(ValueError, match=f"{name}=.*damage='channel'"):
            SelfDamagingWrapper(ChannelNet(), 0.5, **{name: value})

    def test_example_inputs_required(self) -> None:
        with pytest.raises(ValueError, match="example_inputs"):
            SelfDamagingWrapper(ChannelNet(), 0.5, damage="channel")

    def test_unknown_damage(self) -> None:
        with pytest.raises(ValueError, match="'weight', 'channel'"):
            SelfDamagingWrapper(ChannelNet(), 0.5, damage="filter")

    def test_unknown_importance(self) -> None:
        with pytest.raises(ValueError, match="importance must be one of 'magnitude'"):
            channel_wrapper(importance="l2")

    def test_ignored_layers(self) -> None:
        with pytest.raises(ValueError, match="not part of the wrapped model"):
            channel_wrapper(ignored_layers=[nn.Conv2d(3, 3, 1)])
        with pytest.raises(ValueError, match="'nope', which is not a submodule"):
            channel_wrapper(ignored_layers=["nope"])
        with pytest.raises(TypeError, match="list"):
            channel_wrapper(ignored_layers=nn.Conv2d(3, 3, 1))  # type: ignore[arg-type]

    @pytest.mark.parametrize("ratio", [0.0, 1.5])
    def test_max_channel_ratio_range(self, ratio: float) -> None:
        with pytest.raises(ValueError, match="max_channel_ratio"):
            channel_wrapper(max_channel_ratio=ratio)

    def test_unreachable_ratio(self) -> None:
        with pytest.raises(ValueError, match=r"prune_ratio=0\.95 .*max_channel_ratio=0\.9"):
            channel_wrapper(prune_ratio=0.95)

    def test_bad_example_inputs(self) -> None:
        with pytest.raises(ValueError, match="could not trace"):
            channel_wrapper(example_inputs=torch.randn(2, 5, 16, 16))

    def test_nothing_prunable(self) -> None:
        net = nn.Sequential(nn.Conv2d(3, 4, 3))  # its only conv is the model output
        with pytest.raises(ValueError, match=r"no prunable channel group.*model output"):
            channel_wrapper(net)


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
        wrapper = channel_wrapper(net, prune_ratio=0.5)
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


class TestTwin:
    def test_dense_forward_unchanged(self) -> None:
        wrapper = channel_wrapper()
        x = images()
        assert torch.equal(wrapper(x), wrapper.model(x))

    @pytest.mark.parametrize("train", [True, False])
    @pytest.mark.parametrize("twin_norm", [True, False])
    def test_dead_channels_output_exactly_zero(self, train: bool, twin_norm: bool) -> None:
        wrapper = channel_wrapper(twin_norm=twin_norm).train(train)
        masks = dict(wrapper.named_masks())
        norms = ["stem.1", "block.1", "block.4", "dw.1", "grouped.1"]
        with outputs_of(wrapper.model, [*norms, "stem.0"]) as seen:
            wrapper.damaged(images())
        for name in norms:
            off = dead(masks[f"{name}.weight"])
            assert off.any() and (~off).any()
            assert torch.all(seen[name][:, off] == 0), name
            assert torch.all(seen[name][:, ~off].abs().sum((0, 2, 3)) > 0), name
        assert torch.all(seen["stem.0"][:, dead(masks["stem.0.weight"])] == 0)

    def test_coupled_slices_agree(self) -> None:
        masks = dict(channel_wrapper().named_masks())
        stream = dead(masks["stem.0.weight"])
        for name in [
            "stem.0.bias",
            "stem.1.weight",
            "stem.1.bias",
            "block.4.weight",
            "dw.0.weight",
        ]:
            assert torch.equal(dead(masks[name]), stream), name
        assert torch.equal(dead(masks["block.3.weight"]), stream)  # its output channels
        assert torch.equal(dead(masks["block.0.weight"], 1), stream)  # its input channels
        # grouped conv: input channel c of group g sits at column c % 4 of rows of group g.
        grouped = masks["grouped.0.weight"].view(2, 8, 4)
        rows_kept = ~dead(masks["grouped.1.weight"]).view(2, 8)
        for c in range(8):
            column = grouped[c // 4, :, c % 4]
            expected = torch.zeros(8, dtype=torch.bool) if stream[c] else rows_kept[c // 4]
            assert torch.equal(column, expected), c
        assert torch.equal(dead(masks["head.weight"], 1), dead(masks["grouped.1.weight"]))

    def test_masked_parameters_get_no_gradient_from_twin(self) -> None:
        wrapper = channel_wrapper()
        (wrapper.damaged(images()) ** 2).sum().backward()
        checked = 0
        for name, mask in wrapper.named_masks():
            twin = f"twin_norms.{name}"
            param = (
                wrapper.get_parameter(twin)
                if twin in dict(wrapper.named_parameters())
                else wrapper.model.get_parameter(name)
            )
            assert param.grad is not None, name
            assert torch.all(param.grad[~mask] == 0), name
            checked += int((~mask).sum())
        assert checked > 0

    def test_deepcopy_and_checkpoint(self) -> None:
        wrapper = channel_wrapper(importance="random")
        clone = copy.deepcopy(wrapper)
        wrapper.refresh_mask()
        clone.refresh_mask()
        assert same_masks(wrapper, clone)
        fresh = channel_wrapper(importance="random")
        fresh.load_state_dict(wrapper.state_dict())
        assert same_masks(wrapper, fresh)
        wrapper.refresh_mask()
        fresh.refresh_mask()  # same seed and count after loading: the same next mask
        assert same_masks(wrapper, fresh)


class TestRefresh:
    @pytest.mark.parametrize("importance", ["magnitude", "lamp", "bn_scale"])
    def test_repeatable_when_weights_unchanged(self, importance: str) -> None:
        wrapper = channel_wrapper(importance=importance)
        first = masks_of(wrapper)
        wrapper.refresh_mask()
        wrapper.refresh_mask()
        assert all(torch.equal(first[k], v) for k, v in masks_of(wrapper).items())

    def test_follows_weight_changes(self) -> None:
        wrapper = channel_wrapper(prune_ratio=0.3)
        off = dead(dict(wrapper.named_masks())["block.0.weight"])
        assert off.any()
        with torch.no_grad():
            wrapper.model.get_parameter("block.0.weight")[off] *= 100.0
            wrapper.model.get_parameter("block.1.weight")[off] *= 100.0
        wrapper.refresh_mask()
        assert not (dead(dict(wrapper.named_masks())["block.0.weight"]) & off).any()
        assert wrapper.channel_sparsity == pytest.approx(0.3, abs=0.02)

    def test_random_importance_is_seeded(self) -> None:
        wrapper = channel_wrapper(importance="random")
        other = channel_wrapper(importance="random")
        other.mask_seed.copy_(wrapper.mask_seed)
        other.refresh_count.copy_(wrapper.refresh_count)
        state = torch.get_rng_state()
        wrapper.refresh_mask()
        assert torch.equal(state, torch.get_rng_state())  # the global RNG is left alone
        torch.manual_seed(1234)  # and other ranks' global RNG does not matter
        other.refresh_mask()
        a, b = masks_of(wrapper), masks_of(other)
        assert all(torch.equal(a[k], b[k]) for k in a)
        before = masks_of(wrapper)
        wrapper.refresh_mask()  # the next epoch draws anew
        assert any(not torch.equal(before[k], v) for k, v in masks_of(wrapper).items())

    def test_bn_scale_ties_at_init(self) -> None:
        # Every BatchNorm weight is 1 at init: all scores tie.
        wrapper = channel_wrapper(importance="bn_scale", prune_ratio=0.5)
        again = channel_wrapper(importance="bn_scale", prune_ratio=0.5)
        assert same_masks(wrapper, again)
        for group, ratio in plan(wrapper).group_channel_sparsity(masks_of(wrapper)).items():
            channels = next(g.channels for g in plan(wrapper).groups if g.root == group)
            assert abs(ratio * channels - 0.5 * channels) <= 1, group

    def test_taylor_uses_gradients(self) -> None:
        wrapper = channel_wrapper(importance="taylor")  # no gradients yet: magnitude
        assert wrapper.channel_sparsity == pytest.approx(0.5, abs=0.02)
        (wrapper(images()).sum() + wrapper.damaged(images(seed=1)).sum()).backward()
        wrapper.refresh_mask()
        assert wrapper.channel_sparsity == pytest.approx(0.5, abs=0.02)
        wrapper.zero_grad(set_to_none=True)
        with pytest.raises(ValueError, match=r"loss.backward\(\)"):
            wrapper.refresh_mask()

    def test_non_finite_weights(self) -> None:
        wrapper = channel_wrapper()
        with torch.no_grad():
            wrapper.model.get_parameter("block.0.weight")[0, 0, 0, 0] = float("nan")
        with pytest.raises(ValueError, match=r"block\.0\.weight"):
            wrapper.refresh_mask()


class TestSparsityReports:
    def test_layer_channel_sparsity(self) -> None:
        wrapper = channel_wrapper()
        per_layer = layer_channel_sparsity(wrapper)
        masks = dict(wrapper.named_masks())
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
        assert set(layer_channel_sparsity(wrapper)) == {
            "stem.0",
            "block.0",
            "block.3",
            "dw.0",
            "grouped.0",
        }
        assert isinstance(wrapper.channel_sparsity, float)
        assert 0.0 <= wrapper.channel_sparsity < 0.9


class TestResNet18:
    @pytest.mark.parametrize("ratio", [0.3, 0.5])
    def test_realised_ratio(
        self, resnet_wrappers: dict[float, SelfDamagingWrapper], ratio: float
    ) -> None:
        wrapper = resnet_wrappers[ratio]
        assert plan(wrapper).num_channels == 2880  # fc is the output: never pruned
        assert wrapper.channel_sparsity == pytest.approx(ratio, abs=0.005)
        per_group = plan(wrapper).group_channel_sparsity(dict(wrapper.named_masks()))
        assert len(per_group) == 12
        # Normalized magnitudes spread the damage over the network (no group left dense,
        # none at the cap), unlike raw magnitudes.
        assert all(0.05 < r < 0.85 for r in per_group.values()), per_group

    def test_fc_outputs_never_pruned(
        self, resnet_wrappers: dict[float, SelfDamagingWrapper]
    ) -> None:
        masks = dict(resnet_wrappers[0.5].named_masks())
        assert not dead(masks["fc.weight"]).any()
        assert dead(masks["fc.weight"], 1).float().mean() == pytest.approx(0.5, abs=0.1)

    def test_dead_channels_zero_through_residuals(
        self, resnet_wrappers: dict[float, SelfDamagingWrapper]
    ) -> None:
        wrapper = resnet_wrappers[0.5].train()
        masks = dict(wrapper.named_masks())
        bns = [n for n, m in wrapper.model.named_modules() if isinstance(m, nn.BatchNorm2d)]
        with outputs_of(wrapper.model, [*bns, "layer1", "layer3"]) as seen:
            wrapper.damaged(torch.randn(2, 3, 32, 32))
        per_layer = layer_channel_sparsity(wrapper)
        for name in bns:
            zero = (seen[name] == 0).flatten(2).all(2).all(0)
            assert torch.equal(zero, dead(masks[f"{name}.weight"])), name
            assert per_layer[name] == pytest.approx(float(zero.float().mean())), name
        # The residual stream's dead channels stay zero after the additions.
        assert torch.all(seen["layer1"][:, dead(masks["bn1.weight"])] == 0)
        assert torch.all(seen["layer3"][:, dead(masks["layer3.0.downsample.1.weight"])] == 0)

    def test_identity_head_protects_last_stage(self) -> None:
        backbone = torchvision.models.resnet18(weights=None)
        backbone.fc = nn.Identity()
        wrapper = SelfDamagingWrapper(
            backbone,
            0.3,
            damage="channel",
            prunable=(nn.Conv2d, nn.Linear),
            ignored_layers=["layer1"],
            example_inputs=torch.randn(1, 3, 32, 32),
        )
        skipped = plan(wrapper).skipped
        assert skipped["layer4.0.conv2"] == "model output"
        assert skipped["layer1.0.conv1"] == "layer1.0.conv1 is in ignored_layers"
        assert wrapper.channel_sparsity == pytest.approx(0.3, abs=0.005)
        masks = dict(wrapper.named_masks())
        assert "layer4.1.bn2.weight" not in masks
        assert not dead(masks["layer4.0.conv2.weight"]).any()  # only its inputs are masked


def _ddp_worker(rank: int, port: int, out: str) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    model = ChannelNet()
    torch.manual_seed(1000 + rank)  # every rank draws its own mask_seed
    wrapper = SelfDamagingWrapper(
        model, 0.5, damage="channel", importance="random", example_inputs=images(2)
    )
    ddp = DistributedDataParallel(wrapper)  # broadcasts rank 0's buffers: seed and masks
    found = []
    for _ in range(2):
        torch.manual_seed(rank)  # the global RNG differs across ranks
        ddp.module.refresh_mask()
        found.append(masks_of(ddp.module))
    torch.save(found, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


class TestDistributed:
    def test_random_channel_masks_agree_across_ranks(self, tmp_path: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        mp.spawn(_ddp_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
        rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
        for epoch0, epoch1 in zip(rank0, rank1):
            assert all(torch.equal(epoch0[k], epoch1[k]) for k in epoch0)
        assert any(not torch.equal(rank0[0][k], rank0[1][k]) for k in rank0[0])
