"""Mining tail samples with damage scores: which images does the pruned twin forget?

SDCLR's premise is that pruning makes a network forget the rare samples first. After
training SDCLR on an unlabeled long-tailed set, ``damage_scores`` measures, per sample,
how far the pruned twin's output departs from the dense model's
(``1 - cos(dense(x), twin(x))``); the most damaged samples are candidates for the tail of
the set, found without labels, e.g. to look at, to label first, or to resample.

This script trains SDCLR briefly on Fashion-MNIST-LT (imbalance ratio 100: by default
class 0 keeps 6000 images, class 9 keeps 60), scores every image, and then uses the
labels, only to evaluate the mining: the class histogram of the top-k most damaged images
against the dataset's, each class's mean score, and the AUROC of the score for telling
the Few-group images (the three rarest classes) from all others. With ``--out`` it saves
a grid of the most damaged images (needs matplotlib).

Read the per-class means before the AUROC: after a short training the score tracks how
confusable a class's images are at least as much as how rare the class is. On
Fashion-MNIST the twin damages the upper-body garments (T-shirt, pullover, coat, shirt)
most and trousers, footwear and bags least, so with the default class order, whose tail
is sneakers, bags and ankle boots, the AUROC can fall well below 0.5 (0.15 after the
default 5 epochs on our CPU). Try other orders with ``--class-order SEED``: one order is
one draw, and the AUROC moves a lot from one epoch to the next.

Run:
    python examples/mine_tail_samples.py                  # 5 epochs: 3-6 min on 2 CPU cores
    python examples/mine_tail_samples.py --out runs/mine_tail_samples/top.png
    python examples/mine_tail_samples.py --class-order 0  # another random class order
    python examples/mine_tail_samples.py --fast           # a few steps on 242 images (CI)
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset
from torchvision import transforms as T

from selfdamage.adapters import SimCLRAdapter
from selfdamage.backbones import cifar_resnet18
from selfdamage.data import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    ImageTensorDataset,
    TwoViewDataset,
    load_fashion_mnist,
    longtail_indices,
    small_grayscale_transform,
)
from selfdamage.evaluation import auroc, damage_scores, frequency_groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="a few steps on 242 images (CI)")
    parser.add_argument("--epochs", type=int, help="default: 5, or 1 with --fast")
    parser.add_argument("--top-k", type=int, help="default: 5%% of the images")
    parser.add_argument("--class-order", type=int, help="seed of a random head-to-tail order")
    parser.add_argument("--out", type=Path, help="save the most damaged images to this PNG")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    epochs = args.epochs or (1 if args.fast else 5)
    torch.manual_seed(0)

    # 1. An unlabeled long-tailed set. The labels are kept aside for the evaluation only.
    images, labels = load_fashion_mnist()
    split = longtail_indices(
        labels,
        imbalance_ratio=100,
        class_order=args.class_order,  # None: class 0 is the head, class 9 the tail
        n_max=100 if args.fast else None,
    )
    indices = torch.tensor(split.indices)  # a copy: split.indices is read-only
    subset_labels = labels[indices]

    # 2. Train SDCLR on it, as in examples/simclr.py.
    backbone = cifar_resnet18(width=8, in_channels=1)
    model = SimCLRAdapter(
        backbone, feature_dim=backbone.feature_dim, prune_ratio=0.9, temperature=0.2
    ).to(args.device)
    pairs = TwoViewDataset(
        Subset(ImageTensorDataset(images, labels), split.indices),
        small_grayscale_transform(channels=1),
    )
    dataloader = DataLoader(
        pairs,
        batch_size=64 if args.fast else 256,
        shuffle=True,
        drop_last=True,
        num_workers=0 if args.fast else 2,
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)
    print(f"Starting Training: {len(pairs)} images")
    for epoch in range(epochs):
        model.refresh_mask()
        total_loss = 0.0
        for x0, x1, _ in dataloader:
            loss = model(x0.to(args.device), x1.to(args.device))
            total_loss += loss.item()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        print(f"epoch: {epoch:>02}, loss: {total_loss / len(dataloader):.5f}")

    # 3. Damage scores of the unaugmented images, in dataset order (no shuffling), with
    # the twin's current mask: the one it was trained with in the last epoch.
    plain = ImageTensorDataset(
        images,
        labels,
        T.Compose([T.ToTensor(), T.Normalize((FASHION_MNIST_MEAN,), (FASHION_MNIST_STD,))]),
    )
    scores = damage_scores(model.wrapper, DataLoader(Subset(plain, split.indices), 512))
    k = min(args.top_k or max(1, len(scores) // 20), len(scores))
    top = scores.argsort(descending=True)[:k]

    # 4. Evaluate the mining with the labels: class histograms, and the AUROC of the
    # score for the Few group (the three rarest classes) against all other images.
    many, medium, few = frequency_groups(split.class_counts)
    group = {c: name for name, g in (("Many", many), ("Medium", medium), ("Few", few)) for c in g}
    in_top = torch.bincount(subset_labels[top], minlength=len(split.class_counts))
    print(f"\nclass        group   {'in the dataset':>15}  {f'in the top {k}':>15}  mean score")
    for c in split.class_order:  # from head to tail
        count, top_count = split.class_counts[c], int(in_top[c])
        print(
            f"{FASHION_MNIST_CLASSES[c]:<12} {group[c]:<6}  {count:>6} ({count / len(scores):6.1%})"
            f"  {top_count:>6} ({top_count / k:6.1%})  {scores[subset_labels == c].mean():10.3f}"
        )
    is_few = torch.isin(subset_labels, torch.tensor(few))
    share_all, share_top = is_few.float().mean().item(), is_few[top].float().mean().item()
    print(f"\nFew-group images: {share_all:.1%} of the dataset, {share_top:.1%} of the top {k}")
    print(f"AUROC of the damage score, Few group vs the rest: {auroc(scores, is_few):.3f}")
    print("(0.5 is chance; a random ranking puts the Few group's share in the top k too)")

    if args.out is not None:
        shown = top[:32]
        titles = [
            f"{FASHION_MNIST_CLASSES[int(subset_labels[i])]}\n{float(scores[i]):.3f}" for i in shown
        ]
        save_grid(args.out, images[indices[shown]], titles)


def save_grid(path: Path, images: Tensor, titles: list[str]) -> None:
    """Saves ``uint8`` images of shape ``(N, H, W)`` as a PNG grid, if matplotlib is there."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install matplotlib): no grid saved.")
        return
    cols = 8
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * 1.8), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles):
        ax.imshow(image.numpy(), cmap="gray")
        ax.set_title(title, fontsize=6)
    fig.suptitle("Most damaged images (class, damage score)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    print(f"Saved the {len(images)} most damaged images to {path}")


if __name__ == "__main__":
    main()
