from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from selfdamage.data import FASHION_MNIST_DIRS
from selfdamage.study import METRICS

HAVE_FASHION_MNIST = any(
    (Path(d) / "train-images-idx3-ubyte.gz").exists() for d in FASHION_MNIST_DIRS
)
needs_data = pytest.mark.skipif(
    not HAVE_FASHION_MNIST,
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)

TINY: dict[str, Any] = {
    "width": 4,
    "n_max": 300,
    "batch_size": 64,
    "max_steps": 2,
    "probe_shots": 20,
    "probe_draws": 1,
    "progress": False,
}


def run_record(
    variant: str, seed: int, accuracy: float, few: float, order: int = 0
) -> dict[str, Any]:
    """A run's record as ``runs/*.json`` holds it, built by hand: the given accuracy and Few
    accuracy, 0.5 for the other metrics and no damage AUROC."""
    metrics = dict.fromkeys(METRICS, 0.5)
    metrics |= {"accuracy": accuracy, "few": few, "damage_auroc": None}
    return {"variant": variant, "order": order, "seed": seed, **metrics}
