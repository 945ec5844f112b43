"""k-nearest-neighbour classification on frozen features, the usual SSL monitor."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightly.utils.benchmarking import knn_predict as _lightly_knn_predict
from torch import Tensor

from selfdamage._checks import check_int
from selfdamage.data.longtail import Labels
from selfdamage.evaluation._inputs import check_probe_inputs

__all__ = ["knn_predict"]


@torch.no_grad()
def knn_predict(
    train_features: Tensor,
    train_labels: Labels,
    test_features: Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
    batch_size: int = 1024,
) -> Tensor:
    """Classifies test features by a weighted vote of their nearest training features.

    Similarity is cosine similarity. Each of the ``k`` most similar training samples
    votes for its class with weight ``exp(similarity / temperature)``, as in the kNN
    monitor of InstDisc [0] used throughout SSL (this calls lightly's
    ``knn_predict``, defaults ``k=200``, ``temperature=0.1``).
    ``temperature=math.inf`` gives every neighbour weight 1: a plain majority vote.
    Ties between classes are broken arbitrarily.

    - [0] InstDisc, 2018, https://arxiv.org/abs/1805.01978

    Args:
        train_features: Features of the labeled reference samples, shape ``(N, D)``.
        train_labels: Their classes ``0 .. C-1``, shape ``(N,)``.
        test_features: Features to classify, shape ``(M, D)``.
        k: Number of neighbours, ``1 <= k <= N``.
        temperature: Softness of the similarity weighting, ``> 0``.
        batch_size: Test samples compared with all training samples at once.

    Returns:
        Predicted classes of the test samples, ``int64`` of shape ``(M,)``.

    Raises:
        TypeError: If the features are not floating-point tensors.
        ValueError: If shapes disagree or ``k``, ``temperature`` or ``batch_size`` is
            out of range.

    Examples:
        >>> import math
        >>> train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
        >>> knn_predict(train, [0, 0, 1], torch.tensor([[0.1, 1.0]]), k=1)
        tensor([1])
        >>> knn_predict(train, [0, 0, 1], torch.tensor([[0.1, 1.0]]), k=3,
        ...             temperature=math.inf)  # majority of all three
        tensor([0])
    """
    labels = check_probe_inputs(train_features, train_labels, test_features)
    if not 1 <= k <= len(labels):
        raise ValueError(
            f"k must be in [1, {len(labels)}] (the number of training features), got "
            f"k={k!r}; lower k for a small labeled set."
        )
    if not temperature > 0:
        raise ValueError(
            f"temperature must be > 0 (math.inf for a majority vote), got "
            f"temperature={temperature!r}."
        )
    check_int("batch_size", batch_size, 1)
    bank = F.normalize(train_features.detach().float(), dim=1).t().contiguous()
    labels = labels.to(bank.device)
    num_classes = int(labels.max()) + 1
    test = F.normalize(test_features.detach().float().to(bank.device), dim=1)
    predictions = [
        _lightly_knn_predict(chunk, bank, labels, num_classes, k, temperature)[:, 0]
        for chunk in test.split(batch_size)
    ]
    return torch.cat(predictions).cpu()
