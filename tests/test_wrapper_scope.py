"""The wrapper on models users bring: what the twin masks, and the checks that keep it honest.

Attention, frozen momentum copies, weight-transforming layers, coverage, whole layers
masked, settings in checkpoints, a model moved without its wrapper, the optimizer check.
"""

from __future__ import annotations

import copy
import io
import warnings

import pytest
import torch
import torchvision
from damage.test_scope import WSConv2d
from lightly.models.modules import MoCoProjectionHead
from lightly.models.utils import deactivate_requires_grad
from torch import Tensor, nn

from selfdamage import SelfDamagingWrapper
from selfdamage.adapters import SimCLRAdapter


class Attention(nn.Module):
    def __init__(self, kdim: int | None = None) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, kdim=kdim, vdim=kdim, batch_first=True)
        self.fc = nn.Linear(8, 4)
        self.kv = nn.Linear(8, kdim or 8)

    def forward(self, x: Tensor) -> Tensor:
        kv = self.kv(x)
        out: Tensor = self.fc(self.attn(x, kv, kv, need_weights=False)[0])
        return out


def masked_copy(wrapper: SelfDamagingWrapper) -> nn.Module:
    """Reference twin: a copy of the model with every masked weight zeroed in place."""
    model = copy.deepcopy(wrapper.model)
    with torch.no_grad():
        for name, mask in wrapper.named_masks():
            model.get_parameter(name).mul_(mask)
    return model


class TestAttention:
    @pytest.mark.parametrize("kdim", [None, 6])
    def test_attention_projections_masked_when_named(self, kdim: int | None) -> None:
        torch.manual_seed(0)
        model = Attention(kdim)
        wrapper = SelfDamagingWrapper(model, 0.5, prunable=(nn.Linear, nn.MultiheadAttention))
        qkv = ["attn.in_proj_weight"] if kdim is None else [f"attn.{p}_proj_weight" for p in "qkv"]
        assert sorted(n for n, _ in wrapper.named_masks()) == sorted(
            [*qkv, "attn.out_proj.weight", "fc.weight", "kv.weight"]
        )
        masks = [m for _, m in wrapper.named_masks()]
        assert wrapper.sparsity == 1 - sum(int(m.sum()) for m in masks) / sum(
            m.numel() for m in masks
        )
        x = torch.randn(2, 5, 8)
        wrapper.eval()
        torch.testing.assert_close(wrapper.damaged(x), masked_copy(wrapper).eval()(x))
        assert wrapper.coverage == 1.0

    def test_linear_alone_masks_what_it_did(self) -> None:
        wrapper = SelfDamagingWrapper(Attention(), 0.5, prunable=(nn.Linear,))
        assert [n for n, _ in wrapper.named_masks()] == [
            "attn.out_proj.weight",
            "fc.weight",
            "kv.weight",
        ]

    def test_vit_coverage_and_warning(self) -> None:
        torch.manual_seed(0)
        vit = torchvision.models.VisionTransformer(32, 8, 2, 2, 16, 32, num_classes=4)
        weights = {n: p.numel() for n, p in vit.named_parameters() if p.dim() >= 2}
        with pytest.warns(
            UserWarning, match=r"prunable=\(nn\.Conv2d, nn\.MultiheadAttention, nn\.Linear,\)"
        ):
            conv_only = SelfDamagingWrapper(copy.deepcopy(vit), 0.9)
        assert conv_only.coverage == pytest.approx(
            weights["conv_proj.weight"] / sum(weights.values())
        )
        full = SelfDamagingWrapper(vit, 0.9, prunable=(nn.Conv2d, nn.Linear, nn.MultiheadAttention))
        unmasked = {"class_token", "encoder.pos_embedding"}  # parameters, not layer weights
        expected = 1 - sum(weights[n] for n in unmasked) / sum(weights.values())
        assert full.coverage == pytest.approx(expected)
        assert full.coverage_by_kind["MultiheadAttention"] == (2 * 3 * 16 * 16, 2 * 3 * 16 * 16)


def moco_like() -> nn.Module:
    """Built as lightly's examples/pytorch/moco.py: momentum parts inside, frozen."""

    class MoCo(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Sequential(
                nn.Conv2d(3, 8, 3),
                nn.BatchNorm2d(8),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )
            self.projection_head = MoCoProjectionHead(8, 16, 4)
            self.backbone_momentum = copy.deepcopy(self.backbone)
            self.projection_head_momentum = copy.deepcopy(self.projection_head)
            deactivate_requires_grad(self.backbone_momentum)
            deactivate_requires_grad(self.projection_head_momentum)

        def forward(self, x: Tensor) -> Tensor:
            out: Tensor = self.projection_head(self.backbone(x))
            return out

    torch.manual_seed(0)
    return MoCo()


class TestFrozen:
    def test_momentum_copies_are_outside_the_twin(self) -> None:
        model = moco_like()
        with torch.no_grad():  # make the frozen copy differ, so it would move the threshold
            model.get_parameter("backbone_momentum.0.weight").mul_(100)
        wrapper = SelfDamagingWrapper(model, 0.5, prunable=(nn.Conv2d, nn.Linear))
        names = [n for n, _ in wrapper.named_masks()]
        assert names == [
            "backbone.0.weight",
            "projection_head.layers.0.weight",
            "projection_head.layers.2.weight",
        ]
        assert [n for n, _ in wrapper.twin_norms.named_modules() if n.endswith("1")] == [
            "backbone.1"
        ]
        # The threshold is taken over the trainable weights only: hand-computed.
        flat = torch.cat([model.get_parameter(n).detach().abs().flatten() for n in names])
        kept = sum(int(m.sum()) for _, m in wrapper.named_masks())
        assert kept == flat.numel() - round(0.5 * flat.numel())
        threshold = flat.sort().values[round(0.5 * flat.numel()) - 1]
        for name, mask in wrapper.named_masks():
            assert torch.equal(mask, model.get_parameter(name).detach().abs() > threshold), name
        # Every trainable parameter of the wrapper gets a gradient: nothing unused for DDP.
        wrapper.train()
        (
            wrapper(torch.randn(4, 3, 8, 8)).sum() + wrapper.damaged(torch.randn(4, 3, 8, 8)).sum()
        ).backward()
        unused = [n for n, p in wrapper.named_parameters() if p.requires_grad and p.grad is None]
        assert unused == []

    def test_frozen_norm_without_twin_keeps_dense_statistics(self) -> None:
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        model[1].requires_grad_(False)
        wrapper = SelfDamagingWrapper(model, 0.5).train()
        before = model.get_buffer("1.running_mean").clone()
        wrapper.damaged(torch.randn(2, 3, 6, 6))
        assert len(list(wrapper.twin_norms.modules())) == 1  # the empty root only
        assert torch.equal(model.get_buffer("1.running_mean"), before)

    def test_all_frozen_is_an_error(self) -> None:
        model = nn.Sequential(nn.Conv2d(3, 4, 3)).requires_grad_(False)
        with pytest.raises(ValueError, match=r"frozen \(requires_grad=False\): 0\.weight"):
            SelfDamagingWrapper(model, 0.5)


class TestWeightTransformingLayers:
    def layers(self) -> list[nn.Module]:
        found: list[nn.Module] = [
            WSConv2d(4, 4, 3, padding=1),
            nn.utils.parametrizations.weight_norm(nn.Conv2d(4, 4, 3, padding=1)),
            nn.utils.spectral_norm(nn.Conv2d(4, 4, 3, padding=1)),
        ]
        timm_layers = pytest.importorskip("timm.layers")
        found.append(timm_layers.StdConv2d(4, 4, 3, padding=1))
        return found

    def test_excluded_with_a_warning_and_twin_sparsity_is_true(self) -> None:
        for layer in self.layers():
            torch.manual_seed(0)
            model = nn.Sequential(nn.Conv2d(3, 4, 3), layer, nn.Conv2d(4, 4, 1))
            with pytest.warns(UserWarning, match=r"not use their weight as is: '1\.weight' \("):
                wrapper = SelfDamagingWrapper(model, 0.5)
            assert [n for n, _ in wrapper.named_masks()] == ["0.weight", "2.weight"]

    def test_nothing_left_is_an_error(self) -> None:
        for layer in self.layers():
            with pytest.raises(ValueError, match=r"no prunable weights.*do not use their weight"):
                SelfDamagingWrapper(nn.Sequential(layer), 0.5)


class TestWholeLayerMasked:
    def test_warns_once_per_set_and_names_the_layer(self) -> None:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 1))
        with torch.no_grad():
            model.get_parameter("2.weight").mul_(1e-3)
        with pytest.warns(UserWarning, match=r"masks every entry of '2\.weight'"):
            wrapper = SelfDamagingWrapper(model, 0.3)
        assert not wrapper.masks.get_buffer("2.weight").any()  # reference: it is all gone
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            wrapper.refresh_mask()  # the same set: no second warning

    def test_efficientnet_constant_twin_is_reported(self) -> None:
        torch.manual_seed(0)
        with pytest.warns(UserWarning, match="masks every entry of"):
            w = SelfDamagingWrapper(torchvision.models.efficientnet_b0(), 0.9).train()
        assert w.damaged(torch.randn(2, 3, 32, 32)).abs().max() == 0


class TestSettingsInCheckpoint:
    def test_other_prune_ratio_is_an_error(self) -> None:
        torch.manual_seed(0)
        saved = SelfDamagingWrapper(nn.Sequential(nn.Conv2d(3, 4, 3)), 0.5)
        buffer = io.BytesIO()
        torch.save(saved.state_dict(), buffer)
        buffer.seek(0)
        state = torch.load(buffer, weights_only=True)
        other = SelfDamagingWrapper(nn.Sequential(nn.Conv2d(3, 4, 3)), 0.9)
        with pytest.raises(
            ValueError, match=r"prune_ratio: checkpoint 0\.5, wrapper 0\.9.*with the"
        ):
            other.load_state_dict(state)
        assert other.sparsity == pytest.approx(0.9, abs=0.03)  # nothing was copied
        same = SelfDamagingWrapper(nn.Sequential(nn.Conv2d(3, 4, 3)), 0.5)
        same.load_state_dict(state)
        assert torch.equal(same.masks.get_buffer("0.weight"), saved.masks.get_buffer("0.weight"))

    def test_adapter_checkpoint_carries_the_settings(self) -> None:
        def adapter(ratio: float) -> SimCLRAdapter:
            backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            return SimCLRAdapter(backbone, feature_dim=8, prune_ratio=ratio)

        state = adapter(0.5).state_dict()
        adapter(0.5).load_state_dict(state)
        with pytest.raises(ValueError, match=r"random_ratio: checkpoint 0\.0, wrapper 0\.1"):
            backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            SimCLRAdapter(backbone, 8, 0.5, random_ratio=0.1).load_state_dict(state)


class TestMovedModel:
    def test_model_double_is_a_clear_error(self) -> None:
        wrapper = SelfDamagingWrapper(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), 0.5)
        wrapper.model.double()
        with pytest.raises(RuntimeError, match=r"moved without its wrapper.*wrapper\.to"):
            wrapper.damaged(torch.randn(2, 3, 5, 5).double())
        wrapper.double()
        assert wrapper.damaged(torch.randn(2, 3, 5, 5).double()).dtype == torch.float64

    def test_model_to_device_is_a_clear_error(self) -> None:
        wrapper = SelfDamagingWrapper(nn.Sequential(nn.Conv2d(3, 4, 3)), 0.5, twin_norm=False)
        wrapper.model.to("meta")
        with pytest.raises(RuntimeError, match=r"0\.weight is torch\.float32 on meta.*on cpu"):
            wrapper.damaged(torch.randn(2, 3, 5, 5, device="meta"))


class TestCheckOptimizer:
    def test_names_the_twin_parameters_missing(self) -> None:
        wrapper = SelfDamagingWrapper(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), 0.5)
        wrapper.check_optimizer(torch.optim.SGD(wrapper.parameters(), lr=0.1))
        with pytest.raises(
            ValueError, match=r"2 trainable .*twin_norms\.1\.weight, twin_norms\.1\.bias"
        ):
            wrapper.check_optimizer(torch.optim.SGD(wrapper.model.parameters(), lr=0.1))
