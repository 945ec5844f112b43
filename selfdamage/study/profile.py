"""The study's class-size profile: the long tail trained on, its groups, and how it looks.

A natural long tail (``profile="natural"``, the default for your own images) is trained
on as it is; a subsampled profile (exponential, step, pareto) is drawn from the training
split per class order, as for the built-in datasets. :func:`describe_data` records what
the study found (class counts, imbalance ratio, the grouping rule, the labeled subset's
size, the test split's balance); :func:`bar_chart` draws the counts as text.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from selfdamage.data import LongTailSplit, longtail_indices
from selfdamage.evaluation import frequency_groups
from selfdamage.study.config import StudyConfig
from selfdamage.study.data import OWN_DATASETS, StudyData

__all__: list[str] = []  # the study's internals: no public name

_BARS = 20  # most rows of the text chart; more classes are shown in rank bins


def resolved_profile(config: StudyConfig) -> str:
    """The profile ``"auto"`` stands for: natural for your own images, else exponential.

    Examples:
        >>> resolved_profile(StudyConfig()), resolved_profile(StudyConfig(profile="step"))
        ('exponential', 'step')
    """
    if config.profile != "auto":
        return config.profile
    return "natural" if config.dataset in OWN_DATASETS else "exponential"


def training_split(config: StudyConfig, labels: Tensor, order: int) -> LongTailSplit:
    """The long-tailed training subset of class order ``order``.

    With a natural profile, the whole training split (every class order is the same);
    otherwise :func:`~selfdamage.data.longtail_indices` with class order and seed
    ``order``.

    Examples:
        >>> import torch
        >>> config = StudyConfig(dataset="folder", data_dir="x")
        >>> training_split(config, torch.tensor([0, 1, 1, 2, 2, 2]), 0).class_counts
        (1, 2, 3)
    """
    profile = resolved_profile(config)
    if profile == "natural":
        counts = np.bincount(labels.numpy())
        return LongTailSplit(
            np.arange(len(labels), dtype=np.int64),
            tuple(int(c) for c in counts),
            tuple(int(c) for c in np.argsort(-counts, kind="stable")),
        )
    return longtail_indices(
        labels,
        config.imbalance_ratio,
        profile=profile,  # type: ignore[arg-type]  # checked by StudyConfig
        class_order=order,
        seed=order,
        n_max=config.n_max,
    )


def group_thresholds(config: StudyConfig) -> tuple[int, int] | None:
    """``(many_above, few_below)`` for ``groups="counts"``, None for thirds.

    Examples:
        >>> group_thresholds(StudyConfig(groups="counts"))
        (100, 20)
    """
    return config.group_thresholds if config.groups == "counts" else None


def group_rule(config: StudyConfig) -> str:
    """The grouping rule in words, for the report.

    Examples:
        >>> group_rule(StudyConfig(groups="counts"))
        'by training images: Many > 100, Medium 20-100, Few < 20'
    """
    if config.groups == "thirds":
        return "thirds of the classes by training images (rarest third: Few)"
    many, few = config.group_thresholds
    return f"by training images: Many > {many}, Medium {few}-{many}, Few < {few}"


def probe_shots(config: StudyConfig, labels: Tensor) -> int:
    """Labeled images per class for the probe: ``probe_shots`` capped by the rarest class.

    0 (every training image) stays 0.

    Examples:
        >>> import torch
        >>> probe_shots(StudyConfig(probe_shots=100), torch.tensor([0, 0, 0, 1, 1]))
        2
    """
    if config.probe_shots == 0:
        return 0
    return min(config.probe_shots, int(np.bincount(labels.numpy()).min()))


def describe_data(config: StudyConfig, data: StudyData) -> dict[str, Any]:
    """What the study trains and measures on, for ``results.json`` and the report.

    ``train_counts`` are the training split's class sizes, ``class_counts`` those of the
    subset trained on (class order 0), ``imbalance_ratio`` its largest over smallest
    class, ``groups`` its Many / Medium / Few classes by ``group_rule``. The probe's
    ``probe_shots`` are the asked ones capped by the rarest training class. A test split
    whose classes differ in size is ``test_balanced: False``: then the runs also report
    ``balanced_accuracy``, the mean of the per-class accuracies, which is what the group
    accuracies are.

    Raises:
        ValueError: If there are fewer than 3 classes, or ``group_thresholds`` leave a
            group empty (the message says how to choose them), before any training.

    Examples:
        >>> info = describe_data(config, data)  # doctest: +SKIP
        >>> info["imbalance_ratio"]  # doctest: +SKIP
        50.0
    """
    split = training_split(config, data.train_labels, 0)
    counts = split.class_counts
    try:
        many, medium, few = frequency_groups(counts, thresholds=group_thresholds(config))
    except ValueError as error:
        if config.groups != "counts" or len(counts) < 3:
            raise  # too few classes for three groups: no threshold helps
        raise ValueError(  # thresholds checked by StudyConfig: a group is empty
            f"{error} With groups='counts' (--groups counts) choose group_thresholds "
            "(--group-thresholds MANY_ABOVE FEW_BELOW) that fit the data, or use "
            "groups='thirds'."
        ) from error
    test_counts = np.bincount(data.test_labels.numpy(), minlength=data.num_classes)
    shots = probe_shots(config, data.train_labels)
    classes = data.classes or tuple(str(c) for c in range(data.num_classes))
    return {
        "source": _source(config),
        "classes": list(classes),
        "profile": resolved_profile(config),
        "train_counts": np.bincount(data.train_labels.numpy()).tolist(),
        "class_counts": list(counts),
        "imbalance_ratio": max(counts) / max(1, min(counts)),
        "group_rule": group_rule(config),
        "groups": {"many": list(many), "medium": list(medium), "few": list(few)},
        "probe_shots": shots,
        "probe_shots_capped": shots < config.probe_shots,
        "test_counts": test_counts.tolist(),
        "test_balanced": bool((test_counts == test_counts[0]).all()),
        "image_shape": list(data.image_shape),
        "mean": list(data.mean),
        "std": list(data.std),
    }


def bar_chart(counts: list[int], classes: list[str], *, width: int = 40) -> list[str]:
    """Class sizes from head to tail as text bars, one row per class (or rank bin).

    With more than 20 classes, each row is a bin of consecutive ranks with its mean size.

    Examples:
        >>> for line in bar_chart([10, 40, 20], ["a", "b", "c"], width=4):
        ...     print(line)
        b  ████ 40
        c  ██ 20
        a  █ 10
    """
    order = sorted(range(len(counts)), key=lambda c: (-counts[c], c))
    if len(order) <= _BARS:
        rows = [(classes[c], float(counts[c])) for c in order]
    else:
        bins = np.array_split(np.arange(len(order)), _BARS)
        rows = [
            (f"ranks {b[0] + 1}-{b[-1] + 1}", float(np.mean([counts[order[r]] for r in b])))
            for b in bins
        ]
    top = max(value for _, value in rows) or 1.0
    label = max(len(name) for name, _ in rows)
    return [
        f"{name.ljust(label)}  {'█' * max(1, round(width * value / top))} {value:.0f}"
        for name, value in rows
    ]


def _source(config: StudyConfig) -> str:
    if config.dataset == "folder":
        return f"image folder {config.data_dir}"
    if config.dataset == "list":
        return f"list files {config.train_list}, {config.test_list}"
    return config.dataset
