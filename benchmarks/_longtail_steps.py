"""The long-tail toolkit's variants of ``step_cost.py --longtail`` (not a script of its own).

- ``sdclr+bcl``: the SDCLR step as BCL-D's training loop runs it
  (``examples/boosted_sdclr.py``): the per-sample NT-Xent losses of the features the step
  already has (:func:`~selfdamage.longtail.per_sample_loss`, whose mean is lightly's
  ``NTXentLoss``), ``MomentumLoss.update`` with the batch's dataset indices, and the mean
  loss backward. No extra forward pass.
- ``sdclr+tau``: the SDCLR step with the temperature written from a ``CosineTemperature``
  into the loss before the step (``set_temperature(criterion, schedule.value)``, what an
  adapter with a schedule does at each forward) and the schedule stepped after it (the
  authors step once per epoch; stepping every step is an upper bound).

Whole steps of a ResNet-18 move by a few percent from round to round, more than the
bookkeeping costs, so :func:`time_bookkeeping` also times the extra work alone, on the
step's own feature shapes, with many interleaved repeats: ``MomentumLoss.update`` and
``MomentumLoss.step()`` (once per epoch), BCL's bookkeeping; lightly's ``NTXentLoss``
forward and backward against the per-sample loss that replaces it; and the temperature
write.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from lightly.loss import NTXentLoss

from selfdamage import SelfDamagingWrapper
from selfdamage.longtail import CosineTemperature, MomentumLoss, per_sample_loss, set_temperature

Features = Callable[[object], torch.Tensor]


def bcl_step(
    wrapper: SelfDamagingWrapper,
    criterion: NTXentLoss,
    tracker: MomentumLoss,
    index: torch.Tensor,
    x0: torch.Tensor,
    x1: torch.Tensor,
    features: Features,
) -> Callable[[], None]:
    """The ``sdclr+bcl`` step: per-sample losses, ``tracker.update``, the mean backward."""

    def step() -> None:
        losses = per_sample_loss(criterion, features(wrapper(x0)), features(wrapper.damaged(x1)))
        tracker.update(index, losses.detach())
        losses.mean().backward()

    return step


def tau_step(
    wrapper: SelfDamagingWrapper,
    criterion: NTXentLoss,
    schedule: CosineTemperature,
    x0: torch.Tensor,
    x1: torch.Tensor,
    features: Features,
) -> Callable[[], None]:
    """The ``sdclr+tau`` step: the schedule's temperature into the loss, the step, a step."""

    def step() -> None:
        set_temperature(criterion, schedule.value)
        criterion(features(wrapper(x0)), features(wrapper.damaged(x1))).backward()
        schedule.step()

    return step


def time_bookkeeping(
    batch_size: int,
    dim: int,
    num_samples: int,
    *,
    repeats: int = 200,
    clock: Callable[[], float] = time.process_time,
) -> dict[str, list[float]]:
    """Seconds per call of each piece of bookkeeping alone, ``repeats`` interleaved calls.

    ``ntxent``: lightly's ``NTXentLoss(0.2)`` forward and backward on ``(batch_size, dim)``
    leaf features; ``per-sample``: ``per_sample_loss`` and its mean's backward on the same
    features, in its place; ``update``: ``MomentumLoss(num_samples).update`` with the
    batch's indices and detached losses; ``momentum-step``: ``MomentumLoss.step()``, once
    per epoch; ``tau``: ``set_temperature(loss, schedule.value)`` and ``schedule.step()``.
    """
    generator = torch.Generator().manual_seed(0)
    z0 = torch.randn(batch_size, dim, generator=generator, requires_grad=True)
    z1 = torch.randn(batch_size, dim, generator=generator, requires_grad=True)
    criterion = NTXentLoss(temperature=0.2)
    tracker = MomentumLoss(num_samples)
    index = torch.randperm(num_samples, generator=generator)[:batch_size]
    schedule = CosineTemperature()
    tau_loss = NTXentLoss(temperature=0.2)

    def ntxent() -> None:
        criterion(z0, z1).backward()

    def per_sample() -> None:
        per_sample_loss(criterion, z0, z1).mean().backward()

    losses = per_sample_loss(criterion, z0, z1).detach()

    def tau() -> None:
        set_temperature(tau_loss, schedule.value)
        schedule.step()

    pieces = {
        "ntxent": ntxent,
        "per-sample": per_sample,
        "update": lambda: tracker.update(index, losses),
        "momentum-step": tracker.step,
        "tau": tau,
    }
    times: dict[str, list[float]] = {name: [] for name in pieces}
    for fn in pieces.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in pieces.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
            z0.grad = z1.grad = None
    return times


def report(
    times: dict[str, list[float]],
    pieces: dict[str, list[float]],
    batch_size: int,
    num_samples: int,
) -> dict[str, float]:
    """Prints the long-tail variants against ``selfdamage`` and the bookkeeping alone.

    Returns the numbers printed, as fractions of the median ``selfdamage`` step.
    """
    base = statistics.median(times["selfdamage"])
    results: dict[str, float] = {}
    print("long-tail toolkit against the selfdamage step (whole steps; per-round ratio - 1):")
    for name in ("sdclr+bcl", "sdclr+tau"):
        ratios = [a / b - 1 for a, b in zip(times[name], times["selfdamage"])]
        results[name] = statistics.median(ratios)
        print(
            f"  {name:<18}{100 * results[name]:+8.2f} %   rounds "
            f"{100 * min(ratios):+.2f} to {100 * max(ratios):+.2f} %"
        )
    median = {name: statistics.median(t) for name, t in pieces.items()}
    per_epoch = -(-num_samples // batch_size)
    rows = {
        "bcl update": median["update"],
        "bcl epoch end": median["momentum-step"] / per_epoch,
        "bcl bookkeeping": median["update"] + median["momentum-step"] / per_epoch,
        "loss swap": median["per-sample"] - median["ntxent"],
        "tau per step": median["tau"],
    }
    repeats = len(pieces["ntxent"])
    print(
        f"bookkeeping alone (median of {repeats} interleaved calls; share of the median "
        f"selfdamage step, {base:.3f} s):"
    )
    for name, t in pieces.items():
        print(
            f"  {name:<18}{1e6 * median[name]:>9.1f} µs   min-max "
            f"{1e6 * min(t):.1f}-{1e6 * max(t):.1f} µs"
        )
    notes = {
        "bcl update": "update, every step",
        "bcl epoch end": f"momentum-step / {per_epoch} steps per epoch of {num_samples}",
        "bcl bookkeeping": "the two above",
        "loss swap": "per-sample - ntxent",
        "tau per step": "tau",
    }
    for name, seconds in rows.items():
        results[name] = seconds / base
        print(
            f"  {name:<18}{1e6 * seconds:>9.1f} µs = {100 * seconds / base:7.3f} % of a step"
            f"   ({notes[name]})"
        )
    return results
