"""Partial loads: ``load_state_dict(strict=False)`` and loads of ``wrapper.masks`` alone."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

from selfdamage import SelfDamagingWrapper
from selfdamage.adapters import SimCLRAdapter
from tests.damage.helpers import channel_wrapper
from tests.damage.helpers import images as channel_images
from tests.test_wrapper import SmallNet, images, reference_twin, twin_state


def clone_state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def trained_wrapper(seed: int = 0) -> SelfDamagingWrapper:
    """A wrapper whose twin statistics moved away from the dense ones."""
    torch.manual_seed(seed)
    wrapper = SelfDamagingWrapper(SmallNet(), prune_ratio=0.6)
    wrapper.damaged(images())
    return wrapper


class TestNonStrictLoad:
    def test_pretrained_backbone_loads_and_the_twin_state_stays(self) -> None:
        wrapper = trained_wrapper()
        before = clone_state(wrapper)
        torch.manual_seed(1)
        pretrained = SmallNet().state_dict()
        result = wrapper.load_state_dict(
            {f"model.{k}": v for k, v in pretrained.items()}, strict=False
        )
        # PyTorch's answer for a module with these keys: everything outside model.* missing.
        assert sorted(result.missing_keys) == sorted(
            k for k in before if not k.startswith("model.")
        )
        assert result.unexpected_keys == []
        for key, value in wrapper.state_dict().items():
            expected = pretrained[key[len("model.") :]] if key.startswith("model.") else before[key]
            assert torch.equal(value, expected), key
        wrapper.eval()
        x = images()
        masks = {k[len("masks.") :]: v for k, v in before.items() if k.startswith("masks.")}
        expected = reference_twin(wrapper.model, masks, twin_state(wrapper), x, train=False)
        torch.testing.assert_close(wrapper.damaged(x), expected, rtol=1e-6, atol=1e-6)

    def test_extra_and_no_keys_are_reported_not_raised(self) -> None:
        wrapper = trained_wrapper()
        before = clone_state(wrapper)
        result = wrapper.load_state_dict({**before, "masks.extra": torch.ones(1)}, strict=False)
        assert (result.missing_keys, result.unexpected_keys) == ([], ["masks.extra"])
        result = wrapper.load_state_dict({}, strict=False)
        # What PyTorch reports for the bare model (BatchNorm fills in num_batches_tracked).
        bare = SmallNet().load_state_dict({}, strict=False).missing_keys
        own = [k for k in before if not k.startswith("model.")]
        assert sorted(result.missing_keys) == sorted(own + [f"model.{k}" for k in bare])
        assert result.unexpected_keys == []
        for key, value in wrapper.state_dict().items():
            assert torch.equal(value, before[key]), key

    def test_nested_load_without_masks(self) -> None:
        # The wrapper inside an adapter inside another module (a LightningModule, say).
        torch.manual_seed(0)
        adapter = SimCLRAdapter(nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1)), 8, 0.5)
        outer = nn.Sequential(adapter)
        before = clone_state(outer)
        torch.manual_seed(1)
        other = nn.Sequential(
            SimCLRAdapter(nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1)), 8, 0.5)
        )
        given = {k: v for k, v in other.state_dict().items() if ".masks." not in k}
        result = outer.load_state_dict(given, strict=False)
        assert sorted(result.missing_keys) == sorted(k for k in before if ".masks." in k)
        assert result.unexpected_keys == []
        for key, value in outer.state_dict().items():
            assert torch.equal(value, before[key] if ".masks." in key else given[key]), key
        with pytest.raises(
            RuntimeError, match=r'Missing key\(s\) in state_dict: "0\.wrapper\.masks'
        ):
            outer.load_state_dict(given)  # strict: PyTorch's own error

    def test_shape_mismatch_still_raises_before_anything_is_copied(self) -> None:
        wrapper = trained_wrapper()
        before = clone_state(wrapper)
        given = {k: torch.zeros_like(v) for k, v in before.items() if k.startswith("model.")}
        given["model.fc.weight"] = torch.zeros(3, 16)
        with pytest.raises(ValueError, match=r"shape mismatch: model\.fc\.weight: checkpoint"):
            wrapper.load_state_dict(given, strict=False)
        for key, value in wrapper.state_dict().items():
            assert torch.equal(value, before[key]), key


class TestMasksOnlyLoad:
    def test_compact_twin_follows_masks_loaded_into_wrapper_masks(self) -> None:
        a, b = channel_wrapper(), channel_wrapper()
        with torch.no_grad():  # other weights, hence other masks
            b.model.stem[0].weight.mul_(torch.linspace(0.1, 2, 8).view(8, 1, 1, 1))
            b.model.block[0].weight.mul_(torch.linspace(2, 0.1, 12).view(12, 1, 1, 1))
        b.refresh_mask()
        masked = channel_wrapper(compact=False)  # the reference: masks the twin at each pass
        assert a.damage.compact_active
        x = channel_images()
        for wrapper in (a, b, masked):
            wrapper.eval()
        with torch.no_grad():
            a.damaged(x)  # the first twin pass: the copy is built and checked
            a.masks.load_state_dict(b.masks.state_dict())
            masked.masks.load_state_dict(b.masks.state_dict())
            torch.testing.assert_close(a.damaged(x), masked.damaged(x), rtol=1e-5, atol=1e-6)

    def test_copies_notify_their_own_strategy(self) -> None:
        a, b = channel_wrapper(), channel_wrapper()
        with torch.no_grad():
            b.model.stem[0].weight.mul_(torch.linspace(0.1, 2, 8).view(8, 1, 1, 1))
        b.refresh_mask()
        copied = copy.deepcopy(a)
        masked = channel_wrapper(compact=False)
        x = channel_images()
        for wrapper in (a, copied, masked):
            wrapper.eval()
        with torch.no_grad():
            expected_a = a.damaged(x)
            copied.damaged(x)
            copied.masks.load_state_dict(b.masks.state_dict())
            masked.masks.load_state_dict(b.masks.state_dict())
            torch.testing.assert_close(copied.damaged(x), masked.damaged(x), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(a.damaged(x), expected_a, rtol=0, atol=0)


class TestFullyMaskedLoad:
    """A loaded mask that removes a whole tensor warns as a refresh that computes one does."""

    MESSAGE = r"the twin masks every entry of 'conv1\.weight'"

    def test_refresh_warns(self) -> None:  # the reference behaviour
        wrapper = SelfDamagingWrapper(SmallNet(), 0.5)
        with torch.no_grad():
            wrapper.model.conv1.weight.mul_(1e-6)  # all under the global threshold
        with pytest.warns(UserWarning, match=self.MESSAGE):
            wrapper.refresh_mask()

    @pytest.mark.parametrize("assign", [False, True])
    @pytest.mark.parametrize("masks_only", [False, True])
    def test_load_warns(self, assign: bool, masks_only: bool) -> None:
        torch.manual_seed(0)
        wrapper = SelfDamagingWrapper(SmallNet(), 0.5)
        state = clone_state(wrapper.masks if masks_only else wrapper)
        key = "conv1.weight" if masks_only else "masks.conv1.weight"
        state[key] = torch.zeros_like(state[key])
        target = wrapper.masks if masks_only else wrapper
        with pytest.warns(UserWarning, match=self.MESSAGE):
            target.load_state_dict(state, assign=assign)
        assert not bool(wrapper.masks.get_buffer("conv1.weight").any())

    def test_load_of_partial_masks_is_silent(self, recwarn: pytest.WarningsRecorder) -> None:
        torch.manual_seed(0)
        wrapper = SelfDamagingWrapper(SmallNet(), 0.5)
        wrapper.load_state_dict(clone_state(wrapper))
        assert not [w for w in recwarn if "masks every entry" in str(w.message)]
