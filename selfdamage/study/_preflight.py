"""Checks that need the machine or the data, made before any run trains.

The options' own checks are in :class:`~selfdamage.study.config.StudyConfig`; these are the
ones it cannot make: whether the device is there, and whether the options fit the loaded
dataset. Each error names the option, the value and what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from selfdamage.study.config import StudyConfig
from selfdamage.study.data import OWN_DATASETS, StudyData

__all__ = ["check_device", "check_fits_data"]


def check_device(device: str) -> None:
    """Raises unless a tensor can be made on ``device`` (CUDA built in, a GPU there).

    Raises:
        ValueError: If it cannot, with torch's reason.

    Examples:
        >>> check_device("cpu")
    """
    try:
        torch.empty(0, device=device)
    except (AssertionError, RuntimeError) as error:  # torch's two ways of saying it
        reason = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise ValueError(
            f"device must be available here, got device={device!r}: {reason}. Pick one "
            "that is, e.g. device='cpu' (--device cpu)."
        ) from None


def check_fits_data(config: StudyConfig, data: StudyData, subsets: Mapping[str, int]) -> None:
    """Raises unless ``probe_shots`` and ``batch_size`` fit the data.

    On your own images (``dataset`` "folder" or "list") ``probe_shots`` is capped by the
    rarest class instead, and the report says so: a natural long tail's rarest class is
    small by design.

    Args:
        config: The configuration.
        data: The loaded dataset.
        subsets: The size of each run's training subset, by run name.

    Raises:
        ValueError: If ``probe_shots`` exceeds the smallest class of a built-in dataset's
            training split, or ``batch_size`` a training subset.
    """
    smallest = int(torch.bincount(data.train_labels).min())
    if config.probe_shots > smallest and config.dataset not in OWN_DATASETS:
        raise ValueError(
            f"probe_shots must be in [0, {smallest}], got probe_shots={config.probe_shots}: "
            f"the probe draws that many labeled images of every class from the training "
            f"split, whose smallest class has {smallest}. Lower probe_shots (--probe-shots), "
            "or pass 0 to use the whole training split."
        )
    for name, size in subsets.items():
        if config.batch_size > size:
            raise ValueError(
                f"batch_size must be at most {size}, got batch_size={config.batch_size}: "
                f"the training subset of {name} has {size} images. Lower batch_size "
                "(--batch-size), or raise n_max (--n-max) or lower imbalance_ratio for "
                "larger subsets."
            )
