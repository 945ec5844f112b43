from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

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


def _anisotropic(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """5 overlapping classes in 16-d, dimension i scaled by 0.6**i, as SSL features decay.

    Ill-conditioned: L-BFGS needs a few hundred iterations (100 leave predictions wrong).
    """
    generator = torch.Generator().manual_seed(seed)
    scales = 0.6 ** torch.arange(16, dtype=torch.float32)
    centres = torch.randn(5, 16, generator=generator)
    labels = torch.arange(5).repeat_interleave(30)
    train = (centres[labels] + torch.randn(150, 16, generator=generator)) * scales
    test_labels = torch.arange(5).repeat_interleave(200)
    test = (centres[test_labels] + torch.randn(1000, 16, generator=generator)) * scales
    return train, labels, test


def _newton_logits(
    train: torch.Tensor, labels: torch.Tensor, test: torch.Tensor, l2: float
) -> torch.Tensor:
    """The documented probe solved by damped Newton steps instead of L-BFGS: test logits.

    Same objective (mean cross-entropy + ``l2 / 2 * ||W||^2``, features centred and divided
    by their RMS deviation, float64); the exact Hessian, pseudo-inverted (the softmax is
    invariant to a shift of all biases), and step halving until the objective decreases.
    """
    train, test = train.double(), test.double()
    mean = train.mean(dim=0)
    scale = (train - mean).square().mean().sqrt()
    train, test = (train - mean) / scale, (test - mean) / scale
    dims, classes = train.shape[1], int(labels.max()) + 1

    def objective(theta: torch.Tensor) -> torch.Tensor:
        weight, bias = theta[: dims * classes].view(dims, classes), theta[dims * classes :]
        return F.cross_entropy(train @ weight + bias, labels) + 0.5 * l2 * weight.square().sum()

    theta = torch.zeros((dims + 1) * classes, dtype=torch.float64)
    for _ in range(40):
        gradient = torch.autograd.functional.jacobian(objective, theta)
        hessian = torch.autograd.functional.hessian(objective, theta)
        step, size = torch.linalg.pinv(hessian, hermitian=True) @ gradient, 1.0
        while objective(theta - size * step) > objective(theta) and size > 1e-8:
            size /= 2
        theta = theta - size * step
    assert gradient.abs().max() < 1e-9  # converged to the optimum
    weight, bias = theta[: dims * classes].view(dims, classes), theta[dims * classes :]
    return test @ weight + bias


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

    @pytest.mark.parametrize("seed", [1, 2])
    def test_predictions_are_those_of_the_optimum(self, seed: int) -> None:
        # The optimum computed another way (Newton's method); a probe stopped early
        # (max_iter=100) gets 3 to 5 of these 1,000 predictions wrong.
        train, labels, test = _anisotropic(seed)
        logits = _newton_logits(train, labels, test, l2=1e-4)
        top2 = logits.topk(2, dim=1).values
        clear = top2[:, 0] - top2[:, 1] > 1e-3  # not decided by rounding on another CPU
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # and it converges, so it does not warn
            predictions = linear_probe(train, labels, test)
        assert torch.equal(predictions[clear], logits.argmax(dim=1)[clear])
        assert clear.sum() > 990

    def test_warns_when_it_stops_unconverged(self) -> None:
        train, labels, test = _anisotropic(1)
        with pytest.warns(UserWarning, match=r"did not converge in max_iter=20 .*Raise max_iter"):
            linear_probe(train, labels, test, max_iter=20)

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
