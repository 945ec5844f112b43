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


class TestInitialisation:
    """Initialised as torchvision's ResNet-18 and the SDCLR code's, not PyTorch's default."""

    def test_convolutions_are_he_normal_in_fan_out_mode(self) -> None:
        torch.manual_seed(0)
        ours = cifar_resnet18()
        for name, module in ours.named_modules():
            if isinstance(module, nn.Conv2d):
                out_channels, _, kh, kw = module.weight.shape
                expected = (2.0 / (out_channels * kh * kw)) ** 0.5  # He, fan_out, ReLU gain
                assert module.weight.std().item() == pytest.approx(expected, rel=0.05), name

    def test_deepest_block_has_torchvisions_weight_scale(self) -> None:
        # Same 512x512x3x3 shape in both networks: torchvision initialises it the same way.
        torch.manual_seed(0)
        reference = torchvision.models.resnet18().layer4[1].conv2.weight.std().item()
        ours = cifar_resnet18().layer4[1].conv2.weight.std().item()
        assert ours == pytest.approx(reference, rel=0.02)

    def test_first_mask_keeps_part_of_every_convolution(self) -> None:
        # Under PyTorch's default initialisation the first global threshold at 0.9 removed
        # all of layer4's 3x3 convolutions at width 8 (their weights were all small).
        torch.manual_seed(0)
        backbone = cifar_resnet18(width=8)
        weights = {
            n: m.weight.detach() for n, m in backbone.named_modules() if isinstance(m, nn.Conv2d)
        }
        flat = torch.cat([w.abs().flatten() for w in weights.values()])
        threshold = flat.sort().values[round(0.9 * flat.numel())]
        kept = {n: (w.abs() >= threshold).float().mean().item() for n, w in weights.items()}
        assert min(kept.values()) > 0.02, kept
