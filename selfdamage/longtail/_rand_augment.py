"""BCL's RandAugment operation pool, on PIL images, with the authors' magnitude ranges.

The pool of the authors' ``data/randaug.py`` (``augment_list``): 15 operations, each with
a value range ``[low, high]``. A magnitude ``m`` in ``[0, 30]`` gives the value
``m / 30 * (high - low) + low`` (:func:`op_value`). Geometric operations flip the sign
of their value with probability 1/2; all randomness comes from the ``random.Random``
passed in, so a seeded generator gives the same image.

- ShearX, ShearY: shear, 0 .. 0.6 (random sign).
- TranslateX, TranslateY: shift as a fraction of the width or height, 0 .. 0.66
  (random sign).
- Rotate: degrees, 0 .. 60 (random sign).
- AutoContrast, Invert, Equalize: no value (range 0 .. 1, unused).
- Solarize: threshold, 0 .. 110; pixels at or above it are inverted.
- Posterize: bits kept, ``int(value)`` with the value in 4 .. 8.
- Contrast, Color, Brightness, Sharpness: enhancement factor, 0.1 .. 1.9 (1 leaves
  the image unchanged).
- Cutout: side of a filled square as a fraction of the width, 0 .. 0.4.

As in the authors' pool, Solarize's threshold rises with the magnitude (fewer pixels
inverted) and the enhancement factors run from 0.1 to 1.9 without a random sign. Cutout
fills with the authors' colour ``(125, 123, 114)`` on RGB images and its luma, 123, on
grayscale (``"L"``) images, which the authors' CIFAR code never sees.
"""

from __future__ import annotations

import random
from typing import Any, Callable, NamedTuple

from PIL import Image, ImageDraw, ImageEnhance, ImageOps

__all__ = ["CUTOUT_FILL", "RAND_AUGMENT_OPS", "RandAugmentOp", "op_value"]

CUTOUT_FILL = (125, 123, 114)
"""Cutout's fill colour on RGB images (the authors'); grayscale images get its luma."""

_GRAY_FILL = 123  # round(0.299 * 125 + 0.587 * 123 + 0.114 * 114)

RandAugmentOpFn = Callable[[Image.Image, float, random.Random], Image.Image]


class RandAugmentOp(NamedTuple):
    """One operation of the pool: ``apply(image, value, rng)`` and its value range.

    Examples:
        >>> solarize = RAND_AUGMENT_OPS[8]
        >>> solarize.name, solarize.low, solarize.high
        ('Solarize', 0.0, 110.0)
        >>> solarize.apply(Image.new("L", (4, 4), 200), 100.0, random.Random(0)).getpixel((0, 0))
        55
    """

    name: str
    apply: RandAugmentOpFn
    low: float
    high: float


def op_value(op: RandAugmentOp, magnitude: float) -> float:
    """The value of ``op`` at ``magnitude`` (``0 .. 30``): ``m / 30 * (high - low) + low``.

    Examples:
        >>> rotate = next(op for op in RAND_AUGMENT_OPS if op.name == "Rotate")
        >>> op_value(rotate, 15)
        30.0
    """
    return float(magnitude) / 30 * float(op.high - op.low) + op.low


def _signed(value: float, rng: random.Random) -> float:
    return -value if rng.random() > 0.5 else value


def _affine(image: Image.Image, coefficients: tuple[float, ...]) -> Image.Image:
    return image.transform(image.size, Image.Transform.AFFINE, coefficients)


def _shear_x(image: Image.Image, value: float, rng: random.Random) -> Image.Image:
    return _affine(image, (1, _signed(value, rng), 0, 0, 1, 0))


def _shear_y(image: Image.Image, value: float, rng: random.Random) -> Image.Image:
    return _affine(image, (1, 0, 0, _signed(value, rng), 1, 0))


def _translate_x(image: Image.Image, value: float, rng: random.Random) -> Image.Image:
    return _affine(image, (1, 0, _signed(value, rng) * image.size[0], 0, 1, 0))


def _translate_y(image: Image.Image, value: float, rng: random.Random) -> Image.Image:
    return _affine(image, (1, 0, 0, 0, 1, _signed(value, rng) * image.size[1]))


def _rotate(image: Image.Image, value: float, rng: random.Random) -> Image.Image:
    return image.rotate(_signed(value, rng))


def _auto_contrast(image: Image.Image, value: float, rng: random.Random) -> Image.Image:
    return ImageOps.autocontrast(image)


def _invert(image: Image.Image, value: float, rng: random.Random) -> Image.Image:
    return ImageOps.invert(image)


def _equalize(image: Image.Image, value: float, rng: random.Random) -> Image.Image:
    return ImageOps.equalize(image)


def _solarize(image: Image.Image, value: float, rng: random.Random) -> Image.Image:
    return ImageOps.solarize(image, value)  # type: ignore[arg-type]  # a float threshold


def _posterize(image: Image.Image, value: float, rng: random.Random) -> Image.Image:
    return ImageOps.posterize(image, max(1, int(value)))


def _enhance(kind: Callable[[Image.Image], Any]) -> RandAugmentOpFn:
    def apply(image: Image.Image, value: float, rng: random.Random) -> Image.Image:
        enhanced: Image.Image = kind(image).enhance(value)
        return enhanced

    return apply


def _cutout(image: Image.Image, value: float, rng: random.Random) -> Image.Image:
    """A square of side ``value * width``; its corner as in the authors' ``CutoutAbs``."""
    if value <= 0:
        return image
    side = value * image.size[0]
    width, height = image.size
    # The authors draw the centre with np.random.uniform(w), i.e. low=w, high=1.0: a
    # uniform value between 1 and w (not 0 and w). We keep that distribution.
    x0 = int(max(0.0, width + (1 - width) * rng.random() - side / 2))
    y0 = int(max(0.0, height + (1 - height) * rng.random() - side / 2))
    box = (x0, y0, min(width, x0 + side), min(height, y0 + side))
    fill = _GRAY_FILL if image.mode == "L" else CUTOUT_FILL
    image = image.copy()
    ImageDraw.Draw(image).rectangle(box, fill)
    return image


RAND_AUGMENT_OPS: tuple[RandAugmentOp, ...] = (
    RandAugmentOp("ShearX", _shear_x, 0.0, 0.6),
    RandAugmentOp("ShearY", _shear_y, 0.0, 0.6),
    RandAugmentOp("TranslateX", _translate_x, 0.0, 0.66),
    RandAugmentOp("TranslateY", _translate_y, 0.0, 0.66),
    RandAugmentOp("Rotate", _rotate, 0.0, 60.0),
    RandAugmentOp("AutoContrast", _auto_contrast, 0.0, 1.0),
    RandAugmentOp("Invert", _invert, 0.0, 1.0),
    RandAugmentOp("Equalize", _equalize, 0.0, 1.0),
    RandAugmentOp("Solarize", _solarize, 0.0, 110.0),
    RandAugmentOp("Posterize", _posterize, 4.0, 8.0),
    RandAugmentOp("Contrast", _enhance(ImageEnhance.Contrast), 0.1, 1.9),
    RandAugmentOp("Color", _enhance(ImageEnhance.Color), 0.1, 1.9),
    RandAugmentOp("Brightness", _enhance(ImageEnhance.Brightness), 0.1, 1.9),
    RandAugmentOp("Sharpness", _enhance(ImageEnhance.Sharpness), 0.1, 1.9),
    RandAugmentOp("Cutout", _cutout, 0.0, 0.4),
)
"""The authors' operation pool, in their order (``data/randaug.py: augment_list``)."""
