"""SimCLR with SDCLR in plain PyTorch: lightly's SimCLR example with a self-damaged twin.

SDCLR trains the network against a pruned twin of itself: one view of every image goes
through the dense network, the other through the twin, which shares the weights but loses
90% of the convolution weights (the smallest ones, re-chosen every epoch). Samples the twin
forgets (mostly rare ones, the paper argues) get a larger contrastive loss. The data is
Fashion-MNIST-LT (the training set made long-tailed, imbalance ratio 100: 6000 images of
the head class, 60 of the tail class), the kind of data SDCLR is for.

Run:
    python examples/simclr.py             # 5 epochs: 3-6 minutes on 2 CPU cores
    python examples/simclr.py --baseline  # plain SimCLR on the same data, for comparison
    python examples/simclr.py --fast      # a few steps on 242 images (for CI)
"""

# What differs from lightly's examples/pytorch/simclr.py: the lines marked "# SDCLR:".
#  1. lightly's `SimCLR` module (backbone + SimCLRProjectionHead) and the NTXentLoss
#     criterion become one `SimCLRAdapter`, which holds both and wraps backbone and head
#     with their pruned twin (a SelfDamagingWrapper).
#  2. `model.refresh_mask()` at the start of every epoch re-prunes the twin from the
#     current weights.
#  3. `loss = model(x0, x1)` replaces `z0 = model(x0); z1 = model(x1);
#     loss = criterion(z0, z1)`: x0 goes through the dense model, x1 through the twin.
# Everything else (Fashion-MNIST-LT, a narrow ResNet-18, argparse) makes it run on a CPU.

from __future__ import annotations

import argparse

import torch
from torch.utils.data import DataLoader, Subset

from selfdamage.adapters import SimCLRAdapter
from selfdamage.backbones import cifar_resnet18
from selfdamage.data import (
    ImageTensorDataset,
    TwoViewDataset,
    load_fashion_mnist,
    longtail_indices,
    small_grayscale_transform,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="a few steps on 242 images (CI)")
    parser.add_argument("--epochs", type=int, help="default: 5, or 1 with --fast")
    parser.add_argument("--baseline", action="store_true", help="plain SimCLR (baseline=True)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    epochs = args.epochs or (1 if args.fast else 5)
    torch.manual_seed(0)

    # A CIFAR-style ResNet-18, 8 channels wide (64 in the paper), on 1-channel images.
    backbone = cifar_resnet18(width=8, in_channels=1)
    model = SimCLRAdapter(  # SDCLR: replaces lightly's SimCLR module and NTXentLoss
        backbone,
        feature_dim=backbone.feature_dim,  # 64 here, 512 for the usual ResNet-18
        prune_ratio=0.9,  # the twin loses 90% of the convolution weights (the paper's CIFAR)
        temperature=0.2,
        baseline=args.baseline,  # baseline=True: SimCLR itself, same head and loss
    )
    model.to(args.device)

    # Fashion-MNIST-LT: class 0 keeps 6000 images, class 9 keeps 60 (100 with --fast: 242).
    images, labels = load_fashion_mnist()
    split = longtail_indices(labels, imbalance_ratio=100, n_max=100 if args.fast else None)
    dataset = TwoViewDataset(
        Subset(ImageTensorDataset(images, labels), split.indices),
        small_grayscale_transform(channels=1),
    )
    dataloader = DataLoader(
        dataset,
        batch_size=64 if args.fast else 256,
        shuffle=True,
        drop_last=True,
        num_workers=0 if args.fast else 2,
    )

    optimizer = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)

    print(f"Starting Training: {len(dataset)} images, {'SimCLR' if args.baseline else 'SDCLR'}")
    for epoch in range(epochs):
        model.refresh_mask()  # SDCLR: re-prune the twin from the current weights
        total_loss = 0.0
        for x0, x1, _ in dataloader:
            x0 = x0.to(args.device)
            x1 = x1.to(args.device)
            loss = model(x0, x1)  # SDCLR: x0 through the dense model, x1 through the twin
            total_loss += loss.item()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        avg_loss = total_loss / len(dataloader)
        print(f"epoch: {epoch:>02}, loss: {avg_loss:.5f}")


if __name__ == "__main__":
    main()
