"""What the evaluation functions accept: batches of a loader, class labels, feature matrices."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor


def split_batch(batch: Any, *, need_labels: bool) -> tuple[Tensor, Any]:
    """The input (first element) and, if present, the labels (second) of a batch."""
    if isinstance(batch, Tensor):
        if need_labels:
            raise TypeError(
                "the loader yields bare tensors, but labels are needed; make it yield "
                "(input, label, ...) tuples, e.g. from a TensorDataset(inputs, labels)."
            )
        return batch, None
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], Tensor):
        if need_labels and len(batch) < 2:
            raise TypeError("batches must be (input, label, ...) tuples, got 1 element.")
        return batch[0], batch[1] if len(batch) > 1 else None
    raise TypeError(
        "batches must be an input tensor or (input, label, ...) tuples with a tensor "
        f"input, got {type(batch).__name__}."
    )


def as_label_tensor(labels: Any, name: str) -> Tensor:
    """Class labels as a 1-d ``int64`` CPU tensor."""
    tensor = torch.as_tensor(np.asarray(labels) if not isinstance(labels, Tensor) else labels)
    if tensor.dim() != 1 or tensor.dtype.is_floating_point or tensor.dtype == torch.bool:
        raise ValueError(
            f"{name} must be a 1-d sequence of integer class labels, got shape "
            f"{tuple(tensor.shape)} and dtype {tensor.dtype}."
        )
    if tensor.numel() and int(tensor.min()) < 0:
        raise ValueError(f"{name} must be class ids >= 0, got label {int(tensor.min())}.")
    return tensor.detach().cpu().to(torch.int64)


def check_probe_inputs(train_features: Tensor, train_labels: Any, test_features: Tensor) -> Tensor:
    """Checks the inputs of a classifier on frozen features; returns the labels."""
    for name, features in (("train_features", train_features), ("test_features", test_features)):
        if not isinstance(features, Tensor) or not features.is_floating_point():
            raise TypeError(
                f"{name} must be a floating-point tensor of shape (N, D), got "
                f"{type(features).__name__} {getattr(features, 'dtype', '')}."
            )
        if features.dim() != 2 or len(features) == 0:
            raise ValueError(
                f"{name} must have shape (N, D) with N >= 1, got {tuple(features.shape)}."
            )
    if test_features.shape[1] != train_features.shape[1]:
        raise ValueError(
            f"test_features must have {train_features.shape[1]} columns like "
            f"train_features, got {test_features.shape[1]}."
        )
    labels = as_label_tensor(train_labels, "train_labels")
    if len(labels) != len(train_features):
        raise ValueError(
            "train_labels must have one label per row of train_features "
            f"({len(train_features)}), got {len(labels)}."
        )
    return labels
