"""The adapters' public bases: the wrapped encoder, the two online passes, momentum.

Subclass :class:`SelfDamagingAdapter` (or :class:`MomentumAdapter`) to bring a fourth
two-branch method to SDCLR, and register it in :data:`~selfdamage.adapters.ADAPTERS`;
the recipe is in :doc:`/architecture`.

Every adapter wraps ONE module, :class:`Encoder` (``backbone -> flatten(1) -> head``, plus
BYOL's predictor), in a :class:`~selfdamage.wrapper.SelfDamagingWrapper`. The heads'
Linear weights are therefore shared between the dense and the damaged branch while their
BatchNorm layers get twin state, like the backbone's ("dual BN" in the reference code's
projection head). The heads are not pruned with the default ``prunable=(nn.Conv2d,)``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, ClassVar, cast

import torch
from lightly.models.utils import deactivate_requires_grad, update_momentum
from torch import Tensor, nn

from selfdamage._checks import check_bool, check_module, check_real
from selfdamage._deprecated import deprecated, init_stacklevel, legacy_adapter_damage
from selfdamage.adapters.method_state import persist_method_state
from selfdamage.adapters.options import output_dim
from selfdamage.damage import Damage, Prunable
from selfdamage.wrapper import (
    DEFAULT_PRUNABLE,
    DEFAULT_PRUNE_RATIO,
    DEFAULT_RANDOM_RATIO,
    SelfDamagingWrapper,
    nested_wrapper,
    resolve_damage,
)

__all__ = ["Encoder", "MomentumAdapter", "SelfDamagingAdapter"]


class Encoder(nn.Module):
    """``backbone -> flatten(start_dim=1) -> head [-> predictor]``: what the twin is made of.

    Its qualified names (``backbone.*``, ``head.*``, ``predictor.*``) are the names that a
    ``prunable`` predicate sees and the keys under ``wrapper.model.`` in a checkpoint.

    Args:
        backbone: Maps an input batch to features of shape ``(N, feature_dim)``, or to any
            shape with ``feature_dim`` entries per sample after ``flatten(start_dim=1)``.
        head: The projection head.
        feature_dim: The backbone's number of features per sample.
        predictor: BYOL's prediction head, applied after ``head``; None for no predictor.
    """

    predictor: nn.Module | None

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        feature_dim: int,
        predictor: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.predictor = predictor
        self.feature_dim = feature_dim

    def features(self, x: Tensor) -> Tensor:
        """The backbone's output flattened to ``(N, feature_dim)``.

        Raises:
            ValueError: If the flattened output does not have ``feature_dim`` columns.
        """
        features: Tensor = self.backbone(x).flatten(start_dim=1)
        if features.shape[1] != self.feature_dim:
            raise ValueError(
                f"The backbone's output flattens to {features.shape[1]} features per sample "
                f"but feature_dim={self.feature_dim}. Pass the backbone's output size as "
                "feature_dim; a backbone that returns a feature map (N, C, H, W) needs its "
                "global pooling included, e.g. nn.Sequential(*children, nn.AdaptiveAvgPool2d(1))."
            )
        return features

    def forward(
        self, x: Tensor, *, with_projection: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """The projection, or the prediction where there is a predictor.

        Args:
            x: An input batch.
            with_projection: Return ``(projection, prediction)`` from the same pass, for
                methods that use both (SimSiam's stop-gradient targets, NNCLR's support
                set). Needs a predictor.
        """
        projection: Tensor = self.head(self.features(x))
        if self.predictor is None:
            if with_projection:
                raise ValueError(
                    "with_projection=True returns (projection, prediction), but this "
                    "encoder has no predictor."
                )
            return projection
        prediction: Tensor = self.predictor(projection)
        return (projection, prediction) if with_projection else prediction


class SelfDamagingAdapter(nn.Module):
    """Base of the adapters: one wrapped :class:`Encoder`, a loss, and the wrapper options.

    A subclass builds its default heads and loss, calls ``super().__init__`` and
    implements ``forward(x0, x1) -> loss``, typically from :meth:`_online` (one dense
    pass, one twin pass). The wrapper options below mean exactly what they mean on
    :class:`~selfdamage.wrapper.SelfDamagingWrapper`; every adapter takes them, and this
    is where they are documented.

    Args:
        backbone: Any module mapping an input batch to ``feature_dim`` features per
            sample; its output is flattened with ``flatten(start_dim=1)``, so include any
            global pooling in it. Trained in place; also reachable as ``self.backbone``.
        head: The projection head.
        feature_dim: The backbone's number of output features per sample.
        prune_ratio: Shorthand for ``damage=WeightDamage(prune_ratio, ...)``: fraction of
            the prunable weights the twin loses, 0.9 on CIFAR and 0.3 on ImageNet-100 in
            the SDCLR paper.
        loss: The loss module.
        damage: The damage strategy (:mod:`selfdamage.damage`), or None for the
            shorthands ``prune_ratio``, ``random_ratio``, ``prunable``. A
            :class:`~selfdamage.damage.ChannelDamage` takes ``example_inputs`` of the
            *backbone*; the adapter traces the whole encoder with them.
        baseline: If True, no twin in training: the plain method, both online passes
            through the dense model, for fair baselines (MoCo in its symmetric form, see
            :class:`~selfdamage.adapters.MoCoAdapter`). The wrapper and its strategy
            still exist, so the baseline's damaged twin can be evaluated after training
            (``refresh_mask()``, then ``wrapper.damaged(x)``); it has no twin
            normalization state (no parameter goes unused, which DDP would reject).
        random_ratio: Shorthand: part of ``prune_ratio`` pruned at random instead of by
            magnitude.
        prunable: Shorthand: module types whose weight is pruned, or a predicate
            ``(name, module) -> bool`` over names like ``backbone.0``, ``head.layers.0``
            and ``predictor.layers.0``.
        twin_norm: If True, the twin has its own BatchNorm parameters and statistics.
        predictor: BYOL-style prediction head after ``head``, or None.
        **deprecated_options: 0.1's ``damage=True|False|"weight"|"channel"`` and channel
            options (``example_inputs``, ``importance``, ``ignored_layers``,
            ``max_channel_ratio``): accepted in 0.2 with a ``DeprecationWarning``.

    Raises:
        TypeError: If ``backbone`` is not an ``nn.Module`` or contains a wrapper, or an
            option has the wrong type.
        ValueError: If a wrapper option is out of range, or a shorthand is given
            together with ``damage``.
    """

    wrapper: SelfDamagingWrapper
    loss: nn.Module

    # Why the method's loss needs 2 samples per view in any mode, or None if it does not.
    _two_samples_because: ClassVar[str | None] = None

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        feature_dim: int,
        prune_ratio: float = DEFAULT_PRUNE_RATIO,
        *,
        loss: nn.Module,
        damage: Damage | None = None,
        baseline: bool = False,
        random_ratio: float = DEFAULT_RANDOM_RATIO,
        prunable: Prunable = DEFAULT_PRUNABLE,
        twin_norm: bool = True,
        predictor: nn.Module | None = None,
        **deprecated_options: Any,
    ) -> None:
        super().__init__()
        nested = nested_wrapper(check_module("backbone", backbone))
        if nested is not None:
            raise TypeError(
                f"backbone contains a SelfDamagingWrapper at {nested or 'its root'!r}; the "
                "adapter builds its own wrapper. Pass the bare backbone (wrapper.model)."
            )
        check_bool("twin_norm", twin_norm)
        check_bool("baseline", baseline)
        damage, self.baseline, self._legacy_flag = legacy_adapter_damage(
            damage, baseline, stacklevel=init_stacklevel(self)
        )
        strategy = resolve_damage(
            damage,
            prune_ratio=prune_ratio,
            random_ratio=random_ratio,
            prunable=prunable,
            deprecated_options=deprecated_options,
            stacklevel=init_stacklevel(self),
        )
        self.wrapper = SelfDamagingWrapper(
            Encoder(backbone, head, feature_dim, predictor),
            twin_norm=twin_norm and not self.baseline,
            damage=strategy,
        )
        self.loss = loss
        self._build()
        persist_method_state(self, output_dim(head))  # banks, TiCo's C: in the state_dict

    def _build(self) -> None:
        """Builds what a method derives from the wrapped encoder; called once, last in ``__init__``.

        Does nothing here; :class:`MomentumAdapter` builds its momentum copy. Override
        it rather than ``__init__`` to add such modules, so the wrapper options keep
        one typed signature.
        """

    @property
    def damage(self) -> Damage:
        """The damage strategy (``wrapper.damage``).

        Adapters built with 0.1's ``damage=True|False|"weight"|"channel"`` return 0.1's
        ``bool`` here instead (True unless a baseline), with a ``DeprecationWarning``;
        read :attr:`baseline` for that.
        """
        if self._legacy_flag is not None:
            deprecated("adapter.damage as a bool", "adapter.baseline", stacklevel=3)
            return cast(Damage, self._legacy_flag)
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
        :meth:`Encoder.forward` (``with_projection=True``).

        Raises:
            ValueError: If the views do not pass :meth:`check_views`.
        """
        self.check_views(x0, x1)
        out0 = self.wrapper(x0, **kwargs)
        twin = self.wrapper if self.baseline else self.wrapper.damaged
        return out0, twin(x1, **kwargs)

    def check_views(self, x0: object, x1: object) -> None:
        """Raises unless ``x0`` and ``x1`` are two non-empty batches of the same shape.

        Both views' rows are positive pairs (row ``i`` of ``x0`` and of ``x1`` are views
        of one sample) and the momentum adapters enqueue one key per row, so a size
        mismatch would give a loss from misaligned pairs. The two views of a two-view
        method come from the same transform, so they also have the same dtype and the
        same shape (channels, height, width). In training mode, a model with
        ``nn.BatchNorm1d`` (lightly's SimCLR and BYOL heads) also needs 2 samples per
        view: it normalizes each feature over the batch. Inputs that are both not
        tensors (a backbone taking a dict, say) are not checked.

        Args:
            x0: First views, shape ``(N, ...)``.
            x1: Second views, of ``x0``'s shape and dtype.

        Raises:
            TypeError: If one view is a tensor and the other is not.
            ValueError: If a view has no batch dimension, the dtypes, batch sizes or
                shapes differ, a view is empty, or it holds one sample while a
                ``BatchNorm1d`` trains or for a method whose loss needs two (TiCo, DCL,
                DCLW, VICReg, Barlow Twins).
        """
        tensors = {}
        for name, x in (("x0", x0), ("x1", x1)):
            if isinstance(x, Tensor):
                if x.dim() == 0:
                    raise ValueError(
                        f"{name} must have a batch dimension, got {name}.shape=(). Pass a "
                        "batch of views of shape (N, ...), e.g. x.unsqueeze(0) for one sample."
                    )
                tensors[name] = x
        if len(tensors) == 1:
            given, tensor = next(iter(tensors.items()))
            other, value = ("x1", x1) if given == "x0" else ("x0", x0)
            raise TypeError(
                f"{other} must be a torch.Tensor like {given}, got {type(value).__name__}. "
                f"Stack the views of a batch into one tensor of {given}'s shape "
                f"{tuple(tensor.shape)} (e.g. torch.stack)."
            )
        if not tensors:
            return
        t0, t1 = tensors["x0"], tensors["x1"]
        if t0.dtype != t1.dtype:
            raise ValueError(
                f"x0 and x1 must have the same dtype, got x0.dtype={t0.dtype} and "
                f"x1.dtype={t1.dtype}. Make both views with the same transform, or convert "
                "one (x1.to(x0.dtype))."
            )
        n0, n1 = t0.shape[0], t1.shape[0]
        if n0 != n1:
            raise ValueError(
                f"x0 and x1 must have the same batch size, got x0.shape[0]={n0} and "
                f"x1.shape[0]={n1}. Row i of x0 and of x1 must be two views of the same "
                "sample: pass both views of one batch (e.g. (x0, x1), _, _ = batch)."
            )
        if t0.shape != t1.shape:
            raise ValueError(
                f"x0 and x1 must have the same shape, got x0.shape={tuple(t0.shape)} and "
                f"x1.shape={tuple(t1.shape)}. The two views of a sample come from the same "
                "transform: give both the same size and number of channels."
            )
        if n0 == 0:
            raise ValueError(
                f"x0 and x1 must hold at least one sample, got x0.shape[0]={n0}. Skip empty "
                "batches (e.g. drop_last=True in the DataLoader)."
            )
        if n0 < 2 and self.training:
            batch_norm = next(
                (
                    name
                    for name, m in self._encoder.named_modules()
                    if isinstance(m, nn.BatchNorm1d) and m.training
                ),
                None,
            )
            if batch_norm is not None:
                raise ValueError(
                    f"x0 and x1 must hold at least 2 samples in training mode, got "
                    f"x0.shape[0]={n0}: the encoder's BatchNorm1d {batch_norm!r} (e.g. in "
                    "the projection head) normalizes each feature over the batch, and one "
                    "sample has no variance. Use a larger batch (drop_last=True in the "
                    "DataLoader), or call .eval() to run with the running statistics."
                )
        if n0 < 2 and self._two_samples_because is not None:
            raise ValueError(
                f"x0 and x1 must hold at least 2 samples, got x0.shape[0]={n0}: "
                f"{self._two_samples_because}, in training and in eval mode. Use a larger "
                "batch (drop_last=True in the DataLoader)."
            )

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


class MomentumAdapter(SelfDamagingAdapter):
    """An adapter with a momentum (EMA) copy of the dense backbone and projection head.

    The copy is made of the dense modules only, never of the wrapper, so masks and twin
    state are not in it; its parameters do not require gradients. It excludes BYOL's
    predictor: its parameters mirror ``backbone`` and ``head`` one to one. Takes the
    arguments of :class:`SelfDamagingAdapter`.
    """

    momentum_encoder: Encoder

    def _build(self) -> None:
        """The momentum copy of the dense backbone and head, without gradients."""
        self.momentum_encoder = Encoder(
            copy.deepcopy(self._encoder.backbone),
            copy.deepcopy(self._encoder.head),
            self._encoder.feature_dim,
        )
        deactivate_requires_grad(self.momentum_encoder)

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
