"""Fitting a study into a time budget: measured throughput in, epochs and class orders out.

The model of the wall time: the runs go through ``jobs`` parallel processes in
``ceil(runs / jobs)`` waves, and each wave costs ``epochs * epoch_s + eval_s``, where
``epoch_s`` is the wall time of one epoch *measured with that many runs in parallel* and
``eval_s`` the evaluation's. The plan keeps the target design when it fits; otherwise it
lowers the epochs first (never below ``min_epochs``), and cuts class orders last.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Plan", "measure", "plan_study", "predict_seconds"]


@dataclass(frozen=True)
class Plan:
    """The chosen design and its predicted wall time.

    Examples:
        >>> Plan(300, 3, 9, 160.0, True).as_dict()["epochs"]
        300
    """

    epochs: int
    class_orders: int
    jobs: int
    predicted_s: float
    fits: bool

    def as_dict(self) -> dict[str, Any]:
        """The plan as plain JSON types."""
        return asdict(self)


def predict_seconds(epochs: int, runs: int, jobs: int, epoch_s: float, eval_s: float) -> float:
    """Predicted wall time of ``runs`` runs of ``epochs`` epochs through ``jobs`` processes.

    Examples:
        >>> predict_seconds(100, runs=9, jobs=4, epoch_s=0.5, eval_s=10.0)  # 3 waves of 60 s
        180.0
    """
    waves = math.ceil(runs / jobs)
    return waves * (epochs * epoch_s + eval_s)


def plan_study(
    *,
    epoch_s: float,
    eval_s: float,
    budget_s: float,
    runs_per_order: int,
    max_jobs: int,
    class_orders: int = 3,
    target_epochs: int = 300,
    min_epochs: int = 100,
    min_orders: int = 2,
) -> Plan:
    """The most epochs (up to ``target_epochs``) and class orders that fit ``budget_s``.

    Args:
        epoch_s: Wall time of one epoch with ``max_jobs`` runs in parallel.
        eval_s: Wall time of one run's evaluation.
        budget_s: Seconds available for the study.
        runs_per_order: Runs per class order (variants x seeds).
        max_jobs: Parallel processes at most.
        class_orders: Class orders wanted.
        target_epochs: Epochs wanted.
        min_epochs: Epochs never go below this; class orders are cut before.
        min_orders: Class orders never go below this (an interval needs two).

    Returns:
        The plan; ``fits`` is False when even ``min_epochs`` and ``min_orders`` do not fit
        (the plan is then that minimum).

    Raises:
        ValueError: If a time is not positive or ``min_orders > class_orders``.

    Examples:
        >>> plan_study(epoch_s=1.5, eval_s=10, budget_s=400, runs_per_order=3, max_jobs=3)
        Plan(epochs=126, class_orders=2, jobs=3, predicted_s=398.0, fits=True)
    """
    if epoch_s <= 0 or eval_s < 0 or budget_s <= 0:
        raise ValueError(
            f"epoch_s and budget_s must be > 0 and eval_s >= 0, got epoch_s={epoch_s!r}, "
            f"eval_s={eval_s!r}, budget_s={budget_s!r}."
        )
    if not 1 <= min_orders <= class_orders:
        raise ValueError(
            f"min_orders must be between 1 and class_orders={class_orders}, "
            f"got min_orders={min_orders!r}."
        )
    for orders in range(class_orders, min_orders - 1, -1):
        runs = orders * runs_per_order
        jobs = min(max_jobs, runs)
        waves = math.ceil(runs / jobs)
        affordable = math.floor((budget_s / waves - eval_s) / epoch_s)
        if affordable >= min_epochs:
            epochs = min(target_epochs, affordable)
            predicted = predict_seconds(epochs, runs, jobs, epoch_s, eval_s)
            return Plan(epochs, orders, jobs, predicted, True)
    runs = min_orders * runs_per_order
    jobs = min(max_jobs, runs)
    predicted = predict_seconds(min_epochs, runs, jobs, epoch_s, eval_s)
    return Plan(min_epochs, min_orders, jobs, predicted, False)


def measure(runs: Sequence[dict[str, Any]]) -> tuple[float, float]:
    """``(epoch_s, eval_s)`` from the run records of a smoke study run in parallel.

    ``epoch_s`` is the median epoch wall time after each run's first epoch (which pays
    for warm-up), the first when a run has only one; ``eval_s`` the slowest evaluation.

    Raises:
        ValueError: If no run has a timed epoch.

    Examples:
        >>> run = {"wall_time_s": {"epochs": [3.0, 0.5, 0.7], "evaluation": 4.0}}
        >>> measure([run])
        (0.6, 4.0)
    """
    epochs = [
        t for r in runs for t in (r["wall_time_s"]["epochs"][1:] or r["wall_time_s"]["epochs"])
    ]
    if not epochs:
        raise ValueError("no run of the smoke study has a timed epoch; cannot plan.")
    return statistics.median(epochs), max(r["wall_time_s"]["evaluation"] for r in runs)
