"""The study's data: a dataset as ``uint8`` images with its normalization stats.

The built-in datasets are loaded whole as tensors (:func:`load_data`); your own images
(``"folder"``, ``"list"``) are decoded once into tensors too when they fit the cache, and
stream from disk otherwise (:mod:`selfdamage.study.own_data`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, Union, cast

from torch import Tensor

from selfdamage.data import load_cifar, load_fashion_mnist

__all__ = ["DATASETS", "ImageSource", "StudyData", "load_data"]

BUILT_IN = ("fashion-mnist", "cifar10", "cifar100")
"""The datasets the study loads by name."""

OWN_DATASETS = ("folder", "list")
"""Your own images: an image folder, or list files of ``path label`` lines."""

DATASETS = BUILT_IN + OWN_DATASETS


class ImageSource(Protocol):
    """Images that are read batch by batch rather than held in memory (a streamed set).

    ``shape`` is ``(N, C, H, W)``; :meth:`batches` yields ``uint8`` image batches.
    """

    @property
    def shape(self) -> tuple[int, int, int, int]: ...

    def batches(self, indices: Sequence[int], batch_size: int) -> Iterator[Tensor]:
        """The images ``indices``, in that order, as ``uint8`` batches ``(B, C, H, W)``."""
        ...


Images = Union[Tensor, ImageSource]

_STATS = {  # per-channel mean and std of the training images, in [0, 1]
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


@dataclass(frozen=True)
class StudyData:
    """A labeled dataset: ``uint8`` images ``(N, C, H, W)`` and labels.

    The images are a tensor in memory, or an :class:`ImageSource` that reads them batch
    by batch (a set larger than the cache). ``classes`` names the classes;
    ``view_options`` are extra arguments of the training views
    (:class:`~selfdamage.data.batch_views.BatchViews`), e.g. blur for large images.

    Examples:
        >>> import torch
        >>> data = StudyData(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.arange(4),
        ...     torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.arange(2), 4, (0.5,), (0.5,))
        >>> data.image_shape
        (1, 2, 2)
    """

    train_images: Images
    train_labels: Tensor
    test_images: Images
    test_labels: Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] | None = None
    view_options: dict[str, Any] = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)`` of one image."""
        c, h, w = self.train_images.shape[1:]
        return int(c), int(h), int(w)


def load_data(
    dataset: str, data_dir: str | Path | None, download: bool, *, three_channels: bool
) -> StudyData:
    """Loads the train and test splits of ``dataset``, images as ``(N, C, H, W)``.

    Args:
        dataset: A built-in name of :data:`DATASETS` (not ``folder`` or ``list``).
        data_dir: The dataset folder; ``None`` reads Fashion-MNIST from the Debian package.
        download: Let torchvision fetch CIFAR into ``data_dir``.
        three_channels: Repeat a grayscale channel three times (for torchvision's ResNet).

    Raises:
        ValueError: If CIFAR is asked for without ``data_dir``.
        FileNotFoundError: If the files are missing; the message says how to get them.

    Examples:
        >>> data = load_data("fashion-mnist", None, False, three_channels=False)  # doctest: +SKIP
        >>> data.image_shape  # doctest: +SKIP
        (1, 28, 28)
    """
    if dataset == "fashion-mnist":
        train_x, train_y = load_fashion_mnist(data_dir, train=True)
        test_x, test_y = load_fashion_mnist(data_dir, train=False)
        train_x, test_x = train_x.unsqueeze(1), test_x.unsqueeze(1)
    else:
        if data_dir is None:
            raise ValueError(
                f"dataset={dataset!r} needs data_dir: the folder torchvision reads "
                f"{dataset.upper()} from (pass download=True / --download to fetch it there)."
            )
        name = cast(Literal["cifar10", "cifar100"], dataset)
        train_x, train_y = load_cifar(data_dir, name, train=True, download=download)
        test_x, test_y = load_cifar(data_dir, name, train=False, download=download)
        train_x, test_x = train_x.permute(0, 3, 1, 2), test_x.permute(0, 3, 1, 2)
    mean, std = _STATS[dataset]
    if three_channels and train_x.shape[1] == 1:
        train_x, test_x = train_x.expand(-1, 3, -1, -1), test_x.expand(-1, 3, -1, -1)
        mean, std = mean * 3, std * 3
    return StudyData(
        train_x.contiguous(),
        train_y,
        test_x.contiguous(),
        test_y,
        int(train_y.max()) + 1,
        mean,
        std,
    )
