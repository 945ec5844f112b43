"""Reshapes torch-pruning's dependency graph cannot follow, counted before it runs.

Read from the autograd graph PyTorch records for one forward pass: a model whose outputs
pass through a view or reshape of a tensor above 4-d (a channel shuffle, a window
partition) is refused (``unsupported_reshapes``) before torch-pruning would couple
the wrong channels or map index lists of millions of entries.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch_pruning as tp
from torch import Tensor

__all__ = ["MAX_RESHAPE_RANK", "unfollowable_reshapes"]

MAX_RESHAPE_RANK = 4
"""torch-pruning 1.6 maps channel indices through reshapes of 2-d to 4-d tensors only."""


def unfollowable_reshapes(output: Any) -> Counter[int]:
    """How many view/reshape ops of ``output`` 's autograd graph take a tensor above 4-d.

    torch-pruning treats any such op as a flatten (its own rank check reads a ``grad_fn``
    attribute that PyTorch 2.x renamed, so it never runs): a channel shuffle's 5-d view
    then infers 0 channels downstream (a ``ZeroDivisionError``), a window partition's 6-d
    views make index lists of millions of entries. Counted on the graph PyTorch recorded,
    before torch-pruning runs.

    Args:
        output: A model output with autograd history: a tensor or nested containers.

    Returns:
        ``{input rank: number of view/reshape ops}`` for input ranks above 4.

    Examples:
        >>> import torch
        >>> x = torch.randn(2, 4, 3, 3, requires_grad=True)
        >>> shuffled = x.view(2, 2, 2, 3, 3).transpose(1, 2).reshape(2, 4, 3, 3)
        >>> dict(unfollowable_reshapes(shuffled))
        {5: 1}
    """
    ranks: Counter[int] = Counter()
    stack = [t.grad_fn for t in tp.utils.flatten_as_list(output) if isinstance(t, Tensor)]
    # Holding each node keeps its Python object, so its id, unique: torch hands out one
    # object per live node, and a freed object's id goes to the next one made.
    seen: dict[int, Any] = {}
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen[id(fn)] = fn
        name = fn.name().lower()
        if "view" in name or "reshape" in name:  # torch-pruning's own test for a reshape
            sizes = getattr(fn, "_saved_self_sym_sizes", getattr(fn, "_saved_self_sizes", None))
            if sizes is not None and len(sizes) > MAX_RESHAPE_RANK:
                ranks[len(sizes)] += 1
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return ranks


def unsupported_reshapes(model_name: str, reshapes: Counter[int]) -> str:
    """The error for a model with reshapes above :data:`MAX_RESHAPE_RANK`.

    Examples:
        >>> print(unsupported_reshapes("Net", Counter({5: 2})))  # doctest: +ELLIPSIS
        channel damage does not support Net: 2 reshapes of 5-d tensors (as in ...
    """
    return (
        f"channel damage does not support {model_name}: {_describe_ranks(reshapes)} (as in "
        "a channel shuffle or a window attention) that torch-pruning's dependency graph "
        f"cannot follow: it maps channels through reshapes of at most {MAX_RESHAPE_RANK}-d "
        "tensors and would couple the wrong channels. Use weight damage "
        "(damage=WeightDamage(prune_ratio)), or wrap a part of the model without these "
        "reshapes."
    )


def _describe_ranks(ranks: Counter[int]) -> str:
    """``"16 reshapes of 5-d tensors"``, ``"1 reshape of a 5-d tensor and 24 ..."``."""
    return " and ".join(
        f"{n} reshapes of {rank}-d tensors" if n > 1 else f"1 reshape of a {rank}-d tensor"
        for rank, n in sorted(ranks.items())
    )
