"""What 0.1 and 0.2 stored of a wrapper, read by the current one.

- A ``state_dict`` written by 0.1 holds no damage settings (no ``_extra_state``): the
  wrapper's load runs :func:`with_settings`, which fills in the wrapper's own, so such a
  checkpoint loads strictly and keeps loading (``tests/fixtures/v0_1_*.pt``).
- A wrapper pickled by 0.2.0 carries, as its own load post-hook, the function
  ``selfdamage.wrapper._masks_loaded``; one pickled later in 0.2 a
  ``selfdamage._mask_load.MasksLoaded`` on ``wrapper.masks``. Both names resolve here
  (:func:`wrapper_module_attribute`,
  :mod:`~selfdamage._compat.module_names`), and both run what a load of the masks runs now
  (``tests/fixtures/v0_2_*.pt``).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from selfdamage._checkpoint import EXTRA_STATE_KEY
from selfdamage._loaded_masks import settle_loaded_masks

__all__ = ["MasksLoaded", "masks_loaded", "with_settings", "wrapper_module_attribute"]


def with_settings(state_dict: dict[str, Any], prefix: str, settings: Tensor) -> dict[str, Any]:
    """``state_dict``, with ``settings`` under the wrapper's ``_extra_state`` if 0.1 wrote it.

    A wrapper's checkpoint (it has ``mask_seed``) without settings was written by 0.1,
    which stored none; any other ``state_dict`` is returned as it is, so a partial one
    still reports ``_extra_state`` missing.

    Examples:
        >>> import torch
        >>> with_settings({"mask_seed": torch.tensor(1)}, "", torch.tensor([1]))["_extra_state"]
        tensor([1])
        >>> with_settings({"model.weight": torch.ones(1)}, "", torch.tensor([1]))
        {'model.weight': tensor([1.])}
    """
    key = prefix + EXTRA_STATE_KEY
    if prefix + "mask_seed" not in state_dict or key in state_dict:
        return state_dict
    return {**state_dict, key: settings}


def masks_loaded(module: nn.Module, _incompatible_keys: Any) -> None:
    """0.2.0's load post-hook of the wrapper (``module``): runs a mask load's aftermath."""
    wrapper: Any = module
    settle_loaded_masks(
        wrapper.masks,
        [name for name, _ in wrapper.named_masks()],
        damage=wrapper.damage,
        model=wrapper.model,
        warned=set(),
    )


class MasksLoaded:
    """0.2's load post-hook of ``wrapper.masks``: runs a mask load's aftermath."""

    def __init__(self, wrapper: nn.Module) -> None:
        self.wrapper = wrapper

    def __call__(self, _masks: nn.Module, incompatible_keys: Any) -> None:
        masks_loaded(self.wrapper, incompatible_keys)


def wrapper_module_attribute(name: str) -> Any:
    """The module ``__getattr__`` of :mod:`selfdamage.wrapper`: 0.2.0's ``_masks_loaded``.

    Raises:
        AttributeError: For any other name, as a module does.
    """
    if name == "_masks_loaded":
        return masks_loaded
    raise AttributeError(f"module 'selfdamage.wrapper' has no attribute {name!r}")
