"""Pretraining one run: the schedule, the step loop, checkpoints and exact resumption.

A checkpoint holds tensors and plain types only (loaded with ``weights_only=True``): the
model's ``state_dict`` (memory banks and other method state included, see
:func:`~selfdamage.adapters.method_state.persist_method_state`), the optimizer and
learning-rate schedule states, the epoch and the losses so far. A checkpoint is written
every ``checkpoint_every`` epochs and at the last, whole or not at all (a run stopped while
writing one keeps the previous); resuming from it continues exactly.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightly.utils.lars import LARS
from lightly.utils.scheduler import cosine_schedule
from torch import Tensor, nn

from selfdamage._compat.study_files import upgrade_study_checkpoint
from selfdamage._modules import device_of
from selfdamage._warnings import warns_at_caller
from selfdamage.adapters import MomentumAdapter, SelfDamagingAdapter
from selfdamage.data.batch_views import BatchViews
from selfdamage.study._files import write_atomically
from selfdamage.study._plugins import RunPlugins
from selfdamage.study._progress import progress_bar
from selfdamage.study.data import Images, StudyData

__all__ = ["OPTIMIZERS", "TrainSettings", "pretrain"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    """The options of :func:`pretrain` (resolved values of a ``StudyConfig``).

    ``bcl`` and ``gh`` are the run's variant's plug-ins (``_variants``).

    Examples:
        >>> TrainSettings(epochs=2, batch_size=64, lr=0.5, weight_decay=1e-4).checkpoint_every
        10
    """

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    optimizer: str = "sgd"
    max_steps: int | None = None
    checkpoint_every: int = 10
    amp: bool = False
    channels_last: bool = False
    progress: bool = False
    bcl: bool = False
    gh: bool = False


@warns_at_caller
def pretrain(
    model: SelfDamagingAdapter,
    data: StudyData,
    indices: Tensor,
    settings: TrainSettings,
    *,
    name: str,
    checkpoint: Path,
    resume: bool,
    seed: int,
    epoch_seconds: list[float] | None = None,
) -> list[float]:
    """Pretrains ``model`` on ``data.train_images[indices]``; returns the loss per epoch.

    Images in memory are moved to the model's device once; streamed images
    (:class:`~selfdamage.study.data.ImageSource`) are read batch by batch in the same
    order. Each epoch's log line gives its loss and training images per second; it comes
    after the epoch's checkpoint, if it has one, is written.

    The method's optimizer (``build_optimizer``; SGD with momentum 0.9 by default), the
    learning rate scaled linearly from batch size 256, a linear
    warm-up over a tenth of the epochs (at most 10) and a cosine decay per step, as in the
    paper's scripts. The data order and augmentations of epoch ``e`` come from a generator
    seeded with ``(seed, e)`` on the model's device.

    With ``settings.bcl`` or ``settings.gh`` each step goes through
    ``_plugins.RunPlugins`` (BCL's boosted views and momentum loss,
    GH's term; their state in the checkpoint); a model with a ``temperature_schedule``
    (``+ts``) has it stepped after every epoch.

    Args:
        model: The adapter, on its training device.
        data: The dataset.
        indices: The training subset.
        settings: Epochs, batch size, optimizer and performance options.
        name: The run's name, for logs and the progress bar.
        checkpoint: The checkpoint file.
        resume: Continue from ``checkpoint`` if it exists.
        seed: Seeds the data order and augmentations.
        epoch_seconds: If given, receives the wall time of every epoch trained here.

    Raises:
        ValueError: If ``batch_size`` is larger than the training subset.

    Examples:
        >>> losses = pretrain(model, data, indices, settings, name="run",
        ...     checkpoint=Path("run.pt"), resume=False, seed=0)  # doctest: +SKIP
    """
    run = _Run.start(model, data, indices, settings, seed=seed)
    epochs, first = settings.epochs, 0
    losses: list[float] = []
    if resume and checkpoint.exists():
        first, losses = run.restore(load_checkpoint(checkpoint, run.device))
        logger.info("%s: resuming after epoch %d from %s", name, first, checkpoint)
    bar = progress_bar(
        settings.progress, unit="step", total=run.total, initial=first * run.steps, desc=name
    )
    for epoch in range(first, epochs):
        started = time.perf_counter()
        losses.append(run.train_epoch(epoch, seed, bar))
        seconds = time.perf_counter() - started
        if epoch_seconds is not None:
            epoch_seconds.append(seconds)
        if (epoch + 1) % settings.checkpoint_every == 0 or epoch + 1 == epochs:
            state = run.state(epoch + 1, losses)
            write_atomically(checkpoint, functools.partial(torch.save, state))
        if bar is not None:
            bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{losses[-1]:.4f}")
        logger.info("%s: epoch %d/%d, loss %.4f, %.0f images/s", name, epoch + 1, epochs,
                    losses[-1], run.steps * settings.batch_size / max(seconds, 1e-9))  # fmt: skip
    if bar is not None:
        bar.close()
    if settings.channels_last:
        model.to(memory_format=torch.contiguous_format)
    return losses


@dataclass
class _Run:
    """One run's training state: the model, its images and views, optimizer and schedule."""

    model: SelfDamagingAdapter
    settings: TrainSettings
    images: Images
    indices: Tensor
    steps: int
    views: BatchViews
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    plugins: RunPlugins | None = None

    @property
    def device(self) -> torch.device:
        return device_of(self.model)

    @property
    def total(self) -> int:
        """The steps of the whole run."""
        return self.settings.epochs * self.steps

    @classmethod
    def start(
        cls,
        model: SelfDamagingAdapter,
        data: StudyData,
        indices: Tensor,
        settings: TrainSettings,
        *,
        seed: int = 0,
    ) -> _Run:
        """Moves in-memory images to the model's device and builds views, optimizer, schedule."""
        device = device_of(model)
        images: Images = data.train_images
        if isinstance(images, Tensor):
            images = images[indices].to(device)
        batch_size, epochs = settings.batch_size, settings.epochs
        steps = len(indices) // batch_size
        if steps == 0:
            raise ValueError(
                f"batch_size={batch_size} is larger than the training subset ({len(indices)} "
                "samples); lower batch_size."
            )
        if settings.max_steps is not None:
            steps = min(steps, settings.max_steps)
        if settings.channels_last:
            model.to(memory_format=torch.channels_last)
        size = data.image_shape[-1]
        views = BatchViews(size, mean=data.mean, std=data.std, **data.view_options).to(device)
        optimizer = build_optimizer(
            settings.optimizer,
            model.parameters(),
            lr=settings.lr * batch_size / 256,
            weight_decay=settings.weight_decay,
        )
        total, warmup = epochs * steps, min(10, epochs // 10) * steps
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, total, warmup)
        )
        plugins = RunPlugins.build(model, bcl=settings.bcl, gh=settings.gh, samples=len(indices),
                                   epochs=epochs, seed=seed)  # fmt: skip
        return cls(model, settings, images, indices, steps, views, optimizer, schedule, plugins)

    def train_epoch(self, epoch: int, seed: int, bar: Any) -> float:
        """Trains one epoch; returns its mean loss (the epoch's one host-device sync)."""
        model, settings, device = self.model, self.settings, self.device
        model.train()
        model.refresh_mask()
        gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.indices), device=device, generator=gen)
        epoch_loss = torch.zeros((), device=device)
        plugins, size = self.plugins, settings.batch_size
        if plugins is not None:
            plugins.start_epoch(epoch)
        batches = _epoch_batches(self.images, self.indices, order, settings.batch_size, self.steps)
        for step, uint8 in enumerate(batches):
            batch = uint8.to(device, non_blocking=True).float() / 255
            x0, x1 = self.views(batch, generator=gen), self.views(batch, generator=gen)
            positions = order[step * size : (step + 1) * size]
            if plugins is not None:
                x0, x1 = plugins.boost(x0, x1, positions, self.views.mean, self.views.std)
            if settings.channels_last:
                x0 = x0.contiguous(memory_format=torch.channels_last)
                x1 = x1.contiguous(memory_format=torch.channels_last)
            if isinstance(model, MomentumAdapter):
                model.update_momentum(
                    cosine_schedule(epoch * self.steps + step, self.total, 0.99, 1.0)
                )
            with _autocast(device, settings.amp):
                loss = model(x0, x1) if plugins is None else plugins.loss(model, x0, x1, positions)
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.schedule.step()
            epoch_loss += loss.detach()  # no host-device sync within an epoch
            if bar is not None:
                bar.update(1)
        if plugins is not None:
            plugins.end_epoch()
        schedule = getattr(model, "temperature_schedule", None)
        if schedule is not None:  # +ts: once per epoch, as the authors
            schedule.step()
        return float(epoch_loss) / self.steps

    def state(self, epoch: int, losses: list[float]) -> dict[str, Any]:
        """The checkpoint after ``epoch`` epochs."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "epoch": epoch,
            "losses": losses,
            **({} if self.plugins is None else {"plugins": self.plugins.state()}),
        }

    def restore(self, state: dict[str, Any]) -> tuple[int, list[float]]:
        """Loads a checkpoint; returns its epoch and losses."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.plugins is not None:
            self.plugins.restore(state["plugins"])
        return state["epoch"], list(state["losses"])


def _epoch_batches(
    images: Images, indices: Tensor, order: Tensor, batch_size: int, steps: int
) -> Iterator[Tensor]:
    """An epoch's ``uint8`` batches: slices of ``images`` in memory, or read from disk.

    In memory, ``images`` is already the training subset on the device; streamed, it is
    the whole split and ``indices[order]`` picks the subset's images.
    """
    if isinstance(images, Tensor):
        for step in range(steps):
            yield images[order[step * batch_size : (step + 1) * batch_size]]
    else:
        chosen = indices[order[: steps * batch_size].cpu()].tolist()
        yield from images.batches(chosen, batch_size)


OPTIMIZERS = ("sgd", "lars", "adamw")


def build_optimizer(
    name: str, params: Iterable[nn.Parameter], *, lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """The study's optimizer by name: SGD or LARS with momentum 0.9, or AdamW.

    ``"sgd"`` is the SDCLR paper's; ``"lars"`` (lightly's ``LARS``) what lightly's VICReg
    example uses; ``"adamw"`` (default betas) what DINO's paper uses.

    Examples:
        >>> build_optimizer("lars", nn.Linear(2, 2).parameters(), lr=0.1, weight_decay=0.0)
        LARS (...)
    """
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "lars":
        lars: torch.optim.Optimizer = LARS(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
        return lars
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """A training checkpoint, in the layout :func:`pretrain` writes; ``weights_only=True``.

    Raises:
        ValueError: If the file holds anything else than tensors and plain types
            (an arbitrary pickled object is refused, never run).
    """
    try:
        state: dict[str, Any] = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch raises UnpicklingError (or RuntimeError) here
        raise ValueError(
            f"{path} is not a study checkpoint of tensors and plain types, refusing to load "
            f"it ({type(error).__name__}). Delete it, or start without --resume."
        ) from error
    return upgrade_study_checkpoint(state)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """The learning-rate factor at ``step``: linear warm-up, then cosine decay to 0.

    Examples:
        >>> lr_factor(0, total=10, warmup=2), lr_factor(1, 10, 2), lr_factor(2, 10, 2)
        (0.5, 1.0, 1.0)
    """
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
