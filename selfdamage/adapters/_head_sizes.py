"""The sizes an adapter reads from its head: the projection size, and the predictor's fit."""

from __future__ import annotations

from torch import nn

from selfdamage._checks import check_module

__all__ = ["check_predictor", "head_output_dim", "output_dim", "predictor_dim"]

_LAST_LINEAR = "Use a head whose last nn.Linear gives the projection."


def output_dim(head: nn.Module) -> int | None:
    """The ``out_features`` of the head's last ``nn.Linear``, or None if it has none."""
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else None


def head_output_dim(head: nn.Module, needed_for: str, fix: str = _LAST_LINEAR) -> int:
    """:func:`output_dim` of ``head``, or a ValueError: to ``needed_for``, ``fix`` (a sentence).

    Examples:
        >>> head_output_dim(nn.Linear(8, 4), needed_for="size the bank", fix="Pass one.")
        4
    """
    dim = output_dim(head)
    if dim is None:
        raise ValueError(
            f"Cannot read the head's output dimension (it has no nn.Linear) to {needed_for}. {fix}"
        )
    return dim


def predictor_dim(head: nn.Module, default: str) -> int:
    """The head's output size ``D``, which sizes the ``default`` predictor (its spelling).

    Examples:
        >>> predictor_dim(nn.Identity(), "Predictor(D, D)")
        Traceback (most recent call last):
        ValueError: Cannot read the head's output dimension (it has no nn.Linear) to build the default predictor. Pass predictor=Predictor(D, D) with D the head's output dimension.
    """  # noqa: E501
    fix = f"Pass predictor={default} with D the head's output dimension."
    return head_output_dim(head, "build the default predictor", fix)


def check_predictor(predictor: object, head: nn.Module) -> nn.Module:
    """``predictor`` if its first and last ``nn.Linear`` take and give the head's output size."""
    predictor = check_module("predictor", predictor)
    size = output_dim(head)
    linears = [m for m in predictor.modules() if isinstance(m, nn.Linear)]
    if size is None or not linears:
        return predictor
    takes, gives = linears[0].in_features, linears[-1].out_features
    if (takes, gives) != (size, size):
        raise ValueError(
            f"predictor maps {takes} features to {gives}, but the head's projections have "
            f"{size}: the loss compares each prediction with the other view's projection. "
            f"Use a predictor from {size} to {size} features."
        )
    return predictor
