"""Cost of masking every prunable weight once, forward and backward, by way of doing it.

The twin pass of weight damage multiplies each prunable weight by its ``bool`` mask, and its
backward multiplies the weight's gradient by the mask again. This script times that work
alone on a torchvision model's masks (``prune_ratio=0.9``), for each way of writing it:

- ``bool``: ``weight * mask``, the product with the ``bool`` mask;
- ``uint8``: :func:`selfdamage.masks.apply_mask` (the same product, the mask read as
  ``uint8``), what the twin pass runs;
- ``where``: ``torch.where(mask, weight, 0)``;
- ``float``: ``weight * float_mask``, with a float copy of every mask made beforehand (four
  bytes per weight that the library does not keep).

All four give the same numbers (checked before timing). The variants are interleaved
repetition by repetition; the report gives the median and the minimum of each, in
milliseconds per pass over all the masked weights. ``forward`` masks the weights (autograd
recording); ``backward`` is ``torch.autograd.grad`` through those products, which masks a
gradient per weight. ``--clock thread`` times the calling thread's CPU time (use it with
``--threads 1`` on a shared machine); ``wall`` the wall clock.

Run:
    python benchmarks/mask_multiply.py                          # torchvision ResNet-18
    python benchmarks/mask_multiply.py --threads 1 --clock thread --repeats 29
    python benchmarks/mask_multiply.py --arch resnet50 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torchvision
from torch import Tensor

from selfdamage import SelfDamagingWrapper
from selfdamage.masks import apply_mask

CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="resnet18", help="a torchvision.models builder name")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    torch.manual_seed(0)
    wrapper = SelfDamagingWrapper(getattr(torchvision.models, args.arch)(), prune_ratio=0.9)
    wrapper = wrapper.to(device)
    masks = [mask for _, mask in wrapper.named_masks()]
    weights = [wrapper.model.get_parameter(name) for name, _ in wrapper.named_masks()]
    float_masks = [mask.to(weight.dtype) for mask, weight in zip(masks, weights)]
    grads = [torch.randn_like(weight) for weight in weights]
    variants: dict[str, Callable[[Tensor, int], Tensor]] = {
        "bool": lambda w, i: w * masks[i],
        "uint8": lambda w, i: apply_mask(w, masks[i]),
        "where": lambda w, i: torch.where(masks[i], w, 0.0),
        "float": lambda w, i: w * float_masks[i],
    }
    for name, mask_one in variants.items():
        for i, weight in enumerate(weights):
            if not torch.equal(mask_one(weight, i), weight * masks[i]):
                raise AssertionError(f"{name} differs from weight * mask for weight {i}")

    clock = CLOCKS[args.clock]
    times: dict[str, dict[str, list[float]]] = {
        name: {"forward": [], "backward": []} for name in variants
    }
    for repeat in range(args.repeats + 1):  # the first is a warm-up
        for name, mask_one in variants.items():
            _sync(device)
            start = clock()
            masked = [mask_one(weight, i) for i, weight in enumerate(weights)]
            _sync(device)
            middle = clock()
            torch.autograd.grad(masked, weights, grads)
            _sync(device)
            end = clock()
            if repeat:
                times[name]["forward"].append(middle - start)
                times[name]["backward"].append(end - middle)
            del masked

    n = sum(mask.numel() for mask in masks)
    print(
        f"torchvision {args.arch}: {len(masks)} masked weights, {n / 1e6:.1f}M entries, "
        f"{args.device}, {torch.get_num_threads()} threads, {args.repeats} repeats, "
        f"{args.clock} clock; ms per pass, median (min)"
    )
    print(f"{'variant':<10}{'forward ms':>16}{'backward ms':>16}")
    for name, result in times.items():
        cells = [
            f"{1e3 * statistics.median(result[part]):.1f} ({1e3 * min(result[part]):.1f})"
            for part in ("forward", "backward")
        ]
        print(f"{name:<10}{cells[0]:>16}{cells[1]:>16}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    main()
