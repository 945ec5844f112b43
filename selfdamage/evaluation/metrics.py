"""Long-tail metrics: Many / Medium / Few group accuracy, balancedness, and AUROC."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
from torch import Tensor

from selfdamage._checks import check_int
from selfdamage.evaluation._inputs import as_label_tensor

__all__ = ["GroupAccuracy", "auroc", "frequency_groups", "group_accuracy"]

Groups = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
"""Class ids of the Many, Medium and Few groups."""

Scores = Union[Sequence[float], np.ndarray, Tensor]


def frequency_groups(
    class_counts: Sequence[int], *, thresholds: tuple[int, int] | None = None
) -> Groups:
    """Splits classes into Many / Medium / Few by their training-set frequency.

    By default into thirds of the classes, as SDCLR's evaluation [0] does: the
    ``C // 3`` rarest classes are Few, the next ``C // 3`` Medium, the remaining
    (``C - 2 * (C // 3)``) Many; equal counts are ordered by class id (the lower id
    counts as rarer). With ``thresholds=(many_above, few_below)`` a class is Many if its
    count is ``> many_above``, Few if ``< few_below``, Medium otherwise; ImageNet-LT
    uses ``(100, 20)``.

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990

    Args:
        class_counts: Training samples of each class, indexed by class id (e.g.
            ``LongTailSplit.class_counts``).
        thresholds: ``(many_above, few_below)`` count thresholds, or None for thirds.

    Returns:
        Sorted class ids of the Many, Medium and Few groups.

    Raises:
        ValueError: If there are fewer than 3 classes, the thresholds are inverted, or a
            group is empty.

    Examples:
        >>> frequency_groups([500, 10, 200, 50, 1000, 100, 20])
        ((0, 2, 4), (3, 5), (1, 6))
        >>> frequency_groups([500, 10, 200, 50, 1000, 100, 20], thresholds=(100, 20))
        ((0, 2, 4), (3, 5, 6), (1,))
    """
    counts = np.asarray(class_counts)
    if counts.ndim != 1 or len(counts) < 3:
        raise ValueError(
            "class_counts must hold the training count of at least 3 classes, got "
            f"class_counts={list(class_counts)!r}."
        )
    if thresholds is None:
        third = len(counts) // 3
        rarest_first = np.argsort(counts, kind="stable")
        parts = [rarest_first[2 * third :], rarest_first[third : 2 * third], rarest_first[:third]]
    else:
        many_above, few_below = (
            check_int(f"thresholds[{i}]", value, 0) for i, value in enumerate(thresholds)
        )
        if few_below > many_above:
            raise ValueError(
                "thresholds must be (many_above, few_below) with few_below <= many_above, "
                f"e.g. (100, 20), got thresholds={thresholds!r}."
            )
        few = counts < few_below
        many = counts > many_above
        parts = [np.flatnonzero(many), np.flatnonzero(~many & ~few), np.flatnonzero(few)]
    groups = tuple(tuple(sorted(int(c) for c in part)) for part in parts)
    for name, group in zip(("Many", "Medium", "Few"), groups):
        if not group:
            raise ValueError(
                f"the {name} group is empty for class_counts={counts.tolist()} and "
                f"thresholds={thresholds!r}; choose thresholds that leave classes in "
                "every group."
            )
    return groups[0], groups[1], groups[2]


@dataclass(frozen=True)
class GroupAccuracy:
    """Accuracy of a classifier overall, per class and per frequency group.

    Accuracies are fractions in ``[0, 1]``. A group's accuracy is the mean of its
    classes' accuracies, as in SDCLR's evaluation, so every class weighs the same
    whatever its number of test samples.

    Attributes:
        accuracy: Fraction of all test samples classified correctly.
        per_class: Accuracy on the test samples of each class, indexed by class id.
        many: Mean accuracy of the Many classes.
        medium: Mean accuracy of the Medium classes.
        few: Mean accuracy of the Few classes.
        balancedness: Population standard deviation (``ddof=0``) of ``many``,
            ``medium`` and ``few``, the paper's "balancedness"; lower is more balanced.
        groups: Class ids of the Many, Medium and Few groups.

    Examples:
        >>> result = group_accuracy([0, 1, 2, 0], [0, 1, 2, 2], [30, 20, 10])
        >>> result.to_dict()["few"], round(result.balancedness, 4)
        (0.5, 0.2357)
    """

    accuracy: float
    per_class: tuple[float, ...]
    many: float
    medium: float
    few: float
    balancedness: float
    groups: Groups

    def to_dict(self) -> dict[str, Any]:
        """The metrics as a JSON-ready dict of floats and lists."""
        return {
            "accuracy": self.accuracy,
            "many": self.many,
            "medium": self.medium,
            "few": self.few,
            "balancedness": self.balancedness,
            "per_class": list(self.per_class),
            "many_classes": list(self.groups[0]),
            "medium_classes": list(self.groups[1]),
            "few_classes": list(self.groups[2]),
        }


def group_accuracy(
    predictions: Sequence[int] | np.ndarray | Tensor,
    labels: Sequence[int] | np.ndarray | Tensor,
    train_class_counts: Sequence[int],
    *,
    thresholds: tuple[int, int] | None = None,
) -> GroupAccuracy:
    """Scores test predictions overall, per class, and per Many / Medium / Few group.

    Groups come from :func:`frequency_groups` on the *training* counts, so a balanced
    test set can be scored by how often each class was seen during pre-training.

    Args:
        predictions: Predicted class of each test sample, shape ``(M,)``.
        labels: True class of each test sample, shape ``(M,)``.
        train_class_counts: Training samples of each class (e.g.
            ``LongTailSplit.class_counts``).
        thresholds: ``(many_above, few_below)``, or None for thirds of the classes.

    Returns:
        The metrics.

    Raises:
        ValueError: If shapes disagree, a label is not a class of
            ``train_class_counts``, a class has no test sample, or
            :func:`frequency_groups` rejects the counts.

    Examples:
        >>> result = group_accuracy([0, 1, 1, 2], [0, 1, 2, 2], [30, 20, 10])
        >>> result.accuracy, result.per_class, (result.many, result.medium, result.few)
        (0.75, (1.0, 1.0, 0.5), (1.0, 1.0, 0.5))
    """
    predicted = as_label_tensor(predictions, "predictions").numpy()
    truth = as_label_tensor(labels, "labels").numpy()
    if predicted.shape != truth.shape or truth.size == 0:
        raise ValueError(
            "predictions and labels must be non-empty and of the same length, got "
            f"{predicted.size} predictions and {truth.size} labels."
        )
    groups = frequency_groups(train_class_counts, thresholds=thresholds)
    num_classes = len(train_class_counts)
    if truth.max() >= num_classes:
        raise ValueError(
            f"labels hold class {truth.max()}, but train_class_counts has only "
            f"{num_classes} classes."
        )
    correct = predicted == truth
    tested = np.bincount(truth, minlength=num_classes)
    if (tested == 0).any():
        raise ValueError(
            f"classes {np.flatnonzero(tested == 0).tolist()} have no test samples; every "
            "class needs some to score its group (use a balanced test set)."
        )
    per_class = np.bincount(truth, weights=correct, minlength=num_classes) / tested
    many, medium, few = (float(per_class[list(group)].mean()) for group in groups)
    return GroupAccuracy(
        accuracy=float(correct.mean()),
        per_class=tuple(float(a) for a in per_class),
        many=many,
        medium=medium,
        few=few,
        balancedness=float(np.std([many, medium, few])),
        groups=groups,
    )


def auroc(scores: Scores, positives: Scores) -> float:
    """Area under the ROC curve: how well ``scores`` rank positives above negatives.

    The Mann-Whitney statistic: the fraction of (positive, negative) pairs in which the
    positive has the higher score, a tie counting 1/2. 1 is perfect separation, 0.5
    chance. With damage scores and ``positives = is_tail`` it measures how well the
    damage finds the rare samples.

    Args:
        scores: One finite score per sample, shape ``(N,)``.
        positives: ``True`` for positive samples (e.g. tail classes), shape ``(N,)``.

    Returns:
        The AUROC, in ``[0, 1]``.

    Raises:
        ValueError: If shapes disagree, a score is not finite, or there are no
            positives or no negatives.

    Examples:
        >>> auroc([0.9, 0.4, 0.4, 0.1], [True, True, False, False])
        0.875
    """
    values = np.asarray(scores.detach().cpu() if isinstance(scores, Tensor) else scores)
    is_positive = np.asarray(
        positives.detach().cpu() if isinstance(positives, Tensor) else positives
    ).astype(bool)
    if values.ndim != 1 or values.shape != is_positive.shape:
        raise ValueError(
            "scores and positives must be 1-d and of the same length, got shapes "
            f"{values.shape} and {is_positive.shape}."
        )
    if not np.isfinite(values).all():
        raise ValueError("scores must be finite, got NaN or infinite values.")
    num_pos = int(is_positive.sum())
    num_neg = len(is_positive) - num_pos
    if num_pos == 0 or num_neg == 0:
        raise ValueError(
            f"auroc needs positive and negative samples, got {num_pos} positives and "
            f"{num_neg} negatives."
        )
    # Mid-ranks (1-based, ties share their average rank) give the tie-as-1/2 count.
    _, group_of, group_size = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(group_size)
    ranks = (ends - (group_size - 1) / 2.0)[group_of.reshape(-1)]
    pairs_won = ranks[is_positive].sum() - num_pos * (num_pos + 1) / 2.0
    return float(pairs_won / (num_pos * num_neg))
