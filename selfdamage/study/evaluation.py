"""The study's evaluation protocol for one pretrained model.

- a linear probe on frozen dense features, trained on a *balanced* labeled subset of the
  training split (``probe_shots`` per class, at most the rarest class's size,
  ``probe_draws`` draws), tested on the test split as given;
- Many / Medium / Few accuracy by class frequency in the long-tailed subset (thirds of
  the classes, or count thresholds), each the mean of its classes' accuracies, and the
  standard deviation of the three ("balancedness");
- on an imbalanced test split, also the class-balanced accuracy (the mean of the
  per-class accuracies) next to the plain one;
- kNN accuracy with the same balanced labeled subsets as memory;
- the AUROC of damage scores (dense vs twin disagreement) for telling Few-class samples of
  the long-tailed set from the others.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from selfdamage._modules import device_of
from selfdamage._warnings import warns_at_caller
from selfdamage.adapters import SelfDamagingAdapter
from selfdamage.data import balanced_indices
from selfdamage.evaluation import auroc, damage_scores, group_accuracy, knn_predict, linear_probe
from selfdamage.study.data import Images, StudyData

__all__ = ["EXTRA_METRICS", "METRICS", "evaluate"]

METRICS = ("accuracy", "many", "medium", "few", "balancedness", "knn", "damage_auroc")

EXTRA_METRICS = ("balanced_accuracy",)
"""Metrics only some runs have, the class-balanced accuracy of an imbalanced test split."""


@warns_at_caller
def evaluate(
    model: SelfDamagingAdapter,
    data: StudyData,
    class_counts: Sequence[int],
    longtail: Tensor,
    *,
    with_damage: bool,
    probe_shots: int,
    probe_draws: int,
    thresholds: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Every metric of :data:`METRICS` for ``model``, averaged over the probe draws.

    Args:
        model: The pretrained adapter.
        data: The dataset.
        class_counts: Samples per class in the long-tailed subset (defines the groups).
        longtail: Indices of the long-tailed subset (for the damage AUROC).
        with_damage: Measure the damage AUROC (for the baseline, with its final weights
            pruned, since it never trained a twin).
        probe_shots: Labeled samples per class, at most the rarest training class's
            size; 0 uses the whole training split.
        probe_draws: Number of labeled subsets drawn.
        thresholds: ``(many_above, few_below)`` training counts for the groups, or None
            for thirds of the classes.

    Returns:
        The metrics, plus ``probe_draws`` (each draw's metrics) and ``groups`` (the classes
        of each group); ``damage_auroc`` is ``None`` without ``with_damage``. With an
        imbalanced test split, also ``balanced_accuracy``.

    Raises:
        ValueError: If ``probe_shots`` exceeds the rarest training class.

    Examples:
        >>> metrics = evaluate(model, data, counts, indices, with_damage=True,
        ...     probe_shots=100, probe_draws=5)  # doctest: +SKIP
    """
    model.eval()
    test_counts = torch.bincount(data.test_labels, minlength=data.num_classes)
    imbalanced_test = bool((test_counts != test_counts[0]).any())
    test_features = _embed(model, data.test_images, torch.arange(len(data.test_labels)), data)
    draws = _probe_subsets(data.train_labels, probe_shots, probe_draws)
    needed = torch.as_tensor(np.unique(np.concatenate(draws)))
    features = torch.zeros(len(data.train_labels), test_features.shape[1])
    features[needed] = _embed(model, data.train_images, needed, data)

    per_draw: list[dict[str, float]] = []
    for d, idx in enumerate(draws):
        idx_t = torch.from_numpy(np.array(idx))
        train_f, train_y = features[idx_t], data.train_labels[idx_t]
        groups = group_accuracy(
            linear_probe(train_f, train_y, test_features, seed=d),
            data.test_labels,
            class_counts,
            thresholds=thresholds,
        )
        knn = knn_predict(train_f, train_y, test_features, k=min(200, len(idx)))
        knn_acc = float((knn == data.test_labels).float().mean())
        per_draw.append({**_group_metrics(groups.to_dict()), "knn": knn_acc})
        if imbalanced_test:
            per_draw[-1]["balanced_accuracy"] = statistics.fmean(groups.per_class)
    names = [m for m in METRICS + EXTRA_METRICS if m in per_draw[0]]
    metrics: dict[str, Any] = {m: statistics.fmean(d[m] for d in per_draw) for m in names}
    metrics["probe_draws"] = per_draw
    metrics["groups"] = {
        key: groups.to_dict()[f"{key}_classes"] for key in ("many", "medium", "few")
    }
    few = metrics["groups"]["few"]
    metrics["damage_auroc"] = _damage_auroc(model, data, longtail, few) if with_damage else None
    return metrics


def _probe_subsets(labels: Tensor, probe_shots: int, probe_draws: int) -> list[np.ndarray]:
    """The labeled subsets of the probe: ``probe_draws`` balanced draws, or all of ``labels``."""
    if probe_shots == 0:
        return [np.arange(len(labels))]
    return [balanced_indices(labels, probe_shots, seed=10_000 + d) for d in range(probe_draws)]


def _damage_auroc(
    model: SelfDamagingAdapter, data: StudyData, longtail: Tensor, few: list[int]
) -> float:
    """How well damage scores tell the long-tailed subset's Few-class samples from the rest."""
    if model.baseline:
        model.refresh_mask()  # the baseline's twin: its final weights, pruned
    scores = damage_scores(model.wrapper, _batches(data.train_images, longtail, data, model))
    return auroc(scores, torch.isin(data.train_labels[longtail], torch.as_tensor(few)))


@torch.no_grad()
def _embed(model: SelfDamagingAdapter, images: Images, indices: Tensor, data: StudyData) -> Tensor:
    return torch.cat([model.embed(x) for x in _batches(images, indices, data, model)]).cpu()


def _batches(
    images: Images, indices: Tensor, data: StudyData, model: nn.Module
) -> Iterator[Tensor]:
    """Normalized float batches of the ``uint8`` images ``indices``, on the model's device."""
    device = device_of(model)
    mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(data.std, device=device).view(1, -1, 1, 1)
    if isinstance(images, Tensor):
        chosen = images[indices]
        batches: Iterable[Tensor] = (
            chosen[start : start + 1024] for start in range(0, len(chosen), 1024)
        )
    else:
        batches = images.batches(indices.tolist(), 256)
    for batch in batches:
        yield (batch.to(device).float() / 255 - mean) / std


def _group_metrics(groups: dict[str, Any]) -> dict[str, float]:
    return {m: float(groups[m]) for m in ("accuracy", "many", "medium", "few", "balancedness")}
