from __future__ import annotations

import pytest
import torch

from selfdamage.data import balanced_indices
from selfdamage.evaluation import linear_probe


def _blobs(per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three well separated Gaussian blobs in 16-d, unit noise, centres 20 apart."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.zeros(3, 16)
    centres[0, 0], centres[1, 1], centres[2, 2] = 20.0, 20.0, 20.0
    labels = torch.arange(3).repeat_interleave(per_class)
    features = centres[labels] + torch.randn(len(labels), 16, generator=generator)
    return features, labels


class TestLinearProbe:
    def test_separable_set_is_learned(self) -> None:
        train, train_labels = _blobs(50, seed=0)
        test, test_labels = _blobs(100, seed=1)
        predictions = linear_probe(train, train_labels, test)
        assert predictions.dtype == torch.int64
        assert predictions.shape == (300,)
        assert torch.equal(predictions, test_labels)

    def test_one_shot_ignores_noise_dimensions(self) -> None:
        # 13 of the 16 dimensions are pure noise; the probe must not amplify them.
        train, train_labels = _blobs(50, seed=0)
        test, test_labels = _blobs(100, seed=1)
        for seed in range(3):
            few = linear_probe(train, train_labels, test, shots_per_class=1, seed=seed)
            assert torch.equal(few, test_labels)

    def test_few_shot_is_deterministic_given_the_seed(self) -> None:
        train, train_labels = _blobs(50, seed=0)
        test, test_labels = _blobs(100, seed=1)
        first = linear_probe(train, train_labels, test, shots_per_class=10, seed=3)
        second = linear_probe(train, train_labels, test, shots_per_class=10, seed=3)
        assert torch.equal(first, second)
        assert (first == test_labels).float().mean() > 0.95

    def test_few_shot_uses_only_the_drawn_samples(self) -> None:
        # Mislabel every sample that the documented draw (balanced_indices with the
        # same seed) does not keep: the few-shot probe never sees them.
        train, train_labels = _blobs(50, seed=0)
        test, test_labels = _blobs(20, seed=1)
        drawn = torch.from_numpy(balanced_indices(train_labels, 10, seed=5).copy())
        poisoned = (train_labels + 1) % 3
        poisoned[drawn] = train_labels[drawn]
        few = linear_probe(train, poisoned, test, shots_per_class=10, seed=5)
        assert torch.equal(few, test_labels)
        assert not torch.equal(linear_probe(train, poisoned, test), test_labels)

    def test_feature_scale_is_irrelevant(self) -> None:
        train, train_labels = _blobs(50, seed=0)
        test, _ = _blobs(20, seed=1)
        scaled = linear_probe(train * 1000.0, train_labels, test * 1000.0)
        assert torch.equal(scaled, linear_probe(train, train_labels, test))

    def test_too_few_samples_for_the_shots(self) -> None:
        train, train_labels = _blobs(3, seed=0)
        with pytest.raises(ValueError, match=r"shots_per_class=5 .*class 0 has 3 samples"):
            linear_probe(train, train_labels, train, shots_per_class=5)

    @pytest.mark.parametrize(
        ("kwargs", "error", "pattern"),
        [
            ({"test_features": torch.zeros(2, 5)}, ValueError, r"16 columns"),
            ({"train_labels": torch.zeros(4, dtype=torch.int64)}, ValueError, r"one label"),
            ({"train_features": torch.zeros(150, 16, dtype=torch.int64)}, TypeError, "float"),
            ({"l2": -1.0}, ValueError, r"l2 must be >= 0"),
            ({"max_iter": 0}, ValueError, r"max_iter must be >= 1"),
        ],
    )
    def test_bad_arguments(self, kwargs: dict, error: type[Exception], pattern: str) -> None:
        train, train_labels = _blobs(50, seed=0)
        arguments = {
            "train_features": train,
            "train_labels": train_labels,
            "test_features": train[:4],
            **kwargs,
        }
        with pytest.raises(error, match=pattern):
            linear_probe(**arguments)
