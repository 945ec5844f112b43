from __future__ import annotations

import pytest
import torch

from selfdamage.data.batch_views import BatchViews, _gaussian_blur


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


class TestColourAndBlur:
    """The augmentations of colour and larger images (off by default)."""

    def _plain(self, **kwargs: float) -> BatchViews:
        # No crop change (min_scale 1 still draws an aspect ratio: use a constant image).
        options = {"flip_prob": 0.0, "jitter_prob": 0.0, "mean": (0, 0, 0), "std": (1, 1, 1)}
        return BatchViews(8, min_scale=1.0, **(options | kwargs))  # type: ignore[arg-type]

    def test_grayscale_is_the_luma(self) -> None:
        colour = torch.tensor([0.2, 0.6, 1.0]).view(1, 3, 1, 1).expand(4, 3, 8, 8)
        out = self._plain(grayscale_prob=1.0)(colour, generator=gen())
        luma = 0.299 * 0.2 + 0.587 * 0.6 + 0.114 * 1.0  # ITU-R 601, by hand
        torch.testing.assert_close(out, torch.full_like(out, luma))

    def test_saturation_keeps_gray_gray(self) -> None:
        gray = torch.full((4, 3, 8, 8), 0.4)
        out = self._plain(jitter_prob=1.0, brightness=0.0, contrast=0.0, saturation=0.9)(
            gray, generator=gen()
        )
        torch.testing.assert_close(out, gray)

    def test_saturation_scales_the_distance_to_gray(self) -> None:
        colour = torch.tensor([0.3, 0.5, 0.7]).view(1, 3, 1, 1).expand(64, 3, 8, 8)
        out = self._plain(jitter_prob=1.0, brightness=0.0, contrast=0.0, saturation=0.5)(
            colour, generator=gen()
        )
        luma = 0.299 * 0.3 + 0.587 * 0.5 + 0.114 * 0.7  # nothing reaches 0 or 1: no clamping
        factor = (out[:, 0, 0, 0] - luma) / (0.3 - luma)  # the same factor for every channel
        torch.testing.assert_close((out[:, 2, 0, 0] - luma) / (0.7 - luma), factor)
        assert factor.min() >= 0.5 - 1e-5 and factor.max() <= 1.5 + 1e-5

    def test_blur_of_an_impulse_is_a_normalized_symmetric_gaussian(self) -> None:
        image = torch.zeros(1, 3, 64, 64)
        image[:, :, 32, 32] = 1.0
        out = _gaussian_blur(image, torch.tensor([1.5]), 64)
        assert float(out[0, 0].sum()) == pytest.approx(1.0, abs=1e-5)
        radius = 64 // 20
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-(offsets**2) / (2 * 1.5**2))
        kernel /= kernel.sum()
        expected = kernel.view(-1, 1) * kernel.view(1, -1)  # separable, by hand
        window = out[0, 0, 32 - radius : 33 + radius, 32 - radius : 33 + radius]
        torch.testing.assert_close(window, expected)

    def test_default_options_draw_nothing_more(self) -> None:
        # The new options off: the generator is left where the old views left it.
        images = torch.rand(8, 3, 16, 16)
        plain, with_options = gen(), gen()
        BatchViews(16)(images, generator=plain)
        BatchViews(16, saturation=0.0, grayscale_prob=0.0, blur_prob=0.0)(
            images, generator=with_options
        )
        assert torch.equal(plain.get_state(), with_options.get_state())
        BatchViews(16, blur_prob=0.5)(images, generator=with_options)
        BatchViews(16)(images, generator=plain)
        assert not torch.equal(plain.get_state(), with_options.get_state())

    @pytest.mark.parametrize("name", ["grayscale_prob", "blur_prob"])
    def test_bad_probability(self, name: str) -> None:
        with pytest.raises(ValueError, match=name):
            BatchViews(16, **{name: 1.5})  # type: ignore[arg-type]
