"""Your own images in the study: read, checked, sized, normalized, cached or streamed.

:func:`load_own_data` turns ``dataset="folder"`` or ``"list"`` into the
:class:`~selfdamage.study.data.StudyData` the study trains on. Every check of
:mod:`selfdamage.data.image_files` runs first, so bad input fails before any training.
Each image is decoded with PIL, resized (shorter side) to ``image_size`` and
center-cropped to a square; the training views are then random resized crops of that
square, made batch-wise as for the built-in datasets. A set whose decoded size fits
``cache_mb`` is decoded once into memory (and trains exactly as a built-in dataset);
a larger one streams from disk, decoded by ``workers`` processes batch by batch.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Subset
from torchvision.transforms import functional as TF

from selfdamage._warnings import warns_at_caller
from selfdamage.data import image_files
from selfdamage.data.image_datasets import ImageFileDataset
from selfdamage.data.image_files import ImageSamples
from selfdamage.data.transforms import view_settings
from selfdamage.study._progress import progress_bar
from selfdamage.study.config import StudyConfig
from selfdamage.study.data import Images, StudyData

__all__ = ["load_own_data"]

logger = logging.getLogger(__name__)

MAX_DEFAULT_SIZE = 64
"""The largest default ``image_size``: larger images are trained at 64 pixels unless asked."""

STATS_SAMPLE = 1000
"""Training images the normalization statistics are computed from (a seeded sample)."""


@warns_at_caller
def read_samples(config: StudyConfig) -> tuple[ImageSamples, ImageSamples]:
    """The training and test images of a ``"folder"`` or ``"list"`` study, checked.

    The classes of list files are the labels the training list has, in label order (a
    label it lacks is no class of the study); the test list is read with them.

    Raises:
        FileNotFoundError: If a folder, list file or listed image is missing.
        ValueError: If the layout is wrong (see :func:`~selfdamage.data.check_splits`).

    Examples:
        >>> train, test = read_samples(StudyConfig(dataset="folder",
        ...     data_dir="my_images"))  # doctest: +SKIP
    """
    if config.dataset == "folder":
        root = Path(str(config.data_dir))
        train = image_files.scan_image_folder(root, "train")
        test = image_files.scan_image_folder(root, image_files.find_test_split(root))
    else:
        train_list = Path(str(config.train_list))
        root = Path(config.image_root) if config.image_root else train_list.parent
        train = _labels_present(image_files.read_image_list(train_list, root))
        test = image_files.read_image_list(str(config.test_list), root, classes=train.classes)
    image_files.check_splits(train, test)
    return train, test


def _labels_present(samples: ImageSamples) -> ImageSamples:
    """The classes of a training list without the labels it lacks (class ids in label order)."""
    counts = samples.class_counts()
    if counts.all():
        return samples
    kept = np.flatnonzero(counts)
    ids = np.zeros(len(counts), dtype=np.int64)
    ids[kept] = np.arange(len(kept))
    logger.info(
        "%s: %d labels of 0..%d have images; the study's classes are those %d",
        samples.source, len(kept), len(counts) - 1, len(kept),
    )  # fmt: skip
    classes = tuple(samples.classes[c] for c in kept)
    return ImageSamples(samples.paths, ids[samples.labels], classes, samples.source)


@warns_at_caller
def load_own_data(config: StudyConfig) -> StudyData:
    """Reads, checks and prepares the images of ``dataset="folder"`` or ``"list"``.

    The image mode is the images' own (an error if grayscale and colour are mixed)
    unless ``image_mode`` converts them; the size is ``image_size``, by default the
    median shorter side of the training images, at most ``MAX_DEFAULT_SIZE``;
    ``mean``/``std`` by default come from ``STATS_SAMPLE`` training images. Gray
    images get three identical channels for the ``resnet18`` backbone.

    Raises:
        FileNotFoundError: If a folder, list file or listed image is missing.
        ValueError: If the images or the layout are not usable; the message names the
            path and the fix.

    Examples:
        >>> data = load_own_data(StudyConfig(dataset="folder",
        ...     data_dir="my_images"))  # doctest: +SKIP
    """
    train, test = read_samples(config)
    started = time.perf_counter()
    mode, size = _mode_and_size(config, train, test)
    decode_mode = "RGB" if config.backbone == "resnet18" else mode
    train_images = DecodedImages(train, size, decode_mode, workers=config.workers)
    test_images = DecodedImages(test, size, decode_mode, workers=config.workers)
    channels = train_images.shape[1]
    logger.info(
        "%s: %d training and %d test images in %d classes, %s, checked in %.1f s; "
        "training at %d x %d pixels",
        train.source, len(train), len(test), len(train.classes), _kind(mode),
        time.perf_counter() - started, size, size,
    )  # fmt: skip
    decoded = (len(train) + len(test)) * channels * size * size
    progress = config.progress and config.jobs == 1
    train_source: Images = train_images
    test_source: Images = test_images
    if decoded <= config.cache_mb * 2**20:
        logger.info("decoding %.0f MiB of images into memory (--cache-mb %d)",
                    decoded / 2**20, config.cache_mb)  # fmt: skip
        train_source = train_images.decode_all(progress=progress)
        test_source = test_images.decode_all(progress=progress)
    else:
        logger.info(
            "streaming the images from disk: decoded they take %.0f MiB, more than "
            "--cache-mb %d", decoded / 2**20, config.cache_mb,
        )  # fmt: skip
        train_images.check_all(progress=progress)  # a corrupt file fails before training
        test_images.check_all(progress=progress)
    mean, std = _normalization(config, train_source, channels)
    return StudyData(
        train_source,
        torch.from_numpy(train.labels),
        test_source,
        torch.from_numpy(test.labels),
        len(train.classes),
        mean,
        std,
        classes=train.classes,
        view_options=view_settings(size, color=mode == "RGB"),
    )


def image_stats(
    images: Images, *, seed: int, sample: int = STATS_SAMPLE
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation, in ``[0, 1]``, of a seeded sample of images.

    Examples:
        >>> image_stats(torch.full((4, 1, 2, 2), 51, dtype=torch.uint8), seed=0)
        ((0.2,), (0.0,))
    """
    count = images.shape[0]
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(count, size=min(sample, count), replace=False))
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for batch in _batches(images, chosen.tolist(), 256):
        pixels = batch.double().div_(255).transpose(0, 1).reshape(batch.shape[1], -1)
        total += pixels.sum(dim=1)
        squares += (pixels**2).sum(dim=1)
    n = len(chosen) * images.shape[2] * images.shape[3]
    mean = total / n
    std = (squares / n - mean**2).clamp(min=0).sqrt()
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


def _batches(images: Images, indices: Sequence[int], batch_size: int) -> Iterator[Tensor]:
    if isinstance(images, Tensor):
        for start in range(0, len(indices), batch_size):
            yield images[torch.as_tensor(indices[start : start + batch_size])]
    else:
        yield from images.batches(indices, batch_size)


class DecodeImage:
    """A PIL image as ``uint8`` ``(C, size, size)``: shorter side resized, center crop.

    Examples:
        >>> DecodeImage(16)(Image.new("RGB", (40, 20))).shape
        torch.Size([3, 16, 16])
    """

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: Image.Image) -> Tensor:
        if image.size != (self.size, self.size):
            image = TF.center_crop(TF.resize(image, self.size), [self.size, self.size])
        tensor: Tensor = TF.pil_to_tensor(image)
        return tensor


class DecodedImages:
    """Image files decoded batch by batch by ``workers`` processes, at a fixed size.

    An :class:`~selfdamage.study.data.ImageSource`: nothing is kept in memory but the
    batch at hand, so a set of any size streams. :meth:`decode_all` decodes the whole
    set into one ``uint8`` tensor instead (for a set that fits in memory).

    Args:
        samples: The image files.
        size: Side of the decoded images, in pixels.
        mode: ``"L"`` or ``"RGB"``, what every image is converted to.
        workers: Decoding processes (0: in this process).

    Examples:
        >>> images = DecodedImages(samples, 32, "RGB", workers=2)  # doctest: +SKIP
        >>> next(images.batches([0, 1], 2)).shape  # doctest: +SKIP
        torch.Size([2, 3, 32, 32])
    """

    def __init__(self, samples: ImageSamples, size: int, mode: str, *, workers: int) -> None:
        self.dataset = _FileImages(samples, DecodeImage(size), image_mode=mode)
        self.workers = workers
        self._shape = (len(samples), 1 if mode == "L" else 3, size, size)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(N, C, H, W)`` of the decoded images."""
        return self._shape

    def batches(self, indices: Sequence[int], batch_size: int) -> Iterator[Tensor]:
        """The images ``indices``, in that order, as ``uint8`` batches ``(B, C, H, W)``.

        Raises:
            ValueError: If a file is not a readable image (the message names it).
        """
        loader = DataLoader(
            Subset(self.dataset, list(indices)),
            batch_size=batch_size,
            num_workers=self.workers,
            collate_fn=_stack_images,
            prefetch_factor=4 if self.workers else None,
        )
        for batch in loader:
            if isinstance(batch, str):  # a worker's error, without its traceback
                raise ValueError(batch)
            yield batch

    def decode_all(self, *, progress: bool) -> Tensor:
        """Every image, decoded into one ``uint8`` tensor ``(N, C, H, W)``."""
        out = torch.empty(self.shape, dtype=torch.uint8)
        self._decode_every_image(out, progress=progress)
        return out

    def check_all(self, *, progress: bool) -> None:
        """Decodes every image once and keeps none: an unreadable file fails now."""
        self._decode_every_image(None, progress=progress)

    def _decode_every_image(self, out: Tensor | None, *, progress: bool) -> None:
        count = self.shape[0]
        started, done = time.perf_counter(), 0
        source = self.dataset.samples.source
        verb, done_verb = ("decoding", "decoded") if out is not None else ("checking", "checked")
        bar = progress_bar(progress, unit="image", total=count, desc=f"{verb} {source}")
        for batch in self.batches(range(count), 256):
            if out is not None:
                out[done : done + len(batch)] = batch
            done += len(batch)
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - started
        logger.info("%s %d images of %s in %.1f s (%.0f images/s)", done_verb, count, source,
                    seconds, count / max(seconds, 1e-9))  # fmt: skip


class _FileImages(ImageFileDataset):
    """An image file's error is the item (its message), so that a decoding worker passes
    it on instead of raising it with the worker's traceback."""

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        try:
            return super().__getitem__(index)
        except ValueError as error:
            return str(error), -1, index


def _stack_images(items: list[tuple[Tensor | str, int, int]]) -> Tensor | str:
    errors = [image for image, _, _ in items if isinstance(image, str)]
    if errors:
        return errors[0]
    return torch.stack([image for image, _, _ in items if isinstance(image, Tensor)])


def _mode_and_size(config: StudyConfig, train: ImageSamples, test: ImageSamples) -> tuple[str, int]:
    """The images' mode (``"L"`` or ``"RGB"``) and the training resolution, checked."""
    mixed_ok = config.image_mode != "auto"
    train_mode, sizes = image_files.image_modes(train, mixed_ok=mixed_ok)
    test_mode, _ = image_files.image_modes(test, mixed_ok=mixed_ok)
    if not mixed_ok and train_mode != test_mode:
        raise ValueError(
            f"the training images ({train.source}) are {_kind(train_mode)} but the test "
            f"images ({test.source}) {_kind(test_mode)}; pass image_mode='RGB' "
            "(--image-mode RGB) or 'L' to convert every image to one mode."
        )
    mode = train_mode if config.image_mode == "auto" else config.image_mode
    size = config.image_size or min(
        MAX_DEFAULT_SIZE, int(statistics.median(min(w, h) for w, h in sizes))
    )
    return mode, size


def _normalization(
    config: StudyConfig, images: Images, channels: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The per-channel mean and std: the configured ones (checked), else the images' own."""
    if config.mean is None or config.std is None:
        return image_stats(images, seed=0)
    if len(config.mean) != channels:
        raise ValueError(
            f"mean and std need one value per channel of the images ({channels}), got "
            f"mean={config.mean!r}, std={config.std!r}."
        )
    return config.mean, config.std


def _kind(mode: str) -> str:
    return "grayscale" if mode == "L" else "colour"
