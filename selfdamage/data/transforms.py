"""Two-view augmentations for small grayscale images, built from lightly's SimCLR views."""

from __future__ import annotations

from lightly.transforms import SimCLRViewTransform
from lightly.transforms.multi_view_transform import MultiViewTransform
from torchvision import transforms as T

__all__ = ["FASHION_MNIST_MEAN", "FASHION_MNIST_STD", "small_grayscale_transform"]

FASHION_MNIST_MEAN = 0.2860
"""Mean pixel value of the Fashion-MNIST training set, in ``[0, 1]``."""

FASHION_MNIST_STD = 0.3530
"""Standard deviation of the Fashion-MNIST training pixels, in ``[0, 1]``."""


def small_grayscale_transform(
    input_size: int = 28,
    *,
    channels: int = 3,
    min_scale: float = 0.2,
    mean: float = FASHION_MNIST_MEAN,
    std: float = FASHION_MNIST_STD,
) -> MultiViewTransform:
    """Two SimCLR views [0] of a small grayscale PIL image, cheap enough for a CPU.

    Each view is lightly's ``SimCLRViewTransform`` with the settings that suit 28x28
    grayscale images: random resized crop (scale ``[min_scale, 1]``), horizontal flip,
    brightness and contrast jitter at lightly's small-image strength (0.4, with
    probability 0.8), no grayscale conversion (the image is gray already) and no
    Gaussian blur (it erases a 28-pixel image and costs the most CPU). Saturation and
    hue jitter do nothing on gray images.

    The gray channel is repeated ``channels`` times before the views are made, so with
    the default ``channels=3`` any backbone built for RGB input (torchvision, lightly,
    timm) takes the views unchanged; use ``channels=1`` with a backbone whose first
    convolution takes one channel.

    - [0] SimCLR, 2020, https://arxiv.org/abs/2002.05709

    Args:
        input_size: Side of the output views in pixels.
        channels: Channels of each view: 3 (gray repeated, the default) or 1.
        min_scale: Smallest crop area, as a fraction of the image.
        mean: Pixel mean used to normalize every channel (Fashion-MNIST's by default).
        std: Pixel standard deviation used to normalize every channel.

    Returns:
        A transform mapping one PIL image to a list of two float tensors of shape
        ``(channels, input_size, input_size)``.

    Raises:
        ValueError: If ``channels`` is not 1 or 3.

    Examples:
        >>> from PIL import Image
        >>> transform = small_grayscale_transform()
        >>> view0, view1 = transform(Image.new("L", (28, 28)))
        >>> view0.shape
        torch.Size([3, 28, 28])
    """
    if channels not in (1, 3):
        raise ValueError(
            f"channels must be 1 or 3, got channels={channels!r}; 3 repeats the gray "
            "channel for RGB backbones, 1 keeps it single."
        )
    view = SimCLRViewTransform(
        input_size=input_size,
        cj_strength=0.5,
        min_scale=min_scale,
        random_gray_scale=0.0,
        gaussian_blur=0.0,
        normalize={"mean": [mean] * channels, "std": [std] * channels},
    )
    one_view = T.Compose([T.Grayscale(num_output_channels=channels), view])
    return MultiViewTransform(transforms=[one_view, one_view])
