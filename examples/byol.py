"""BYOL with SDCLR in plain PyTorch: one of BYOL's two online passes goes through the twin.

Of the two online passes of a BYOL step, one runs the dense network and one its pruned
twin (90% of the convolution weights masked, re-chosen every epoch); both are regressed,
through the predictor, onto the other view's target from the momentum network, a moving
average of the *dense* network. ``BYOLAdapter`` holds the backbone, the projection and
prediction heads (here lightly's ``BYOLProjectionHead`` and ``BYOLPredictionHead`` with
1024 hidden units, as in lightly's example), the momentum copies and lightly's
``NegativeCosineSimilarity``. The data is Fashion-MNIST-LT (imbalance ratio 100).

Run:
    python examples/byol.py             # 5 epochs: 3-6 minutes on 2 CPU cores
    python examples/byol.py --baseline  # plain BYOL (baseline=True)
    python examples/byol.py --fast      # a few steps on 242 images (for CI)
"""

# What differs from lightly's examples/pytorch/byol.py: the lines marked "# SDCLR:".
# lightly's `BYOL` module, its two `update_momentum` calls and the criterion become one
# `BYOLAdapter`; `model.refresh_mask()` re-prunes the twin every epoch; and
# `loss = model(x0, x1)` replaces the four forward calls and the symmetric loss.

from __future__ import annotations

import argparse

import torch
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.utils.scheduler import cosine_schedule
from torch.utils.data import DataLoader, Subset

from selfdamage.adapters import BYOLAdapter
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
    parser.add_argument("--baseline", action="store_true", help="plain BYOL (baseline=True)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    epochs = args.epochs or (1 if args.fast else 5)
    torch.manual_seed(0)

    backbone = cifar_resnet18(width=8, in_channels=1)  # 64 features; 8 channels wide
    model = BYOLAdapter(  # SDCLR: replaces lightly's BYOL module and criterion
        backbone,
        feature_dim=backbone.feature_dim,
        prune_ratio=0.9,
        head=BYOLProjectionHead(backbone.feature_dim, 1024, 256),
        predictor=BYOLPredictionHead(256, 1024, 256),
        baseline=args.baseline,
    )
    model.to(args.device)

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

    print(f"Starting Training: {len(dataset)} images, {'BYOL' if args.baseline else 'SDCLR'}")
    total_steps, step = epochs * len(dataloader), 0
    for epoch in range(epochs):
        model.refresh_mask()  # SDCLR: re-prune the twin from the current weights
        total_loss = 0.0
        for x0, x1, _ in dataloader:
            # SDCLR: one call moves the momentum backbone and head (lightly: two calls)
            model.update_momentum(cosine_schedule(step, total_steps, 0.99, 1.0))
            x0 = x0.to(args.device)
            x1 = x1.to(args.device)
            loss = model(x0, x1)  # SDCLR: online x0 (dense) and x1 (twin), momentum targets
            total_loss += loss.item()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            step += 1
        avg_loss = total_loss / len(dataloader)
        print(f"epoch: {epoch:>02}, loss: {avg_loss:.5f}")


if __name__ == "__main__":
    main()
