from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

from selfdamage.evaluation import GroupAccuracy, auroc, frequency_groups, group_accuracy

# Six classes; training counts deliberately not in class-id order.
# Sorted by count: 600 (c3), 500 (c0), 400 (c5), 300 (c1), 200 (c4), 100 (c2).
# Thirds: Many = {0, 3}, Medium = {1, 5}, Few = {2, 4}.
COUNTS = [500, 300, 100, 600, 200, 400]


def _predictions(correct_per_class: dict[int, int], per_class: int = 10) -> tuple[list, list]:
    """Labels with ``per_class`` test samples per class; the first ``correct`` of each
    class are predicted right, the others as the next class."""
    labels, predictions = [], []
    for cls, correct in correct_per_class.items():
        for i in range(per_class):
            labels.append(cls)
            predictions.append(cls if i < correct else (cls + 1) % 6)
    return predictions, labels


class TestFrequencyGroups:
    def test_thirds(self) -> None:
        assert frequency_groups(COUNTS) == ((0, 3), (1, 5), (2, 4))

    def test_thirds_give_the_remainder_to_many(self) -> None:
        # 7 classes: 7 // 3 = 2 Few, 2 Medium, 3 Many (as SDCLR's exp_analyse.py).
        many, medium, few = frequency_groups([7, 6, 5, 4, 3, 2, 1])
        assert (many, medium, few) == ((0, 1, 2), (3, 4), (5, 6))

    def test_ties_are_ordered_by_class_id(self) -> None:
        # Step profile. Rarest first, equal counts by class id: c3 c4 c5 (1), c0 c1 c2 (9);
        # Few = {3, 4}, Medium = {5, 0}, Many = {1, 2}.
        assert frequency_groups([9, 9, 9, 1, 1, 1]) == ((1, 2), (0, 5), (3, 4))

    def test_thresholds(self) -> None:
        # Many: > 350 -> c0 (500), c3 (600), c5 (400); Few: < 150 -> c2 (100).
        assert frequency_groups(COUNTS, thresholds=(350, 150)) == ((0, 3, 5), (1, 4), (2,))

    def test_thresholds_at_the_boundary(self) -> None:
        # ImageNet-LT: Many > 100, Few < 20, so 100 and 20 are Medium.
        assert frequency_groups([101, 100, 20, 19], thresholds=(100, 20)) == (
            (0,),
            (1, 2),
            (3,),
        )

    def test_empty_group(self) -> None:
        with pytest.raises(ValueError, match=r"the Few group is empty"):
            frequency_groups(COUNTS, thresholds=(350, 50))

    @pytest.mark.parametrize("bad", [float("nan"), 20.5, -1])
    def test_thresholds_must_be_counts(self, bad: float) -> None:
        # NaN compares False with every count: all classes fell into Medium.
        with pytest.raises((TypeError, ValueError), match=r"thresholds\[1\]"):
            frequency_groups(COUNTS, thresholds=(350, bad))  # type: ignore[arg-type]

    def test_inverted_thresholds(self) -> None:
        with pytest.raises(ValueError, match=r"few_below <= many_above.*\(20, 100\)"):
            frequency_groups(COUNTS, thresholds=(20, 100))

    def test_too_few_classes(self) -> None:
        with pytest.raises(ValueError, match=r"at least 3 classes"):
            frequency_groups([10, 1])


class TestGroupAccuracy:
    def test_hand_made_confusion(self) -> None:
        # correct out of 10: Many c0 10, c3 8 -> 0.9; Medium c1 6, c5 6 -> 0.6;
        # Few c2 1, c4 3 -> 0.2. Overall (10+6+1+8+3+6) / 60 = 34 / 60.
        # Population std of (0.9, 0.6, 0.2): mean 1.7/3 = 0.566667; squared deviations
        # 0.111111 + 0.001111 + 0.134444 = 0.246667; / 3 = 0.082222; sqrt = 0.286744.
        predictions, labels = _predictions({0: 10, 1: 6, 2: 1, 3: 8, 4: 3, 5: 6})
        result = group_accuracy(predictions, labels, COUNTS)
        assert result.per_class == pytest.approx((1.0, 0.6, 0.1, 0.8, 0.3, 0.6))
        assert result.many == pytest.approx(0.9)
        assert result.medium == pytest.approx(0.6)
        assert result.few == pytest.approx(0.2)
        assert result.accuracy == pytest.approx(34 / 60)
        assert result.balancedness == pytest.approx(0.286744, abs=1e-6)
        assert result.groups == ((0, 3), (1, 5), (2, 4))

    def test_groups_average_classes_not_samples(self) -> None:
        # Few = {2, 4}: class 2 has 1 test sample (right), class 4 has 9 (all wrong):
        # Few = mean(1.0, 0.0) = 0.5, whereas the sample accuracy of the group is 0.1.
        labels = [0, 1, 3, 5, 2] + [4] * 9
        predictions = [0, 1, 3, 5, 2] + [0] * 9
        result = group_accuracy(torch.tensor(predictions), np.array(labels), COUNTS)
        assert result.few == pytest.approx(0.5)
        assert result.accuracy == pytest.approx(5 / 14)

    def test_to_dict_is_json_ready(self) -> None:
        predictions, labels = _predictions({c: 5 for c in range(6)})
        result = group_accuracy(predictions, labels, COUNTS, thresholds=(350, 150))
        data = json.loads(json.dumps(result.to_dict()))
        assert data["few_classes"] == [2]
        assert data["many"] == data["medium"] == data["few"] == data["accuracy"] == 0.5
        assert data["balancedness"] == 0.0
        assert set(data) >= {"per_class", "many_classes", "medium_classes"}
        assert isinstance(result, GroupAccuracy)

    def test_class_without_test_samples(self) -> None:
        with pytest.raises(ValueError, match=r"classes \[5\] have no test samples"):
            group_accuracy([0, 1, 2, 3, 4], [0, 1, 2, 3, 4], COUNTS)

    def test_label_outside_the_classes(self) -> None:
        with pytest.raises(ValueError, match=r"class 6, but train_class_counts has only 6"):
            group_accuracy([0, 6], [0, 6], COUNTS)

    def test_length_mismatch(self) -> None:
        with pytest.raises(ValueError, match=r"same length"):
            group_accuracy([0, 1], [0], COUNTS)


def _auroc_by_pairs(scores: list[float], positives: list[bool]) -> float:
    """Reference: count every (positive, negative) pair, ties as 1/2."""
    pos = [s for s, p in zip(scores, positives) if p]
    neg = [s for s, p in zip(scores, positives) if not p]
    won = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return won / (len(pos) * len(neg))


class TestAuroc:
    def test_perfect_reversed_and_tied(self) -> None:
        positives = [True, True, False, False, False]
        assert auroc([0.9, 0.8, 0.3, 0.2, 0.1], positives) == 1.0
        assert auroc([0.1, 0.2, 0.3, 0.8, 0.9], positives) == 0.0
        assert auroc([0.5] * 5, positives) == 0.5

    def test_small_case_by_hand(self) -> None:
        # positives 0.8, 0.3; negatives 0.5, 0.3, 0.1.
        # 0.8 beats all three: 3.  0.3: loses to 0.5, ties 0.3 (1/2), beats 0.1: 1.5.
        # (3 + 1.5) / (2 * 3) = 0.75
        assert auroc([0.8, 0.5, 0.3, 0.3, 0.1], [True, False, True, False, False]) == 0.75

    def test_random_cases_with_ties_against_pair_counting(self) -> None:
        rng = np.random.default_rng(0)
        for _ in range(20):
            scores = rng.integers(0, 5, size=15).astype(float).tolist()
            positives = rng.random(15) < 0.4
            positives[:2] = [True, False]
            expected = _auroc_by_pairs(scores, positives.tolist())
            assert auroc(scores, positives) == pytest.approx(expected, abs=1e-12)

    def test_tensors(self) -> None:
        scores = torch.tensor([0.9, 0.1, 0.4])
        assert auroc(scores, torch.tensor([1, 0, 0])) == 1.0

    @pytest.mark.parametrize(
        ("scores", "positives", "pattern"),
        [
            ([0.1, 0.2], [True, True], r"0 negatives"),
            ([0.1, 0.2], [False, False], r"0 positives"),
            ([0.1, math.nan], [True, False], r"finite"),
            ([0.1, 0.2, 0.3], [True, False], r"same length"),
        ],
    )
    def test_bad_input(self, scores: list[float], positives: list[bool], pattern: str) -> None:
        with pytest.raises(ValueError, match=pattern):
            auroc(scores, positives)
