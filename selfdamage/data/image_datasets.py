"""Your own images as datasets: ``(views, label, index)`` items for a contrastive pipeline.

:class:`LongTailImageFolder` reads an image folder, :class:`ImageListDataset` list files
(both checked as :mod:`selfdamage.data.image_files` describes);
:class:`ImageFileDataset` serves any :class:`~selfdamage.data.image_files.ImageSamples`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from selfdamage._warnings import warns_at_caller
from selfdamage.data.image_files import (
    DECODE_ERRORS,
    ImageSamples,
    read_image_list,
    scan_image_folder,
    unreadable,
)

__all__ = ["ImageFileDataset", "ImageListDataset", "LongTailImageFolder"]


def open_image(path: str, mode: str) -> Image.Image:
    """Decodes one image with PIL, converted to ``mode`` (``"L"`` or ``"RGB"``).

    Raises:
        ValueError: If PIL cannot read the file (not an image, truncated, corrupt); the
            message names the file.

    Examples:
        >>> open_image("cat.png", "RGB").mode  # doctest: +SKIP
        'RGB'
    """
    try:
        with Image.open(path) as image:
            return image.convert(mode)
    except DECODE_ERRORS as error:
        raise unreadable(path, error) from error


class ImageFileDataset(Dataset[tuple[Any, int, int]]):
    """Image files with labels as a dataset of ``(transform(image), label, index)``.

    ``index`` is the item's position in the dataset, for methods and analyses that
    need it (e.g. a per-sample memory or damage scores). With a two-view transform
    (:func:`~selfdamage.data.image_views`, or lightly's ``SimCLRTransform``) the first
    element is the list of two views, as lightly's training loops expect.

    Args:
        samples: The images and their labels.
        transform: Maps the PIL image to what the item holds; ``None`` returns the image.
        image_mode: ``"L"`` or ``"RGB"``: every image is converted to it when read.

    Raises:
        ValueError: If ``image_mode`` is not ``"L"`` or ``"RGB"``; when an item is read,
            if its file is not a readable image (the message names it).

    Examples:
        >>> samples = ImageSamples(("a.png",), np.array([0]), ("cat",), "x")
        >>> len(ImageFileDataset(samples))
        1
    """

    def __init__(
        self,
        samples: ImageSamples,
        transform: Callable[[Image.Image], Any] | None = None,
        *,
        image_mode: str = "RGB",
    ) -> None:
        if image_mode not in ("L", "RGB"):
            raise ValueError(
                f"image_mode must be 'L' (grayscale) or 'RGB', got image_mode={image_mode!r}."
            )
        self.samples = samples
        self.transform = transform
        self.image_mode = image_mode

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, indexed by class id."""
        return self.samples.classes

    @property
    def targets(self) -> np.ndarray:
        """The label of every item."""
        return self.samples.labels

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        image = open_image(self.samples.paths[index], self.image_mode)
        item = image if self.transform is None else self.transform(image)
        return item, int(self.samples.labels[index]), index


class LongTailImageFolder(ImageFileDataset):
    """One split of an image folder, ``root/split/CLASS/IMAGE``, as ``(views, label, index)``.

    The split is read as it is (a natural long tail stays as found); subsample it with
    :func:`~selfdamage.data.longtail_indices` and ``torch.utils.data.Subset`` to impose a
    profile. Files that are not images are skipped with a warning.

    Class ids follow the sorted names of the split's own class folders, so a test split
    without a ``dog/`` folder gives ``fox/`` a smaller label than the training split does.
    Pass the training split's ``classes`` to a test split, so that both have the same
    classes and labels (a class without a folder in the test split is a class without
    items there).

    Args:
        root: The dataset folder.
        split: Its sub-folder: ``"train"``, ``"test"``, ``"val"``.
        transform: Maps a PIL image to the item, e.g. ``image_views(64)`` for two views.
        image_mode: ``"L"`` or ``"RGB"``; every image is converted to it.
        classes: Class names in class-id order, instead of the sorted folder names: a
            label is the position of the folder's name here. Every class folder of the
            split must be named in it.

    Raises:
        FileNotFoundError: If the split folder is missing.
        TypeError: If ``classes`` is not a list or tuple of strings.
        ValueError: If the split has no class folders, a class folder has no images,
            ``classes`` is empty or names a class twice, or a class folder's name is not
            in ``classes``.

    Examples:
        >>> from selfdamage.data import image_views
        >>> train = LongTailImageFolder("my_images", "train",
        ...     transform=image_views(64))  # doctest: +SKIP
        >>> (view0, view1), label, index = train[0]  # doctest: +SKIP
        >>> test = LongTailImageFolder("my_images", "test",
        ...     classes=train.classes)  # doctest: +SKIP
    """

    @warns_at_caller
    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        transform: Callable[[Image.Image], Any] | None = None,
        image_mode: str = "RGB",
        classes: Sequence[str] | None = None,
    ) -> None:
        samples = scan_image_folder(root, split, classes=classes)
        super().__init__(samples, transform, image_mode=image_mode)


class ImageListDataset(ImageFileDataset):
    """The images of a list file (``relative/path label`` lines) as ``(views, label, index)``.

    An item's label is the integer on its line, whatever labels the file lacks: the
    classes are ``"0"`` up to the largest label (a label the file lacks is a class
    without items), so a test list without class 0 still gives its class-1 images label
    1. Pass the training list's ``classes`` to a test list, so that both have the same
    classes (a test list that lacks the last classes has fewer of its own).

    Args:
        list_file: The list file, e.g. ImageNet-LT's ``ImageNet_LT_train.txt``.
        image_root: The folder its paths are relative to.
        transform: Maps a PIL image to the item, e.g. ``image_views(224)`` for two views.
        image_mode: ``"L"`` or ``"RGB"``; every image is converted to it.
        classes: Class names, the labels as text, in class-id order, instead of ``"0"``
            up to the largest label: a label is the position of its text here.

    Raises:
        FileNotFoundError: If the list file or images it lists do not exist.
        TypeError: If ``classes`` is not a list or tuple of strings.
        ValueError: If a line does not parse, or has a label that ``classes`` lacks, or
            ``classes`` is empty or names a class twice.

    Examples:
        >>> from selfdamage.data import image_views
        >>> train = ImageListDataset("ImageNet_LT_train.txt", "imagenet",
        ...     transform=image_views(224))  # doctest: +SKIP
        >>> (view0, view1), label, index = train[0]  # doctest: +SKIP
        >>> test = ImageListDataset("ImageNet_LT_test.txt", "imagenet",
        ...     classes=train.classes)  # doctest: +SKIP
    """

    def __init__(
        self,
        list_file: str | Path,
        image_root: str | Path,
        *,
        transform: Callable[[Image.Image], Any] | None = None,
        image_mode: str = "RGB",
        classes: Sequence[str] | None = None,
    ) -> None:
        samples = read_image_list(list_file, image_root, classes=classes)
        super().__init__(samples, transform, image_mode=image_mode)
