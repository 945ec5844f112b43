from __future__ import annotations

from typing import Any, cast

import pytest
import torch
from PIL import Image

from selfdamage.data import FASHION_MNIST_MEAN, FASHION_MNIST_STD, small_grayscale_transform


def _views(image: Image.Image, **kwargs: Any) -> list[torch.Tensor]:
    return cast(list[torch.Tensor], small_grayscale_transform(**kwargs)(image))


def _image(seed: int = 0) -> Image.Image:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (28, 28), dtype=torch.uint8, generator=generator)
    return Image.fromarray(pixels.numpy())


class TestSmallGrayscaleTransform:
    def test_two_rgb_views_with_equal_channels(self) -> None:
        views = _views(_image())
        assert len(views) == 2
        for view in views:
            assert view.dtype == torch.float32
            assert view.shape == (3, 28, 28)
            assert torch.equal(view[0], view[1])
            assert torch.equal(view[0], view[2])

    def test_one_channel_and_input_size(self) -> None:
        view0, view1 = _views(_image(), input_size=16, channels=1)
        assert view0.shape == view1.shape == (1, 16, 16)

    def test_views_are_random(self) -> None:
        torch.manual_seed(0)
        view0, view1 = _views(_image())
        assert not torch.equal(view0, view1)

    def test_normalization(self) -> None:
        # A black image stays black under crop, flip and jitter: (0 - mean) / std.
        view, _ = _views(Image.new("L", (28, 28)))
        expected = -FASHION_MNIST_MEAN / FASHION_MNIST_STD
        assert torch.allclose(view, torch.full_like(view, expected))

    def test_bad_channels(self) -> None:
        with pytest.raises(ValueError, match=r"channels must be 1 or 3, got channels=2"):
            small_grayscale_transform(channels=2)
