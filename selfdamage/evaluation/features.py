"""Frozen features of a dense model over a data loader."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from selfdamage._modules import device_of, in_mode
from selfdamage.evaluation._inputs import as_label_tensor, split_batch

__all__ = ["extract_features"]


@torch.no_grad()
def extract_features(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Runs a model in eval mode over a loader and collects its outputs and labels.

    The protocol of the paper's linear probe: frozen features, BatchNorm with its
    running statistics. The model is put in eval mode for the pass and every submodule
    gets its previous train/eval mode back afterwards. For an SDCLR model pass the
    dense backbone (e.g. ``wrapper.model`` or the backbone inside it), never the twin.

    Args:
        model: Maps an input batch to features of shape ``(B, ...)``; they are
            flattened to ``(B, D)``.
        loader: Yields ``(input, label, ...)`` batches, e.g. a ``DataLoader``.
        device: Where the model runs. Default: the device of its parameters.

    Returns:
        ``float32`` features of shape ``(N, D)`` and ``int64`` labels of shape
        ``(N,)``, both on the CPU.

    Raises:
        TypeError: If batches are not ``(input, label, ...)`` or the model does not
            return a tensor.
        ValueError: If the loader is empty.

    Examples:
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> data = TensorDataset(torch.randn(10, 3, 8, 8), torch.arange(10) % 2)
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4),
        ...                       nn.AdaptiveAvgPool2d(1))
        >>> features, labels = extract_features(model, DataLoader(data, batch_size=4))
        >>> features.shape, labels.shape, model.training
        (torch.Size([10, 4]), torch.Size([10]), True)
    """
    device = device_of(model) if device is None else torch.device(device)
    features, labels = [], []
    with in_mode(model, False):
        for batch in loader:
            inputs, targets = split_batch(batch, need_labels=True)
            output = model(inputs.to(device))
            if not isinstance(output, Tensor):
                raise TypeError(
                    f"model must return a feature tensor, got {type(output).__name__}; "
                    "pass the backbone, or a module that selects the features."
                )
            features.append(output.flatten(1).float().cpu())
            labels.append(as_label_tensor(targets, "labels of the loader"))
    if not features:
        raise ValueError("loader is empty: it yielded no batches.")
    return torch.cat(features), torch.cat(labels)
