"""Temperature schedules for contrastive losses: the cosine schedule of Kukleva et al.

A contrastive (InfoNCE) loss divides its cosine similarities by a temperature. Kukleva et
al. [0] change it during training along a cosine between ``tau_max`` and ``tau_min``: a
large temperature emphasises group-wise discrimination, a small one instance
discrimination, and switching between the two is, in their words, what helps on
long-tailed data at no extra cost (their claim; not measured here).

- :class:`TemperatureSchedule` — the base: the temperature as a function of the epoch, a
  counter advanced by :meth:`~TemperatureSchedule.step`, and that counter in the
  ``state_dict``, so a resumed run continues with exactly the same temperatures.
- :class:`CosineTemperature` — the authors' cosine schedule.
- :class:`ConstantTemperature` — a fixed temperature behind the same interface.
- :func:`temperature_of` and :func:`set_temperature` — read and set the ``temperature`` of
  a loss (lightly's ``NTXentLoss``, ``DCLLoss``, ``DCLWLoss``); a loss without one is
  refused with a ``TypeError``.

A training loop writes the schedule's value into the loss before each step and steps the
schedule once per epoch::

    criterion, schedule = NTXentLoss(), CosineTemperature()
    for epoch in range(epochs):
        for x0, x1 in loader:
            set_temperature(criterion, schedule.value)
            ...
        schedule.step()

- [0] Kukleva, Böhle, Schiele, Kuehne, Rupprecht, Temperature Schedules for
  self-supervised contrastive methods on long-tail data, ICLR 2023,
  https://openreview.net/forum?id=ejHUr4nfHhD; code: github.com/Annusha/temperature_schedules
"""

from __future__ import annotations

import abc
import math
import numbers
from collections.abc import Mapping
from typing import Any, Union

from torch import nn

from selfdamage._checks import check_int, check_module, check_real

__all__ = [
    "ConstantTemperature",
    "CosineTemperature",
    "TemperatureSchedule",
    "set_temperature",
    "temperature_of",
]

Settings = dict[str, Union[int, float, None]]
"""A schedule's constructor arguments as plain values: its ``repr`` and checkpoint check."""


class TemperatureSchedule(nn.Module, abc.ABC):
    """Base of the temperature schedules: a temperature that follows the training's progress.

    ``schedule(epoch)`` is the temperature at any ``epoch >= 0`` (fractional epochs
    allowed); :attr:`value` is the temperature now, at :attr:`epoch`. :meth:`step`
    advances the counter, explicitly, like a learning-rate scheduler's ``step()``: by one
    epoch, or by ``1 / steps_per_epoch`` epoch if ``steps_per_epoch`` is set. Nothing
    steps it behind your back.

    The counter is the module's extra state: ``state_dict()`` holds it, with the
    schedule's settings, under ``_extra_state`` (``<name>._extra_state`` inside a parent
    module), and ``load_state_dict`` restores it, so a resumed run continues with exactly
    the same temperatures. The schedule has no parameters or buffers: ``.to(device)``
    leaves it on the host, and reading :attr:`value` never waits for a device.

    A subclass implements :meth:`temperature_at` and extends :attr:`settings` with its
    constructor arguments.

    Args:
        steps_per_epoch: None (default) to call :meth:`step` once per epoch, as the
            authors change the temperature once per epoch; or the number of optimizer
            steps per epoch, to call :meth:`step` after every step and follow the schedule
            at fractional epochs (our extension, not in the authors' code).

    Raises:
        TypeError: If ``steps_per_epoch`` is not an int or None.
        ValueError: If ``steps_per_epoch`` is not positive.

    Examples:
        >>> class Halving(TemperatureSchedule):
        ...     def temperature_at(self, epoch):
        ...         return 0.5**epoch
        >>> schedule = Halving()
        >>> schedule.value, schedule(2)
        (1.0, 0.25)
        >>> schedule.step()
        >>> schedule.epoch, schedule.value
        (1.0, 0.5)
    """

    def __init__(self, *, steps_per_epoch: int | None = None) -> None:
        super().__init__()
        if steps_per_epoch is not None:
            steps_per_epoch = check_int(
                "steps_per_epoch", steps_per_epoch, 1, what="a positive int or None"
            )
        self.steps_per_epoch = steps_per_epoch
        self._steps = 0

    @abc.abstractmethod
    def temperature_at(self, epoch: float) -> float:
        """The temperature at ``epoch`` (unchecked: ``schedule(epoch)`` checks it)."""

    @property
    def settings(self) -> Settings:
        """The constructor arguments, as plain values (subclasses put theirs first).

        Examples:
            >>> ConstantTemperature(0.2).settings
            {'tau': 0.2, 'steps_per_epoch': None}
        """
        return {"steps_per_epoch": self.steps_per_epoch}

    @property
    def steps(self) -> int:
        """How many times :meth:`step` was called (restored by ``load_state_dict``)."""
        return self._steps

    @property
    def epoch(self) -> float:
        """Training progress in epochs, :attr:`steps` over ``steps_per_epoch`` if that is set."""
        if self.steps_per_epoch is None:
            return float(self._steps)
        return self._steps / self.steps_per_epoch

    @property
    def value(self) -> float:
        """The temperature now, ``temperature_at(epoch)``."""
        return self.temperature_at(self.epoch)

    def forward(self, epoch: float) -> float:
        """The temperature at ``epoch``, any real number ``>= 0``.

        Raises:
            TypeError: If ``epoch`` is not a real number.
            ValueError: If it is negative, NaN or infinite.
        """
        return self.temperature_at(check_real("epoch", epoch, 0.0, what="a number >= 0"))

    def step(self) -> None:
        """Advances the schedule by one epoch, or by one step with ``steps_per_epoch``."""
        self._steps += 1

    def get_extra_state(self) -> dict[str, Any]:
        """The counter and the settings, for ``state_dict()`` (plain values only)."""
        return {"steps": self._steps, "settings": {"class": type(self).__name__, **self.settings}}

    def set_extra_state(self, state: Any) -> None:
        """Restores the counter from :meth:`get_extra_state`'s output, for ``load_state_dict``.

        Raises:
            ValueError: If ``state`` is not a schedule's state, or was saved by a schedule
                with other settings (the resumed run would follow other temperatures).
        """
        if not (isinstance(state, Mapping) and state.keys() == {"steps", "settings"}):
            raise ValueError(
                f"state must be a temperature schedule's state {{'steps', 'settings'}}, got "
                f"{state!r}; load a state_dict saved from a {type(self).__name__}."
            )
        saved, mine = dict(state["settings"]), {"class": type(self).__name__, **self.settings}
        if saved != mine:
            raise ValueError(
                f"the state_dict is of a schedule with settings {saved}, this one has {mine}; "
                "build the schedule with the settings of the run you resume."
            )
        self._steps = check_int("steps", state["steps"], 0)

    def extra_repr(self) -> str:
        """``name=value`` for each setting, e.g. ``tau_min=0.1, tau_max=1.0, ...``."""
        return ", ".join(f"{name}={value!r}" for name, value in self.settings.items())


class CosineTemperature(TemperatureSchedule):
    """The cosine temperature schedule of Kukleva et al. [0], between ``tau_min`` and ``tau_max``.

    ``tau(e) = tau_min + (tau_max - tau_min) * (1 + cos(2 * pi * e / period_epochs)) / 2``:
    ``tau_max`` at epoch 0, ``tau_min`` half a period later, ``tau_max`` again after a full
    period, and so on for as long as training runs. This is the authors' formula
    (``train_simCLR.py``, ``train()``: ``min_tau + 0.5 * (max_tau - min_tau) * (1 +
    cos(pi * epoch / t_max))``) with ``period_epochs = 2 * t_max``: their ``t_max`` is the
    half period, the epochs from ``tau_max`` down to ``tau_min``. The defaults are their
    published settings (README: ``--temperature_min 0.1 --temperature_max 1.0 --t_max
    200``), so one cycle lasts 400 epochs; their argparse default for the maximum, 0.5, is
    not used in any published command.

    The authors compute the temperature from the epoch number, once per epoch; call
    :meth:`step` after each epoch to do the same (the first epoch trains at ``tau_max``).
    Their loop numbers epochs from 1, so their first epoch trains at ``tau(1)``; to
    reproduce their sequence exactly, call :meth:`step` before each epoch instead.

    - [0] Kukleva et al., Temperature Schedules for self-supervised contrastive methods on
      long-tail data, ICLR 2023, https://openreview.net/forum?id=ejHUr4nfHhD

    Args:
        tau_min: Lowest temperature, reached at odd multiples of half a period; > 0.
        tau_max: Highest temperature, at epoch 0 and every full period; >= ``tau_min``.
        period_epochs: Length of one full cycle, in epochs (the authors' ``2 * t_max``).
        steps_per_epoch: None to step once per epoch (the authors' way), or the optimizer
            steps per epoch to step after every step; see :class:`TemperatureSchedule`.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``tau_min <= 0``, ``tau_max < tau_min``, or ``period_epochs`` or
            ``steps_per_epoch`` is not positive.

    Examples:
        >>> schedule = CosineTemperature()
        >>> schedule
        CosineTemperature(tau_min=0.1, tau_max=1.0, period_epochs=400, steps_per_epoch=None)
        >>> [round(schedule(epoch), 4) for epoch in (0, 100, 200, 300, 400)]
        [1.0, 0.55, 0.1, 0.55, 1.0]
        >>> for _ in range(200):
        ...     schedule.step()
        >>> round(schedule.value, 4)
        0.1
        >>> per_step = CosineTemperature(steps_per_epoch=10)
        >>> per_step.step()
        >>> per_step.epoch, per_step.value == schedule(0.1)
        (0.1, True)
    """

    def __init__(
        self,
        tau_min: float = 0.1,
        tau_max: float = 1.0,
        period_epochs: int = 400,
        *,
        steps_per_epoch: int | None = None,
    ) -> None:
        super().__init__(steps_per_epoch=steps_per_epoch)
        self.tau_min = check_real("tau_min", tau_min, 0.0, low_open=True)
        self.tau_max = check_real(
            "tau_max",
            tau_max,
            self.tau_min,
            what=f">= tau_min={self.tau_min}",
            fix="tau_max is the temperature at epoch 0, tau_min the one half a period later.",
        )
        self.period_epochs = check_int(
            "period_epochs",
            period_epochs,
            1,
            what="a positive int",
            fix="It is a full cycle: the authors' --t_max 200 is period_epochs=400.",
        )

    def temperature_at(self, epoch: float) -> float:
        """``tau_min + (tau_max - tau_min) * (1 + cos(2 pi epoch / period_epochs)) / 2``."""
        phase = math.cos(2.0 * math.pi * epoch / self.period_epochs)
        return self.tau_min + 0.5 * (self.tau_max - self.tau_min) * (1.0 + phase)

    @property
    def settings(self) -> Settings:
        """``tau_min``, ``tau_max``, ``period_epochs`` and ``steps_per_epoch``."""
        own: Settings = {
            "tau_min": self.tau_min,
            "tau_max": self.tau_max,
            "period_epochs": self.period_epochs,
        }
        return {**own, **super().settings}


class ConstantTemperature(TemperatureSchedule):
    """A fixed temperature ``tau`` behind the schedule interface: the usual constant.

    For code that takes any :class:`TemperatureSchedule` (a study comparing the cosine
    schedule with a constant temperature). The authors' constant baseline is their
    ``--temperature`` (0.2 by default, ``train_simCLR.py``), which is also what SDCLR uses.

    Args:
        tau: The temperature, > 0.
        steps_per_epoch: As for :class:`TemperatureSchedule`; changes only :attr:`epoch`.

    Raises:
        TypeError: If ``tau`` is not a real number.
        ValueError: If ``tau`` is not positive.

    Examples:
        >>> schedule = ConstantTemperature(0.2)
        >>> schedule.step()
        >>> schedule.value, schedule(1000)
        (0.2, 0.2)
    """

    def __init__(self, tau: float, *, steps_per_epoch: int | None = None) -> None:
        super().__init__(steps_per_epoch=steps_per_epoch)
        self.tau = check_real("tau", tau, 0.0, low_open=True)

    def temperature_at(self, epoch: float) -> float:
        """``tau``, at every epoch."""
        return self.tau

    @property
    def settings(self) -> Settings:
        """``tau`` and ``steps_per_epoch``."""
        return {"tau": self.tau, **super().settings}


_ATTRIBUTE = "temperature"  # where lightly's contrastive losses keep it
_WITHOUT = (
    "A temperature schedule drives the InfoNCE temperature that a contrastive loss keeps as "
    "a float attribute `temperature` and reads at every call: lightly's NTXentLoss (SimCLR, "
    "MoCo, NNCLR), DCLLoss and DCLWLoss. BYOL, SimSiam, Barlow Twins, VICReg and TiCo have "
    "no temperature; DINO's teacher and student temperatures are not this one."
)


def temperature_of(loss: nn.Module) -> float:
    """The temperature of a contrastive loss: its ``temperature`` attribute.

    Use it to check, once at construction, that a loss can take a schedule.

    Raises:
        TypeError: If ``loss`` is not an ``nn.Module``, or has no ``temperature`` that is a
            real number (a tensor or learned temperature cannot be scheduled).

    Examples:
        >>> from lightly.loss import DCLLoss, NegativeCosineSimilarity
        >>> temperature_of(DCLLoss(temperature=0.07))
        0.07
        >>> temperature_of(NegativeCosineSimilarity())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: loss must have a float temperature, got a NegativeCosineSimilarity ...
    """
    check_module("loss", loss)
    current = getattr(loss, _ATTRIBUTE, None)
    if current is None:
        raise TypeError(
            f"loss must have a float temperature, got a {type(loss).__name__} without one. "
            + _WITHOUT
        )
    if isinstance(current, bool) or not isinstance(current, numbers.Real):
        raise TypeError(
            f"loss must have a float temperature, got {type(loss).__name__}.temperature="
            f"{current!r} ({type(current).__name__}): only a number can be scheduled."
        )
    return float(current)


def set_temperature(loss: nn.Module, temperature: float) -> None:
    """Sets the temperature of a contrastive loss in place, for its next call.

    lightly's ``NTXentLoss``, ``DCLLoss`` and ``DCLWLoss`` divide their similarities by
    ``self.temperature`` at every call and cache nothing, so the next call uses the new
    value. Setting it costs one attribute write: call it before every step with
    ``schedule.value``.

    Args:
        loss: The loss, with a float ``temperature`` attribute.
        temperature: The new temperature, > 0.

    Raises:
        TypeError: If ``loss`` has no float ``temperature`` (see :func:`temperature_of`),
            or ``temperature`` is not a real number.
        ValueError: If ``temperature`` is not positive.

    Examples:
        >>> from lightly.loss import NTXentLoss
        >>> criterion = NTXentLoss(temperature=0.5)
        >>> set_temperature(criterion, CosineTemperature()(200))
        >>> round(criterion.temperature, 4)
        0.1
    """
    value = check_real("temperature", temperature, 0.0, low_open=True)
    temperature_of(loss)
    setattr(loss, _ATTRIBUTE, value)  # nn.Module's __setattr__ is typed for tensors and modules
