from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from selfdamage.study import METRICS, VARIANTS, format_table
from selfdamage.study.report import plot, summarize

from .helpers import run_record


def two_orders() -> list[dict[str, Any]]:
    """One seed, two class orders: differences 0.03 and 0.01 (accuracy), 0.08, 0.02 (few)."""
    return [
        run_record("baseline", 0, 0.70, 0.50, order=0),
        run_record("sdclr", 0, 0.73, 0.58, order=0),
        run_record("baseline", 0, 0.74, 0.54, order=1),
        run_record("sdclr", 0, 0.75, 0.56, order=1),
    ]


class TestSummary:
    def test_means_stds_and_paired_differences_by_hand(self) -> None:
        runs = [
            run_record("baseline", 0, 0.70, 0.50),
            run_record("baseline", 1, 0.74, 0.54),
            run_record("sdclr", 0, 0.73, 0.58),
            run_record("sdclr", 1, 0.75, 0.56),
            run_record("balanced", 0, 0.80, 0.70),
            run_record("balanced", 1, 0.80, 0.70),
        ]
        summary = summarize(runs, VARIANTS)
        # By hand: baseline mean 0.72, sample std sqrt(2 * 0.02^2 / 1) = 0.028284.
        assert summary["baseline"]["accuracy"]["mean"] == pytest.approx(0.72)
        assert summary["baseline"]["accuracy"]["std"] == pytest.approx(0.0282843, abs=1e-6)
        # Paired differences: accuracy 0.03 and 0.01 -> mean 0.02; few 0.08 and 0.02 -> 0.05.
        assert summary["sdclr - baseline"]["accuracy"]["mean"] == pytest.approx(0.02)
        assert summary["sdclr - baseline"]["few"]["mean"] == pytest.approx(0.05)
        assert summary["sdclr - baseline"]["runs"] == 2
        # One class order: no interval over class orders.
        assert summary["sdclr - baseline"]["orders"] == 1
        assert summary["sdclr - baseline"]["accuracy"]["ci95"] is None
        # Gap closed: (0.74 - 0.72) / (0.80 - 0.72) = 0.25; few: (0.57 - 0.52) / (0.70 - 0.52).
        assert summary["gap_closed"]["accuracy"] == pytest.approx(0.25)
        assert summary["gap_closed"]["few"] == pytest.approx(0.05 / 0.18)
        assert summary["baseline"]["damage_auroc"] == {"mean": None, "std": None}

    def test_interval_over_class_orders_by_hand(self) -> None:
        difference = summarize(two_orders(), VARIANTS[:2])["sdclr - baseline"]
        # Per order: 0.03 and 0.01, std 0.0141421; t(0.975, 1) = 12.7062;
        # half-width 12.7062 * 0.0141421 / sqrt(2) = 0.127062.
        assert difference["orders"] == 2
        assert difference["accuracy"]["ci95"] == pytest.approx(0.127062)
        # Few: 0.08 and 0.02 -> std 0.0424264 -> 12.7062 * 0.03 = 0.381186.
        assert difference["few"]["ci95"] == pytest.approx(0.381186)

    def test_seeds_are_averaged_within_an_order(self) -> None:
        runs = [
            run_record("baseline", 0, 0.70, 0.5, order=0),
            run_record("sdclr", 0, 0.74, 0.5, order=0),  # order 0: 0.04 and 0.00 -> 0.02
            run_record("baseline", 1, 0.70, 0.5, order=0),
            run_record("sdclr", 1, 0.70, 0.5, order=0),
            run_record("baseline", 0, 0.70, 0.5, order=1),
            run_record("sdclr", 0, 0.70, 0.5, order=1),  # order 1: 0.00
        ]
        difference = summarize(runs, VARIANTS[:2])["sdclr - baseline"]
        # Per order 0.02, 0.00: std 0.0141421 -> 12.7062 * 0.01 = 0.127062.
        assert difference["accuracy"]["ci95"] == pytest.approx(0.127062)
        assert difference["runs"] == 3 and difference["orders"] == 2


class TestTable:
    def test_table(self) -> None:
        stats = {m: {"mean": 0.5, "std": 0.01} for m in METRICS}
        summary = {"baseline": stats | {"runs": 2}, "gap_closed": {"accuracy": 0.25, "few": None}}
        table = format_table({"summary": summary})
        assert "overall" in table and "damage AUROC" in table
        assert "50.0 ± 1.0" in table
        assert "closed by SDCLR: overall 25%, Few -" in table

    def test_interval_line(self) -> None:
        table = format_table({"summary": summarize(two_orders(), VARIANTS[:2])})
        assert "over 2 class orders: overall +2.0 ± 12.7, Few +5.0 ± 38.1" in table

    def test_interval_needs_two_orders(self) -> None:
        runs = [run_record("baseline", 0, 0.70, 0.50), run_record("sdclr", 0, 0.73, 0.58)]
        table = format_table({"summary": summarize(runs, VARIANTS[:2])})
        assert "needs at least 2 class orders" in table


def test_plot_writes_a_png(tmp_path: Path) -> None:
    runs = [run_record("baseline", 0, 0.70, 0.50), run_record("sdclr", 0, 0.73, 0.58)]
    plot(summarize(runs, VARIANTS[:2]), VARIANTS[:2], tmp_path / "g.png", title="t")
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
