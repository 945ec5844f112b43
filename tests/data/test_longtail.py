from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from selfdamage.data import balanced_indices, longtail_counts, longtail_indices


def _targets(num_classes: int = 10, per_class: int = 60, seed: int = 123) -> np.ndarray:
    """A balanced, shuffled label vector."""
    labels = np.repeat(np.arange(num_classes), per_class)
    return np.random.default_rng(seed).permutation(labels)


class TestLongtailCounts:
    def test_exponential_cifar10_lt(self) -> None:
        # n_c = int(5000 * 0.01 ** (c / 9)); 0.01 ** (1 / 9) = 10 ** (-2 / 9) = 0.599484:
        # c=1: 5000 * 0.599484 = 2997.4   c=2: 5000 * 0.359381 = 1796.9
        # c=3: 5000 * 0.215443 = 1077.2   c=4: 5000 * 0.129155 = 645.8
        # c=5: 5000 * 0.077426 = 387.1    c=6: 5000 * 0.046416 = 232.1
        # c=7: 5000 * 0.027826 = 139.1    c=8: 5000 * 0.016681 = 83.4    c=9: 50
        expected = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
        assert longtail_counts(10, 5000, 100) == expected

    @pytest.mark.parametrize(
        ("num_classes", "n_max", "ratio", "total"),
        [
            # Training-set sizes published with LDAM-DRW (Cao et al. 2019), Table 1 setup.
            (10, 5000, 100, 12406),
            (10, 5000, 10, 20431),
            (100, 500, 100, 10847),
            (100, 500, 10, 19573),
        ],
    )
    def test_exponential_matches_published_cifar_lt_sizes(
        self, num_classes: int, n_max: int, ratio: float, total: int
    ) -> None:
        counts = longtail_counts(num_classes, n_max, ratio)
        assert sum(counts) == total
        assert counts[0] == n_max
        assert counts[-1] == n_max // ratio

    @pytest.mark.parametrize(
        ("num_classes", "expected"),
        [
            (10, [5000] * 5 + [50] * 5),
            (5, [5000, 5000, 50, 50, 50]),  # odd: the tail half has the extra class
        ],
    )
    def test_step(self, num_classes: int, expected: list[int]) -> None:
        assert longtail_counts(num_classes, 5000, 100, profile="step") == expected

    def test_pareto(self) -> None:
        # a = ln(100) / ln(10) = 2, so n_r = 1000 / (r + 1) ** 2:
        # 1000, 250, 111.1, 62.5, 40, 27.8, 20.4, 15.6, 12.3, 10
        expected = [1000, 250, 111, 62, 40, 27, 20, 15, 12, 10]
        assert longtail_counts(10, 1000, 100, profile="pareto") == expected

    def test_pareto_non_integer_exponent(self) -> None:
        # a = ln(10) / ln(5) = 1.430677; 2 ** a = 2.6958, 3 ** a = 4.8151, 4 ** a = 7.2670:
        # 1000 / 2.6958 = 370.96, 1000 / 4.8151 = 207.68, 1000 / 7.2670 = 137.61
        assert longtail_counts(5, 1000, 10, profile="pareto") == [1000, 370, 207, 137, 100]

    @pytest.mark.parametrize("profile", ["exponential", "step", "pareto"])
    def test_ratio_one_is_balanced(self, profile: str) -> None:
        assert longtail_counts(4, 30, 1, profile=profile) == [30] * 4  # type: ignore[arg-type]

    @pytest.mark.parametrize("profile", ["exponential", "step", "pareto"])
    def test_head_and_tail(self, profile: str) -> None:
        counts = longtail_counts(7, 700, 70, profile=profile)  # type: ignore[arg-type]
        assert counts[0] == 700
        assert counts[-1] == 10
        assert counts == sorted(counts, reverse=True)

    @pytest.mark.parametrize("ratio", [0.5, 0, -3, float("inf"), float("nan")])
    def test_bad_ratio(self, ratio: float) -> None:
        with pytest.raises(ValueError, match=r"imbalance_ratio.*>= 1.*got imbalance_ratio="):
            longtail_counts(10, 100, ratio)

    def test_bad_profile_lists_the_options(self) -> None:
        with pytest.raises(ValueError, match=r"'exponential', 'step', 'pareto'.*'zipf'"):
            longtail_counts(10, 100, 10, profile="zipf")  # type: ignore[arg-type]

    def test_tail_with_no_samples(self) -> None:
        with pytest.raises(ValueError, match=r"n_max=50 .*imbalance_ratio=100.*n_max >="):
            longtail_counts(10, 50, 100)

    @pytest.mark.parametrize(
        ("kwargs", "error", "pattern"),
        [
            ({"num_classes": 1}, ValueError, r"num_classes must be >= 2, got num_classes=1"),
            ({"n_max": 0}, ValueError, r"n_max must be >= 1"),
            ({"n_max": 10.0}, TypeError, r"n_max must be an int"),
            ({"num_classes": True}, TypeError, r"num_classes must be an int"),
            ({"imbalance_ratio": "10"}, TypeError, r"imbalance_ratio must be a number"),
        ],
    )
    def test_bad_arguments(self, kwargs: dict, error: type[Exception], pattern: str) -> None:
        arguments = {"num_classes": 10, "n_max": 100, "imbalance_ratio": 10, **kwargs}
        with pytest.raises(error, match=pattern):
            longtail_counts(**arguments)


class TestLongtailIndices:
    def test_subset_of_each_class_with_the_right_counts(self) -> None:
        targets = _targets()
        split = longtail_indices(targets, 10)
        expected = longtail_counts(10, 60, 10)
        assert split.class_counts == tuple(expected)
        assert split.class_order == tuple(range(10))
        assert np.bincount(targets[split.indices]).tolist() == expected
        assert len(np.unique(split.indices)) == len(split.indices) == sum(expected)
        assert (np.diff(split.indices) > 0).all()  # sorted
        assert split.indices.dtype == np.int64
        with warnings.catch_warnings():  # indexes torch tensors without a warning
            warnings.simplefilter("error")
            torch.arange(len(targets))[split.indices]

    def test_selection_rule(self) -> None:
        # Documented rule: a class keeps its samples with the smallest keys of
        # numpy.random.default_rng(seed).random(N).
        targets = np.array([0, 1, 0, 1, 0, 1, 0, 1])
        keys = np.random.default_rng(7).random(8)
        class1 = [1, 3, 5, 7]
        tail = min(class1, key=lambda i: keys[i])
        split = longtail_indices(targets, 4, seed=7)  # counts (4, 1)
        assert split.indices.tolist() == sorted([0, 2, 4, 6, tail])

    def test_same_seed_same_indices(self) -> None:
        targets = _targets()
        first = longtail_indices(targets, 10, seed=3, class_order=5)
        second = longtail_indices(targets, 10, seed=3, class_order=5)
        assert np.array_equal(first.indices, second.indices)
        assert first.class_order == second.class_order

    def test_other_seed_other_indices(self) -> None:
        targets = _targets()
        first = longtail_indices(targets, 10, seed=0)
        second = longtail_indices(targets, 10, seed=1)
        assert first.class_counts == second.class_counts
        assert not np.array_equal(first.indices, second.indices)

    def test_explicit_class_order(self) -> None:
        targets = _targets(num_classes=4, per_class=100)
        order = [2, 0, 3, 1]
        split = longtail_indices(targets, 10, class_order=order)
        counts = longtail_counts(4, 100, 10)  # [100, 46, 21, 10]
        assert split.class_order == tuple(order)
        for rank, cls in enumerate(order):
            assert split.class_counts[cls] == counts[rank]
        assert np.bincount(targets[split.indices]).tolist() == list(split.class_counts)

    def test_class_order_seed_draws_a_permutation(self) -> None:
        targets = _targets()
        orders = {longtail_indices(targets, 10, class_order=s).class_order for s in range(5)}
        assert len(orders) > 1
        for order in orders:
            assert sorted(order) == list(range(10))

    def test_nested_across_ratios_and_orders(self) -> None:
        # Within each class, the kept samples with the smaller count are a subset of
        # those with the larger count, whatever the ratio and class order.
        targets = _targets()
        mild = longtail_indices(targets, 2, seed=4).indices
        steep = longtail_indices(targets, 50, seed=4, class_order=[9, *range(9)]).indices
        for cls in range(10):
            a = set(mild[targets[mild] == cls].tolist())
            b = set(steep[targets[steep] == cls].tolist())
            assert a <= b or b <= a

    def test_labels_as_list_array_or_tensor(self) -> None:
        targets = _targets()
        reference = longtail_indices(targets, 10).indices
        for labels in (targets.tolist(), torch.from_numpy(targets), targets.astype(np.int32)):
            assert np.array_equal(longtail_indices(labels, 10).indices, reference)

    def test_default_n_max_is_the_smallest_class(self) -> None:
        targets = np.array([0] * 20 + [1] * 8 + [2] * 12)
        assert longtail_indices(targets, 4).class_counts == (8, 4, 2)

    def test_class_too_small_for_its_rank(self) -> None:
        targets = np.array([0] * 5 + [1] * 10 + [2] * 10)
        with pytest.raises(ValueError, match=r"class 0 has 5 samples but 10 are needed"):
            longtail_indices(targets, 2, n_max=10)

    def test_missing_class(self) -> None:
        with pytest.raises(ValueError, match=r"classes \[1\] have no samples"):
            longtail_indices([0, 0, 2, 2], 2)

    @pytest.mark.parametrize("order", [[0, 1, 1], [0, 1], [0, 1, 3]])
    def test_class_order_not_a_permutation(self, order: list[int]) -> None:
        with pytest.raises(ValueError, match=r"class_order must be a permutation of 0 .. 2"):
            longtail_indices(_targets(num_classes=3), 2, class_order=order)

    @pytest.mark.parametrize(
        ("targets", "error", "pattern"),
        [
            ([0.0, 1.0], TypeError, r"integer class labels"),
            ([[0, 1]], ValueError, r"1-d"),
            ([], ValueError, r"non-empty"),
            ([0, -1], ValueError, r">= 0"),
        ],
    )
    def test_bad_targets(self, targets: list, error: type[Exception], pattern: str) -> None:
        with pytest.raises(error, match=pattern):
            longtail_indices(targets, 2)

    def test_bad_class_order_type(self) -> None:
        with pytest.raises(TypeError, match=r"class_order must be None"):
            longtail_indices(_targets(), 2, class_order=[0.5] * 10)  # type: ignore[list-item]


class TestBalancedIndices:
    def test_per_class_counts_and_nesting(self) -> None:
        targets = _targets()
        five = balanced_indices(targets, 5, seed=2)
        ten = balanced_indices(targets, 10, seed=2)
        assert np.bincount(targets[five]).tolist() == [5] * 10
        assert set(five.tolist()) <= set(ten.tolist())

    def test_too_few_samples(self) -> None:
        with pytest.raises(ValueError, match=r"class 1 has 1 samples but 2 .*per_class=2"):
            balanced_indices([0, 0, 1], 2)
