"""Cost of geometric harmonization (GH) on an SDCLR step, on the CPU.

Times, on the same SimCLR adapter (SDCLR twin, prune 0.9, CIFAR-style ResNet-18), batch
and views:

- ``sdclr``: ``loss = model.loss(z0, z1)`` on ``model.wrapper(x0)`` and
  ``model.wrapper.damaged(x1)``, backward, SGD;
- ``sdclr+gh``: the same step plus ``gh(z0, z1)`` (GH active, the authors' 100 prototypes,
  300 Sinkhorn iterations) and ``gh.update(z0, index)``;
- ``sdclr+gh+refresh``: the same in a prior-refresh epoch (the memory's argmax over
  ``--num-samples`` rows each step, one epoch in 20 with the authors' settings);
- ``gh-only`` and ``gh-only+refresh``: GH's own work alone, ``gh(p0, p1)``, its backward to
  the projections and ``gh.update``, on stand-in projections of the same shape: steadier
  than the difference of two whole steps on a shared machine.

Variants are interleaved round by round; each step is timed by the process's CPU time
(``time.process_time``) with one thread, which other jobs on a shared machine hardly
change. Prints the median ms per step and the overhead against ``sdclr``.

Run:
    python benchmarks/gh_cost.py                       # width 8, batch 64
    python benchmarks/gh_cost.py --batch-size 256 --channels 1 --image-size 28  # the study's
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from selfdamage.adapters import SimCLRAdapter
from selfdamage.backbones import cifar_resnet18
from selfdamage.longtail.harmonization import GeometricHarmonization


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3, help="1 for Fashion-MNIST")
    parser.add_argument("--num-samples", type=int, default=10847, help="CIFAR-100-LT's size")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="steps per variant per round")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    backbone = cifar_resnet18(width=args.width, in_channels=args.channels)
    with warnings.catch_warnings():  # narrow widths lose whole layers at 0.9: fine for timing
        warnings.simplefilter("ignore", UserWarning)
        model = SimCLRAdapter(backbone, feature_dim=backbone.feature_dim, prune_ratio=0.9)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    gh = GeometricHarmonization(num_samples=args.num_samples, warmup_epochs=0, prior_every=20)
    shape = (args.batch_size, args.channels, args.image_size, args.image_size)
    x0, x1 = torch.randn(2, *shape).unbind(0)
    index = torch.randperm(args.num_samples)[: args.batch_size]
    model.refresh_mask()

    def step(with_gh: bool, epoch: int) -> None:
        z0, z1 = model.wrapper(x0), model.wrapper.damaged(x1)
        loss = model.loss(z0, z1)
        if with_gh:
            gh.set_epoch(epoch)
            loss = loss + gh(z0, z1)
            gh.update(z0, index)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    p0, p1 = torch.randn(2, args.batch_size, 128).unbind(0)
    p0.requires_grad_(), p1.requires_grad_()

    def gh_only(epoch: int) -> None:
        gh.set_epoch(epoch)
        gh(p0, p1).backward()
        gh.update(p0, index)

    variants = {
        "sdclr": lambda: step(False, 0),
        "sdclr+gh": lambda: step(True, 1),  # epoch 1: no refresh (2 % 20 != 0)
        "sdclr+gh+refresh": lambda: step(True, 19),  # epoch 19: a refresh epoch
        "gh-only": lambda: gh_only(1),
        "gh-only+refresh": lambda: gh_only(19),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():
        fn()  # warm-up
    for _ in range(args.rounds):
        for name, fn in variants.items():
            for _ in range(args.steps):
                start = time.process_time()
                fn()
                times[name].append(time.process_time() - start)
    base = statistics.median(times["sdclr"])
    size = f"{args.channels}x{args.image_size}x{args.image_size}"
    print(f"cifar_resnet18(width={args.width}), batch {args.batch_size} of {size}, 1 thread")
    for name, values in times.items():
        median = statistics.median(values)
        if name.startswith("gh-only"):
            share = f"{100 * median / base:5.1f} % of an sdclr step"
        else:
            share = f"{100 * (median / base - 1):+6.1f} %"
        print(f"{name:18s} {1000 * median:8.1f} ms  {share}")


if __name__ == "__main__":
    main()
