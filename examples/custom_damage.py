"""A damage strategy of your own: layer-wise magnitude pruning, written outside selfdamage.

The paper prunes the smallest weights of all convolutions *together* (one global
threshold, ``WeightDamage``). Here every layer loses the same fraction of its own weights
instead, so no layer is wiped out. Subclassing ``selfdamage.Damage`` takes two methods:

- ``setup(model)``: once, on the bare model; returns the names of the parameters to mask.
- ``compute_masks(model, seed=..., first=...)``: at every refresh, ``{name: bool mask}``
  from the current weights; any random draw comes from ``seed`` (the same on every DDP
  rank and after resuming from a checkpoint).

Everything else (the twin's BatchNorm, the mask buffers, ``state_dict``, DDP, the
adapters) is the wrapper's job and works unchanged. To run the twin differently (say, a
physically smaller copy of the model), also override ``twin_forward``.

Run:
    python examples/custom_damage.py         # a few SimCLR steps on random images
    python examples/custom_damage.py --fast  # fewer steps (for CI)
"""

from __future__ import annotations

import argparse

import torch
from torch import Tensor, nn

from selfdamage import Damage, SelfDamagingWrapper
from selfdamage.adapters import SimCLRAdapter
from selfdamage.masks import smallest_k_mask


class LayerwiseMagnitudeDamage(Damage):
    """Every selected layer loses ``prune_ratio`` of its own smallest weights.

    ``random_ratio`` of them are chosen at random among the weights kept by magnitude.
    """

    def __init__(
        self,
        prune_ratio: float = 0.9,
        *,
        random_ratio: float = 0.0,
        layer_types: tuple[type[nn.Module], ...] = (nn.Conv2d,),
    ) -> None:
        super().__init__(prune_ratio, random_ratio=random_ratio)  # checks both ratios
        self.layer_types = layer_types

    def setup(self, model: nn.Module) -> list[str]:
        return [
            f"{name}.weight"
            for name, module in model.named_modules()
            if isinstance(module, self.layer_types)
        ]

    @torch.no_grad()
    def compute_masks(self, model: nn.Module, *, seed: int, first: bool) -> dict[str, Tensor]:
        generator = torch.Generator().manual_seed(seed)
        masks = {}
        for name in self.param_names:
            weight = model.get_parameter(name).detach()
            n = weight.numel()
            n_total = round(self.prune_ratio * n)
            n_random = round(self.random_ratio * n)
            pruned = smallest_k_mask(weight.abs().flatten().float(), n_total - n_random)
            if n_random:
                kept = (~pruned).nonzero().squeeze(1)
                draws = torch.rand(kept.numel(), generator=generator).to(weight.device)
                pruned[kept[smallest_k_mask(draws, n_random)]] = True
            masks[name] = ~pruned.view_as(weight)
        return masks

    @property
    def settings(self) -> dict[str, bool | int | float | str]:
        types = ",".join(t.__name__ for t in self.layer_types)
        return {**super().settings, "layer_types": types}


def backbone() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="fewer steps (CI)")
    args = parser.parse_args()
    torch.manual_seed(0)

    # 1. With the wrapper: every conv loses exactly half of its own weights.
    wrapper = SelfDamagingWrapper(backbone(), damage=LayerwiseMagnitudeDamage(0.5))
    per_layer = {name: 1 - mask.float().mean().item() for name, mask in wrapper.named_masks()}
    print("wrapper:", wrapper.damage, "per-layer sparsity:", per_layer)

    # 2. With an adapter: SimCLR against a layer-wise damaged twin.
    damage = LayerwiseMagnitudeDamage(0.9, random_ratio=0.1)
    model = SimCLRAdapter(backbone(), feature_dim=32, damage=damage)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(2 if args.fast else 5):
        model.refresh_mask()  # compute_masks, seeded from the wrapper's mask_seed
        for _ in range(2 if args.fast else 10):
            x0, x1 = torch.randn(16, 3, 16, 16), torch.randn(16, 3, 16, 16)
            loss = model(x0, x1)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        print(f"epoch {epoch}: loss {loss.item():.4f}, twin sparsity {model.wrapper.sparsity:.3f}")

    # 3. Checkpoints: the masks and the seed are the wrapper's buffers.
    again = LayerwiseMagnitudeDamage(0.9, random_ratio=0.1)
    restored = SimCLRAdapter(backbone(), feature_dim=32, damage=again)
    restored.load_state_dict(model.state_dict())
    same = all(
        torch.equal(a, b)
        for (_, a), (_, b) in zip(model.wrapper.named_masks(), restored.wrapper.named_masks())
    )
    print("masks restored from the state_dict:", same)


if __name__ == "__main__":
    main()
