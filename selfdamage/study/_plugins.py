"""The long-tail plug-ins in a study run: BCL's boosted views, GH's term, the schedule.

A variant with ``+bcl`` or ``+gh`` (``_variants``) trains through
:class:`RunPlugins`; a variant without them never builds one. Either way the step is the
adapter's own ``model(x0, x1)`` (dense ``x0``, the twin's ``x1`` under SDCLR, the dense
model's for the base method), and, from that one pass:

- ``+bcl``: the per-sample losses of the adapter's loss call (``return_per_sample=True``),
  recorded in a :class:`~selfdamage.longtail.momentum_loss.MomentumLoss` keyed by the
  sample's position in the run's training subset. Its scores set each image's boosted
  RandAugment strength (:meth:`RunPlugins.boost`, the authors' operation pool and mapping)
  in the next epoch.
- ``+gh``: :class:`~selfdamage.longtail.harmonization.GeometricHarmonization` on both
  branches, as the authors' ``sdclr_GH``, with its schedule scaled to the run
  (:meth:`~selfdamage.longtail.harmonization.GeometricHarmonization.scaled_to`), ``K =
  100`` prototypes (the authors'), at most the projection width.

``+ts`` needs no step of its own: the adapter takes the schedule (:func:`study_temperature`)
and :func:`~selfdamage.study.training.pretrain` steps it after every epoch.

Cost: the boosted views are per-image PIL operations on the host (the study's other views are
batched tensor operations): both views of a batch are copied to the host, and each view
whose score draws an operation is converted, augmented and copied back; in BCL's first
epoch every score is 0 and nothing is copied. On one CPU core that is about 0.2 to 0.5 s
per batch of 256 (28 or 32 pixels): a few percent of a CPU step of the study's ResNet-18 at
width 8, but several GPU steps, so on a GPU ``+bcl`` runs at the host's pace. The momentum
loss adds no forward pass.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from selfdamage.adapters import SelfDamagingAdapter
from selfdamage.longtail import (
    BoostedRandAugment,
    CosineTemperature,
    GeometricHarmonization,
    MomentumLoss,
    TemperatureSchedule,
)

__all__ = ["AUTHORS_PERIOD_EPOCHS", "RunPlugins", "study_temperature"]

AUTHORS_PERIOD_EPOCHS = 400
"""The cosine schedule's full cycle in Kukleva et al.'s runs (``--t_max 200``)."""
_PROTOTYPES = 100  # GH's K on CIFAR-100-LT (the authors')


def study_temperature(config: Any, variant: Any) -> float | TemperatureSchedule | None:
    """The ``temperature=`` of a variant's adapter: the cosine schedule with ``+ts``.

    ``CosineTemperature(0.1, 1.0, period_epochs)`` with the authors' period of 400 epochs,
    or, in a shorter study, a period of the study's epochs (one full cycle, 1.0 to 0.1 and
    back), since 400 would keep the temperature near 1.0 throughout. Otherwise the
    study's ``temperature``.

    Examples:
        >>> from selfdamage.study import StudyConfig
        >>> from selfdamage.study._variants import Variant
        >>> study_temperature(StudyConfig(epochs=30), Variant("sdclr", ts=True))
        CosineTemperature(tau_min=0.1, tau_max=1.0, period_epochs=30, steps_per_epoch=None)
    """
    if not variant.ts:
        return config.temperature  # type: ignore[no-any-return]
    return CosineTemperature(0.1, 1.0, min(AUTHORS_PERIOD_EPOCHS, config.epochs))


@dataclass
class RunPlugins:
    """The state of a run's ``+bcl`` and ``+gh`` plug-ins, and their part of each step.

    Build it with :meth:`build`; call :meth:`start_epoch` and :meth:`end_epoch` around
    every epoch. Its state (:meth:`state`) goes into the run's checkpoint.
    """

    tracker: MomentumLoss | None
    harmonization: GeometricHarmonization | None
    seed: int
    augment: BoostedRandAugment
    scores: list[float]
    rng: random.Random

    @classmethod
    def build(
        cls, model: SelfDamagingAdapter, *, bcl: bool, gh: bool, samples: int, epochs: int,
        seed: int,
    ) -> RunPlugins | None:  # fmt: skip
        """The plug-ins of a run on ``samples`` training images; None without any."""
        if not (bcl or gh):
            return None
        device = next(model.parameters()).device
        tracker = MomentumLoss(samples).to(device) if bcl else None
        harmonization = None
        if gh:
            dim = _projection_dim(model)
            harmonization = GeometricHarmonization.scaled_to(
                epochs, dim=dim, num_prototypes=min(_PROTOTYPES, dim), num_samples=samples
            ).to(device)
        rng = random.Random(seed)
        return cls(tracker, harmonization, seed, BoostedRandAugment(), [], rng)

    def start_epoch(self, epoch: int) -> None:
        """Reads the scores of this epoch's views (one host copy), sets GH's epoch."""
        if self.tracker is not None:
            self.scores = self.tracker.scores.tolist()
        if self.harmonization is not None:
            self.harmonization.set_epoch(epoch)
        self.rng = random.Random(self.seed * 1_000_003 + epoch)

    def end_epoch(self) -> None:
        """BCL's momentum update and new scores."""
        if self.tracker is not None:
            self.tracker.step()

    def boost(
        self, x0: Tensor, x1: Tensor, positions: Tensor, mean: Tensor, std: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Both views with each image's boosted RandAugment (``+bcl``), as normalized floats.

        Sample ``i`` gets the strength of its score (drawn once, shared by its views); each
        view draws its operations. A view is converted only where an operation applies.
        """
        if self.tracker is None:
            return x0, x1
        strengths = [self.augment.strength(self.scores[i], self.rng) for i in positions.tolist()]
        return _boost(x0, strengths, self, mean, std), _boost(x1, strengths, self, mean, std)

    def loss(self, model: SelfDamagingAdapter, x0: Tensor, x1: Tensor, positions: Tensor) -> Tensor:
        """The step's loss: the adapter's, plus GH's term on the projections its loss call
        received; records BCL's per-sample losses and GH's scores."""
        projections: list[tuple[Any, ...]] = []
        hook = None
        if self.harmonization is not None:
            hook = model.loss.register_forward_pre_hook(lambda _, args: projections.append(args))
        try:
            if self.tracker is not None:
                loss, losses = model(x0, x1, return_per_sample=True)
                self.tracker.update(positions, losses)
            else:
                loss = model(x0, x1)
        finally:
            if hook is not None:
                hook.remove()
        if self.harmonization is not None:
            z0, z1 = projections[0]
            loss = loss + self.harmonization(z0, z1)
            self.harmonization.update(z0, positions)
        return cast(Tensor, loss)

    def state(self) -> dict[str, Any]:
        """The plug-ins' state for the run's checkpoint (tensors and plain types)."""
        state = {}
        if self.tracker is not None:
            state["momentum_loss"] = self.tracker.state_dict()
        if self.harmonization is not None:
            state["harmonization"] = self.harmonization.state_dict()
        return state

    def restore(self, state: dict[str, Any]) -> None:
        """Loads :meth:`state` from a checkpoint."""
        if self.tracker is not None:
            self.tracker.load_state_dict(state["momentum_loss"])
        if self.harmonization is not None:
            self.harmonization.load_state_dict(state["harmonization"])


def _boost(
    views: Tensor, strengths: list[tuple[float, float]], plugins: RunPlugins, mean: Tensor,
    std: Tensor,
) -> Tensor:  # fmt: skip
    """Applies the boosted RandAugment to every view at its strength, on the host."""
    if all(probability <= 0 for _, probability in strengths):
        return views  # BCL's first epoch: no operation applies
    scaled = ((views.detach().float() * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
    pixels = scaled.cpu().permute(0, 2, 3, 1).numpy()
    out = views.clone()
    for i, (magnitude, probability) in enumerate(strengths):
        if probability <= 0:
            continue
        gray = pixels.shape[-1] == 1
        image = Image.fromarray(pixels[i, :, :, 0] if gray else pixels[i], "L" if gray else "RGB")
        augmented = plugins.augment(image, magnitude, probability, plugins.rng)
        if augmented is image:  # no operation drawn: the view stays as it is
            continue
        array = torch.from_numpy(np.asarray(augmented, dtype=np.uint8).copy())
        array = array.view(*array.shape[:2], -1).permute(2, 0, 1)
        out[i] = (array.to(views.device).float() / 255 - mean[0]) / std[0]
    return out


def _projection_dim(model: SelfDamagingAdapter) -> int:
    """The width of the projection head's output: its last ``nn.Linear``."""
    linears = [m for m in model.wrapper.model.modules() if isinstance(m, nn.Linear)]
    return int(linears[-1].out_features)
