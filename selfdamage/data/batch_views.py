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
    """Random resized crop, flip and brightness/contrast jitter for a batch of images.

    Each image gets its own crop, flip and jitter, drawn from ``generator`` when one is
    given (seed it for reproducible views). Crops follow torchvision's
    ``RandomResizedCrop`` (area in ``[min_scale, 1]``, aspect ratio in ``[3/4, 4/3]``,
    bilinear resampling); jitter follows SimCLR's colour jitter without the hue and
    saturation parts, which do nothing on gray images.

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
    ) -> None:
        super().__init__()
        check_int("size", size, 1, what="a positive integer")
        check_real("min_scale", min_scale, 0, 1, low_open=True)
        for name, value in (("flip_prob", flip_prob), ("jitter_prob", jitter_prob)):
            check_real(name, value, 0, 1)
        for name, value in (("brightness", brightness), ("contrast", contrast)):
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
        views = torch.where(jitter, jittered, views)
        return (views - self.mean) / self.std

    def extra_repr(self) -> str:
        return (
            f"size={self.size}, min_scale={self.min_scale}, flip_prob={self.flip_prob}, "
            f"jitter_prob={self.jitter_prob}, brightness={self.brightness}, "
            f"contrast={self.contrast}"
        )
