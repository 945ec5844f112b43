from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from selfdamage.data import FASHION_MNIST_DIRS

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
