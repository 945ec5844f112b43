"""The adapters' public bases: the wrapped encoder, the two online passes, momentum.

Subclass :class:`SelfDamagingAdapter` (:class:`PredictorAdapter` with a prediction head,
:class:`MomentumAdapter` with a momentum copy) to bring another two-branch method to
SDCLR, and register it with :func:`~selfdamage.adapters.register_adapter`; the recipe is
in :doc:`/architecture`.

Every adapter wraps ONE module, :class:`Encoder` (``backbone -> flatten(1) -> head``, plus
a predictor), in a :class:`~selfdamage.wrapper.SelfDamagingWrapper`. The heads' Linear
weights are therefore shared between the dense and the damaged branch while their
BatchNorm layers get twin state, like the backbone's ("dual BN" in the reference code's
projection head). The heads are not pruned with the default ``prunable=(nn.Conv2d,)``.
"""

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
    """Base of the adapters: one wrapped :class:`Encoder`, a loss, and the wrapper options.

    A method is a subclass that declares its defaults at class level (:meth:`default_head`,
    :meth:`default_loss`) and implements ``forward(x0, x1) -> loss``, typically from
    :meth:`_online` (one dense pass, one twin pass). Modules the method derives from the
    networks (a momentum copy, a support set) come from :meth:`method_modules`. The
    method's own keywords are declared once, where they are used: a keyword of
    ``default_loss(head, ...)`` (a temperature) configures the default loss, one of
    ``method_modules(encoder, *, default_head, ...)`` (a bank size) the method's modules;
    the constructor takes them, and ``inspect.signature`` shows them.

    Args:
        backbone: Any module mapping an input batch to ``feature_dim`` features per
            sample; its output is flattened with ``flatten(start_dim=1)``, so include any
            global pooling in it. Trained in place; also reachable as ``self.backbone``.
        feature_dim: The backbone's number of output features per sample (512 for a
            ResNet-18).
        prune_ratio: Shorthand for ``damage=WeightDamage(prune_ratio, ...)``: fraction of
            the prunable weights the twin loses, 0.9 on CIFAR and 0.3 on ImageNet-100 in
            the SDCLR paper.
        head: The projection head; None for the method's :meth:`default_head`.
        loss: The loss module; None for the method's :meth:`default_loss`.
        **options: The method's own keywords (documented by each method), and the
            wrapper options ``damage``, ``baseline``, ``random_ratio``, ``prunable`` and
            ``twin_norm``, the same on every adapter and documented once:
            :class:`~selfdamage.adapters.wrapper_options.WrapperOptions`.

    Raises:
        TypeError: If ``backbone``, ``head``, ``predictor`` or ``loss`` is not an
            ``nn.Module``, ``backbone`` contains a wrapper, a keyword is not the
            method's or the wrapper's, an option has the wrong type,
            a removed spelling is used (the message names its replacement), or
            ``temperature=`` is a schedule and the loss has no float ``temperature``.
        ValueError: If ``feature_dim`` is not positive, a default cannot be sized from the
            head, ``predictor`` does not map the head's output to itself, a wrapper option is
            out of range, or a shorthand is given together with ``damage``.
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
        # help() and inspect.signature() show the keywords this class takes; a class
        # with an __init__ of its own shows that one.
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
        """Builds the adapter from its arguments: the body of every adapter's ``__init__``.

        ``options`` and ``keywords`` are the keywords given besides ``head`` and ``loss``;
        each goes to what it configures: ``predictor``, the options of
        :meth:`default_loss` (refused next to ``loss``), those of :meth:`method_modules`,
        the wrapper options, and a
        :class:`~selfdamage.longtail.temperature.TemperatureSchedule` given as
        ``temperature=``, which becomes the submodule ``temperature_schedule`` and drives
        the loss's temperature (given or default), which it must have. Resolves the head,
        predictor and loss (in that order, defaults from the class), checks them, then
        builds the method modules, the wrapper and the method state.
        """
        nn.Module.__init__(self)
        feature_dim = check_int(
            "feature_dim",
            feature_dim,
            1,
            what="positive",
            fix="Pass the number of features per sample that the backbone outputs "
            "(512 for a ResNet-18).",
        )
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
        self.baseline, wrapper_options = read_wrapper_options(given, type(self).__name__)
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
        """The method's projection head for ``feature_dim`` input features.

        Raises:
            TypeError: Here, where there is no default head: pass ``head=``.
        """
        raise TypeError("head must be a torch.nn.Module, got None; pass head=.")

    @staticmethod
    def default_predictor(head: nn.Module, feature_dim: int) -> nn.Module | None:
        """The method's prediction head after ``head``; None (here) for no predictor."""
        return None

    @staticmethod
    def default_loss(head: nn.Module) -> nn.Module:
        """The method's loss, for the projections of ``head``.

        Raises:
            TypeError: Here, where there is no default loss: pass ``loss=``.
        """
        raise TypeError("loss must be a torch.nn.Module, got None; pass loss=.")

    def check_loss(self, loss: nn.Module, head: nn.Module) -> None:
        """Raises if ``loss`` does not fit the method or ``head``; accepts any loss here."""

    def method_modules(self, encoder: Encoder, *, default_head: bool) -> dict[str, nn.Module]:
        """Modules the method derives from the networks, registered after ``loss``; none here.

        Called once the head, predictor and loss are resolved, before the wrapper exists.

        Args:
            encoder: The dense encoder the wrapper will wrap.
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
        """The two online passes: ``x0`` through the dense encoder, ``x1`` through the twin.

        With ``baseline=True`` both go through the dense encoder. Checks the views first
        (:meth:`check_views`), so every adapter's ``forward`` rejects a bad pair before
        any pass, any BatchNorm update and any enqueue. ``kwargs`` go to
        :meth:`Encoder.forward` (``with_projection=True``). With a temperature schedule,
        first sets the loss's temperature to ``temperature_schedule.value`` (one host-side
        attribute write).
        """
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

        ``per_sample`` is each sample's loss in this step, detached, shape ``(N,)``, from
        the inputs of the step's own loss calls (the dense-twin pairs, the scheduled
        temperature, the bank, center or covariance before the step): no pass is added.
        Its mean is the loss (the mean of the forward's loss calls, as in every adapter
        here). Methods and why: :doc:`/toolkit` (BCL). Without it, ``forward``'s result.

        Raises:
            ValueError: If the loss has no per-sample form (Barlow Twins, VICReg: batch
                statistics), before any pass.

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

        Both views' rows are positive pairs, so they must have the same batch size (and,
        from the same transform, the same dtype and shape), at least one sample, and 2 where
        a training ``BatchNorm1d`` or the method's loss (TiCo, DCL, DCLW, VICReg, Barlow
        Twins) needs them. Inputs that are both not tensors are not checked.

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
        """Dense backbone features for evaluation, flattened to ``(N, feature_dim)``.

        No head, no twin. The train/eval mode is left as it is: call ``.eval()`` first so
        BatchNorm uses its running statistics, and ``torch.no_grad()`` to extract
        features without building a graph.

        Args:
            x: An input batch, e.g. images of shape ``(N, C, H, W)``.
        """
        return self._encoder.features(x)

    def extra_repr(self) -> str:
        return f"baseline={self.baseline}"


class PredictorAdapter(SelfDamagingAdapter):
    """An adapter with a prediction head after the projection head (BYOL, SimSiam, NNCLR).

    Takes the arguments of :class:`SelfDamagingAdapter`, and ``predictor``: the prediction
    head, None for the method's :meth:`default_predictor`; it must map the head's output
    size to itself.
    """

    _takes_predictor = True


class MomentumAdapter(SelfDamagingAdapter):
    """An adapter with a momentum (EMA) copy of the dense backbone and projection head.

    The copy, ``momentum_encoder``, is made of the dense modules only, never of the wrapper,
    so masks and twin state are not in it; its parameters do not require gradients. It
    excludes a predictor: its parameters mirror ``backbone`` and ``head`` one to one. A
    method that builds its momentum head otherwise (DINO's teacher) overrides
    :meth:`momentum_head`.
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

        Only parameters are averaged (lightly's ``update_momentum``); the momentum
        encoder's BatchNorm running statistics come from its own forward passes. Call it
        once per step, before the forward pass, as lightly's examples do.

        Args:
            m: The momentum, in ``[0, 1]``; 1 leaves the momentum encoder unchanged.

        Raises:
            TypeError: If ``m`` is not a real number.
            ValueError: If ``m`` is not in ``[0, 1]``.
        """
        m = check_real(
            "m",
            m,
            0.0,
            1.0,
            what="a momentum in [0, 1]",
            fix="It is a momentum, e.g. "
            "lightly.utils.scheduler.cosine_schedule(step, max_steps, 0.996, 1.0).",
        )
        for online, ema in self._momentum_pairs():
            update_momentum(online, ema, m)

    @torch.no_grad()
    def _targets(self, x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
        """The momentum encoder's outputs for both views, without gradient."""
        return self.momentum_encoder(x0), self.momentum_encoder(x1)

    def _momentum_pairs(self) -> Iterator[tuple[nn.Module, nn.Module]]:
        yield self._encoder.backbone, self.momentum_encoder.backbone
        yield self._encoder.head, self.momentum_encoder.head
