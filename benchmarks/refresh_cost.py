"""Cost of ``refresh_mask()``: global magnitude pruning over all convolution weights.

Run:
    python benchmarks/refresh_cost.py            # torchvision ResNet-50 (23.5M conv weights)
    python benchmarks/refresh_cost.py --random-ratio 0.1 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision

from selfdamage import SelfDamagingWrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="resnet50", help="a torchvision.models builder name")
    parser.add_argument("--prune-ratio", type=float, default=0.9)
    parser.add_argument("--random-ratio", type=float, default=0.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = getattr(torchvision.models, args.arch)()
    wrapper = SelfDamagingWrapper(
        model, prune_ratio=args.prune_ratio, random_ratio=args.random_ratio
    ).to(args.device)
    n = sum(mask.numel() for _, mask in wrapper.named_masks())
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        wrapper.refresh_mask()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    print(
        f"{args.arch}: {n / 1e6:.1f}M prunable weights, prune_ratio={args.prune_ratio}, "
        f"random_ratio={args.random_ratio}, {args.device}, {torch.get_num_threads()} threads"
    )
    print(
        f"refresh_mask(): median {statistics.median(times):.3f} s "
        f"(min {min(times):.3f}, max {max(times):.3f}, {args.repeats} runs); "
        f"sparsity {wrapper.sparsity:.4f}"
    )


if __name__ == "__main__":
    main()
