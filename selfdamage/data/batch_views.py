"""SimCLR-style views of a whole image batch at once, on the batch's device.

Per-image PIL transforms cost about a millisecond per view pair on a CPU core, as much
as the forward pass of a small network. :class:`BatchViews` draws the same kinds of
augmentation (random resized crop, horizontal flip, brightness and contrast jitter) for
every image of a batch in a few tensor operations, so a small study on a CPU (or a large
one on a GPU) is not bound by data loading.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfdamage._checks import check_int, check_real

__all__ = ["BatchViews"]


class BatchViews(nn.Module):
    """Random resized crop, flip, colour jitter, grayscale and blur for a batch of images.

    Each image gets its own crop, flip and jitter, drawn from ``generator`` when one is
    given (seed it for reproducible views). Crops follow torchvision's
    ``RandomResizedCrop`` (area in ``[min_scale, 1]``, aspect ratio in ``[3/4, 4/3]``,
    bilinear resampling); jitter follows SimCLR's colour jitter without the hue and
    saturation parts by default, which do nothing on gray images. For colour images of any
    size, :func:`~selfdamage.data.view_settings` gives SimCLR's further augmentations:
    saturation jitter, random grayscale and, for larger images, Gaussian blur (the hue
    jitter is left out). Each is drawn only when enabled, so the views of the default
    settings do not change.

    - [0] SimCLR, 2020, https://arxiv.org/abs/2002.05709

    Args:
        size: Side of the output views, in pixels.
        min_scale: Smallest crop area as a fraction of the image, in ``(0, 1]``.
        flip_prob: Probability of a horizontal flip.
        jitter_prob: Probability that an image gets brightness and contrast jitter.
        brightness: Brightness factor drawn from ``[1 - brightness, 1 + brightness]``.
        contrast: Contrast factor drawn from ``[1 - contrast, 1 + contrast]``.
        mean: Per-channel mean for the final normalization.
        std: Per-channel standard deviation for the final normalization.
        saturation: Saturation factor drawn from ``[1 - saturation, 1 + saturation]``
            (colour images; part of the jitter).
        grayscale_prob: Probability that a view is turned to gray (colour images).
        blur_prob: Probability of a Gaussian blur with a kernel of a tenth of ``size``
            and a standard deviation drawn from ``blur_sigma`` (SimCLR's, in pixels of a
            224-pixel view, scaled to ``size``).
        blur_sigma: Range of the blur's standard deviation.

    Raises:
        ValueError: If an argument is out of range.

    Examples:
        >>> views = BatchViews(size=28, mean=(0.286,), std=(0.353,))
        >>> images = torch.rand(16, 1, 28, 28)  # floats in [0, 1]
        >>> gen = torch.Generator().manual_seed(0)
        >>> views(images, generator=gen).shape
        torch.Size([16, 1, 28, 28])
    """

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        size: int,
        *,
        min_scale: float = 0.2,
        flip_prob: float = 0.5,
        jitter_prob: float = 0.8,
        brightness: float = 0.4,
        contrast: float = 0.4,
        mean: tuple[float, ...] = (0.0,),
        std: tuple[float, ...] = (1.0,),
        saturation: float = 0.0,
        grayscale_prob: float = 0.0,
        blur_prob: float = 0.0,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
    ) -> None:
        super().__init__()
        check_int("size", size, 1, what="a positive integer")
        check_real("min_scale", min_scale, 0, 1, low_open=True)
        for name, value in (
            ("flip_prob", flip_prob),
            ("jitter_prob", jitter_prob),
            ("grayscale_prob", grayscale_prob),
            ("blur_prob", blur_prob),
        ):
            check_real(name, value, 0, 1)
        for name, value in (
            ("brightness", brightness),
            ("contrast", contrast),
            ("saturation", saturation),
        ):
            check_real(name, value, 0, 1, high_open=True)
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(
                f"mean and std must have one entry per channel and std > 0, got "
                f"mean={mean!r}, std={std!r}."
            )
        self.size = size
        self.min_scale = min_scale
        self.flip_prob = flip_prob
        self.jitter_prob = jitter_prob
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.grayscale_prob = grayscale_prob
        self.blur_prob = blur_prob
        if not 0 < blur_sigma[0] <= blur_sigma[1]:
            raise ValueError(
                "blur_sigma must be (low, high) with 0 < low <= high, got "
                f"blur_sigma={blur_sigma!r}."
            )
        self.blur_sigma = blur_sigma
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One random view of every image.

        Args:
            images: Float images in ``[0, 1]``, shape ``(N, C, H, W)``.
            generator: Random generator on the images' device.

        Returns:
            Normalized views, shape ``(N, C, size, size)``.
        """
        n, device = images.shape[0], images.device

        def uniform(low: float, high: float) -> Tensor:
            return torch.rand(n, device=device, generator=generator) * (high - low) + low

        # Crop: area fraction and aspect ratio as torchvision's RandomResizedCrop.
        area = uniform(self.min_scale, 1.0)
        ratio = torch.exp(uniform(math.log(3 / 4), math.log(4 / 3)))
        width = torch.sqrt(area * ratio).clamp(max=1.0)
        height = torch.sqrt(area / ratio).clamp(max=1.0)
        center_x = (uniform(-1.0, 1.0)) * (1.0 - width)
        center_y = (uniform(-1.0, 1.0)) * (1.0 - height)
        flip = torch.where(uniform(0.0, 1.0) < self.flip_prob, -1.0, 1.0)
        theta = torch.zeros(n, 2, 3, device=device, dtype=images.dtype)
        theta[:, 0, 0] = width * flip
        theta[:, 0, 2] = center_x
        theta[:, 1, 1] = height
        theta[:, 1, 2] = center_y
        grid = F.affine_grid(theta, [n, images.shape[1], self.size, self.size], align_corners=False)
        views = F.grid_sample(
            images, grid, mode="bilinear", padding_mode="border", align_corners=False
        )

        # Brightness, then contrast around each image's mean, with probability jitter_prob.
        jitter = (uniform(0.0, 1.0) < self.jitter_prob).view(n, 1, 1, 1)
        scale_b = uniform(1 - self.brightness, 1 + self.brightness).view(n, 1, 1, 1)
        scale_c = uniform(1 - self.contrast, 1 + self.contrast).view(n, 1, 1, 1)
        jittered = (views * scale_b).clamp(0.0, 1.0)
        gray_mean = jittered.mean(dim=(1, 2, 3), keepdim=True)
        jittered = ((jittered - gray_mean) * scale_c + gray_mean).clamp(0.0, 1.0)
        if self.saturation > 0:
            scale_s = uniform(1 - self.saturation, 1 + self.saturation).view(n, 1, 1, 1)
            gray = _luminance(jittered)
            jittered = ((jittered - gray) * scale_s + gray).clamp(0.0, 1.0)
        views = torch.where(jitter, jittered, views)
        if self.grayscale_prob > 0:
            to_gray = (uniform(0.0, 1.0) < self.grayscale_prob).view(n, 1, 1, 1)
            views = torch.where(to_gray, _luminance(views).expand_as(views), views)
        if self.blur_prob > 0:
            blur = (uniform(0.0, 1.0) < self.blur_prob).view(n, 1, 1, 1)
            low, high = self.blur_sigma
            sigma = uniform(low, high) * self.size / 224
            views = torch.where(blur, _gaussian_blur(views, sigma, self.size), views)
        return (views - self.mean) / self.std

    def extra_repr(self) -> str:
        return (
            f"size={self.size}, min_scale={self.min_scale}, flip_prob={self.flip_prob}, "
            f"jitter_prob={self.jitter_prob}, brightness={self.brightness}, "
            f"contrast={self.contrast}, saturation={self.saturation}, "
            f"grayscale_prob={self.grayscale_prob}, blur_prob={self.blur_prob}"
        )


def _luminance(images: Tensor) -> Tensor:
    """ITU-R 601 luma of RGB images ``(N, 3, H, W)`` as ``(N, 1, H, W)``; gray as it is."""
    if images.shape[1] != 3:
        return images.mean(dim=1, keepdim=True)
    weights = images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def _gaussian_blur(images: Tensor, sigma: Tensor, size: int) -> Tensor:
    """Blurs image ``i`` with a separable Gaussian of std ``sigma[i]``, kernel ~size/10."""
    n, c, h, w = images.shape
    radius = max(1, size // 20)
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-(offsets.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)
    flat = images.reshape(1, n * c, h, w)
    flat = F.pad(flat, (radius, radius, 0, 0), mode="reflect")
    flat = F.conv2d(flat, kernel.view(n * c, 1, 1, -1), groups=n * c)
    flat = F.pad(flat, (0, 0, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernel.view(n * c, 1, -1, 1), groups=n * c)
    return flat.view(n, c, h, w)
