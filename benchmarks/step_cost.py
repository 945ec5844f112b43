"""Cost of one SDCLR training step against a plain two-view step.

Compares, on the same model, batch and loss (lightly's NTXentLoss):

- ``plain``: ``loss(model(x0), model(x1))``, the base method (e.g. SimCLR);
- ``selfdamage``: ``loss(wrapper(x0), wrapper.damaged(x1))``, one backward;
- ``reference``: the SDCLR reference recipe, three forward passes (a no-grad twin pass, a
  dense pass, a twin pass again) and two backward passes;
- ``channel-R`` (one per ``--channel-ratios``): the ``selfdamage`` step with
  ``ChannelDamage(R)``, whose compact twin runs on a physically smaller copy of the model;
  ``channel-R-masked`` the same with ``compact=False`` (with ``--masked``).

Each step includes backward and an SGD update. Variants are interleaved round by round so
machine noise hits them alike; the report gives the median time per step, the spread
(min-max over rounds), the ratio to ``plain`` and the median of the per-round ratios.

``--arch`` picks the model: the CIFAR-style ResNet-18 (default), torchvision's ResNet-18 /
ResNet-50 (``num_classes=128``), or any model of the zoo suite (``tests/zoo/models.py``, e.g.
``torchvision/densenet121``): for a zoo model the script times, at the zoo's input size, a
plain step against weight damage (0.9) and channel damage (0.5) with the compact and the
masked twin, and prints the median per-round ratio of each mode.

``--grid`` times only ``plain`` and ``selfdamage`` (weight damage at 0.9) over batch sizes x
input sizes, a fresh model per configuration, and prints one row per configuration: the
median ratio and the min-max of the per-round ratios.

``--unmasked`` adds to the grid a diagnostic variant, ``unmasked``: the ``selfdamage`` step
with a twin that skips the mask product (its own BatchNorm state, nothing pruned), so the
cost of the mask product is the difference between the two.

``--longtail`` adds the long-tail toolkit's variants (``benchmarks/_longtail_steps.py``):
``sdclr+bcl``, the ``selfdamage`` step with BCL's bookkeeping as a training loop does it
(per-sample NT-Xent losses of the step's features, ``MomentumLoss.update`` by dataset index,
the mean loss backward: no extra pass), and ``sdclr+tau``, the step with a
``CosineTemperature`` written into the loss. After the table it prints each against
``selfdamage`` (median per-round ratio) and the bookkeeping alone, timed over
``--bookkeeping-repeats`` interleaved calls on the step's feature shapes, as a share of the
``selfdamage`` step, with ``MomentumLoss.step()`` (once per epoch of ``--num-samples``)
spread over the epoch's steps.

``--clock cpu`` times each step by the CPU time of the process (``time.process_time``)
instead of the wall clock: on a machine shared with other jobs, with ``--threads 1``, it
measures the work of a step, which other jobs' load hardly changes (wall-clock ratios
under a load above the core count meant nothing in our runs).

Run:
    python benchmarks/step_cost.py                 # CIFAR-style ResNet-18, batch 64
    python benchmarks/step_cost.py --rounds 3 --batch-size 128 --json out.json
    python benchmarks/step_cost.py --channel-ratios 0.3 0.5 0.7 --masked
    python benchmarks/step_cost.py --arch resnet50 --image-size 128 --batch-size 16 --no-reference
    python benchmarks/step_cost.py --grid --arch resnet18 --rounds 3
    python benchmarks/step_cost.py --grid --arch resnet50 --rounds 2 --skip 128x128
    python benchmarks/step_cost.py --grid --arch resnet18 --threads 1 --clock cpu  # shared machine
    python benchmarks/step_cost.py --grid --grid-batch-sizes 32 --grid-image-sizes 64 --unmasked
    python benchmarks/step_cost.py --arch torchvision/densenet121 --batch-size 4 --clock cpu
    python benchmarks/step_cost.py --longtail --channel-ratios --threads 1 --clock cpu  # BCL, tau
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torchvision
from lightly.loss import NTXentLoss

from selfdamage import ChannelDamage, SelfDamagingWrapper, WeightDamage
from selfdamage.backbones import cifar_resnet18

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import _longtail_steps as longtail  # benchmarks/, the script's own folder
from _clocks import CLOCKS, add_clock_options
from zoo.models import MODELS as ZOO

ARCHS = ("cifar_resnet18", "resnet18", "resnet50", *(m.name for m in ZOO))


def build_model(arch: str, width: int = 64) -> torch.nn.Module:
    """``cifar_resnet18(width=width)``, torchvision's ``arch(num_classes=128)``, or a zoo model.

    A zoo model (``tests/zoo/models.py``, e.g. ``torchvision/densenet121``) is built as the
    zoo suite builds it: random weights, its own classifier.
    """
    if arch == "cifar_resnet18":
        return cifar_resnet18(width=width)
    if arch in ("resnet18", "resnet50"):
        model: torch.nn.Module = getattr(torchvision.models, arch)(num_classes=128)
        return model
    for zoo in ZOO:
        if zoo.name == arch:
            return zoo.build()
    raise ValueError(f"arch={arch!r} is not one of {ARCHS}")


def _describe(arch: str, width: int) -> str:
    if arch == "cifar_resnet18":
        return f"CIFAR-style ResNet-18 (width {width})"
    if "/" in arch:
        return f"zoo model {arch}"
    return f"torchvision {arch} (num_classes=128)"


def zoo_step_ratios(
    arch: str,
    batch_size: int,
    *,
    rounds: int = 3,
    clock: Callable[[], float] = time.process_time,
) -> dict[str, float]:
    """Per mode, the median per-round ratio of an SDCLR step to a plain step, for a zoo model.

    Modes: ``weight`` (``WeightDamage(0.9)``), ``compact`` and ``masked``
    (``ChannelDamage(0.5)`` with ``compact=True`` / ``False``), each with the zoo's
    ``prunable``; a mode whose wrapper cannot be built is left out. ``compact`` is also
    left out where the compact twin falls back to masking (it would time the masked twin).
    """
    zoo = next(m for m in ZOO if m.name == arch)
    size = zoo.size
    generator = torch.Generator().manual_seed(0)
    x0, x1 = (torch.randn(batch_size, 3, size, size, generator=generator) for _ in range(2))
    criterion = NTXentLoss(temperature=0.2)
    torch.manual_seed(0)
    plain_model = zoo.build().train()
    variants: dict[str, Callable[[], None]] = {"plain": _plain_step(plain_model, criterion, x0, x1)}
    optimizers = [torch.optim.SGD(plain_model.parameters(), lr=1e-3)]
    damages: dict[str, Callable[[], Any]] = {
        "weight": lambda: WeightDamage(0.9, prunable=zoo.prunable),
        "compact": lambda: ChannelDamage(0.5, example_inputs=x0[:2], prunable=zoo.channel_prunable),
        "masked": lambda: ChannelDamage(
            0.5, example_inputs=x0[:2], prunable=zoo.channel_prunable, compact=False
        ),
    }
    for mode, make in damages.items():
        torch.manual_seed(0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                damage = make()
                wrapper = SelfDamagingWrapper(zoo.build().train(), damage=damage)
        except ValueError:
            continue
        if mode == "compact" and not damage.compact_active:
            continue
        variants[mode] = _sdclr_step(wrapper, criterion, x0, x1)
        optimizers.append(torch.optim.SGD(wrapper.parameters(), lr=1e-3))
    times = _time_interleaved(variants, optimizers, rounds, torch.device("cpu"), clock)
    return {
        mode: statistics.median(a / b for a, b in zip(t, times["plain"]))
        for mode, t in times.items()
        if mode != "plain"
    }


def _features(out: Any) -> torch.Tensor:
    """A model output as ``(batch, features)``: the main output of a namedtuple, flattened."""
    if isinstance(out, (tuple, list)):
        out = out[0]
    return out.flatten(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=ARCHS, default="cifar_resnet18")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--width", type=int, default=64, help="ResNet-18 width (64 = paper)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    add_clock_options(parser, default="wall")
    parser.add_argument(
        "--channel-ratios",
        type=float,
        nargs="*",
        default=[0.5],
        help="prune_ratio of each channel-damage variant (none: no channel variant)",
    )
    parser.add_argument(
        "--masked", action="store_true", help="also time channel damage with compact=False"
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the three-pass reference recipe"
    )
    parser.add_argument(
        "--grid",
        action="store_true",
        help="weight damage only, over --grid-batch-sizes x --grid-image-sizes",
    )
    parser.add_argument("--grid-batch-sizes", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--grid-image-sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument(
        "--unmasked",
        action="store_true",
        help="grid: also time a twin without the mask product (diagnostic)",
    )
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        metavar="BATCHxSIZE",
        help="grid configurations to leave out, e.g. 128x128 (batch 128, 128 px)",
    )
    parser.add_argument(
        "--longtail",
        action="store_true",
        help="also time sdclr+bcl (BCL bookkeeping) and sdclr+tau (temperature schedule)",
    )
    parser.add_argument(
        "--num-samples", type=int, default=50000, help="--longtail: dataset size (BCL memory)"
    )
    parser.add_argument(
        "--bookkeeping-repeats", type=int, default=200, help="--longtail: calls of each piece"
    )
    args = parser.parse_args()
    if args.longtail and (args.grid or "/" in args.arch):
        parser.error("--longtail times the main table's step; leave out --grid and zoo models")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu" and args.device != "cpu":
        parser.error("--clock cpu times CPU work only; use --clock wall with --device cuda")
    if args.grid:
        run_grid(args)
        return
    if "/" in args.arch:  # a zoo model: the step ratio of each mode
        ratios = zoo_step_ratios(
            args.arch, args.batch_size, rounds=args.rounds, clock=CLOCKS[args.clock]
        )
        print(
            f"{_describe(args.arch, args.width)}, batch {args.batch_size}, "
            f"{torch.get_num_threads()} threads, {args.rounds} rounds, {args.clock} clock; "
            "median per-round ratio to a plain step"
        )
        for mode, ratio in ratios.items():
            print(f"{mode:<10}{ratio:>8.3f}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"settings": vars(args), "ratios": ratios}, f, indent=2)
        return

    torch.manual_seed(0)
    device = torch.device(args.device)
    wrapper = SelfDamagingWrapper(build_model(args.arch, args.width), prune_ratio=0.9).to(device)
    model = wrapper.model
    criterion = NTXentLoss(temperature=0.2)
    optimizers = [torch.optim.SGD(wrapper.parameters(), lr=1e-3, momentum=0.9)]
    shape = (args.batch_size, 3, args.image_size, args.image_size)
    x0, x1 = torch.randn(shape, device=device), torch.randn(shape, device=device)

    def plain() -> None:
        criterion(model(x0), model(x1)).backward()

    def selfdamage() -> None:
        criterion(wrapper(x0), wrapper.damaged(x1)).backward()

    def reference() -> None:
        with torch.no_grad():
            f2 = wrapper.damaged(x1)
        f1 = wrapper(x0)
        criterion(f1, f2).backward()
        criterion(f1.detach(), wrapper.damaged(x1)).backward()

    variants: dict[str, Callable[[], None]] = {"plain": plain, "selfdamage": selfdamage}
    if not args.no_reference:
        variants["reference"] = reference
    shared = model.state_dict()
    example = torch.randn(2, 3, args.image_size, args.image_size)
    for ratio in args.channel_ratios:
        for compact in (True, False) if args.masked else (True,):
            channel_model = build_model(args.arch, args.width)
            channel_model.load_state_dict(shared)
            damage = ChannelDamage(ratio, example_inputs=example, compact=compact)
            channel = SelfDamagingWrapper(channel_model, damage=damage).to(device)
            if compact and not damage.compact_active:
                raise RuntimeError(f"compact twin fell back: {damage.fallback_reason}")
            name = f"channel-{ratio:g}" + ("" if compact else "-masked")
            variants[name] = _sdclr_step(channel, criterion, x0, x1)
            optimizers.append(torch.optim.SGD(channel.parameters(), lr=1e-3, momentum=0.9))

    if args.longtail:
        add_longtail(variants, wrapper, x0, x1, args)
    times = _time_interleaved(variants, optimizers, args.rounds, device, CLOCKS[args.clock])

    base = statistics.median(times["plain"])
    results = {
        name: {
            "median_s": statistics.median(t),
            "min_s": min(t),
            "max_s": max(t),
            "ratio_to_plain": statistics.median(t) / base,
            # Median of the per-round ratios: robust to load that hits whole rounds.
            "round_ratio": statistics.median(a / b for a, b in zip(t, times["plain"])),
        }
        for name, t in times.items()
    }
    print(
        f"{_describe(args.arch, args.width)}, batch {args.batch_size}, "
        f"{args.image_size}px, {args.device}, {torch.get_num_threads()} threads, "
        f"{args.rounds} rounds, {args.clock} clock"
    )
    print(f"{'variant':<20}{'median s':>10}{'min-max s':>18}{'x plain':>10}{'per round':>11}")
    for name, r in results.items():
        spread = f"{r['min_s']:.3f}-{r['max_s']:.3f}"
        print(
            f"{name:<20}{r['median_s']:>10.3f}{spread:>18}{r['ratio_to_plain']:>10.3f}"
            f"{r['round_ratio']:>11.3f}"
        )
    extra: dict[str, Any] = {}
    if args.longtail:
        dim = _features(wrapper(x0[:2])).shape[1]
        pieces = longtail.time_bookkeeping(
            args.batch_size,
            dim,
            args.num_samples,
            repeats=args.bookkeeping_repeats,
            clock=CLOCKS[args.clock],
        )
        extra["longtail"] = longtail.report(times, pieces, args.batch_size, args.num_samples)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": vars(args), "results": results, **extra}, f, indent=2)


def add_longtail(
    variants: dict[str, Callable[[], None]],
    wrapper: SelfDamagingWrapper,
    x0: torch.Tensor,
    x1: torch.Tensor,
    args: argparse.Namespace,
) -> None:
    """Adds ``sdclr+bcl`` and ``sdclr+tau`` on ``wrapper``, whose optimizer steps them."""
    device = x0.device
    generator = torch.Generator().manual_seed(0)
    index = torch.randperm(args.num_samples, generator=generator)[: args.batch_size]
    tracker = longtail.MomentumLoss(args.num_samples).to(device)
    variants["sdclr+bcl"] = longtail.bcl_step(
        wrapper, NTXentLoss(temperature=0.2), tracker, index, x0, x1, _features
    )
    variants["sdclr+tau"] = longtail.tau_step(
        wrapper, NTXentLoss(temperature=0.2), longtail.CosineTemperature(), x0, x1, _features
    )


def run_grid(args: argparse.Namespace) -> None:
    """Weight damage (0.9) against the plain step over batch sizes x input sizes."""
    device = torch.device(args.device)
    criterion = NTXentLoss(temperature=0.2)
    skip = set(args.skip)
    print(
        f"{_describe(args.arch, args.width)}, weight damage 0.9, {args.device}, "
        f"{torch.get_num_threads()} threads, {args.rounds} rounds per configuration, "
        f"{args.clock} clock"
    )
    print(
        f"{'batch':>5}{'px':>5}{'plain s':>9}{'sdclr s':>9}{'x plain':>9}{'per round':>11}"
        f"{'round min-max':>15}" + (f"{'unmasked x':>12}{'per round':>11}" if args.unmasked else "")
    )
    rows = []
    for batch_size in args.grid_batch_sizes:
        for size in args.grid_image_sizes:
            if f"{batch_size}x{size}" in skip:
                print(f"{batch_size:>5}{size:>5}  skipped (--skip)")
                continue
            torch.manual_seed(0)
            wrapper = SelfDamagingWrapper(build_model(args.arch, args.width), prune_ratio=0.9)
            wrapper = wrapper.to(device)
            model = wrapper.model
            shape = (batch_size, 3, size, size)
            x0, x1 = torch.randn(shape, device=device), torch.randn(shape, device=device)

            variants = {
                "plain": _plain_step(model, criterion, x0, x1),
                "selfdamage": _sdclr_step(wrapper, criterion, x0, x1),
            }
            optimizers = [torch.optim.SGD(wrapper.parameters(), lr=1e-3, momentum=0.9)]
            if args.unmasked:
                torch.manual_seed(0)
                unmasked = SelfDamagingWrapper(
                    build_model(args.arch, args.width), damage=_UnmaskedTwin(0.9)
                ).to(device)
                variants["unmasked"] = _sdclr_step(unmasked, criterion, x0, x1)
                optimizers.append(torch.optim.SGD(unmasked.parameters(), lr=1e-3, momentum=0.9))
            clock = CLOCKS[args.clock]
            times = _time_interleaved(variants, optimizers, args.rounds, device, clock)
            round_ratios = [a / b for a, b in zip(times["selfdamage"], times["plain"])]
            row = {
                "batch_size": batch_size,
                "image_size": size,
                "plain_median_s": statistics.median(times["plain"]),
                "selfdamage_median_s": statistics.median(times["selfdamage"]),
                "round_ratios": round_ratios,
            }
            row["ratio_to_plain"] = row["selfdamage_median_s"] / row["plain_median_s"]
            row["round_ratio"] = statistics.median(round_ratios)
            spread = f"{min(round_ratios):.3f}-{max(round_ratios):.3f}"
            extra = ""
            if args.unmasked:
                unmasked_ratios = [a / b for a, b in zip(times["unmasked"], times["plain"])]
                row["unmasked_median_s"] = statistics.median(times["unmasked"])
                row["unmasked_ratio_to_plain"] = row["unmasked_median_s"] / row["plain_median_s"]
                row["unmasked_round_ratio"] = statistics.median(unmasked_ratios)
                extra = (
                    f"{row['unmasked_ratio_to_plain']:>12.3f}{row['unmasked_round_ratio']:>11.3f}"
                )
            rows.append(row)
            print(
                f"{batch_size:>5}{size:>5}{row['plain_median_s']:>9.3f}"
                f"{row['selfdamage_median_s']:>9.3f}{row['ratio_to_plain']:>9.3f}"
                f"{row['round_ratio']:>11.3f}{spread:>15}{extra}",
                flush=True,
            )
            del wrapper, model, optimizers, x0, x1, variants
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": vars(args), "grid": rows}, f, indent=2)


class _UnmaskedTwin(WeightDamage):
    """Weight damage whose twin pass skips the mask product: a diagnostic, not SDCLR."""

    def twin_forward(
        self,
        model: torch.nn.Module,
        substitutes: Mapping[str, torch.Tensor],
        masks: Mapping[str, torch.Tensor],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
    ) -> Any:
        return super().twin_forward(model, substitutes, {}, args, kwargs)


def _time_interleaved(
    variants: dict[str, Callable[[], None]],
    optimizers: Sequence[torch.optim.Optimizer],
    rounds: int,
    device: torch.device,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds per step of each variant, one warm-up step each, then ``rounds`` interleaved."""

    def timed(step: Callable[[], None]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = clock()
        step()
        for optimizer in optimizers:  # only the stepped variant's parameters have gradients
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return clock() - start

    for step in variants.values():  # warm-up
        timed(step)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, step in variants.items():
            times[name].append(timed(step))
    return times


def _plain_step(
    model: torch.nn.Module, criterion: torch.nn.Module, x0: torch.Tensor, x1: torch.Tensor
) -> Callable[[], None]:
    def step() -> None:
        criterion(_features(model(x0)), _features(model(x1))).backward()

    return step


def _sdclr_step(
    wrapper: SelfDamagingWrapper, criterion: torch.nn.Module, x0: torch.Tensor, x1: torch.Tensor
) -> Callable[[], None]:
    def step() -> None:
        criterion(_features(wrapper(x0)), _features(wrapper.damaged(x1))).backward()

    return step


if __name__ == "__main__":
    main()
