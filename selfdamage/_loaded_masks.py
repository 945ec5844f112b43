"""What follows a load of a wrapper's masks: ``bool`` 0/1 masks, the strategy told.

A load post-hook on ``wrapper.masks`` runs :func:`settle_loaded_masks` whenever the masks
are loaded: with the whole wrapper (at the root, inside an adapter or a LightningModule)
or alone (``a.masks.load_state_dict(b.masks.state_dict())``), so that state a strategy
derives from the masks (the compact twin's copy and gather indices) never goes stale,
and a loaded mask that removes a whole tensor gets the warning a refresh gives.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from selfdamage._checks import warn_fully_masked
from selfdamage.damage.base import Damage

__all__ = ["settle_loaded_masks"]


@torch.no_grad()
def settle_loaded_masks(
    masks: nn.Module,
    names: Sequence[str],
    *,
    damage: Damage,
    model: nn.Module,
    warned: set[frozenset[str]],
) -> None:
    """Keeps the loaded masks ``bool``, 0 or 1 per byte; tells the strategy they changed.

    ``load_state_dict(..., assign=True)`` installs the checkpoint's tensors as they are: a
    mask of another dtype becomes ``mask != 0`` here, and a ``bool`` mask whose bytes are
    not all 0 or 1 is rewritten with 0 and 1, so the twin multiplies by exactly 0 or 1.
    Warns, as ``refresh_mask()`` does, when a loaded mask removes a whole tensor.

    Args:
        masks: The wrapper's mask tree (``wrapper.masks``).
        names: The masked parameters' qualified names.
        damage: The wrapper's strategy, told of the new masks.
        model: The wrapped model.
        warned: The sets of fully masked names already warned about; updated in place.

    Examples:
        >>> from selfdamage.damage import WeightDamage
        >>> model = nn.Linear(2, 2)
        >>> damage = WeightDamage(0.5)
        >>> masks = nn.Module()
        >>> masks.register_buffer("weight", torch.tensor([[2, 0], [1, 1]]))
        >>> settle_loaded_masks(masks, ["weight"], damage=damage, model=model, warned=set())
        >>> masks.weight
        tensor([[ True, False],
                [ True,  True]])
    """
    for name in names:
        mask = masks.get_buffer(name)
        if mask.dtype == torch.bool:
            mask.copy_(mask.view(torch.uint8) != 0)
        else:
            path, _, attr = name.rpartition(".")
            setattr(masks.get_submodule(path), attr, mask != 0)
    loaded = [(name, masks.get_buffer(name)) for name in names]
    damage.masks_changed(model, dict(loaded))
    warn_fully_masked(loaded, warned)
