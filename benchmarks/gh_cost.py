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

Variants are interleaved round by round (``--steps`` steps of each per round); by default
each step is timed by the process's CPU time (``time.process_time``) with one thread, which
other jobs on a shared machine hardly change, as ``step_cost.py --threads 1 --clock cpu``
does. The table gives, per variant, the median ms per step over all steps, the min-max of
the per-round medians, the ratio of the medians to ``sdclr`` (``x sdclr``; for ``gh-only``
that is GH's cost as a fraction of an SDCLR step) and the median of the per-round ratios
(``per round``), then GH's cost per step as a percentage of the SDCLR step.

Run:
    python benchmarks/gh_cost.py                       # width 8, batch 64
    python benchmarks/gh_cost.py --batch-size 256 --channels 1 --image-size 28  # the study's
    python benchmarks/gh_cost.py --width 64 --rounds 5 --steps 2  # the paper's ResNet-18 width
"""

from __future__ import annotations

import argparse
import json
import statistics
import warnings

import torch
from _clocks import CLOCKS, add_clock_options  # benchmarks/, the script's own folder

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
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    add_clock_options(parser, default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
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
    clock = CLOCKS[args.clock]
    times: dict[str, list[list[float]]] = {name: [] for name in variants}
    for fn in variants.values():
        fn()  # warm-up
    for _ in range(args.rounds):
        for name, fn in variants.items():
            steps = []
            for _ in range(args.steps):
                start = clock()
                fn()
                steps.append(clock() - start)
            times[name].append(steps)
    size = f"{args.channels}x{args.image_size}x{args.image_size}"
    print(
        f"cifar_resnet18(width={args.width}), batch {args.batch_size} of {size}, "
        f"{torch.get_num_threads()} threads, {args.rounds} rounds of {args.steps} steps, "
        f"{args.clock} clock"
    )
    results = summarize(times)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": vars(args), "results": results}, f, indent=2)


def summarize(times: dict[str, list[list[float]]]) -> dict[str, dict[str, float]]:
    """Prints the table and GH's cost per step; returns the table's numbers.

    ``times[variant][round]`` holds the seconds of that round's steps.
    """
    rounds = {name: [statistics.median(r) for r in t] for name, t in times.items()}
    base = statistics.median(s for r in times["sdclr"] for s in r)
    results = {}
    print(f"{'variant':<20}{'median ms':>10}{'min-max ms':>16}{'x sdclr':>9}{'per round':>11}")
    for name, values in times.items():
        median = statistics.median(s for r in values for s in r)
        results[name] = {
            "median_s": median,
            "min_s": min(rounds[name]),  # of the per-round medians
            "max_s": max(rounds[name]),
            "ratio_to_sdclr": median / base,
            "round_ratio": statistics.median(a / b for a, b in zip(rounds[name], rounds["sdclr"])),
        }
        r = results[name]
        spread = f"{1000 * r['min_s']:.1f}-{1000 * r['max_s']:.1f}"
        print(
            f"{name:<20}{1000 * median:>10.1f}{spread:>16}{r['ratio_to_sdclr']:>9.3f}"
            f"{r['round_ratio']:>11.3f}"
        )
    print("GH per step, % of an sdclr step (x sdclr - 1 for whole steps, x sdclr for gh-only):")
    for name in ("sdclr+gh", "sdclr+gh+refresh"):
        own = results[name.replace("sdclr+", "").replace("gh", "gh-only", 1)]
        print(
            f"  {name:<18}whole steps {100 * (results[name]['ratio_to_sdclr'] - 1):+6.1f} %"
            f" (per round {100 * (results[name]['round_ratio'] - 1):+6.1f} %),"
            f" GH alone {100 * own['ratio_to_sdclr']:5.1f} %"
            f" (per round {100 * own['round_ratio']:5.1f} %)"
        )
    return results


if __name__ == "__main__":
    main()
