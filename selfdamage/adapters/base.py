"""The adapters' public bases; subclass one for another two-branch method: :doc:`/architecture`."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Iterator, Mapping
from functools import partial
from typing import Any, ClassVar, cast

import torch
from lightly.models.utils import deactivate_requires_grad, update_momentum
from torch import Tensor, nn
from typing_extensions import Unpack

from selfdamage._checks import check_bool, check_int, check_module, check_real
from selfdamage._warnings import warns_at_caller
from selfdamage.adapters._head_sizes import check_predictor, output_dim
from selfdamage.adapters._loss_options import check_schedulable, reject_with_loss
from selfdamage.adapters._views import check_views
from selfdamage.adapters.encoder import Encoder
from selfdamage.adapters.method_options import (
    MethodOptions,
    adapter_signature,
    builder_keywords,
    take,
)
from selfdamage.adapters.method_state import persist_method_state
from selfdamage.adapters.wrapper_options import read_wrapper_options
from selfdamage.damage import Damage
from selfdamage.longtail.per_sample import record_per_sample, why_no_per_sample
from selfdamage.longtail.temperature import TemperatureSchedule, set_temperature
from selfdamage.wrapper import DEFAULT_PRUNE_RATIO, SelfDamagingWrapper, nested_wrapper

__all__ = ["MomentumAdapter", "PredictorAdapter", "SelfDamagingAdapter"]


class SelfDamagingAdapter(nn.Module):
    """Base of the adapters: one wrapped :class:`Encoder`, a loss, the wrapper options.

    A method's own keywords are those of :meth:`default_loss` and :meth:`method_modules`.

    Args:
        backbone: Maps an input batch to ``feature_dim`` features per sample after
            ``flatten(start_dim=1)`` (include any global pooling). Trained in place.
        feature_dim: The backbone's output features per sample (512 for a ResNet-18).
        prune_ratio: Fraction of the prunable weights the twin loses (shorthand for
            ``damage=WeightDamage(prune_ratio, ...)``); 0.9 on CIFAR, 0.3 on ImageNet-100
            in the SDCLR paper.
        head: The projection head; None for the method's :meth:`default_head`.
        loss: The loss module; None for the method's :meth:`default_loss`.
        **options: The method's own keywords (see each method) and the wrapper options:
            :class:`~selfdamage.adapters.wrapper_options.WrapperOptions`.

    Raises:
        TypeError: If ``backbone``, ``head``, ``predictor`` or ``loss`` is not a module,
            ``backbone`` holds a wrapper, a keyword is unknown, removed (the message names
            its replacement) or mistyped, or ``temperature=`` is a schedule for a loss
            without a float ``temperature``.
        ValueError: If ``feature_dim`` is not positive, a default cannot be sized from the
            head, ``predictor`` does not map the head's output to itself, a wrapper option
            is out of range, a shorthand is given together with ``damage``, or a module
            has uninitialized (lazy) parameters (run one forward pass first).
    """

    wrapper: SelfDamagingWrapper
    loss: nn.Module
    temperature_schedule: TemperatureSchedule | None

    __signature__: ClassVar[inspect.Signature | None]
    # Why the method's loss needs 2 samples per view in any mode, or None if it does not.
    _two_samples_because: ClassVar[str | None] = None
    # Whether the method has a prediction head, and so takes predictor=.
    _takes_predictor: ClassVar[bool] = False

    @warns_at_caller
    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int = 512,
        prune_ratio: float = DEFAULT_PRUNE_RATIO,
        *,
        head: nn.Module | None = None,
        loss: nn.Module | None = None,
        **options: Unpack[MethodOptions],
    ) -> None:
        self._assemble(backbone, feature_dim, prune_ratio, options, head=head, loss=loss)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # help() and inspect.signature() show the keywords taken, or an own __init__'s.
        own_init = cls.__init__ is not SelfDamagingAdapter.__init__
        cls.__signature__ = None if own_init else adapter_signature(cls.__init__, cls._keywords())

    @classmethod
    def _keywords(cls) -> list[inspect.Parameter]:
        """The keywords the class takes besides ``head``, ``loss`` and the wrapper options."""
        predictor = inspect.Parameter(
            "predictor", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="nn.Module | None"
        )
        return [
            *([predictor] if cls._takes_predictor else []),
            *builder_keywords(cls.default_loss),
            *builder_keywords(cls.method_modules),
        ]

    def _assemble(
        self,
        backbone: nn.Module,
        feature_dim: int,
        prune_ratio: float,
        options: Mapping[str, Any],
        *,
        head: nn.Module | None,
        loss: nn.Module | None,
        **keywords: Any,
    ) -> None:
        """The body of every adapter's ``__init__``: routes ``options`` and ``keywords`` to
        the builders, then builds head, predictor, loss, method modules, wrapper, method state.

        A ``TemperatureSchedule`` as ``temperature=`` becomes ``temperature_schedule``, which
        drives the (given or default) loss's float ``temperature``.
        """
        nn.Module.__init__(self)
        fix = "Pass the backbone's number of features per sample (512 for a ResNet-18)."
        feature_dim = check_int("feature_dim", feature_dim, 1, what="positive", fix=fix)
        given = {**options, **keywords}
        schedule: TemperatureSchedule | None = None
        if isinstance(given.get("temperature"), TemperatureSchedule):
            schedule = given.pop("temperature")
        predictor = given.pop("predictor", None) if self._takes_predictor else None
        loss_options = take(given, [p.name for p in builder_keywords(self.default_loss)])
        module_options = take(given, [p.name for p in builder_keywords(self.method_modules)])
        default_head = head is None
        head = check_module("head", self.default_head(feature_dim) if default_head else head)
        if predictor is None:
            predictor = self.default_predictor(head, feature_dim)
        predictor = None if predictor is None else check_predictor(predictor, head)
        reject_with_loss(loss, **loss_options)
        loss = self.default_loss(head, **loss_options) if loss is None else loss
        self.check_loss(check_module("loss", loss), head)
        if schedule is not None:
            check_schedulable(type(self).__name__, loss)
            set_temperature(loss, schedule.value)
        nested = nested_wrapper(check_module("backbone", backbone))
        if nested is not None:
            raise TypeError(
                f"backbone contains a SelfDamagingWrapper at {nested or 'its root'!r}; the "
                "adapter builds its own wrapper. Pass the bare backbone (wrapper.model)."
            )
        self.baseline, wrapper_options = read_wrapper_options(
            given, type(self).__name__, ["head", "loss", *(p.name for p in self._keywords())]
        )
        encoder = Encoder(backbone, head, feature_dim, predictor)
        derived = self.method_modules(encoder, default_head=default_head, **module_options)
        self.wrapper = SelfDamagingWrapper(encoder, prune_ratio, **wrapper_options)
        self.loss = loss
        for name, module in derived.items():
            self.add_module(name, module)
        persist_method_state(self, output_dim(head))  # banks, TiCo's C: in the state_dict
        # Without a schedule a plain attribute: no state_dict key, no module.
        self.temperature_schedule = schedule

    @staticmethod
    def default_head(feature_dim: int) -> nn.Module:
        """The method's projection head for ``feature_dim`` features; here a TypeError."""
        raise TypeError("head must be a torch.nn.Module, got None; pass head=.")

    @staticmethod
    def default_predictor(head: nn.Module, feature_dim: int) -> nn.Module | None:
        """The method's prediction head after ``head``; None (here) for no predictor."""
        return None

    @staticmethod
    def default_loss(head: nn.Module) -> nn.Module:
        """The method's loss, for the projections of ``head``; here a TypeError."""
        raise TypeError("loss must be a torch.nn.Module, got None; pass loss=.")

    def check_loss(self, loss: nn.Module, head: nn.Module) -> None:
        """Raises if ``loss`` does not fit the method or ``head``; accepts any loss here."""

    def method_modules(self, encoder: Encoder, *, default_head: bool) -> dict[str, nn.Module]:
        """Modules the method derives from the networks, registered after ``loss``; none here.

        Args:
            encoder: The dense encoder, before the wrapper exists.
            default_head: Whether the head is the method's :meth:`default_head`.
        """
        return {}

    @property
    def damage(self) -> Damage:
        """The damage strategy (``wrapper.damage``)."""
        return self.wrapper.damage

    @property
    def _encoder(self) -> Encoder:
        """The dense encoder (backbone and heads), the wrapper's model."""
        return cast(Encoder, self.wrapper.model)

    @property
    def backbone(self) -> nn.Module:
        """The backbone passed to the constructor (the same object, trained in place)."""
        return self._encoder.backbone

    def _online(self, x0: Tensor, x1: Tensor, **kwargs: Any) -> tuple[Any, Any]:
        """Views checked, temperature scheduled; ``x0`` dense, ``x1`` twin (dense if baseline)."""
        self.check_views(x0, x1)
        if self.temperature_schedule is not None:
            set_temperature(self.loss, self.temperature_schedule.value)
        out0 = self.wrapper(x0, **kwargs)
        twin = self.wrapper if self.baseline else self.wrapper.damaged
        return out0, twin(x1, **kwargs)

    def __call__(
        self, x0: Any, x1: Any, *args: Any, return_per_sample: bool = False, **kwargs: Any
    ) -> Any:
        """The step, :meth:`forward`; with ``return_per_sample=True``, ``(loss, per_sample)``.

        ``per_sample``: each sample's loss in this step, detached, shape ``(N,)``, from the
        inputs of the step's own loss calls (no pass added); its mean is the loss. See
        :ref:`per-sample-losses`.

        Raises:
            ValueError: If the loss has no per-sample form (Barlow Twins, VICReg), before
                any pass.

        Examples:
            >>> from selfdamage.adapters import SimCLRAdapter
            >>> backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1))
            >>> model = SimCLRAdapter(backbone, 8, 0.5, prunable=(nn.Conv2d, nn.Linear))
            >>> x0, x1 = torch.randn(2, 4, 3, 8, 8)  # two views of 4 samples
            >>> loss, losses = model(x0, x1, return_per_sample=True)
            >>> losses.shape, bool(abs(losses.mean() - loss) < 1e-6)
            (torch.Size([4]), True)
        """
        if not check_bool("return_per_sample", return_per_sample):
            return super().__call__(x0, x1, *args, **kwargs)
        step = partial(super().__call__, x0, x1, *args, **kwargs)
        reason = why_no_per_sample(self.loss)
        if reason is not None:
            raise ValueError(
                f"return_per_sample=True is not available for {type(self).__name__}: {reason}."
            )
        batch = x0.shape[0] if isinstance(x0, Tensor) and x0.dim() > 0 else None
        return record_per_sample(self.loss, step, batch)

    def check_views(self, x0: object, x1: object) -> None:
        """Raises unless ``x0`` and ``x1`` are a pair of batches this method can train on.

        Raises:
            TypeError: If one view is a tensor and the other is not.
            ValueError: If the views do not fit each other or the method.
        """
        check_views(x0, x1, self._encoder if self.training else None, self._two_samples_because)

    @warns_at_caller
    def refresh_mask(self) -> None:
        """Re-prunes the twin from the current dense weights; call it once per epoch."""
        self.wrapper.refresh_mask()

    def embed(self, x: Tensor) -> Tensor:
        """Dense backbone features (no head, no twin), flattened to ``(N, feature_dim)``.

        Args:
            x: An input batch; the mode is left as it is: call ``.eval()`` (and use
                ``torch.no_grad()``) first.
        """
        return self._encoder.features(x)

    def extra_repr(self) -> str:
        return f"baseline={self.baseline}"


class PredictorAdapter(SelfDamagingAdapter):
    """An adapter with a prediction head after the projection head (BYOL, SimSiam, NNCLR).

    ``predictor=``: None for :meth:`default_predictor`; it maps the head's output to itself.
    """

    _takes_predictor = True


class MomentumAdapter(SelfDamagingAdapter):
    """An adapter with ``momentum_encoder``, an EMA copy of the dense backbone and head.

    No masks, twin state, predictor or gradients in it; DINO overrides :meth:`momentum_head`.
    """

    momentum_encoder: Encoder

    def method_modules(self, encoder: Encoder, *, default_head: bool) -> dict[str, nn.Module]:
        """The momentum encoder: a copy of the backbone and :meth:`momentum_head`."""
        head = self.momentum_head(encoder, default_head=default_head)
        momentum = Encoder(copy.deepcopy(encoder.backbone), head, encoder.feature_dim)
        deactivate_requires_grad(momentum)
        return {"momentum_encoder": momentum}

    def momentum_head(self, encoder: Encoder, *, default_head: bool) -> nn.Module:
        """The momentum copy of ``encoder.head``: a deep copy here."""
        return copy.deepcopy(encoder.head)

    @torch.no_grad()
    def update_momentum(self, m: float) -> None:
        """Moves the momentum encoder towards the dense one: ``ema = m * ema + (1 - m) * w``.

        Args:
            m: The momentum, in ``[0, 1]``; 1 leaves the momentum encoder unchanged.

        Raises:
            TypeError: If ``m`` is not a real number.
            ValueError: If ``m`` is not in ``[0, 1]``.
        """
        fix = "Use e.g. lightly.utils.scheduler.cosine_schedule(step, max_steps, 0.996, 1.0)."
        m = check_real("m", m, 0.0, 1.0, what="a momentum in [0, 1]", fix=fix)
        for online, ema in self._momentum_pairs():
            update_momentum(online, ema, m)

    @torch.no_grad()
    def _targets(self, x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
        """The momentum encoder's outputs for both views, without gradient."""
        return self.momentum_encoder(x0), self.momentum_encoder(x1)

    def _momentum_pairs(self) -> Iterator[tuple[nn.Module, nn.Module]]:
        yield self._encoder.backbone, self.momentum_encoder.backbone
        yield self._encoder.head, self.momentum_encoder.head
