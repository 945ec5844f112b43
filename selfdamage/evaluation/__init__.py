"""Evaluation on frozen features and of the twin itself, as in the SDCLR paper.

- :func:`extract_features` — frozen features of a dense model over a loader.
- :func:`linear_probe` — logistic regression on frozen features, full- or few-shot.
- :func:`knn_predict` — temperature-weighted (or majority) cosine kNN.
- :func:`group_accuracy` — overall, per-class and Many / Medium / Few accuracy with
  balancedness (:class:`GroupAccuracy`); :func:`frequency_groups` — the groups.
- :func:`damage_scores` — per-sample disagreement between the dense model and its
  pruned twin; :func:`auroc` — how well a score separates tail from head samples.
"""

from __future__ import annotations

from selfdamage.evaluation.damage import damage_scores
from selfdamage.evaluation.features import extract_features
from selfdamage.evaluation.knn import knn_predict
from selfdamage.evaluation.linear_probe import linear_probe
from selfdamage.evaluation.metrics import (
    GroupAccuracy,
    auroc,
    frequency_groups,
    group_accuracy,
)

__all__ = [
    "GroupAccuracy",
    "auroc",
    "damage_scores",
    "extract_features",
    "frequency_groups",
    "group_accuracy",
    "knn_predict",
    "linear_probe",
]
