"""The adapters' constructor options: their checks, and what their defaults are sized from."""

from __future__ import annotations

from lightly.models.modules.memory_bank import MemoryBankModule
from torch import nn

from selfdamage._checks import check_int

__all__ = [
    "check_feature_dim",
    "head_output_dim",
    "memory_bank",
    "output_dim",
    "reject_with_loss",
]


def check_feature_dim(feature_dim: object) -> int:
    """Returns ``feature_dim`` if it is a positive int; raises otherwise."""
    return check_int(
        "feature_dim",
        feature_dim,
        1,
        what="positive",
        fix="Pass the number of features per sample that the backbone outputs "
        "(512 for a ResNet-18).",
    )


def reject_with_loss(loss: nn.Module | None, **options: object) -> None:
    """Raises if options of the default loss are set while a ``loss`` is given."""
    given = [f"{name}={value!r}" for name, value in options.items() if value is not None]
    if loss is not None and given:
        raise ValueError(
            f"{', '.join(given)} configures the default loss, but loss= was given too. "
            f"Set it on your loss instead, or drop loss= to use the default loss."
        )


def output_dim(head: nn.Module) -> int | None:
    """The ``out_features`` of the head's last ``nn.Linear``, or None if it has none."""
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else None


def memory_bank(loss: nn.Module) -> MemoryBankModule | None:
    """The loss's enabled lightly memory bank, or None if it has none."""
    for module in loss.modules():
        if isinstance(module, MemoryBankModule) and module.size[0] > 0:
            return module
    return None


def head_output_dim(head: nn.Module, *, needed_for: str, fix: str) -> int:
    """:func:`output_dim` of ``head``, for an adapter that cannot do without it.

    Args:
        head: The projection head.
        needed_for: What the dimension sizes, e.g. ``"size the memory bank"``.
        fix: What the user can pass instead, a sentence.

    Raises:
        ValueError: If the head has no ``nn.Linear``.

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
