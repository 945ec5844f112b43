"""Peak memory of one SDCLR training step against a plain two-view step.

Each variant runs in a fresh child process (this script with ``--child``), so that one
variant's allocations cannot hide in another's peak:

- ``plain``: ``loss(model(x0), model(x1))``, the base method (e.g. SimCLR);
- ``weight``: ``loss(wrapper(x0), wrapper.damaged(x1))`` with weight damage (``prune_ratio``
  0.9, the paper's);
- ``channel``: the same with ``ChannelDamage(0.5)``, whose twin runs a compact copy.

The child builds the model (and the wrapper, whose masks count in the baseline), the two
input batches, an SGD optimizer with momentum, then takes ``--steps`` steps (fwd + bwd + SGD).
On CPU it reports the peak resident set size (``ru_maxrss``) minus the resident set size
right before the first step (``/proc/self/statm``: torch, the model, the masks, the inputs);
with ``--device cuda``, ``torch.cuda.max_memory_allocated`` minus ``memory_allocated`` right
before the first step. The difference is the step's own memory:
activations kept for backward, gradients and momentum buffers.

On CPU the children run with ``MALLOC_MMAP_THRESHOLD_=65536`` (glibc): every allocation
above 64 KiB gets its own mapping, returned to the system when the tensor is freed, so the
resident set follows the live tensors. With glibc's default (``--default-malloc``), freed
memory is kept for reuse or not depending on the order of allocations: weight damage on the
CIFAR ResNet-18 measured 912 MiB in one run and 1032 MiB in another, the plain step 920-968.

Run:
    python benchmarks/peak_memory.py                                  # CIFAR ResNet-18, batch 64
    python benchmarks/peak_memory.py --arch resnet50 --image-size 128 --batch-size 16
    python benchmarks/peak_memory.py --device cuda --batch-size 512
    python benchmarks/peak_memory.py --default-malloc                 # glibc's own settings
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

import torch
from lightly.loss import NTXentLoss
from step_cost import ARCHS, build_model  # this folder: the models step_cost.py times

from selfdamage import ChannelDamage, SelfDamagingWrapper

VARIANTS = ("plain", "weight", "channel")


def _peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _current_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    with open("/proc/self/statm") as f:  # resident pages, second field
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def child(args: argparse.Namespace) -> dict[str, float]:
    """Measure one variant in this process; returns MiB."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = build_model(args.arch, args.width)
    shape = (args.batch_size, 3, args.image_size, args.image_size)
    if args.child == "plain":
        module: torch.nn.Module = model.to(device)
    elif args.child == "weight":
        module = SelfDamagingWrapper(model, prune_ratio=args.weight_ratio).to(device)
    else:
        example = torch.randn(2, 3, args.image_size, args.image_size)
        damage = ChannelDamage(args.channel_ratio, example_inputs=example)
        module = SelfDamagingWrapper(model, damage=damage).to(device)
        if not damage.compact_active:
            raise RuntimeError(f"compact twin fell back: {damage.fallback_reason}")
    criterion = NTXentLoss(temperature=0.2)
    optimizer = torch.optim.SGD(module.parameters(), lr=1e-3, momentum=0.9)
    x0, x1 = torch.randn(shape, device=device), torch.randn(shape, device=device)

    def step() -> None:
        if args.child == "plain":
            loss = criterion(module(x0), module(x1))
        else:
            loss = criterion(module(x0), module.damaged(x1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    baseline = _current_mib(device)
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    peak = _peak_mib(device)
    return {"baseline_mib": baseline, "peak_mib": peak, "step_mib": peak - baseline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=ARCHS, default="cifar_resnet18")
    parser.add_argument("--width", type=int, default=64, help="CIFAR ResNet-18 width")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=2, help="steps per child (peak over all)")
    parser.add_argument("--weight-ratio", type=float, default=0.9)
    parser.add_argument("--channel-ratio", type=float, default=0.5)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument(
        "--default-malloc",
        action="store_true",
        help="keep glibc's allocator settings on CPU (peak RSS then varies between runs)",
    )
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return

    env = dict(os.environ)
    if not args.default_malloc:
        env.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")  # RSS follows the live tensors
    results: dict[str, dict[str, float]] = {}
    for variant in args.variants:
        command = [sys.executable, __file__, *sys.argv[1:], "--child", variant]
        done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        if done.returncode:
            sys.exit(f"{variant} failed:\n{done.stderr}")
        results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    base = results.get("plain")
    what = "max_memory_allocated" if args.device.startswith("cuda") else "peak RSS"
    malloc = ""
    if not args.device.startswith("cuda"):
        malloc = f", MALLOC_MMAP_THRESHOLD_={env.get('MALLOC_MMAP_THRESHOLD_', 'unset')}"
    print(
        f"{args.arch}, batch {args.batch_size}, {args.image_size}px, {args.device}, "
        f"{torch.get_num_threads()} threads, {args.steps} steps, one process per variant"
        f"{malloc}; step MiB = {what} - resident/allocated before the first step"
    )
    print(f"{'variant':<10}{'before MiB':>12}{'peak MiB':>11}{'step MiB':>11}{'x plain':>9}")
    for variant, r in results.items():
        ratio = f"{r['step_mib'] / base['step_mib']:.3f}" if base else "-"
        print(
            f"{variant:<10}{r['baseline_mib']:>12.0f}{r['peak_mib']:>11.0f}"
            f"{r['step_mib']:>11.0f}{ratio:>9}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
