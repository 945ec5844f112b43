"""Long-tailed subsets of labeled datasets: class-size profiles and seeded index selection.

A long-tailed subset keeps ``n_max`` samples of the most frequent ("head") class and
``n_max / imbalance_ratio`` of the rarest ("tail") class, with the classes in between
following a *profile*. Every profile here gives the class at rank ``r`` (rank 0 is the
head) ``int(n_max * (1 / imbalance_ratio) ** t_r)`` samples, for a position
``t_r`` in ``[0, 1]``:

- ``"exponential"``: ``t_r = r / (C - 1)``. The CIFAR-10/100-LT convention of LDAM-DRW
  [0] and SDCLR [1]: ``img_max * imb_factor ** (cls_idx / (cls_num - 1.0))`` with
  ``imb_factor = 1 / imbalance_ratio``, truncated by ``int()``.
- ``"step"``: ``t_r = 0`` for the first ``C // 2`` ranks and ``1`` for the others (LDAM's
  step profile; with an odd number of classes the tail half has the extra class).
- ``"pareto"``: ``t_r = ln(r + 1) / ln(C)``, i.e. ``n_max * (r + 1) ** -a`` with
  ``a = ln(imbalance_ratio) / ln(C)``: a power law in the class rank, the rank-size
  form of a Pareto distribution. ImageNet-LT [2] and SDCLR's ImageNet-100-LT were
  *drawn* from a Pareto distribution and published as fixed file lists; this is a
  deterministic profile of the same shape, not those lists.

Which samples of a class are kept is decided by one seeded random key per sample
(``numpy.random.default_rng(seed).random``): a class keeps its ``n`` samples with the
smallest keys. The selection is therefore reproducible across runs and machines, does
not depend on ``class_order``, and is nested: with the same seed, a class that keeps
fewer samples keeps a subset of what it keeps with more.

- [0] LDAM-DRW, 2019, https://arxiv.org/abs/1906.07413
- [1] SDCLR, 2021, https://arxiv.org/abs/2106.02990
- [2] OLTR (ImageNet-LT), 2019, https://arxiv.org/abs/1904.05160
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Union, get_args

import numpy as np
from torch import Tensor

from selfdamage._checks import check_int

__all__ = [
    "Labels",
    "LongTailSplit",
    "Profile",
    "balanced_indices",
    "longtail_counts",
    "longtail_indices",
]

Profile = Literal["exponential", "step", "pareto"]
"""Name of a class-size profile, see the module docstring."""

Labels = Union[Sequence[int], np.ndarray, Tensor]
"""Integer class labels ``0 .. C-1``, one per sample, as a list, NumPy array or tensor."""


@dataclass(frozen=True, eq=False)
class LongTailSplit:
    """A long-tailed subset of a labeled dataset, as returned by :func:`longtail_indices`.

    Attributes:
        indices: Sorted ``int64`` array of the kept sample indices, ready for
            ``torch.utils.data.Subset(dataset, split.indices)``.
        class_counts: Number of kept samples of each class, indexed by class id.
        class_order: Class ids from head to tail: ``class_order[0]`` is the most
            frequent class.

    Splits compare by identity; compare ``indices`` with ``numpy.array_equal``.

    Examples:
        >>> split = longtail_indices([0, 0, 0, 1, 1, 1], imbalance_ratio=3)
        >>> split.class_counts, split.class_order, len(split.indices)
        ((3, 1), (0, 1), 4)
    """

    indices: np.ndarray
    class_counts: tuple[int, ...]
    class_order: tuple[int, ...]


def longtail_counts(
    num_classes: int,
    n_max: int,
    imbalance_ratio: float,
    profile: Profile = "exponential",
) -> list[int]:
    """Per-rank class sizes of a long-tailed profile, from head (rank 0) to tail.

    Args:
        num_classes: Number of classes ``C``, at least 2.
        n_max: Size of the head class.
        imbalance_ratio: Head size over tail size, at least 1 (1 gives a balanced set).
            100 for CIFAR-10/100-LT in the paper.
        profile: ``"exponential"``, ``"step"`` or ``"pareto"``, see the module docstring.

    Returns:
        ``C`` class sizes; entry ``r`` is the size of the class at rank ``r``.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If an argument is out of range, ``profile`` is unknown, or the tail
            would be left with no samples (``n_max < imbalance_ratio``).

    Examples:
        >>> longtail_counts(10, 5000, 100)  # CIFAR-10-LT
        [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
        >>> longtail_counts(4, 100, 10, profile="step")
        [100, 100, 10, 10]
        >>> longtail_counts(4, 1000, 64, profile="pareto")  # 1000 * (r + 1) ** -3
        [1000, 125, 37, 15]
    """
    check_int("num_classes", num_classes, 2)
    check_int("n_max", n_max, 1)
    if isinstance(imbalance_ratio, bool) or not isinstance(imbalance_ratio, numbers.Real):
        raise TypeError(
            f"imbalance_ratio must be a number, got imbalance_ratio={imbalance_ratio!r}."
        )
    if not (math.isfinite(imbalance_ratio) and imbalance_ratio >= 1):
        raise ValueError(
            "imbalance_ratio is the head class size over the tail class size and must be "
            f"a finite number >= 1 (e.g. 100), got imbalance_ratio={imbalance_ratio!r}."
        )
    positions = _positions(num_classes, profile)
    imb_factor = 1.0 / imbalance_ratio
    counts = [int(n_max * imb_factor**t) for t in positions]
    if counts[-1] < 1:
        raise ValueError(
            f"n_max={n_max} with imbalance_ratio={imbalance_ratio} leaves the tail class "
            f"with {n_max * imb_factor:.3g} samples; use n_max >= imbalance_ratio."
        )
    return counts


def longtail_indices(
    targets: Labels,
    imbalance_ratio: float,
    *,
    profile: Profile = "exponential",
    class_order: Sequence[int] | int | None = None,
    seed: int = 0,
    n_max: int | None = None,
) -> LongTailSplit:
    """Selects a long-tailed subset of a labeled dataset.

    The class at rank ``r`` of ``class_order`` keeps ``longtail_counts(...)[r]``
    samples, chosen by seeded random keys (see the module docstring).

    Args:
        targets: Label of every sample of the full dataset, classes ``0 .. C-1``, every
            class present (e.g. ``torchvision_dataset.targets``).
        imbalance_ratio: Head size over tail size, at least 1 (100 in the paper).
        profile: ``"exponential"`` (CIFAR-LT), ``"step"`` or ``"pareto"``.
        class_order: Which classes are head and tail. ``None``: class ``0`` is the head
            and class ``C-1`` the tail (the CIFAR-LT convention). A permutation of
            ``0 .. C-1``: ``class_order[r]`` is the class at rank ``r``. An ``int``: a
            seed from which a random permutation is drawn.
        seed: Seed of the choice of samples within each class.
        n_max: Size of the head class. Default: the size of the smallest class, so that
            every ``class_order`` is feasible (5000 on CIFAR-10, 6000 on Fashion-MNIST).

    Returns:
        The kept indices, per-class counts and class order.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``targets`` is not a non-empty 1-d array of labels ``0 .. C-1``
            with every class present, ``class_order`` is not a permutation, a class has
            fewer samples than its rank requires, or :func:`longtail_counts` rejects the
            profile arguments.

    Examples:
        >>> targets = [c for c in range(3) for _ in range(100)]  # 3 classes x 100
        >>> split = longtail_indices(targets, imbalance_ratio=10, class_order=[2, 0, 1])
        >>> split.class_counts  # class 2 is the head, class 1 the tail
        (31, 10, 100)
        >>> split.indices[:3]
        array([1, 2, 3])
    """
    labels, sizes = _as_targets(targets, "targets")
    num_classes = len(sizes)
    if n_max is None:
        n_max = int(sizes.min())
    counts = longtail_counts(num_classes, n_max, imbalance_ratio, profile)
    order = _class_order(class_order, num_classes)
    per_class = np.empty(num_classes, dtype=np.int64)
    per_class[list(order)] = counts
    indices = _select(
        labels,
        per_class,
        seed,
        f"with profile={profile!r}, n_max={n_max}, imbalance_ratio={imbalance_ratio} "
        f"and class_order={list(order)}; lower n_max or put larger classes at the head",
    )
    return LongTailSplit(indices, tuple(int(n) for n in per_class), order)


def balanced_indices(targets: Labels, per_class: int, *, seed: int = 0) -> np.ndarray:
    """Selects ``per_class`` samples of every class, e.g. for a few-shot linear probe.

    The samples are chosen by the same seeded keys as :func:`longtail_indices`, so with
    the same seed a smaller ``per_class`` gives a subset of a larger one.

    Args:
        targets: Label of every sample, classes ``0 .. C-1``, every class present.
        per_class: Number of samples to keep of each class.
        seed: Seed of the choice of samples within each class.

    Returns:
        Sorted ``int64`` array of the kept sample indices.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``targets`` is malformed, ``per_class < 1`` or a class has fewer
            than ``per_class`` samples.

    Examples:
        >>> balanced_indices([0, 1, 0, 1, 0, 1], per_class=2)
        array([0, 1, 2, 3])
    """
    check_int("per_class", per_class, 1)
    labels, sizes = _as_targets(targets, "targets")
    wanted = np.full(len(sizes), per_class, dtype=np.int64)
    return _select(labels, wanted, seed, f"for per_class={per_class}; lower per_class")


def _positions(num_classes: int, profile: str) -> list[float]:
    """The exponent ``t_r`` in ``[0, 1]`` of each rank, see the module docstring."""
    ranks = range(num_classes)
    if profile == "exponential":
        return [r / (num_classes - 1.0) for r in ranks]
    if profile == "step":
        return [0.0 if r < num_classes // 2 else 1.0 for r in ranks]
    if profile == "pareto":
        return [math.log(r + 1) / math.log(num_classes) for r in ranks]
    raise ValueError(f"profile must be one of {list(get_args(Profile))}, got profile={profile!r}.")


def _as_targets(targets: Labels, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels as a 1-d ``int64`` array, and the number of samples of each class."""
    if isinstance(targets, Tensor):
        targets = targets.detach().cpu().numpy()
    labels = np.asarray(targets)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(
            f"{name} must be a non-empty 1-d sequence of labels, got shape {labels.shape}."
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(
            f"{name} must hold integer class labels, got dtype {labels.dtype}; convert "
            "them, e.g. with np.asarray(labels, dtype=np.int64)."
        )
    if labels.min() < 0:
        raise ValueError(f"{name} must be class ids >= 0, got label {labels.min()}.")
    labels = labels.astype(np.int64)
    sizes = np.bincount(labels)
    missing = np.flatnonzero(sizes == 0)
    if missing.size:
        raise ValueError(
            f"{name} must contain every class 0 .. {len(sizes) - 1}, but classes "
            f"{missing.tolist()} have no samples; relabel the classes to 0 .. C-1."
        )
    return labels, sizes


def _class_order(class_order: Sequence[int] | int | None, num_classes: int) -> tuple[int, ...]:
    if class_order is None:
        return tuple(range(num_classes))
    if isinstance(class_order, numbers.Integral) and not isinstance(class_order, bool):
        check_int("class_order", class_order, 0)
        keys = np.random.default_rng(int(class_order)).random(num_classes)
        return tuple(int(c) for c in np.argsort(keys, kind="stable"))
    array = np.asarray(class_order)
    if isinstance(class_order, (bool, str)) or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            "class_order must be None, a permutation of the class ids or an int seed, "
            f"got class_order={class_order!r}."
        )
    order = tuple(int(c) for c in array.reshape(-1))
    if array.ndim != 1 or sorted(order) != list(range(num_classes)):
        raise ValueError(
            f"class_order must be a permutation of 0 .. {num_classes - 1} (targets has "
            f"{num_classes} classes), got class_order={list(order)}."
        )
    return order


def _select(labels: np.ndarray, per_class: np.ndarray, seed: int, context: str) -> np.ndarray:
    """Keeps ``per_class[c]`` samples of each class ``c``: those with the smallest keys."""
    check_int("seed", seed, 0)
    keys = np.random.default_rng(seed).random(len(labels))
    chosen = []
    for cls, wanted in enumerate(per_class):
        members = np.flatnonzero(labels == cls)
        if len(members) < wanted:
            raise ValueError(
                f"class {cls} has {len(members)} samples but {wanted} are needed {context}."
            )
        chosen.append(members[np.argsort(keys[members], kind="stable")[:wanted]])
    return np.sort(np.concatenate(chosen))
