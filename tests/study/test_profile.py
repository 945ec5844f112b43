"""The class profile the study trains on, its groups, and the data description."""

from __future__ import annotations

import re
from math import inf, nan
from typing import Any

import numpy as np
import pytest
import torch

from selfdamage.data import longtail_indices
from selfdamage.study import StudyConfig
from selfdamage.study.data import StudyData
from selfdamage.study.profile import (
    bar_chart,
    describe_data,
    probe_shots,
    resolved_profile,
    training_split,
)

# A natural long tail of ten classes (CIFAR-10-LT's shape at ratio 20, 300 at the head).
COUNTS = [300, 215, 154, 110, 79, 56, 40, 29, 20, 15]


def _labels(counts: list[int]) -> torch.Tensor:
    return torch.from_numpy(np.repeat(np.arange(len(counts)), counts))


def _data(train: list[int], test: list[int]) -> StudyData:
    def images(n: int) -> torch.Tensor:
        return torch.zeros(n, 1, 2, 2, dtype=torch.uint8)

    return StudyData(images(sum(train)), _labels(train), images(sum(test)), _labels(test),
                     len(train), (0.5,), (0.5,))  # fmt: skip


FOLDER = {"dataset": "folder", "data_dir": "x"}


class TestTrainingSplit:
    def test_natural_is_the_whole_split(self) -> None:
        labels = _labels([3, 1, 2])
        split = training_split(StudyConfig(**FOLDER), labels[torch.randperm(6)], 0)
        assert split.indices.tolist() == list(range(6))
        assert split.class_counts == (3, 1, 2) and split.class_order == (0, 2, 1)

    def test_subsampled_as_the_built_in_datasets(self) -> None:
        labels = _labels([100] * 10)
        config = StudyConfig(**FOLDER, profile="step", imbalance_ratio=10, n_max=50)
        split = training_split(config, labels, 2)
        expected = longtail_indices(labels, 10, profile="step", class_order=2, seed=2, n_max=50)
        assert np.array_equal(split.indices, expected.indices)
        assert sorted(split.class_counts) == [5] * 5 + [50] * 5

    def test_auto(self) -> None:
        assert resolved_profile(StudyConfig()) == "exponential"
        assert resolved_profile(StudyConfig(dataset="list", train_list="a", test_list="b")) == (
            "natural"
        )


class TestGroups:
    def test_thirds_by_hand(self) -> None:
        info = describe_data(StudyConfig(**FOLDER), _data(COUNTS, [5] * 10))
        # 10 classes: the 3 rarest are Few, the next 3 Medium, the other 4 Many.
        assert info["groups"] == {"many": [0, 1, 2, 3], "medium": [4, 5, 6], "few": [7, 8, 9]}
        assert "thirds" in info["group_rule"]

    def test_imagenet_lt_counts_by_hand(self) -> None:
        config = StudyConfig(**FOLDER, groups="counts")
        info = describe_data(config, _data(COUNTS, [5] * 10))
        # Many: > 100 images (300, 215, 154, 110); Few: < 20 (15); Medium: 20-100.
        assert info["groups"] == {"many": [0, 1, 2, 3], "medium": [4, 5, 6, 7, 8], "few": [9]}
        assert info["group_rule"] == "by training images: Many > 100, Medium 20-100, Few < 20"

    def test_own_thresholds(self) -> None:
        config = StudyConfig(**FOLDER, groups="counts", group_thresholds=(60, 30))
        info = describe_data(config, _data(COUNTS, [5] * 10))
        assert info["groups"] == {"many": [0, 1, 2, 3, 4], "medium": [5, 6], "few": [7, 8, 9]}

    def test_empty_group_fails_before_training(self) -> None:
        config = StudyConfig(**FOLDER, groups="counts")
        with pytest.raises(ValueError, match=r"Few group is empty.*--group-thresholds"):
            describe_data(config, _data([300, 200, 50], [5] * 3))

    @pytest.mark.parametrize("groups", ["thirds", "counts"])
    def test_two_classes_get_no_threshold_advice(self, groups: str) -> None:
        # No threshold makes three groups of two classes: the advice would not help.
        with pytest.raises(ValueError) as info:
            describe_data(StudyConfig(**FOLDER, groups=groups), _data([10, 6], [3, 3]))
        message = str(info.value)
        assert "at least 3 classes, got class_counts=[10, 6]" in message
        assert "threshold" not in message and "groups=" not in message


class TestDescribeData:
    def test_profile_and_ratio(self) -> None:
        info = describe_data(StudyConfig(**FOLDER), _data(COUNTS, [5] * 10))
        assert info["profile"] == "natural" and info["imbalance_ratio"] == 20.0
        assert info["class_counts"] == COUNTS == info["train_counts"]
        assert info["test_balanced"] is True

    def test_probe_shots_capped_by_the_rarest_class(self) -> None:
        info = describe_data(StudyConfig(**FOLDER, probe_shots=100), _data(COUNTS, [5] * 10))
        assert info["probe_shots"] == 15 and info["probe_shots_capped"] is True
        assert probe_shots(StudyConfig(probe_shots=10), _labels(COUNTS)) == 10
        assert probe_shots(StudyConfig(probe_shots=0), _labels(COUNTS)) == 0

    def test_imbalanced_test_split(self) -> None:
        info = describe_data(StudyConfig(**FOLDER), _data(COUNTS, [9] * 9 + [3]))
        assert info["test_balanced"] is False and info["test_counts"][-1] == 3


class TestBarChart:
    def test_head_to_tail(self) -> None:
        lines = bar_chart([1, 4, 2], ["a", "bb", "c"], width=8)
        assert lines == ["bb  ████████ 4", "c   ████ 2", "a   ██ 1"]

    def test_many_classes_in_rank_bins(self) -> None:
        counts = list(range(40, 0, -1))  # 40 classes, 2 per bin
        lines = bar_chart(counts, [str(c) for c in range(40)], width=10)
        assert len(lines) == 20
        assert lines[0].startswith("ranks 1-2") and lines[0].endswith(" 40")  # mean 39.5
        assert lines[-1].startswith("ranks 39-40") and lines[-1].endswith(" 2")  # mean 1.5


class TestConfig:
    def test_folder_needs_data_dir(self) -> None:
        with pytest.raises(ValueError, match="dataset='folder' needs data_dir"):
            StudyConfig(dataset="folder")

    def test_list_needs_both_lists(self) -> None:
        with pytest.raises(ValueError, match="dataset='list' needs train_list and test_list"):
            StudyConfig(dataset="list", train_list="a")

    def test_natural_has_one_class_order(self) -> None:
        with pytest.raises(ValueError, match="class_orders=2 needs a subsampled profile"):
            StudyConfig(**FOLDER, class_orders=2)
        StudyConfig(**FOLDER, class_orders=2, profile="exponential")

    def test_own_data_options_need_own_data(self) -> None:
        with pytest.raises(ValueError, match="image_size applies to dataset='folder' or 'list'"):
            StudyConfig(image_size=32)

    @pytest.mark.parametrize("thresholds", [(20, 100), (100,), (100, -1)])
    def test_bad_thresholds(self, thresholds: tuple[int, ...]) -> None:
        with pytest.raises(ValueError, match="group_thresholds"):
            StudyConfig(group_thresholds=thresholds)  # type: ignore[arg-type]

    def test_mean_and_std_go_together(self) -> None:
        with pytest.raises(ValueError, match="mean and std go together"):
            StudyConfig(**FOLDER, mean=(0.5,))
        with pytest.raises(ValueError, match=r"std\[0\] must be > 0.0, got std\[0\]=0.0"):
            StudyConfig(**FOLDER, mean=(0.5,), std=(0.0,))

    @pytest.mark.parametrize(
        ("mean", "std", "error", "message"),
        [
            ((0.5, nan), (0.2, 0.2), ValueError,
             "mean[1] must be a finite number in [0.0, 1.0], got mean[1]=nan."),
            ((5.0,), (1.0,), ValueError, "mean[0] must be in [0.0, 1.0], got mean[0]=5.0."),
            ((-0.1,), (1.0,), ValueError, "mean[0] must be in [0.0, 1.0], got mean[0]=-0.1."),
            ((0.5,), (nan,), ValueError, "std[0] must be a finite number > 0.0, got std[0]=nan."),
            ((0.5,), (inf,), ValueError, "std[0] must be a finite number > 0.0, got std[0]=inf."),
            ((0.5,), (-1.0,), ValueError, "std[0] must be > 0.0, got std[0]=-1.0."),
            (("0.5",), (1.0,), TypeError, "mean[0] must be a float, got mean[0]='0.5'."),
        ],
    )  # fmt: skip
    def test_mean_and_std_values(
        self, mean: tuple[Any, ...], std: tuple[float, ...], error: type[Exception], message: str
    ) -> None:
        fix = " mean and std are per-channel statistics of pixels scaled to [0, 1]"
        with pytest.raises(error, match=re.escape(message + fix)):
            StudyConfig(**FOLDER, mean=mean, std=std)

    def test_mean_and_std_bounds_are_allowed(self) -> None:
        config = StudyConfig(**FOLDER, mean=(0.0, 1.0), std=(1e-6, 5.0))
        assert config.mean == (0.0, 1.0) and config.std == (1e-6, 5.0)
