from __future__ import annotations

import math

import pytest

from selfdamage.study.stats import half_width, mean_std, t_quantile_975


class TestTQuantile:
    @pytest.mark.parametrize(
        ("df", "expected"),
        [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423), (35, 2.0423),
         (40, 2.0211), (100, 2.0003), (120, 1.9799), (10_000, 1.96)],
    )  # fmt: skip
    def test_table(self, df: int, expected: float) -> None:
        assert t_quantile_975(df) == expected

    def test_df_at_least_one(self) -> None:
        with pytest.raises(ValueError, match="df must be >= 1, got df=0"):
            t_quantile_975(0)


class TestHalfWidth:
    def test_by_hand(self) -> None:
        # Differences 0.03, 0.01, 0.05: std 0.02, t(0.975, 2) = 4.3027 -> 4.3027 * 0.02 / sqrt(3)
        std = mean_std([0.03, 0.01, 0.05])["std"]
        assert std == pytest.approx(0.02)
        assert half_width(std, 3) == pytest.approx(0.0496833, abs=1e-7)
        assert half_width(0.02, 3) == pytest.approx(4.3027 * 0.02 / math.sqrt(3))

    def test_undefined_below_two(self) -> None:
        assert half_width(0.1, 1) is None and half_width(None, 5) is None


class TestMeanStd:
    def test_ignores_none(self) -> None:
        assert mean_std([None, None]) == {"mean": None, "std": None}
        result = mean_std([0.70, 0.74, None])
        assert result["mean"] == pytest.approx(0.72)
        assert result["std"] == pytest.approx(0.0282843, abs=1e-6)
