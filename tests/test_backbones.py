from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from selfdamage.backbones import cifar_resnet18


class TestCifarResNet18:
    def test_width_64_matches_torchvision_resnet18_parameter_count(self) -> None:
        # torchvision's ResNet-18 without its 7x7 stem and classifier, with a 3x3 stem
        # instead, has exactly the parameters of the CIFAR variant.
        reference = torchvision.models.resnet18()
        reference.conv1 = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        reference.fc = nn.Identity()
        ours = cifar_resnet18()
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        assert count(ours) == count(reference)
        assert len([m for m in ours.modules() if isinstance(m, nn.Conv2d)]) == 20

    def test_keeps_resolution_in_first_stage(self) -> None:
        backbone = cifar_resnet18(width=8, in_channels=1)
        seen = []
        backbone.layer1.register_forward_hook(lambda m, i, o: seen.append(o.shape))
        out = backbone(torch.randn(2, 1, 28, 28))
        assert seen[0] == (2, 8, 28, 28)  # no stride-2 stem, no max-pool
        assert out.shape == (2, 64) and backbone.feature_dim == 64

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"width": 0}, ValueError, "width must be a positive integer, got width=0"),
            ({"in_channels": 2.5}, TypeError, "in_channels must be an int, got in_channels=2.5"),
            ({"width": True}, TypeError, "width must be an int, got width=True"),
        ],
    )
    def test_bad_arguments(self, kwargs: dict[str, object], error: type, match: str) -> None:
        with pytest.raises(error, match=match):
            cifar_resnet18(**kwargs)  # type: ignore[arg-type]
