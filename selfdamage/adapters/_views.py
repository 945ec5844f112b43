"""The check of a pair of views before any pass: same dtype, size and shape, enough samples."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["check_views"]


def check_views(
    x0: object,
    x1: object,
    training: nn.Module | None = None,
    two_samples_because: str | None = None,
) -> None:
    """Raises unless ``x0`` and ``x1`` are two non-empty batches of the same shape.

    ``training``: the encoder in training mode (its ``BatchNorm1d`` need 2 samples), else
    None; ``two_samples_because``: why the loss needs 2 samples in any mode, or None.

    Examples:
        >>> import torch
        >>> check_views(torch.zeros(2, 3), torch.zeros(3, 3))
        Traceback (most recent call last):
        ValueError: x0 and x1 must have the same batch size, got x0.shape[0]=2 and x1.shape[0]=3. Row i of x0 and of x1 must be two views of the same sample: pass both views of one batch (e.g. (x0, x1), _, _ = batch).
    """  # noqa: E501
    pair = _tensor_pair(x0, x1)
    if pair is None:
        return
    t0, t1 = pair
    if t0.dtype != t1.dtype:
        raise ValueError(
            f"x0 and x1 must have the same dtype, got x0.dtype={t0.dtype} and "
            f"x1.dtype={t1.dtype}. Make both views with the same transform, or convert "
            "one (x1.to(x0.dtype))."
        )
    n0, n1 = t0.shape[0], t1.shape[0]
    if n0 != n1:
        raise ValueError(
            f"x0 and x1 must have the same batch size, got x0.shape[0]={n0} and "
            f"x1.shape[0]={n1}. Row i of x0 and of x1 must be two views of the same "
            "sample: pass both views of one batch (e.g. (x0, x1), _, _ = batch)."
        )
    if t0.shape != t1.shape:
        raise ValueError(
            f"x0 and x1 must have the same shape, got x0.shape={tuple(t0.shape)} and "
            f"x1.shape={tuple(t1.shape)}. The two views of a sample come from the same "
            "transform: give both the same size and number of channels."
        )
    if n0 == 0:
        raise ValueError(
            f"x0 and x1 must hold at least one sample, got x0.shape[0]={n0}. Skip empty "
            "batches (e.g. drop_last=True in the DataLoader)."
        )
    if n0 < 2:
        _check_one_sample(training, two_samples_because)


def _tensor_pair(x0: object, x1: object) -> tuple[Tensor, Tensor] | None:
    """Both views if they are tensors with a batch dimension, None if neither is a tensor."""
    tensors = {}
    for name, x in (("x0", x0), ("x1", x1)):
        if isinstance(x, Tensor):
            if x.dim() == 0:
                raise ValueError(
                    f"{name} must have a batch dimension, got {name}.shape=(). Pass a "
                    "batch of views of shape (N, ...), e.g. x.unsqueeze(0) for one sample."
                )
            tensors[name] = x
    if len(tensors) == 1:
        given, tensor = next(iter(tensors.items()))
        other, value = ("x1", x1) if given == "x0" else ("x0", x0)
        raise TypeError(
            f"{other} must be a torch.Tensor like {given}, got {type(value).__name__}. "
            f"Stack the views of a batch into one tensor of {given}'s shape "
            f"{tuple(tensor.shape)} (e.g. torch.stack)."
        )
    return (tensors["x0"], tensors["x1"]) if tensors else None


def _check_one_sample(training: nn.Module | None, two_samples_because: str | None) -> None:
    """Raises if one sample per view is too few for a training BatchNorm1d or the loss."""
    modules = [] if training is None else training.named_modules()
    norms = [name for name, m in modules if isinstance(m, nn.BatchNorm1d) and m.training]
    if norms:
        raise ValueError(
            f"x0 and x1 must hold at least 2 samples in training mode, got "
            f"x0.shape[0]=1: the encoder's BatchNorm1d {norms[0]!r} (e.g. in "
            "the projection head) normalizes each feature over the batch, and one "
            "sample has no variance. Use a larger batch (drop_last=True in the "
            "DataLoader), or call .eval() to run with the running statistics."
        )
    if two_samples_because is not None:
        raise ValueError(
            f"x0 and x1 must hold at least 2 samples, got x0.shape[0]=1: "
            f"{two_samples_because}, in training and in eval mode. Use a larger "
            "batch (drop_last=True in the DataLoader)."
        )
