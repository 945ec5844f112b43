from __future__ import annotations

import pytest
import torch
from torch import nn

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
