"""Two-view SimCLR augmentations of PIL images, built from lightly's SimCLR views.

:func:`small_grayscale_transform` suits 28x28 grayscale images; :func:`image_views` any
size and mode, with the augmentations scaled to the size as SimCLR does
(:func:`view_settings`).
"""

from __future__ import annotations

from collections.abc import Sequence

from lightly.transforms import SimCLRViewTransform
from lightly.transforms.multi_view_transform import MultiViewTransform
from PIL import Image
from torchvision import transforms as T

__all__ = [
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "image_views",
    "small_grayscale_transform",
    "view_settings",
]

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


LARGE_IMAGE = 64
"""Side in pixels from which views get Gaussian blur and crops down to 8% of the area."""


def view_settings(input_size: int, *, color: bool) -> dict[str, float]:
    """SimCLR's augmentation strengths for views of ``input_size`` pixels [0].

    Small images (CIFAR's 32 pixels, below ``LARGE_IMAGE``) get crops of at least 20%
    of the area and no blur, which would erase them; larger ones SimCLR's ImageNet
    settings: crops down to 8% and Gaussian blur with probability 0.5. Colour images
    also get saturation jitter and a random grayscale conversion (probability 0.2).

    - [0] SimCLR, 2020, https://arxiv.org/abs/2002.05709

    Args:
        input_size: Side of the views, in pixels.
        color: Whether the images are in colour.

    Returns:
        ``min_scale``, ``blur_prob``, ``saturation`` and ``grayscale_prob``, as
        :class:`~selfdamage.data.batch_views.BatchViews` takes them.

    Examples:
        >>> view_settings(32, color=True)
        {'min_scale': 0.2, 'blur_prob': 0.0, 'saturation': 0.4, 'grayscale_prob': 0.2}
        >>> view_settings(224, color=False)["blur_prob"]
        0.5
    """
    large = input_size >= LARGE_IMAGE
    return {
        "min_scale": 0.08 if large else 0.2,
        "blur_prob": 0.5 if large else 0.0,
        "saturation": 0.4 if color else 0.0,
        "grayscale_prob": 0.2 if color else 0.0,
    }


def image_views(
    input_size: int,
    *,
    color: bool = True,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> MultiViewTransform:
    """Two SimCLR views [0] of a PIL image of any size and mode, scaled to ``input_size``.

    Each view: random resized crop, horizontal flip, colour jitter (strength 0.5, with
    probability 0.8), and the size-dependent settings of :func:`view_settings` (blur
    from ``LARGE_IMAGE`` pixels; grayscale conversion for colour images). The image
    is converted to RGB (``color=True``) or grayscale first, so mixed inputs give views
    of one shape.

    - [0] SimCLR, 2020, https://arxiv.org/abs/2002.05709

    Args:
        input_size: Side of the views, in pixels.
        color: RGB views of 3 channels, or grayscale views of 1.
        mean: Per-channel mean for the normalization (ImageNet's, or 0.5 for gray, by
            default).
        std: Per-channel standard deviation for the normalization.

    Returns:
        A transform mapping one PIL image to a list of two float tensors of shape
        ``(channels, input_size, input_size)``.

    Examples:
        >>> from PIL import Image
        >>> view0, view1 = image_views(64)(Image.new("RGB", (100, 80)))
        >>> view0.shape
        torch.Size([3, 64, 64])
        >>> image_views(28, color=False)(Image.new("L", (28, 28)))[0].shape
        torch.Size([1, 28, 28])
    """
    default_mean, default_std = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) if color else (
        (0.5,), (0.5,))  # fmt: skip
    settings = view_settings(input_size, color=color)
    view = SimCLRViewTransform(
        input_size=input_size,
        cj_strength=0.5,
        min_scale=settings["min_scale"],
        random_gray_scale=settings["grayscale_prob"],
        gaussian_blur=settings["blur_prob"],
        normalize={
            "mean": list(default_mean if mean is None else mean),
            "std": list(default_std if std is None else std),
        },
    )
    mode = "RGB" if color else "L"
    one_view = T.Compose([_Convert(mode), view])
    return MultiViewTransform(transforms=[one_view, one_view])


class _Convert:
    """Converts a PIL image to a mode (a class, not a lambda, so that workers can pickle it)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __call__(self, image: Image.Image) -> Image.Image:
        return image.convert(self.mode)
