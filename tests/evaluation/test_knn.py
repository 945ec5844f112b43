from __future__ import annotations

import math

import pytest
import torch

from selfdamage.evaluation import knn_predict


def _unit(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


# Class 0: one sample at 0 degrees; class 1: two samples at 60 and 70 degrees.
TRAIN = torch.tensor([_unit(0), _unit(60), _unit(70)])
LABELS = torch.tensor([0, 1, 1])


class TestKnnPredict:
    def test_nearest_neighbour(self) -> None:
        test = torch.tensor([_unit(5), _unit(50), _unit(90)])
        assert knn_predict(TRAIN, LABELS, test, k=1).tolist() == [0, 1, 1]

    def test_weighted_vote_against_majority(self) -> None:
        # Test point at 5 degrees, k=3, temperature 0.1; cosines to the train samples:
        # cos 5 = 0.9962, cos 55 = 0.5736, cos 65 = 0.4226. Weights exp(cos / 0.1):
        # class 0: e^9.962 = 21,190;  class 1: e^5.736 + e^4.226 = 309.7 + 68.5 = 378.
        # The weighted vote picks class 0; a majority vote (all weights 1) picks class 1.
        test = torch.tensor([_unit(5)])
        assert knn_predict(TRAIN, LABELS, test, k=3, temperature=0.1).tolist() == [0]
        assert knn_predict(TRAIN, LABELS, test, k=3, temperature=math.inf).tolist() == [1]

    def test_high_temperature_approaches_majority(self) -> None:
        # temperature 10: weights e^0.0996 = 1.105 vs e^0.0574 + e^0.0423 = 1.059 + 1.043.
        test = torch.tensor([_unit(5)])
        assert knn_predict(TRAIN, LABELS, test, k=3, temperature=10.0).tolist() == [1]

    def test_cosine_ignores_feature_norms_and_batches(self) -> None:
        test = torch.tensor([_unit(5), _unit(50), _unit(90), _unit(20)])
        reference = knn_predict(TRAIN, LABELS, test, k=2)
        scaled = knn_predict(TRAIN * torch.tensor([[7.0], [0.1], [3.0]]), LABELS, test * 5, k=2)
        batched = knn_predict(TRAIN, LABELS, test, k=2, batch_size=1)
        assert torch.equal(scaled, reference)
        assert torch.equal(batched, reference)
        assert reference.dtype == torch.int64

    @pytest.mark.parametrize(
        ("kwargs", "pattern"),
        [
            ({"k": 4}, r"k must be in \[1, 3\].*k=4"),
            ({"k": 0}, r"k must be in \[1, 3\]"),
            ({"temperature": 0.0}, r"temperature must be > 0"),
            ({"batch_size": 0}, r"batch_size must be >= 1"),
            ({"test_features": torch.zeros(1, 3)}, r"2 columns"),
            ({"train_labels": [0, 1]}, r"one label per row"),
        ],
    )
    def test_bad_arguments(self, kwargs: dict, pattern: str) -> None:
        arguments = {
            "train_features": TRAIN,
            "train_labels": LABELS,
            "test_features": TRAIN,
            "k": 1,
            **kwargs,
        }
        with pytest.raises(ValueError, match=pattern):
            knn_predict(**arguments)
