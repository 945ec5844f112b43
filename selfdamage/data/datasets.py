"""Image datasets as users have them: Fashion-MNIST and CIFAR loaders, tensor datasets.

The loaders return the whole split as two tensors, ``(images, labels)``: ``uint8``
images in channels-last layout (``N x H x W`` for grayscale, ``N x H x W x 3`` for
colour, as torchvision's ``dataset.data``) and ``int64`` labels. They compose with
:func:`~selfdamage.data.longtail_indices` and ``torch.utils.data.Subset``::

    images, labels = load_fashion_mnist()
    split = longtail_indices(labels, imbalance_ratio=100, class_order=0)
    train = TwoViewDataset(
        Subset(ImageTensorDataset(images, labels), split.indices),
        small_grayscale_transform(),
    )
"""

from __future__ import annotations

import gzip
import math
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Literal, Union

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIRS",
    "ImageTensorDataset",
    "TwoViewDataset",
    "load_cifar",
    "load_fashion_mnist",
]

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""Fashion-MNIST class names, indexed by label."""

FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist", "data/FashionMNIST/raw")
"""Where :func:`load_fashion_mnist` looks by default, in order: the Debian package
``dataset-fashion-mnist``, then torchvision's layout under the root ``data``."""

_FASHION_MNIST_HELP = (
    "Install the Debian/Ubuntu package with `sudo apt-get install dataset-fashion-mnist` "
    "(files in /usr/share/datasets/fashion-mnist), or download them with torchvision: "
    "`python -c \"import torchvision; torchvision.datasets.FashionMNIST('data', "
    "download=True)\"` and pass root='data'."
)

PathLike = Union[str, "os.PathLike[str]"]


def load_fashion_mnist(
    root: PathLike | None = None, *, train: bool = True
) -> tuple[Tensor, Tensor]:
    """Loads Fashion-MNIST [0] from its IDX files (gzipped or not).

    Args:
        root: Directory holding ``train-images-idx3-ubyte.gz`` and the other three IDX
            files, or a torchvision root containing ``FashionMNIST/raw/``. Default: the
            first directory of :data:`FASHION_MNIST_DIRS` that has the files.
        train: The 60,000 training images if True, else the 10,000 test images.

    Returns:
        ``uint8`` images of shape ``(N, 28, 28)`` and ``int64`` labels of shape ``(N,)``,
        class names in :data:`FASHION_MNIST_CLASSES`.

    Raises:
        FileNotFoundError: If no searched directory holds the files; the message lists
            the directories searched and how to get the data.
        ValueError: If a file is not a valid ``uint8`` IDX file, or images and labels
            disagree in number.

    - [0] Fashion-MNIST, 2017, https://arxiv.org/abs/1708.07747

    Examples:
        >>> images, labels = load_fashion_mnist(train=False)  # doctest: +SKIP
        >>> images.shape, images.dtype, labels[:3].tolist()  # doctest: +SKIP
        (torch.Size([10000, 28, 28]), torch.uint8, [9, 2, 1])
    """
    prefix = "train" if train else "t10k"
    names = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    if root is None:
        candidates = [Path(d) for d in FASHION_MNIST_DIRS]
    else:
        base = Path(root).expanduser()
        candidates = [base, base / "FashionMNIST" / "raw"]
    for directory in candidates:
        paths = [_find_idx(directory, name) for name in names]
        if paths[0] is not None and paths[1] is not None:
            images, labels = _read_idx(paths[0]), _read_idx(paths[1])
            if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
                raise ValueError(
                    f"Fashion-MNIST files in {directory} do not match: images of shape "
                    f"{images.shape} and labels of shape {labels.shape}; expected "
                    "(N, 28, 28) and (N,). Re-install or re-download them."
                )
            return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
    searched = ", ".join(str(d) for d in candidates)
    raise FileNotFoundError(
        f"Fashion-MNIST {prefix} files ({names[0]}[.gz], {names[1]}[.gz]) not found "
        f"(root={None if root is None else str(root)!r}); searched: {searched}. "
        f"{_FASHION_MNIST_HELP}"
    )


def load_cifar(
    root: PathLike,
    name: Literal["cifar10", "cifar100"] = "cifar10",
    *,
    train: bool = True,
    download: bool = False,
) -> tuple[Tensor, Tensor]:
    """Loads CIFAR-10 or CIFAR-100 [0] through torchvision.

    Args:
        root: torchvision root directory (holding ``cifar-10-batches-py/`` or
            ``cifar-100-python/``).
        name: ``"cifar10"`` or ``"cifar100"`` (fine labels).
        train: The 50,000 training images if True, else the 10,000 test images.
        download: Download the archive into ``root`` first if it is missing.

    Returns:
        ``uint8`` images of shape ``(N, 32, 32, 3)`` and ``int64`` labels of shape
        ``(N,)``.

    Raises:
        ValueError: If ``name`` is unknown.
        FileNotFoundError: If the files are missing or corrupted and ``download`` is
            False; the message names the directory and how to download.

    - [0] Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009.

    Examples:
        >>> images, labels = load_cifar("data", "cifar10", download=True)  # doctest: +SKIP
        >>> images.shape, labels.shape  # doctest: +SKIP
        (torch.Size([50000, 32, 32, 3]), torch.Size([50000]))
    """
    from torchvision.datasets import CIFAR10, CIFAR100

    datasets = {"cifar10": CIFAR10, "cifar100": CIFAR100}
    if name not in datasets:
        raise ValueError(f"name must be one of {list(datasets)}, got name={name!r}.")
    cls = datasets[name]
    try:
        dataset = cls(os.fspath(root), train=train, download=download)
    except RuntimeError as error:
        folder = Path(root) / cls.base_folder
        raise FileNotFoundError(
            f"{name} not found or corrupted in {folder} ({error}). Pass download=True, "
            f'or run `python -c "import torchvision; torchvision.datasets.'
            f'{cls.__name__}({os.fspath(root)!r}, download=True)"`.'
        ) from error
    images = torch.from_numpy(np.ascontiguousarray(dataset.data))
    return images, torch.as_tensor(dataset.targets, dtype=torch.int64)


class ImageTensorDataset(Dataset[tuple[Any, int]]):
    """A dataset over ``uint8`` image tensors, serving PIL images like torchvision's.

    Item ``i`` is ``(transform(image_i), label_i)``, where ``image_i`` is a PIL image
    (mode ``"L"`` for ``(H, W)`` images, ``"RGB"`` for ``(H, W, 3)``), so torchvision
    and lightly transforms apply unchanged. Without a transform the PIL image itself is
    returned.

    Args:
        images: ``uint8`` tensor of shape ``(N, H, W)`` or ``(N, H, W, 3)``.
        labels: Class labels, shape ``(N,)``; kept as ``int64`` in ``self.targets``.
        transform: Called on each PIL image, e.g. a torchvision or lightly transform.

    Raises:
        TypeError: If ``images`` is not a ``uint8`` tensor.
        ValueError: If the shapes of ``images`` and ``labels`` are wrong or disagree.

    Examples:
        >>> images = torch.zeros(4, 28, 28, dtype=torch.uint8)
        >>> dataset = ImageTensorDataset(images, [0, 1, 0, 1])
        >>> image, label = dataset[1]
        >>> image.size, image.mode, label
        ((28, 28), 'L', 1)
    """

    def __init__(
        self,
        images: Tensor,
        labels: Sequence[int] | Tensor,
        transform: Callable[[Image.Image], Any] | None = None,
    ) -> None:
        if not isinstance(images, Tensor) or images.dtype != torch.uint8:
            raise TypeError(
                "images must be a uint8 tensor of shape (N, H, W) or (N, H, W, 3), got "
                f"{type(images).__name__} of dtype {getattr(images, 'dtype', None)}."
            )
        colour = images.dim() == 4 and images.shape[-1] == 3
        if images.dim() != 3 and not colour:
            raise ValueError(
                "images must have shape (N, H, W) or (N, H, W, 3) (channels last, as "
                f"torchvision's dataset.data), got {tuple(images.shape)}."
            )
        targets = torch.as_tensor(labels, dtype=torch.int64)
        if targets.shape != images.shape[:1]:
            raise ValueError(
                f"labels must have shape ({len(images)},), one per image, got "
                f"{tuple(targets.shape)}."
            )
        self.images = images
        self.targets = targets
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = Image.fromarray(self.images[index].numpy())
        item = image if self.transform is None else self.transform(image)
        return item, int(self.targets[index])


class TwoViewDataset(Dataset[tuple[Any, Any, int]]):
    """Turns a labeled dataset into one of two augmented views per image.

    Item ``i`` is ``(view0, view1, label)`` where ``[view0, view1] =
    transform(image)`` and ``(image, label, ...) = dataset[i]``; the transform must
    return two views, as lightly's multi-view transforms (``SimCLRTransform``,
    :func:`~selfdamage.data.small_grayscale_transform`) do. The label is for
    evaluation only; contrastive pre-training ignores it.

    Args:
        dataset: A dataset whose items are ``(image, label, ...)``, e.g. an
            :class:`ImageTensorDataset` without transform, or a ``Subset`` of one.
        transform: Maps one image to a list of two views.

    Raises:
        TypeError: If ``transform`` is not callable.
        ValueError: On access, if the transform does not return exactly two views.

    Examples:
        >>> from selfdamage.data import small_grayscale_transform
        >>> images = torch.zeros(4, 28, 28, dtype=torch.uint8)
        >>> pairs = TwoViewDataset(ImageTensorDataset(images, [0, 1, 0, 1]),
        ...                        small_grayscale_transform())
        >>> view0, view1, label = pairs[1]
        >>> view0.shape, view1.shape, label
        (torch.Size([3, 28, 28]), torch.Size([3, 28, 28]), 1)
    """

    def __init__(self, dataset: Dataset[Any], transform: Callable[[Any], Any]) -> None:
        if not callable(transform):
            raise TypeError(
                "transform must be callable, returning two views of an image (e.g. "
                f"lightly.transforms.SimCLRTransform()), got transform={transform!r}."
            )
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, Any, int]:
        image, label = self.dataset[index][:2]
        views = self.transform(image)
        if not isinstance(views, (list, tuple)) or len(views) != 2:
            got = f"{len(views)} views" if isinstance(views, (list, tuple)) else type(views)
            raise ValueError(
                f"transform must return a list of two views, got {got} from "
                f"{type(self.transform).__name__}; use a two-view transform such as "
                "lightly.transforms.SimCLRTransform or small_grayscale_transform()."
            )
        return views[0], views[1], int(label)


def _find_idx(directory: Path, name: str) -> Path | None:
    for path in (directory / f"{name}.gz", directory / name):
        if path.is_file():
            return path
    return None


def _read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file of unsigned bytes (the MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        data = file.read()
    # Header: two zero bytes, type code (0x08 = unsigned byte), number of dimensions,
    # then one big-endian uint32 per dimension.
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(
            f"{path} is not an IDX file of unsigned bytes (header {data[:4].hex()}, "
            "expected 000008xx); re-install or re-download it."
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = struct.unpack_from(f">{ndim}I", data, 4) if len(data) >= header else None
    if shape is None or len(data) != header + math.prod(shape):
        raise ValueError(
            f"{path} is truncated or corrupted: its size ({len(data)} bytes) does not "
            f"match the {ndim}-d shape in its IDX header; re-install or re-download it."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()
