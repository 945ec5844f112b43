"""SDCLR with any of lightly's two-view methods, picked by name from ``ADAPTERS``.

Every method gets the same treatment: of the two online passes of a step, one goes through
the dense network and one through its pruned twin (90% of the convolution weights masked,
re-chosen every epoch); momentum (target) networks and memory banks stay dense. The
adapter holds lightly's heads and loss for the method, with the defaults of lightly's
``examples/pytorch/<method>.py``; ``adapter(x0, x1)`` returns the step's loss. Methods with
a momentum encoder (MoCo, BYOL, TiCo, DINO) also get ``update_momentum(m)`` once per step.
The docs page ``docs/methods.rst`` has the table of what the twin does in each method. The data
is Fashion-MNIST-LT (imbalance ratio 100).

Run:
    python examples/any_method.py --method vicreg    # 3 epochs: a few minutes on 2 CPU cores
    python examples/any_method.py --method dino --baseline  # the plain method
    python examples/any_method.py --method all --fast   # a few steps of every method (CI)
"""

# What differs from lightly's examples/pytorch/<method>.py: the lines marked "# SDCLR:".
# lightly's model class, its momentum updates and the criterion become one adapter;
# `model.refresh_mask()` re-prunes the twin every epoch; `loss = model(x0, x1)`.

from __future__ import annotations

import argparse

import torch
from lightly.utils.scheduler import cosine_schedule
from torch.utils.data import DataLoader, Subset

from selfdamage.adapters import ADAPTERS, MomentumAdapter
from selfdamage.backbones import cifar_resnet18
from selfdamage.data import (
    ImageTensorDataset,
    TwoViewDataset,
    load_fashion_mnist,
    longtail_indices,
    small_grayscale_transform,
)


def train(method: str, args: argparse.Namespace, dataloader: DataLoader) -> None:
    """Trains one method with SDCLR (or its baseline) and prints the loss per epoch."""
    torch.manual_seed(0)
    backbone = cifar_resnet18(width=8, in_channels=1)  # 64 features; 8 channels wide
    model = ADAPTERS[method](  # SDCLR: replaces lightly's model class and criterion
        backbone, backbone.feature_dim, prune_ratio=0.9, baseline=args.baseline
    )
    model.to(args.device)
    if method == "dino":  # lightly's examples/pytorch/dino.py
        optimizer: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    else:  # lightly's other examples
        optimizer = torch.optim.SGD(model.parameters(), lr=0.06)

    epochs = args.epochs or (1 if args.fast else 3)
    total_steps, step = epochs * len(dataloader), 0
    print(f"{method}: {'baseline' if args.baseline else 'SDCLR'}")
    for epoch in range(epochs):
        model.refresh_mask()  # SDCLR: re-prune the twin from the current weights
        total_loss = 0.0
        for x0, x1, _ in dataloader:
            if isinstance(model, MomentumAdapter):  # SDCLR: one call for all momentum copies
                model.update_momentum(cosine_schedule(step, total_steps, 0.996, 1.0))
            loss = model(x0.to(args.device), x1.to(args.device))  # SDCLR: dense x0, twin x1
            total_loss += loss.item()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            step += 1
        print(f"  epoch: {epoch:>02}, loss: {total_loss / len(dataloader):.5f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--method",
        nargs="+",
        default=["vicreg"],
        choices=[*ADAPTERS, "all"],
        help="one or more method names, or all (default: vicreg)",
    )
    parser.add_argument("--fast", action="store_true", help="a few steps on 242 images (CI)")
    parser.add_argument("--epochs", type=int, help="default: 3, or 1 with --fast")
    parser.add_argument("--baseline", action="store_true", help="the plain method")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    methods = list(ADAPTERS) if "all" in args.method else args.method

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
    print(f"{len(dataset)} images")
    for method in methods:
        train(method, args, dataloader)


if __name__ == "__main__":
    main()
