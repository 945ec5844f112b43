"""BCL-D: SDCLR with boosted augmentation (BCL, Zhou et al., ICML 2022) in a plain loop.

BCL keeps each sample's momentum loss, the moving average of its contrastive loss across
epochs, and augments the samples with a high momentum loss (the ones the model memorizes
least, mostly rare ones) more strongly: RandAugment operations applied more often and at a
higher magnitude. BCL-D is BCL on SDCLR: the tracked loss is the one between the dense view
and the pruned twin's view. The adapter returns the per-sample losses of the step's own loss
call (``return_per_sample=True``), so no pass is added. Implemented and checked against
the authors' code, not yet measured here (see docs/toolkit.rst).

Run:
    python examples/boosted_sdclr.py          # 5 epochs on Fashion-MNIST-LT
    python examples/boosted_sdclr.py --fast   # a few steps on 242 images (for CI)
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.data import DataLoader, Subset

from selfdamage.adapters import SimCLRAdapter
from selfdamage.backbones import cifar_resnet18
from selfdamage.data import ImageTensorDataset, load_fashion_mnist, longtail_indices
from selfdamage.longtail import (
    MomentumBoostedDataset,
    MomentumLoss,
    bcl_base_transform,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="a few steps on 242 images (CI)")
    parser.add_argument("--epochs", type=int, help="default: 5, or 2 with --fast")
    args = parser.parse_args()
    epochs = args.epochs or (2 if args.fast else 5)
    torch.manual_seed(0)

    backbone = cifar_resnet18(width=8, in_channels=1)
    model = SimCLRAdapter(backbone, backbone.feature_dim, prune_ratio=0.9, temperature=0.2)
    images, labels = load_fashion_mnist()
    split = longtail_indices(labels, imbalance_ratio=100, n_max=100 if args.fast else None)
    subset = Subset(ImageTensorDataset(images, labels), split.indices)
    # BCL: views as strong as each sample's momentum loss; items are (views, label, index).
    dataset = MomentumBoostedDataset(subset, base=bcl_base_transform(28), seed=0)
    tracker = MomentumLoss(len(dataset))  # the authors' momentum 0.97, one warm-up epoch
    loader = DataLoader(dataset, batch_size=64, shuffle=True, drop_last=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)

    for epoch in range(epochs):
        model.refresh_mask()  # SDCLR: re-prune the twin
        for (x0, x1), _, index in loader:
            # The SDCLR loss (dense view vs twin view) and each sample's share of it.
            loss, losses = model(x0, x1, return_per_sample=True)
            tracker.update(index, losses)  # BCL: remember each sample's loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        scores = tracker.step()  # BCL: momentum update, normalized to [0, 1]
        dataset.update_scores(tracker)  # the next epoch's augmentation strength
        spread = f"{scores.min():.2f}-{scores.max():.2f}"
        print(f"epoch: {epoch:>02}, loss: {loss.item():.5f}, momentum-loss scores: {spread}")


if __name__ == "__main__":
    main()
