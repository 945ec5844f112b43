"""BCL's boosted augmentation: RandAugment whose strength follows the momentum loss.

A sample with a high normalized momentum loss ``w`` (a score in ``[0, 1]`` from
:class:`~selfdamage.longtail.momentum_loss.MomentumLoss`) gets stronger augmentation
[0]. As in the authors' ``data/memoboosted_cifar100.py`` (``__getitem__``) and
``data/randaug.py`` (``RandAugment_prob``):

- ``num_ops`` operations (``--rand_k``, default 1) are drawn from the pool
  (the 15 operations of the authors' ``augment_list``) with replacement; each
  is applied with probability ``w``, so a sample gets ``num_ops * w`` operations on
  average and none at ``w = 0``;
- all at the magnitude ``min + (max - min) * w`` with ``min = 10`` for one operation,
  and ``min + (max - min) * w * u`` with ``min = 5`` and ``u ~ U(0, 1)`` drawn once per
  sample (shared by its views) for more; ``max`` is ``--rand_strength``, default 30;
- after the SimCLR crop and colour augmentation (:func:`bcl_base_transform`, the
  authors' ``data/augmentations.py: cifar_tfs_train`` without ``ToTensor``).

Before the scores are set (the first epoch), every ``w`` is ``0``: the authors' default.

- [0] BCL, Zhou et al., Contrastive Learning with Boosted Memorization, ICML 2022,
  https://arxiv.org/abs/2205.12693
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T

from selfdamage._checks import check_int, check_real
from selfdamage.longtail._rand_augment import RAND_AUGMENT_OPS, op_value
from selfdamage.longtail.momentum_loss import MomentumLoss

__all__ = [
    "BoostedRandAugment",
    "MomentumBoostedDataset",
    "bcl_base_transform",
    "boost_strength",
]


def boost_strength(
    score: float, *, num_ops: int = 1, max_magnitude: float = 30.0, draw: float = 1.0
) -> tuple[float, float]:
    """The RandAugment magnitude and per-operation probability of a sample's score.

    ``magnitude = min + (max_magnitude - min) * score`` for one operation (``min = 10``),
    ``min + (max_magnitude - min) * score * draw`` for more (``min = 5``);
    ``probability = score``. The authors' ``memoboosted_CIFAR100.__getitem__``.

    Args:
        score: The sample's normalized momentum loss, in ``[0, 1]``.
        num_ops: Operations drawn per view (the authors' ``--rand_k``).
        max_magnitude: Magnitude at score 1 (the authors' ``--rand_strength``), ``<= 30``.
        draw: A uniform draw in ``[0, 1)``, used only when ``num_ops > 1``.

    Returns:
        ``(magnitude, probability)``.

    Examples:
        >>> boost_strength(0.5)
        (20.0, 0.5)
        >>> boost_strength(0.5, num_ops=2, draw=0.4)
        (10.0, 0.5)
    """
    if num_ops == 1:
        return 10.0 + (max_magnitude - 10.0) * score, score
    return 5.0 + (max_magnitude - 5.0) * score * draw, score


class BoostedRandAugment:
    """RandAugment at a sample's boosted strength, drawing from a given generator.

    :meth:`strength` maps a score to ``(magnitude, probability)`` (:func:`boost_strength`,
    drawing ``u`` from ``rng`` when ``num_ops > 1``); calling the object augments one
    view. Works on ``"RGB"`` and ``"L"`` PIL images.

    Args:
        num_ops: Operations drawn per view, ``>= 1`` (the authors' default 1).
        max_magnitude: Magnitude at score 1, in ``[10, 30]`` for one operation and
            ``[5, 30]`` for more (the authors' default 30).

    Raises:
        ValueError: If an argument is out of range.

    Examples:
        >>> augment = BoostedRandAugment()
        >>> rng = random.Random(0)
        >>> magnitude, probability = augment.strength(1.0, rng)
        >>> magnitude, probability
        (30.0, 1.0)
        >>> augment(Image.new("RGB", (32, 32)), magnitude, probability, rng).size
        (32, 32)
    """

    def __init__(self, num_ops: int = 1, max_magnitude: float = 30.0) -> None:
        self.num_ops = check_int("num_ops", num_ops, 1, fix="BCL's default is 1.")
        low = 10.0 if num_ops == 1 else 5.0
        self.max_magnitude = check_real(
            "max_magnitude",
            max_magnitude,
            low,
            30.0,
            fix=f"With num_ops={num_ops} the magnitude starts at {low:g}; BCL's default is 30.",
        )

    def strength(self, score: float, rng: random.Random) -> tuple[float, float]:
        """``(magnitude, probability)`` for ``score``; draws from ``rng`` if ``num_ops > 1``."""
        draw = rng.random() if self.num_ops > 1 else 1.0
        return boost_strength(
            score, num_ops=self.num_ops, max_magnitude=self.max_magnitude, draw=draw
        )

    def __call__(
        self, image: Image.Image, magnitude: float, probability: float, rng: random.Random
    ) -> Image.Image:
        """Draws ``num_ops`` operations; applies each with ``probability`` at ``magnitude``."""
        for op in rng.choices(RAND_AUGMENT_OPS, k=self.num_ops):
            if rng.random() < probability:
                image = op.apply(image, op_value(op, magnitude), rng)
        return image

    def __repr__(self) -> str:
        return f"BoostedRandAugment(num_ops={self.num_ops}, max_magnitude={self.max_magnitude})"


def bcl_base_transform(size: int = 32) -> T.Compose:
    """The authors' crop and colour augmentation before the boosted RandAugment.

    Random resized crop to ``size`` (scale ``[0.1, 1]``, bicubic), horizontal flip,
    colour jitter ``(0.4, 0.4, 0.4, 0.1)`` with probability 0.8, grayscale with
    probability 0.2: ``data/augmentations.py: cifar_tfs_train`` without ``ToTensor``.

    Examples:
        >>> bcl_base_transform(32)(Image.new("RGB", (40, 40))).size
        (32, 32)
    """
    check_int("size", size, 1)
    return T.Compose(
        [
            T.RandomResizedCrop(size, scale=(0.1, 1.0), interpolation=T.InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
        ]
    )


class MomentumBoostedDataset(Dataset[tuple[list[Any], int, int]]):
    """Views of each sample augmented as strongly as its momentum loss asks, with its index.

    Item ``i`` is ``(views, label, i)``: ``num_views`` views of the image of
    ``dataset[i] = (image, label, ...)``, each ``to_tensor(augment(base(image)))`` at the
    strength of sample ``i``'s score; ``i`` is what
    :meth:`MomentumLoss.update <selfdamage.longtail.momentum_loss.MomentumLoss.update>`
    takes. After each epoch, :meth:`update_scores` reads the tracker's scores (and its
    epoch count, which reseeds the views). The scores live in shared memory, so
    ``DataLoader`` workers, persistent ones included, see them.

    Randomness: with ``seed=None`` the views draw from torch's generator, as torchvision
    transforms do (reproducible with ``torch.manual_seed`` and the same workers). With
    an ``int`` seed, the views of sample ``i`` depend only on ``(seed, epoch, i)``:
    the same for any number of workers or order of access (``base`` and ``to_tensor``
    must then draw from torch's generator, as torchvision's transforms do).

    Works with any dataset of PIL images: ``ImageFolder``, the package's
    :class:`~selfdamage.data.ImageTensorDataset` (the study's data in memory) or
    :class:`~selfdamage.data.ImageFileDataset`, without a transform of their own.

    Args:
        dataset: Items ``(image, label, ...)`` with a PIL ``image``.
        base: Transform before the boosted RandAugment, e.g. :func:`bcl_base_transform`
            (the authors' on CIFAR); ``None`` for none.
        augment: The boosted RandAugment (default ``BoostedRandAugment()``).
        to_tensor: Transform after it (default ``ToTensor()``, as the authors).
        num_views: Views per item, ``>= 1`` (2 for contrastive learning).
        seed: ``None``, or an ``int`` for views that depend only on seed, epoch and index.

    Raises:
        ValueError: If ``num_views`` or ``seed`` is out of range.
        TypeError: If ``base`` or ``to_tensor`` is not callable.

    Examples:
        >>> from selfdamage.data import ImageTensorDataset
        >>> images = torch.zeros(4, 28, 28, dtype=torch.uint8)
        >>> data = MomentumBoostedDataset(
        ...     ImageTensorDataset(images, [0, 1, 0, 1]), base=bcl_base_transform(28), seed=0
        ... )
        >>> tracker = MomentumLoss(len(data))
        >>> views, label, index = data[2]
        >>> len(views), views[0].shape, label, index
        (2, torch.Size([1, 28, 28]), 0, 2)
        >>> tracker.update(torch.arange(4), torch.tensor([1.0, 2.0, 3.0, 6.0]))
        >>> _ = tracker.step()
        >>> data.update_scores(tracker)
        >>> data.scores
        tensor([0.1667, 0.3333, 0.5000, 1.0000])
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        *,
        base: Callable[[Image.Image], Image.Image] | None = None,
        augment: BoostedRandAugment | None = None,
        to_tensor: Callable[[Image.Image], Any] | None = None,
        num_views: int = 2,
        seed: int | None = None,
    ) -> None:
        for name, value in (("base", base), ("to_tensor", to_tensor)):
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be callable or None, got {name}={value!r}.")
        self.dataset = dataset
        self.base = base
        self.augment = BoostedRandAugment() if augment is None else augment
        self.to_tensor = T.ToTensor() if to_tensor is None else to_tensor
        self.num_views = check_int("num_views", num_views, 1)
        self.seed = None if seed is None else check_int("seed", seed, 0)
        size = len(dataset)  # type: ignore[arg-type]
        self.scores = torch.zeros(size).share_memory_()
        self.epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def update_scores(self, tracker: MomentumLoss) -> None:
        """Takes the tracker's scores and epoch count (once per epoch; one device copy).

        Raises:
            ValueError: If the tracker keeps another number of samples.
        """
        if tracker.num_samples != len(self.scores):
            raise ValueError(
                f"tracker must keep one score per item ({len(self.scores)}), got a "
                f"MomentumLoss of num_samples={tracker.num_samples}."
            )
        self.scores.copy_(tracker.scores)
        self.epoch.copy_(tracker.epochs)

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index: int) -> tuple[list[Any], int, int]:
        image, label = self.dataset[index][:2]
        if not isinstance(image, Image.Image):
            raise TypeError(
                "MomentumBoostedDataset needs PIL images: give it the dataset without a "
                f"transform of its own; item {index} holds a {type(image).__name__}."
            )
        if self.seed is None:
            item_seed = int(torch.randint(2**62, ()).item())
        else:
            entropy = [self.seed, int(self.epoch), int(index)]
            item_seed = int(np.random.SeedSequence(entropy).generate_state(2, np.uint64)[0])
        rng = random.Random(item_seed)
        magnitude, probability = self.augment.strength(float(self.scores[index]), rng)
        if self.seed is None:
            return self._views(image, magnitude, probability, rng), int(label), int(index)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(item_seed)
            return self._views(image, magnitude, probability, rng), int(label), int(index)

    def _views(
        self, image: Image.Image, magnitude: float, probability: float, rng: random.Random
    ) -> list[Any]:
        return [self._view(image, magnitude, probability, rng) for _ in range(self.num_views)]

    def _view(
        self, image: Image.Image, magnitude: float, probability: float, rng: random.Random
    ) -> Any:
        if self.base is not None:
            image = self.base(image)
        return self.to_tensor(self.augment(image, magnitude, probability, rng))
