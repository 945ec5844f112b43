"""WeightDamage: the paper's strategy on its own, and its twin pass against a hand-masked copy."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

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


def hand_masked_copy(wrapper: SelfDamagingWrapper) -> nn.Module:
    """A separate copy of the model: weights multiplied by their masks, the twin's BN state."""
    twin = copy.deepcopy(wrapper.model)
    with torch.no_grad():
        for name, mask in wrapper.named_masks():
            twin.get_parameter(name).mul_(mask)
        for name, module in twin.named_modules():
            if isinstance(module, _BatchNorm):
                state = wrapper.twin_norms.get_submodule(name)
                for attr in ("weight", "bias", "running_mean", "running_var"):
                    getattr(module, attr).copy_(getattr(state, attr))
    return twin


class TestTwinPass:
    """The default ``twin_forward`` is exactly the hand-masked copy, values and gradients."""

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    @pytest.mark.parametrize("train", [True, False])
    def test_resnet_exact(self, train: bool, dtype: torch.dtype) -> None:
        torch.manual_seed(0)
        model = torchvision.models.resnet18(num_classes=8)
        wrapper = SelfDamagingWrapper(model, prune_ratio=0.9).to(dtype).train(train)
        with torch.no_grad():  # twin statistics unlike the dense ones
            for name, buffer in wrapper.twin_norms.named_buffers():
                if "running" in name:
                    buffer.copy_(torch.rand_like(buffer) + 0.5)
        twin = hand_masked_copy(wrapper).train(train)
        x = torch.randn(2, 3, 32, 32, dtype=dtype)

        out, expected = wrapper.damaged(x), twin(x)
        assert torch.equal(out, expected)
        grad = torch.randn_like(out)
        out.backward(grad)
        expected.backward(grad)
        for name, mask in wrapper.named_masks():  # the shared weight gets grad_twin * mask
            got, by_hand = model.get_parameter(name).grad, twin.get_parameter(name).grad
            assert got is not None and by_hand is not None
            assert torch.equal(got, by_hand * mask), name
        for name, param in wrapper.twin_norms.named_parameters():
            got, by_hand = param.grad, twin.get_parameter(name).grad
            assert got is not None and by_hand is not None
            assert torch.equal(got, by_hand), name
        for name, buffer in wrapper.twin_norms.named_buffers():
            assert torch.equal(buffer, twin.get_buffer(name)), name
