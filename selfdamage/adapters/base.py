"""The adapters' public bases: the wrapped encoder, the two online passes, momentum.

Subclass :class:`SelfDamagingAdapter` (or :class:`MomentumAdapter`) to bring another
two-branch method to SDCLR, and register it with
:func:`~selfdamage.adapters.register_adapter`; the recipe is in :doc:`/architecture`.

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
from typing_extensions import Unpack

from selfdamage._checks import check_module, check_real
from selfdamage.adapters.encoder import Encoder
from selfdamage.adapters.method_state import persist_method_state
from selfdamage.adapters.options import (
    WrapperOptions,
    check_feature_dim,
    check_predictor,
    output_dim,
    read_wrapper_options,
)
from selfdamage.damage import Damage
from selfdamage.wrapper import DEFAULT_PRUNE_RATIO, SelfDamagingWrapper, nested_wrapper

__all__ = ["Encoder", "MomentumAdapter", "SelfDamagingAdapter"]


class SelfDamagingAdapter(nn.Module):
    """Base of the adapters: one wrapped :class:`Encoder`, a loss, and the wrapper options.

    A method is a subclass that declares its defaults at class level (:meth:`default_head`,
    :meth:`default_loss` and, with a predictor, :meth:`default_predictor`) and implements
    ``forward(x0, x1) -> loss``, typically from :meth:`_online` (one dense pass, one twin
    pass). Options of its own go in its ``__init__``, which passes everything else on:
    ``super().__init__(backbone, feature_dim, prune_ratio, head=head, loss=loss,
    **options)``. Modules it derives from the networks (a support set) are built after that
    call, as in any ``nn.Module``; :class:`MomentumAdapter` builds the momentum copy.
    Register the class with :func:`~selfdamage.adapters.register_adapter`; the recipe is in
    :doc:`/architecture`.

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
        predictor: A prediction head after ``head``, for a method with a predictor
            (BYOL, SimSiam, NNCLR); None for its :meth:`default_predictor`.
        **options: The wrapper options ``damage``, ``baseline``, ``random_ratio``,
            ``prunable`` and ``twin_norm``, the same on every adapter and documented once:
            :class:`~selfdamage.adapters.options.WrapperOptions`.

    Raises:
        TypeError: If ``backbone``, ``head``, ``predictor`` or ``loss`` is not an
            ``nn.Module``, ``backbone`` contains a wrapper, or an option has the wrong type.
        ValueError: If ``feature_dim`` is not positive, a default cannot be sized from the
            head, ``predictor`` does not map the head's output to itself, a wrapper option is
            out of range, or a shorthand is given together with ``damage``.
    """

    wrapper: SelfDamagingWrapper
    loss: nn.Module

    # Why the method's loss needs 2 samples per view in any mode, or None if it does not.
    _two_samples_because: ClassVar[str | None] = None

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int = 512,
        prune_ratio: float = DEFAULT_PRUNE_RATIO,
        *,
        head: nn.Module | None = None,
        loss: nn.Module | None = None,
        predictor: nn.Module | None = None,
        **options: Unpack[WrapperOptions],
    ) -> None:
        super().__init__()
        feature_dim = check_feature_dim(feature_dim)
        head = self.resolve_head(feature_dim, head)
        predictor = self._predictor(head, feature_dim, predictor)
        loss = check_module("loss", self.default_loss(head) if loss is None else loss)
        self.check_loss(loss, head)
        nested = nested_wrapper(check_module("backbone", backbone))
        if nested is not None:
            raise TypeError(
                f"backbone contains a SelfDamagingWrapper at {nested or 'its root'!r}; the "
                "adapter builds its own wrapper. Pass the bare backbone (wrapper.model)."
            )
        wrapper_options = read_wrapper_options(prune_ratio, options)
        self.baseline, self._legacy_flag = wrapper_options.baseline, wrapper_options.legacy_flag
        self.wrapper = SelfDamagingWrapper(
            Encoder(backbone, head, feature_dim, predictor),
            twin_norm=wrapper_options.twin_norm and not self.baseline,
            damage=wrapper_options.damage,
        )
        self.loss = loss
        persist_method_state(self, output_dim(head))  # banks, TiCo's C: in the state_dict

    @classmethod
    def resolve_head(cls, feature_dim: int, head: nn.Module | None) -> nn.Module:
        """``head``, or the method's :meth:`default_head` for ``feature_dim`` if it is None.

        For an ``__init__`` that sizes a default from the head before passing it on.

        Raises:
            TypeError: If ``head`` is not an ``nn.Module``.
            ValueError: If ``feature_dim`` is not positive.
        """
        if head is None:
            head = cls.default_head(check_feature_dim(feature_dim))
        return check_module("head", head)

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

    def _predictor(
        self, head: nn.Module, feature_dim: int, predictor: nn.Module | None
    ) -> nn.Module | None:
        """``predictor`` or the default one, checked; None for a method without one."""
        if type(self).default_predictor is SelfDamagingAdapter.default_predictor:
            if predictor is not None:
                raise TypeError("got an unexpected keyword argument 'predictor'")
            return None
        if predictor is None:
            predictor = self.default_predictor(head, feature_dim)
        return None if predictor is None else check_predictor(predictor, head)

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
    arguments of :class:`SelfDamagingAdapter`, and:

    Args:
        momentum_head: The momentum copy of the head, for a method that builds it itself
            (DINO's teacher head, :attr:`builds_momentum_head`); None for a deep copy of the
            head.
    """

    momentum_encoder: Encoder
    builds_momentum_head: ClassVar[bool] = False
    """Whether the method passes its own ``momentum_head``; the others refuse the keyword."""

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int = 512,
        prune_ratio: float = DEFAULT_PRUNE_RATIO,
        *,
        head: nn.Module | None = None,
        loss: nn.Module | None = None,
        predictor: nn.Module | None = None,
        momentum_head: nn.Module | None = None,
        **options: Unpack[WrapperOptions],
    ) -> None:
        if momentum_head is not None and not self.builds_momentum_head:
            raise TypeError(
                f"{type(self).__name__}.__init__() got an unexpected keyword argument "
                "'momentum_head'; the momentum head is a copy of head."
            )
        super().__init__(
            backbone, feature_dim, prune_ratio, head=head, loss=loss, predictor=predictor, **options
        )
        dense = self._encoder
        if momentum_head is None:
            momentum_head = copy.deepcopy(dense.head)
        momentum_head = check_module("momentum_head", momentum_head)
        self.momentum_encoder = Encoder(
            copy.deepcopy(dense.backbone), momentum_head, dense.feature_dim
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
