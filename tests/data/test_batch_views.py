from __future__ import annotations

import pytest
import torch

from selfdamage.data.batch_views import BatchViews


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TestBatchViews:
    def test_crops_stay_inside_the_image(self) -> None:
        # A constant image stays constant under any crop that never leaves the image
        # (grid_sample would pad with zeros outside).
        views = BatchViews(16, flip_prob=0.0, jitter_prob=0.0, mean=(0.1,), std=(0.5,))
        out = views(torch.full((64, 1, 28, 28), 0.7), generator=gen())
        torch.testing.assert_close(out, torch.full_like(out, (0.7 - 0.1) / 0.5))

    def test_crop_area_within_range(self) -> None:
        # On ramps x/W and y/H, the spread of a view's values is the crop's width and
        # height; their product is the crop area, in [min_scale, 1] up to resampling.
        side = 64
        ramp = torch.linspace(0, 1, side)
        images = torch.stack([ramp.expand(side, side), ramp.view(-1, 1).expand(side, side)])
        images = images.unsqueeze(0).repeat(200, 1, 1, 1)
        views = BatchViews(
            side, min_scale=0.3, flip_prob=0.0, jitter_prob=0.0, mean=(0, 0), std=(1, 1)
        )
        out = views(images, generator=gen())
        width = out[:, 0].amax((1, 2)) - out[:, 0].amin((1, 2))
        height = out[:, 1].amax((1, 2)) - out[:, 1].amin((1, 2))
        area = width * height
        assert area.min() > 0.3 * 0.9 and area.max() <= 1.0 + 1e-6
        assert area.max() > 0.8 and area.min() < 0.5  # the range is actually covered

    @pytest.mark.parametrize(("flip_prob", "left_brighter"), [(0.0, False), (1.0, True)])
    def test_flip(self, flip_prob: float, left_brighter: bool) -> None:
        image = torch.zeros(8, 1, 32, 32)
        image[..., 16:] = 1.0  # right half white
        views = BatchViews(32, min_scale=0.9, flip_prob=flip_prob, jitter_prob=0.0)
        out = views(image, generator=gen())
        left, right = out[..., :16].mean(), out[..., 16:].mean()
        assert bool(left > right) is left_brighter

    def test_brightness_jitter_range(self) -> None:
        views = BatchViews(8, flip_prob=0.0, jitter_prob=1.0, brightness=0.4, contrast=0.0)
        out = views(torch.full((500, 1, 8, 8), 0.5), generator=gen())
        per_image = out.mean((1, 2, 3))
        assert per_image.min() >= 0.5 * 0.6 - 1e-6 and per_image.max() <= 0.5 * 1.4 + 1e-6
        assert per_image.std() > 0.05

    def test_seeded(self) -> None:
        views = BatchViews(20)
        images = torch.rand(4, 3, 24, 24)
        assert torch.equal(views(images, generator=gen(3)), views(images, generator=gen(3)))
        assert not torch.equal(views(images, generator=gen(3)), views(images, generator=gen(4)))

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"size": 0}, "size must be a positive integer"),
            ({"size": 8, "min_scale": 0.0}, r"min_scale must be in \(0, 1\]"),
            ({"size": 8, "flip_prob": 2.0}, r"flip_prob must be in \[0, 1\]"),
            ({"size": 8, "brightness": 1.0}, r"brightness must be in \[0, 1\)"),
            ({"size": 8, "mean": (0.0, 0.0), "std": (1.0,)}, "one entry per channel"),
        ],
    )
    def test_bad_arguments(self, kwargs: dict[str, object], match: str) -> None:
        with pytest.raises(ValueError, match=match):
            BatchViews(**kwargs)  # type: ignore[arg-type]
