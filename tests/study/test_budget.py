from __future__ import annotations

from typing import ClassVar

import pytest

from selfdamage.study.budget import Plan, measure, plan_study, predict_seconds


class TestPredict:
    def test_waves(self) -> None:
        # 9 runs through 4 jobs: 3 waves of (100 * 0.5 + 10) s.
        assert predict_seconds(100, runs=9, jobs=4, epoch_s=0.5, eval_s=10) == 180.0
        assert predict_seconds(100, runs=9, jobs=9, epoch_s=0.5, eval_s=10) == 60.0


class TestPlan:
    kwargs: ClassVar[dict[str, float]] = {"eval_s": 10.0, "budget_s": 400.0, "runs_per_order": 3}

    def test_target_fits(self) -> None:
        # One wave of 9 runs: (400 - 10) / 0.5 = 780 epochs affordable -> the target, 300.
        plan = plan_study(epoch_s=0.5, max_jobs=9, **self.kwargs)
        assert plan == Plan(300, 3, 9, 160.0, True)

    def test_epochs_lowered_first(self) -> None:
        # (400 - 10) / 2 = 195 epochs: fewer epochs, all 3 class orders kept.
        plan = plan_study(epoch_s=2.0, max_jobs=9, **self.kwargs)
        assert plan == Plan(195, 3, 9, 400.0, True)

    def test_orders_cut_last(self) -> None:
        # 3 jobs: 3 orders = 3 waves -> (400 / 3 - 10) / 1.5 = 82 < 100 epochs;
        # 2 orders = 2 waves -> (200 - 10) / 1.5 = 126 epochs, predicted 2 * (189 + 10) = 398.
        plan = plan_study(epoch_s=1.5, max_jobs=3, **self.kwargs)
        assert plan == Plan(126, 2, 3, 398.0, True)

    def test_never_below_the_minimum(self) -> None:
        # (400 - 10) / 5 = 78 epochs even with 2 orders (one wave): the minimum, flagged.
        plan = plan_study(epoch_s=5.0, max_jobs=9, **self.kwargs)
        assert plan == Plan(100, 2, 6, 510.0, False)

    def test_bad_inputs(self) -> None:
        with pytest.raises(ValueError, match="epoch_s and budget_s must be > 0"):
            plan_study(epoch_s=0.0, max_jobs=1, **self.kwargs)
        with pytest.raises(ValueError, match="min_orders must be between 1 and class_orders=3"):
            plan_study(epoch_s=1.0, max_jobs=1, min_orders=4, **self.kwargs)


class TestMeasure:
    def test_skips_the_first_epoch(self) -> None:
        runs = [
            {"wall_time_s": {"epochs": [3.0, 0.5, 0.7], "evaluation": 4.0}},
            {"wall_time_s": {"epochs": [2.0, 0.6, 0.9], "evaluation": 5.0}},
        ]
        assert measure(runs) == (pytest.approx(0.65), 5.0)  # median of 0.5, 0.6, 0.7, 0.9

    def test_one_epoch_runs(self) -> None:
        assert measure([{"wall_time_s": {"epochs": [2.0], "evaluation": 1.0}}]) == (2.0, 1.0)

    def test_no_epochs(self) -> None:
        with pytest.raises(ValueError, match="no run of the smoke study"):
            measure([{"wall_time_s": {"epochs": [], "evaluation": 1.0}}])
