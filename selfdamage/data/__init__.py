"""Long-tailed data: class-size profiles, seeded subsets, loaders and two-view datasets.

- :func:`longtail_counts` — class sizes of an exponential, step or Pareto profile.
- :func:`longtail_indices` — a seeded long-tailed subset of any labeled dataset
  (:class:`LongTailSplit`); :func:`balanced_indices` — ``k`` samples per class.
- :func:`load_fashion_mnist`, :func:`load_cifar` — whole splits as ``uint8`` tensors.
- :class:`ImageTensorDataset` — a dataset over image tensors, serving PIL images.
- :class:`TwoViewDataset` — ``(view0, view1, label)`` items for contrastive learning;
  :func:`small_grayscale_transform` — its default views for 28x28 grayscale images.
- :class:`LongTailImageFolder`, :class:`ImageListDataset` — your own images on disk
  (an image folder, or ``path label`` list files), checked, as ``(views, label, index)``
  items; :func:`image_views` — two SimCLR views of any size; :class:`BatchViews` — the
  same views drawn for a whole batch at once.
"""

from __future__ import annotations

from selfdamage.data.batch_views import BatchViews
from selfdamage.data.datasets import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIRS,
    ImageTensorDataset,
    TwoViewDataset,
    load_cifar,
    load_fashion_mnist,
)
from selfdamage.data.image_datasets import (
    ImageFileDataset,
    ImageListDataset,
    LongTailImageFolder,
)
from selfdamage.data.image_files import (
    IMAGE_EXTENSIONS,
    ImageSamples,
    read_image_list,
    scan_image_folder,
)
from selfdamage.data.longtail import (
    Labels,
    LongTailSplit,
    Profile,
    balanced_indices,
    longtail_counts,
    longtail_indices,
)
from selfdamage.data.transforms import (
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    image_views,
    small_grayscale_transform,
    view_settings,
)

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIRS",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "IMAGE_EXTENSIONS",
    "BatchViews",
    "ImageFileDataset",
    "ImageListDataset",
    "ImageSamples",
    "ImageTensorDataset",
    "Labels",
    "LongTailImageFolder",
    "LongTailSplit",
    "Profile",
    "TwoViewDataset",
    "balanced_indices",
    "image_views",
    "load_cifar",
    "load_fashion_mnist",
    "longtail_counts",
    "longtail_indices",
    "read_image_list",
    "scan_image_folder",
    "small_grayscale_transform",
    "view_settings",
]
