"""SimCLR with SDCLR in PyTorch Lightning: a LightningModule and ``SelfDamagingCallback``.

The LightningModule holds a ``SimCLRAdapter`` (backbone and projection head wrapped with
their pruned twin, plus lightly's ``NTXentLoss``); its ``training_step`` is one line,
``self.model(x0, x1)``. ``SelfDamagingCallback`` re-prunes the twin at the start of every
epoch and logs its sparsity as ``selfdamage/sparsity``. Under DDP
(``Trainer(strategy="ddp")``) pass ``loss=NTXentLoss(gather_distributed=True)`` to the
adapter; every rank then draws the same masks. The data is Fashion-MNIST-LT (imbalance
ratio 100). Needs ``pip install 'selfdamage[lightning]'``.

Run:
    python examples/simclr_lightning.py         # 5 epochs; logs in runs/simclr_lightning
    python examples/simclr_lightning.py --fast  # a few steps on 242 images (for CI)
"""

# What differs from lightly's examples/pytorch_lightning/simclr.py: the lines marked
# "# SDCLR:". The backbone, SimCLRProjectionHead and NTXentLoss become one
# SimCLRAdapter, `training_step` calls it on both views, and the Trainer gets
# `callbacks=[SelfDamagingCallback()]`, which calls `refresh_mask()` every epoch.

from __future__ import annotations

import argparse

import pytorch_lightning as pl
import torch
from torch import Tensor
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
from selfdamage.lightning import SelfDamagingCallback


class SDCLR(pl.LightningModule):
    """SimCLR with a self-damaged twin: lightly's SimCLR LightningModule, SDCLR inside."""

    def __init__(self) -> None:
        super().__init__()
        backbone = cifar_resnet18(width=8, in_channels=1)  # 64 features; 8 channels wide
        self.model = SimCLRAdapter(  # SDCLR: backbone, head, loss and the pruned twin
            backbone, feature_dim=backbone.feature_dim, prune_ratio=0.9, temperature=0.2
        )

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_index: int) -> Tensor:
        x0, x1, _ = batch
        loss: Tensor = self.model(x0, x1)  # SDCLR: x0 through the dense model, x1 the twin
        self.log("train_loss", loss, on_epoch=True, prog_bar=True, batch_size=len(x0))
        return loss

    def on_train_epoch_end(self) -> None:
        metrics = self.trainer.callback_metrics
        self.print(  # on rank 0 only, above the progress bar
            f"epoch: {self.current_epoch:>02}, loss: {metrics['train_loss_epoch']:.5f}, "
            f"twin sparsity: {metrics['selfdamage/sparsity']:.3f}"
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="a few steps on 242 images (CI)")
    parser.add_argument("--epochs", type=int, help="default: 5, or 1 with --fast")
    parser.add_argument("--accelerator", default="auto", help="cpu, gpu, ... (Lightning's)")
    args = parser.parse_args()
    epochs = args.epochs or (1 if args.fast else 5)
    torch.manual_seed(0)

    model = SDCLR()

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

    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator=args.accelerator,
        devices=1,
        callbacks=[SelfDamagingCallback()],  # SDCLR: refresh_mask() every epoch
        default_root_dir="runs/simclr_lightning",
        # --fast: no logger, checkpoint or progress bar, at most 3 steps an epoch.
        logger=not args.fast,
        enable_checkpointing=not args.fast,
        enable_progress_bar=not args.fast,
        enable_model_summary=not args.fast,
        limit_train_batches=3 if args.fast else 1.0,
    )
    trainer.fit(model=model, train_dataloaders=dataloader)


if __name__ == "__main__":
    main()
