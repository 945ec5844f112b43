"""SDCLR with DistributedDataParallel: SimCLRAdapter on several processes, GPUs or CPUs.

One process per GPU (NCCL) or, without GPUs, per CPU process (gloo). The adapter runs
both branches, dense and twin, in one DDP forward, so DDP sees one forward and one
backward per step. The pieces:

- ``NTXentLoss(gather_distributed=True)`` as the adapter's loss: negatives from all ranks.
- ``DistributedSampler``: each rank trains on its share of the images.
- ``nn.SyncBatchNorm.convert_sync_batchnorm`` on the adapter, before DDP, on GPUs only:
  PyTorch's SyncBatchNorm cannot run in training mode on CPU tensors.
- ``model.module.refresh_mask()`` every epoch: all ranks hold the same weights, so they
  draw the same masks (the random part, if any, is seeded from a buffer that DDP
  broadcasts from rank 0).

The data is Fashion-MNIST-LT (imbalance ratio 100).

Run:
    torchrun --standalone --nproc_per_node=2 examples/ddp.py         # 5 epochs
    torchrun --standalone --nproc_per_node=2 examples/ddp.py --fast  # a few steps (CI)
    python examples/ddp.py --fast                                    # one process
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from lightly.loss import NTXentLoss
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset

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
    args = parser.parse_args()
    epochs = args.epochs or (1 if args.fast else 5)

    cuda = torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    if "RANK" in os.environ:  # started by torchrun
        dist.init_process_group(backend)
    else:  # started by `python examples/ddp.py`: a group of one process
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    rank, world_size = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(0)  # the same initial weights on every rank (DDP broadcasts them too)

    backbone = cifar_resnet18(width=8, in_channels=1)  # 64 features; 8 channels wide
    adapter: nn.Module = SimCLRAdapter(
        backbone,
        feature_dim=backbone.feature_dim,
        prune_ratio=0.9,
        # Negatives from every rank, as in the paper's multi-GPU runs.
        loss=NTXentLoss(temperature=0.2, gather_distributed=True),
    )
    if cuda:
        # Batch statistics over all ranks, for the dense BatchNorm layers and, in twin
        # passes, for the twin's own BatchNorm state (the wrapper swaps it into the same
        # layers). On CPU, SyncBatchNorm raises in training mode, so keep BatchNorm there.
        adapter = nn.SyncBatchNorm.convert_sync_batchnorm(adapter)
    adapter.to(device)
    model = DistributedDataParallel(adapter, device_ids=[local_rank] if cuda else None)

    images, labels = load_fashion_mnist()
    split = longtail_indices(labels, imbalance_ratio=100, n_max=100 if args.fast else None)
    dataset = TwoViewDataset(
        Subset(ImageTensorDataset(images, labels), split.indices),
        small_grayscale_transform(channels=1),
    )
    sampler = DistributedSampler(dataset, shuffle=True, seed=0, drop_last=True)
    dataloader = DataLoader(
        dataset,
        batch_size=(64 if args.fast else 256) // world_size,  # per rank
        sampler=sampler,
        drop_last=True,
        num_workers=0 if args.fast else 2,
    )

    # Scale the learning rate with the global batch size, if you change it.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)

    if rank == 0:
        print(f"Starting Training: {len(dataset)} images, {world_size} processes ({backend})")
    for epoch in range(epochs):
        sampler.set_epoch(epoch)  # a new shuffle every epoch, the same on every rank
        model.module.refresh_mask()  # re-prune the twin; every rank draws the same masks
        total_loss = torch.zeros((), device=device)
        for x0, x1, _ in dataloader:
            x0 = x0.to(device)
            x1 = x1.to(device)
            loss = model(x0, x1)  # dense and twin branch in one DDP forward
            total_loss += loss.detach()
            loss.backward()  # DDP averages the gradients over the ranks
            optimizer.step()
            optimizer.zero_grad()
        # With gathered negatives, the mean of the ranks' losses is the global loss.
        dist.all_reduce(total_loss)
        avg_loss = total_loss.item() / world_size / len(dataloader)
        if rank == 0:
            print(f"epoch: {epoch:>02}, loss: {avg_loss:.5f}")

    dist.destroy_process_group()


if __name__ == "__main__":
    main()
