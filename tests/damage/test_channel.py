"""ChannelDamage: arguments, the twin, refreshes, ResNet-18, DDP."""

from __future__ import annotations

import copy
from pathlib import Path

import ddp_harness
import pytest
import torch
import torchvision
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from selfdamage import ChannelDamage, SelfDamagingWrapper
from selfdamage.damage.reports import layer_channel_sparsity

from .helpers import (
    ChannelNet,
    channel_damage,
    channel_wrapper,
    dead,
    images,
    masks_of,
    outputs_of,
    plan,
    same_masks,
)


@pytest.fixture(scope="module")
def resnet_wrappers() -> dict[float, SelfDamagingWrapper]:
    out = {}
    for ratio in (0.3, 0.5):
        torch.manual_seed(0)
        backbone = torchvision.models.resnet18(weights=None, num_classes=10)
        damage = ChannelDamage(ratio, example_inputs=torch.randn(1, 3, 32, 32), compact=False)
        out[ratio] = SelfDamagingWrapper(backbone, damage=damage)
    return out


class TestArguments:
    def test_example_inputs_required(self) -> None:
        with pytest.raises(ValueError, match="example_inputs is required"):
            ChannelDamage(0.5, example_inputs=None)

    def test_strategy_binds_once(self) -> None:
        damage = channel_damage()
        SelfDamagingWrapper(ChannelNet(), damage=damage)
        with pytest.raises(ValueError, match="already bound"):
            SelfDamagingWrapper(ChannelNet(), damage=damage)

    def test_settings_are_plain_values(self) -> None:
        assert channel_damage(max_channel_ratio=0.8).settings == {
            "prune_ratio": 0.5,
            "random_ratio": 0.0,
            "importance": "GroupMagnitudeImportance",
            "max_channel_ratio": 0.8,
            "prunable": "Conv2d",
        }

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


class TestTwin:
    def test_dense_forward_unchanged(self) -> None:
        wrapper = channel_wrapper()
        x = images()
        assert torch.equal(wrapper(x), wrapper.model(x))

    @pytest.mark.parametrize("train", [True, False])
    @pytest.mark.parametrize("twin_norm", [True, False])
    def test_dead_channels_output_exactly_zero(self, train: bool, twin_norm: bool) -> None:
        # hooks on the model see the masked twin only (the compact one runs on a copy)
        wrapper = channel_wrapper(twin_norm=twin_norm, compact=False).train(train)
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
        per_layer = layer_channel_sparsity(wrapper.model, masks)
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
        damage = ChannelDamage(
            0.3,
            prunable=(nn.Conv2d, nn.Linear),
            ignored_layers=["layer1"],
            example_inputs=torch.randn(1, 3, 32, 32),
        )
        wrapper = SelfDamagingWrapper(backbone, damage=damage)
        skipped = plan(wrapper).skipped
        assert skipped["layer4.0.conv2"] == "model output"
        assert skipped["layer1.0.conv1"] == "layer1.0.conv1 is in ignored_layers"
        assert wrapper.channel_sparsity == pytest.approx(0.3, abs=0.005)
        masks = dict(wrapper.named_masks())
        assert "layer4.1.bn2.weight" not in masks
        assert not dead(masks["layer4.0.conv2.weight"]).any()  # only its inputs are masked


def _ddp_worker(rank: int, world: int) -> list[dict[str, Tensor]]:
    torch.manual_seed(0)
    model = ChannelNet()
    torch.manual_seed(1000 + rank)  # every rank draws its own mask_seed
    wrapper = SelfDamagingWrapper(model, damage=channel_damage(importance="random"))
    ddp = DistributedDataParallel(wrapper)  # broadcasts rank 0's buffers: seed and masks
    found = []
    for _ in range(2):
        torch.manual_seed(rank)  # the global RNG differs across ranks
        ddp.module.refresh_mask()
        found.append(masks_of(ddp.module))
    return found


class TestDistributed:
    def test_random_channel_masks_agree_across_ranks(self, tmp_path: Path) -> None:
        rank0, rank1 = ddp_harness.run(_ddp_worker, tmp_path)
        for epoch0, epoch1 in zip(rank0, rank1):
            assert all(torch.equal(epoch0[k], epoch1[k]) for k in epoch0)
        assert any(not torch.equal(rank0[0][k], rank0[1][k]) for k in rank0[0])


class MomentumNet(nn.Module):
    """An online conv net and a frozen copy of it (lightly's ``backbone_momentum``), both run."""

    def __init__(self) -> None:
        super().__init__()
        self.online = nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3)
        )
        self.momentum = copy.deepcopy(self.online)
        for p in self.momentum.parameters():
            p.requires_grad_(False)  # lightly's deactivate_requires_grad

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = (self.online(x) - self.momentum(x)).mean((2, 3))
        return out


class TestFrozenLayers:
    def test_groups_rooted_at_frozen_layers_are_left_dense(self) -> None:
        wrapper = channel_wrapper(MomentumNet())
        assert [g.root for g in plan(wrapper).groups] == ["online.0"]
        assert plan(wrapper).skipped["momentum.0"] == (
            "momentum.0's weight is frozen (requires_grad=False)"
        )
        masked = {name for name, _ in wrapper.named_masks()}
        frozen = {n for n, p in wrapper.model.named_parameters() if not p.requires_grad}
        assert masked and not masked & frozen
        # The reference: the online half alone, traced on its own, gets the same masks.
        alone = channel_wrapper(copy.deepcopy(wrapper.model.online))
        assert {f"online.{n}": m for n, m in masks_of(alone).items()}.keys() == masked
        assert all(
            torch.equal(m, dict(wrapper.named_masks())[f"online.{n}"])
            for n, m in masks_of(alone).items()
        )

    def test_unfreezing_makes_the_group_prunable_again(self) -> None:
        net = MomentumNet()
        for p in net.momentum.parameters():
            p.requires_grad_(True)
        wrapper = channel_wrapper(net)
        assert [g.root for g in plan(wrapper).groups] == ["online.0", "momentum.0"]
