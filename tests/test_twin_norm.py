from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from selfdamage import SelfDamagingWrapper
from selfdamage.twin_norm import TwinNorm, has_running_stats


class TestHasRunningStats:
    @pytest.mark.parametrize(
        ("module", "expected"),
        [
            (nn.BatchNorm1d(4), True),
            (nn.BatchNorm2d(4), True),
            (nn.BatchNorm3d(4), True),
            (nn.SyncBatchNorm(4), True),
            (nn.BatchNorm2d(4, track_running_stats=False), False),
            (nn.LayerNorm(4), False),
            (nn.GroupNorm(2, 4), False),
            (nn.InstanceNorm2d(4), False),
            (nn.InstanceNorm2d(4, track_running_stats=True), True),
        ],
    )
    def test_kinds(self, module: nn.Module, expected: bool) -> None:
        assert has_running_stats(module) is expected


class TestTwinNorm:
    def test_copies_state_independently(self) -> None:
        bn = nn.BatchNorm2d(3)
        with torch.no_grad():
            bn.weight.copy_(torch.tensor([1.0, 2.0, 3.0]))
            bn.running_mean.copy_(torch.tensor([0.1, 0.2, 0.3]))
        twin = TwinNorm(bn)
        assert twin.weight is not None and twin.running_mean is not None
        assert twin.weight.tolist() == [1.0, 2.0, 3.0]
        assert twin.running_mean.tolist() == pytest.approx([0.1, 0.2, 0.3])
        assert twin.weight.data_ptr() != bn.weight.data_ptr()
        with torch.no_grad():
            twin.weight.zero_()
            twin.running_mean.zero_()
        assert bn.weight.tolist() == [1.0, 2.0, 3.0]
        assert isinstance(twin.weight, nn.Parameter) and twin.weight.requires_grad

    def test_substitutes_names(self) -> None:
        twin = TwinNorm(nn.BatchNorm1d(2))
        assert sorted(twin.substitutes("head.bn")) == [
            "head.bn.bias",
            "head.bn.num_batches_tracked",
            "head.bn.running_mean",
            "head.bn.running_var",
            "head.bn.weight",
        ]
        assert sorted(twin.substitutes("")) == [
            "bias",
            "num_batches_tracked",
            "running_mean",
            "running_var",
            "weight",
        ]

    def test_without_affine_or_statistics(self) -> None:
        twin = TwinNorm(nn.BatchNorm2d(2, affine=False, track_running_stats=False))
        assert twin.substitutes("bn") == {}
        assert not list(twin.parameters())


class TestInstanceNormWithRunningStats:
    @pytest.mark.parametrize("affine", [True, False])
    @pytest.mark.parametrize("twin_norm", [True, False])
    def test_twin_pass_leaves_the_dense_statistics(self, affine: bool, twin_norm: bool) -> None:
        torch.manual_seed(0)
        conv = nn.Conv2d(3, 4, 3, padding=1)
        norm = nn.InstanceNorm2d(4, affine=affine, track_running_stats=True, momentum=0.3)
        with torch.no_grad():
            norm.running_mean.uniform_(-1, 1)
            norm.running_var.uniform_(0.5, 2)
        wrapper = SelfDamagingWrapper(nn.Sequential(conv, norm), 0.5, twin_norm=twin_norm)
        twin = wrapper.twin_norms.get_submodule("1") if twin_norm else None
        start = {k: v.clone() for k, v in norm.state_dict().items()}
        x = torch.randn(2, 3, 6, 6)
        out = wrapper.damaged(x)

        # The twin pass written out: masked conv, instance norm on the twin's own buffers.
        mean, var = start["running_mean"].clone(), start["running_var"].clone()
        h = F.conv2d(x, conv.weight * wrapper.masks.get_buffer("0.weight"), conv.bias, padding=1)
        weight = None if twin is None else twin.weight
        bias = None if twin is None else twin.bias
        expected = F.instance_norm(h, mean, var, weight, bias, True, 0.3)
        torch.testing.assert_close(out, expected)
        for key, value in norm.state_dict().items():
            assert torch.equal(value, start[key]), key
        if twin is not None:
            torch.testing.assert_close(twin.running_mean, mean)
            torch.testing.assert_close(twin.running_var, var)
            assert not torch.equal(mean, start["running_mean"])
