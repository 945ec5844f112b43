"""What follows a load of a wrapper's masks: ``bool`` 0/1 masks, and the strategy told.

A load post-hook on ``wrapper.masks`` runs :func:`masks_loaded` whenever the masks are
loaded: with the whole wrapper (at the root, inside an adapter or a LightningModule) or
alone (``a.masks.load_state_dict(b.masks.state_dict())``), so that state a strategy derives
from the masks (the compact twin's copy and gather indices) never goes stale, and a
loaded mask that removes a whole tensor gets the warning a refresh gives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from selfdamage._guards import warn_fully_masked

if TYPE_CHECKING:
    from selfdamage.wrapper import SelfDamagingWrapper

__all__ = ["MasksLoaded", "masks_loaded"]


class MasksLoaded:
    """Load post-hook of ``wrapper.masks``: runs :func:`masks_loaded` for its wrapper.

    On the masks rather than the wrapper, so that a load of the masks alone counts too; a
    load of the whole wrapper loads the masks after the model and runs it once. A class
    rather than a closure: ``copy.deepcopy`` gives a copy's hook the copied wrapper, and
    the wrapper still pickles.
    """

    def __init__(self, wrapper: SelfDamagingWrapper) -> None:
        self.wrapper = wrapper

    def __call__(self, _masks: nn.Module, incompatible_keys: Any) -> None:
        masks_loaded(self.wrapper, incompatible_keys)


@torch.no_grad()
def masks_loaded(module: nn.Module, _incompatible_keys: Any) -> None:
    """Keeps the loaded masks ``bool``, 0 or 1 per byte; tells the strategy they changed.

    Warns, as ``refresh_mask()`` does, when a loaded mask removes a whole tensor.

    ``load_state_dict(..., assign=True)`` installs the checkpoint's tensors as they are: a
    mask of another dtype becomes ``mask != 0`` here, and a ``bool`` mask whose bytes are
    not all 0 or 1 is rewritten with 0 and 1, so the twin multiplies by exactly 0 or 1.
    Wrappers pickled before the hook moved to the masks run it as their own load
    post-hook (``selfdamage.wrapper._masks_loaded``), with the wrapper as ``module``.
    """
    wrapper = cast("SelfDamagingWrapper", module)
    for name in wrapper._masked_names:
        mask = wrapper.masks.get_buffer(name)
        if mask.dtype == torch.bool:
            mask.copy_(mask.view(torch.uint8) != 0)
        else:
            path, _, attr = name.rpartition(".")
            setattr(wrapper.masks.get_submodule(path), attr, mask != 0)
    wrapper.damage.masks_changed(wrapper.model, dict(wrapper.named_masks()))
    warn_fully_masked(wrapper.named_masks(), wrapper._warned_fully_masked)
