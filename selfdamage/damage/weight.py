"""WeightDamage: the paper's damage, global unstructured magnitude pruning."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from selfdamage.damage.base import (
    Damage,
    Prunable,
    Settings,
    describe_prunable,
    find_prunable,
    non_finite_error,
    prunable_predicate,
)
from selfdamage.damage.masks import global_magnitude_masks

__all__ = ["WeightDamage"]


class WeightDamage(Damage):
    """The twin loses the smallest weights of all prunable layers together (SDCLR [0]).

    At every refresh one global threshold is taken over ``|w|`` of every selected weight
    (:func:`~selfdamage.damage.masks.global_magnitude_masks`): ``prune_ratio`` of them are masked,
    ``random_ratio`` of it at random among the weights kept by magnitude (the reference
    code's ``random_prune_percent``). The previous mask is discarded, not refined.

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990

    Args:
        prune_ratio: Fraction of the prunable weights the twin loses, in ``[0, 1)``:
            0.9 on CIFAR and 0.3 on ImageNet-100 in the paper.
        random_ratio: Part of ``prune_ratio`` chosen uniformly at random among the
            weights kept by magnitude, in ``[0, prune_ratio]`` (0 in the paper).
        prunable: Module types whose ``.weight`` is pruned, or a predicate
            ``(qualified_name, module) -> bool``. By default every ``nn.Conv2d``, as in
            the paper; normalization layers are never pruned.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If a ratio is out of range; when bound, if no weight is selected.

    Examples:
        >>> import torchvision
        >>> from selfdamage import SelfDamagingWrapper
        >>> backbone = torchvision.models.resnet18(num_classes=16)
        >>> damage = WeightDamage(0.9, prunable=(nn.Conv2d, nn.Linear))
        >>> wrapper = SelfDamagingWrapper(backbone, damage=damage)
        >>> round(wrapper.sparsity, 3), wrapper.damage is damage
        (0.9, True)
        >>> damage
        WeightDamage(prune_ratio=0.9, random_ratio=0.0, prunable='Conv2d,Linear')
    """

    def __init__(
        self,
        prune_ratio: float = 0.9,
        *,
        random_ratio: float = 0.0,
        prunable: Prunable = (nn.Conv2d,),
    ) -> None:
        super().__init__(prune_ratio, random_ratio=random_ratio)
        prunable_predicate(prunable)  # type check now, not at bind
        self.prunable = prunable

    def setup(self, model: nn.Module) -> list[str]:
        """The trainable weights of the modules ``prunable`` selects, in module order.

        See :func:`~selfdamage.damage.base.find_prunable` for what is left out.
        """
        return find_prunable(model, self.prunable)

    @torch.no_grad()
    def compute_masks(self, model: nn.Module, *, seed: int, first: bool) -> dict[str, Tensor]:
        """Global magnitude masks of the current weights; the random part drawn from ``seed``.

        Raises:
            ValueError: If a masked weight holds NaN or infinite values.
        """
        names = self.param_names
        weights = [model.get_parameter(name) for name in names]
        generator = None
        if self.random_ratio > 0:
            generator = torch.Generator(device=weights[0].device)
            generator.manual_seed(seed)
        try:
            masks = global_magnitude_masks(
                weights, self.prune_ratio, random_ratio=self.random_ratio, generator=generator
            )
        except ValueError as error:
            non_finite = non_finite_error(model, names, "the pruning threshold")
            if non_finite is None:
                raise
            raise non_finite from error
        return dict(zip(names, masks))

    @property
    def settings(self) -> Settings:
        """``prune_ratio``, ``random_ratio`` and ``prunable`` (as type names)."""
        return {**super().settings, "prunable": describe_prunable(self.prunable)}
