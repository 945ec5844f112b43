"""Channel-level self-damage: the twin loses whole channels, chosen with torch-pruning [1].

With ``SelfDamagingWrapper(..., damage="channel")`` the twin is damaged *structurally*:
instead of single weights, whole channels are switched off. Channels are coupled across
layers (a convolution's output channel, the BatchNorm that follows it, the input channel
of the next convolution, every layer tied to it by a residual addition, ...);
torch-pruning's ``DependencyGraph`` [1] finds these groups once, at construction, on the
bare model. Each refresh then scores every channel of every group with a torch-pruning
importance (``GroupMagnitudeImportance`` by default), picks the ``prune_ratio`` least
important channels *globally*, and turns that choice into ``bool`` masks over every
parameter slice the group names. ``group.prune()`` is never called: the dense model keeps
all its channels and keeps training, only the twin sees the masks.

Masking a channel's convolution weights and bias *and* the following BatchNorm's weight
and bias makes that channel output exactly zero in the twin (not the BatchNorm bias), and
masking the next layer's input slice makes the twin behave as the physically pruned
network would.

How the selection differs from torch-pruning's ``MetaPruner(global_pruning=True)``, and why
(measured on torchvision's ResNet-18 at init, final ``fc`` ignored):

- Exactly ``round(prune_ratio * channels)`` channels are chosen. ``MetaPruner`` keeps every
  channel whose score is ``<=`` the threshold, then drops any group that would lose all of
  its channels: with ``BNScaleImportance`` at init (every score equal) it prunes nothing at
  all, and with ``normalizer=None`` at 0.5 it prunes 1 % of the channels.
- Ties are broken deterministically by the channel's relative position in its group, then
  by group order, so all-equal scores spread the damage evenly over the layers.
- ``max_channel_ratio`` caps every group within the one global step (``MetaPruner`` checks
  its ``max_pruning_ratio`` only against what earlier steps physically removed), and every
  group keeps at least one channel.
- The pruner holds no state between refreshes: there is nothing to reset.

- [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990
- [1] DepGraph, 2023, https://arxiv.org/abs/2301.12900
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

import torch
import torch_pruning as tp
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

from selfdamage.masks import num_to_prune

if TYPE_CHECKING:
    from selfdamage.wrapper import SelfDamagingWrapper

__all__ = [
    "DAMAGES",
    "DEFAULT_MAX_CHANNEL_RATIO",
    "IMPORTANCES",
    "ChannelDamage",
    "ChannelGroup",
    "ImportanceLike",
    "check_damage",
    "global_channel_masks",
    "layer_channel_sparsity",
    "make_importance",
    "weight_channel_sparsity",
]

DAMAGES = ("weight", "channel")
"""Valid values of ``SelfDamagingWrapper(damage=...)``."""

IMPORTANCES = ("magnitude", "taylor", "lamp", "bn_scale", "random")
"""Names accepted for ``importance``; see :func:`make_importance`."""

ImportanceLike = Union[str, "tp.importance.Importance"]
"""A name from :data:`IMPORTANCES` or a ``torch_pruning.importance.Importance`` instance."""

DEFAULT_MAX_CHANNEL_RATIO = 0.9
"""Default cap on the fraction of one group's channels the twin may lose."""

# Root layers of channel groups: their output channels define the groups.
_ROOT_TYPES = (_ConvNd, nn.Linear)
# Offset of the importance RNG's seed from the random part's, so the two streams differ.
_IMPORTANCE_SEED_SALT = 0x5DC1_2021


def check_damage(damage: object, **channel_args: object) -> str:
    """Validates ``damage`` and that channel-only arguments come only with ``"channel"``.

    Args:
        damage: The requested damage kind, one of :data:`DAMAGES`.
        **channel_args: The channel-only arguments as passed, ``None`` when not given.

    Returns:
        ``damage``.

    Raises:
        ValueError: If ``damage`` is unknown, a channel-only argument is given with
            ``damage="weight"``, or ``example_inputs`` is missing with ``damage="channel"``.

    Examples:
        >>> check_damage("weight", importance=None)
        'weight'
        >>> check_damage("weight", importance="magnitude")
        Traceback (most recent call last):
        ...
        ValueError: importance='magnitude' only applies to damage='channel', got damage='weight'. Pass damage='channel' or drop importance.
    """  # noqa: E501
    if not isinstance(damage, str) or damage not in DAMAGES:
        options = ", ".join(repr(d) for d in DAMAGES)
        raise ValueError(f"damage must be one of {options}, got damage={damage!r}.")
    if damage == "weight":
        for name, value in channel_args.items():
            if value is not None:
                shown = f"{type(value).__name__}" if isinstance(value, Tensor) else repr(value)
                raise ValueError(
                    f"{name}={shown} only applies to damage='channel', got damage='weight'. "
                    f"Pass damage='channel' or drop {name}."
                )
    elif channel_args.get("example_inputs", 0) is None:
        raise ValueError(
            "damage='channel' needs example_inputs: torch-pruning traces one forward pass "
            "of the model to find the coupled channels. Pass a small input the model "
            "accepts, e.g. example_inputs=torch.randn(2, 3, 32, 32)."
        )
    return damage


def make_importance(importance: ImportanceLike) -> Any:
    """The torch-pruning importance criterion for a name, or the instance passed in.

    Scores are comparable across groups for every named criterion (each group's scores
    are normalized by their mean, or by LAMP), which global selection needs.

    - ``"magnitude"``: ``GroupMagnitudeImportance(p=2)``, the group's L2 norm per channel
      (convolution and linear slices and BatchNorm scales), divided by the group mean.
    - ``"taylor"``: ``GroupTaylorImportance()``, ``|w * dL/dw|`` from the ``.grad`` of the
      last backward pass; call ``refresh_mask()`` before the gradients are cleared.
    - ``"lamp"``: ``LAMPImportance(p=2)``, layer-adaptive magnitude scores.
    - ``"bn_scale"``: ``BNScaleImportance()``, ``|gamma|`` of the BatchNorm layers (Network
      Slimming); groups without a BatchNorm are not pruned.
    - ``"random"``: ``RandomImportance()``; the wrapper seeds it from its ``mask_seed``.

    Args:
        importance: A name from :data:`IMPORTANCES` or a ``tp.importance.Importance``.

    Returns:
        A callable ``group -> Tensor`` of per-channel scores.

    Raises:
        ValueError: If ``importance`` is an unknown name.
        TypeError: If ``importance`` is neither a string nor an ``Importance``.

    Examples:
        >>> type(make_importance("magnitude")).__name__
        'GroupMagnitudeImportance'
        >>> make_importance("l1")
        Traceback (most recent call last):
        ...
        ValueError: importance must be one of 'magnitude', 'taylor', 'lamp', 'bn_scale', 'random' or a torch_pruning.importance.Importance instance, got importance='l1'.
    """  # noqa: E501
    if isinstance(importance, tp.importance.Importance):
        return importance
    options = ", ".join(repr(name) for name in IMPORTANCES)
    if not isinstance(importance, str):
        raise TypeError(
            f"importance must be one of {options} or a torch_pruning.importance.Importance "
            f"instance, got {type(importance).__name__}: importance={importance!r}."
        )
    imp = tp.importance
    factories: dict[str, Callable[[], Any]] = {
        "magnitude": lambda: imp.GroupMagnitudeImportance(p=2),
        "taylor": imp.GroupTaylorImportance,
        "lamp": lambda: imp.LAMPImportance(p=2),
        "bn_scale": imp.BNScaleImportance,
        "random": imp.RandomImportance,
    }
    if importance not in factories:
        raise ValueError(
            f"importance must be one of {options} or a torch_pruning.importance.Importance "
            f"instance, got importance={importance!r}."
        )
    return factories[importance]()


def global_channel_masks(
    scores: Sequence[Tensor],
    prune_ratio: float,
    *,
    max_channel_ratio: float = DEFAULT_MAX_CHANNEL_RATIO,
    random_ratio: float = 0.0,
    generator: torch.Generator | None = None,
) -> list[Tensor]:
    """Global channel selection over several groups, with a per-group cap.

    ``round(prune_ratio * n)`` of the ``n`` channels of all groups together are pruned:
    ``round((prune_ratio - random_ratio) * n)`` with the lowest scores, then the rest
    uniformly at random among the channels still kept. No group loses more than
    ``floor(max_channel_ratio * size)`` channels, and every group keeps at least one.
    Ties are broken by the channel's relative position ``(i + 0.5) / size`` in its group,
    then by group order, so the result is deterministic and all-equal scores prune every
    group by about ``prune_ratio``.

    Args:
        scores: One 1-d tensor of per-channel scores per group, shape ``(size_g,)``;
            lower scores are pruned first. NaN counts as 0.
        prune_ratio: Fraction of all channels to prune, in ``[0, 1)``.
        max_channel_ratio: Most any one group may lose, in ``(0, 1]``.
        random_ratio: Fraction of all channels pruned at random instead of by score,
            in ``[0, prune_ratio]``.
        generator: Random generator (CPU) for the random part. Pass a seeded one for
            masks that agree across processes.

    Returns:
        One ``bool`` tensor per group, on the CPU, ``True`` where the channel is kept.

    Raises:
        ValueError: If a ratio is out of range, ``scores`` is empty or not 1-d, or the
            cap makes ``prune_ratio`` unreachable.

    Examples:
        >>> keep = global_channel_masks(
        ...     [torch.tensor([3.0, 1.0, 2.0, 4.0]), torch.tensor([0.5, 5.0])], 0.5
        ... )
        >>> [k.tolist() for k in keep]
        [[True, False, False, True], [False, True]]
        >>> [k.tolist() for k in global_channel_masks([torch.ones(4), torch.ones(2)], 0.5)]
        [[False, False, True, True], [False, True]]
    """
    if not 0.0 <= prune_ratio < 1.0:
        raise ValueError(f"prune_ratio must be in [0, 1), got prune_ratio={prune_ratio!r}.")
    if not 0.0 < max_channel_ratio <= 1.0:
        raise ValueError(
            f"max_channel_ratio must be in (0, 1], got max_channel_ratio={max_channel_ratio!r}."
        )
    if not 0.0 <= random_ratio <= prune_ratio:
        raise ValueError(
            f"random_ratio must be in [0, prune_ratio] = [0, {prune_ratio}], "
            f"got random_ratio={random_ratio!r}."
        )
    if len(scores) == 0:
        raise ValueError("scores is empty: there are no channel groups to prune.")
    if any(s.dim() != 1 or s.numel() == 0 for s in scores):
        shapes = [tuple(s.shape) for s in scores]
        raise ValueError(f"every score tensor must be 1-d and non-empty, got shapes {shapes}.")
    sizes = [s.numel() for s in scores]
    total = sum(sizes)
    caps = torch.tensor([_cap(n, max_channel_ratio) for n in sizes])
    n_prune = num_to_prune(total, prune_ratio)
    if n_prune > int(caps.sum()):
        raise ValueError(
            f"prune_ratio={prune_ratio} asks for {n_prune} of {total} channels, but "
            f"max_channel_ratio={max_channel_ratio} (and keeping one channel per group) "
            f"allows at most {int(caps.sum())} ({int(caps.sum()) / total:.3f}). Lower "
            "prune_ratio or raise max_channel_ratio."
        )
    n_random = min(num_to_prune(total, random_ratio), n_prune)
    group_id = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    position = torch.cat([(torch.arange(n, dtype=torch.float64) + 0.5) / n for n in sizes])
    flat = torch.cat([s.detach().reshape(-1).to("cpu", torch.float64) for s in scores])
    flat = torch.nan_to_num(flat, nan=0.0)
    pruned = _capped_lowest(flat, position, group_id, caps, n_prune - n_random)
    if n_random > 0:
        draws = torch.rand(total, generator=generator, dtype=torch.float64)
        draws[pruned] = math.inf
        left = caps - torch.bincount(group_id[pruned], minlength=len(sizes))
        pruned |= _capped_lowest(draws, position, group_id, left, n_random)
    return list((~pruned).split(sizes))


def _cap(size: int, max_channel_ratio: float) -> int:
    """Most channels a group of ``size`` may lose: the ratio's floor, and one kept."""
    return max(0, min(math.floor(max_channel_ratio * size + 1e-9), size - 1))


def _capped_lowest(
    scores: Tensor, position: Tensor, group_id: Tensor, caps: Tensor, k: int
) -> Tensor:
    """Marks the ``k`` lowest scores, skipping a group's channels once it reached its cap.

    Greedy in ascending order of ``(score, position, index)``: a channel is skipped exactly
    when its rank among its own group's channels in that order is at least the group's
    cap, so the greedy pick is computed without a Python loop over channels.
    """
    marked = torch.zeros(scores.numel(), dtype=torch.bool)
    if k <= 0:
        return marked
    by_position = torch.argsort(position, stable=True)
    order = by_position[torch.argsort(scores[by_position], stable=True)]
    groups = group_id[order]
    # Rank of each channel among its group's channels, in the sorted order.
    by_group = torch.argsort(groups, stable=True)
    counts = torch.bincount(groups, minlength=caps.numel())
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(groups)
    rank[by_group] = torch.arange(groups.numel()) - starts[groups[by_group]]
    eligible = order[rank < caps[groups]]
    marked[eligible[:k]] = True
    return marked


@dataclass(frozen=True)
class _Slice:
    """Where one group's channels sit in one parameter.

    ``index[j]`` is the position along ``dim`` of the parameter that belongs to the
    group's root channel ``root[j]``. ``conv_groups > 1`` marks the input slice of a
    grouped convolution, whose weight holds ``in_channels / conv_groups`` inputs per group.
    ``output`` is False for input slices of the next layer (they do not decide whether
    the channel outputs zero).
    """

    param: str
    dim: int
    index: Tensor
    root: Tensor
    output: bool
    conv_groups: int = 1


@dataclass(frozen=True)
class _ScoredLayer:
    """One layer of a group as the importance sees it: rebuilt into a tp ``Group``."""

    module: str
    handler: str
    idxs: tuple[int, ...]
    root_idxs: tuple[int, ...]


@dataclass(frozen=True)
class ChannelGroup:
    """One group of coupled channels that the twin loses together.

    Attributes:
        root: Qualified name of the layer whose output channels define the group.
        channels: Number of channels in the group.
        layers: Qualified names of every layer with parameters the group masks.
    """

    root: str
    channels: int
    layers: tuple[str, ...]
    _slices: tuple[_Slice, ...] = field(repr=False, compare=False)
    _scored: tuple[_ScoredLayer, ...] = field(repr=False, compare=False)


class ChannelDamage:
    """The channel groups of a model and how to mask them: the plan behind ``damage="channel"``.

    Builds torch-pruning's ``DependencyGraph`` once on ``model`` (the bare backbone,
    restoring every module's train/eval mode afterwards), keeps the prunable groups as
    plain data (qualified names and index tensors, so the plan survives ``copy.deepcopy``,
    pickling and ``.to()``), and drops the graph. :meth:`compute_masks` then scores the
    groups with the importance, selects channels with :func:`global_channel_masks` and
    returns full-shape ``bool`` masks for every parameter the groups touch.

    A group is pruned only if none of its layers' outputs is excluded:

    - its output layers (convolutions, linears, norms) are neither in ``ignored_layers``
      nor convolutions or linears that ``select`` rejects;
    - its channels are not a model output (the final classifier, or the last stage when
      the head is ``nn.Identity``): torch-pruning's convention of ignoring the output
      layer, applied automatically;
    - every parameterised layer in it is one whose channel slices are known: convolutions
      (also depthwise, grouped and transposed with ``groups=1``), linears, BatchNorm,
      GroupNorm, InstanceNorm, 1-d LayerNorm and PReLU. Groups touching other layers
      (attention, LSTM, embeddings, bare ``nn.Parameter`` s) are left dense;
    - the importance can score it (``"bn_scale"`` needs a BatchNorm in the group).

    :attr:`skipped` says why each other group was left dense.

    Args:
        model: The bare model (never a module that runs both branches).
        example_inputs: An input the model accepts, for tracing: a tensor (the single
            positional input), a tuple of positional inputs or a dict of keyword inputs.
            Moved to the model's device; batch size 1 is fine (the trace runs in eval mode).
        importance: A name from :data:`IMPORTANCES` or a torch-pruning ``Importance``.
        select: Predicate ``(qualified_name, module) -> bool`` for the convolutions and
            linears whose output channels may be pruned; ``None`` selects every
            ``nn.Conv2d``, as the weight-level twin does.
        ignored_layers: Modules (or their qualified names) whose output channels are
            never pruned, with all their submodules, e.g. ``[model.layer4]``. Their
            input channels still follow the layers that feed them.
        max_channel_ratio: Most of any one group's channels the twin may lose, in
            ``(0, 1]``; every group keeps at least one channel.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``example_inputs`` do not run through the model, an ignored layer
            is not part of it, or no group is prunable.

    Examples:
        >>> import torchvision
        >>> backbone = torchvision.models.resnet18(num_classes=10)
        >>> plan = ChannelDamage(backbone, torch.randn(1, 3, 32, 32))
        >>> len(plan.groups), plan.num_channels
        (12, 2880)
        >>> plan.skipped
        {'fc': 'model output'}
        >>> masks = plan.compute_masks(backbone, prune_ratio=0.5)
        >>> round(plan.channel_sparsity(masks), 3)
        0.5
    """

    def __init__(
        self,
        model: nn.Module,
        example_inputs: Any,
        *,
        importance: ImportanceLike = "magnitude",
        select: Callable[[str, nn.Module], bool] | None = None,
        ignored_layers: Iterable[nn.Module | str] | None = None,
        max_channel_ratio: float = DEFAULT_MAX_CHANNEL_RATIO,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        if example_inputs is None:
            raise ValueError(
                "example_inputs is required for channel-level damage: torch-pruning traces "
                "one forward pass to find the coupled channels. Pass a small input the "
                "model accepts, e.g. example_inputs=torch.randn(2, 3, 32, 32)."
            )
        if isinstance(max_channel_ratio, bool) or not isinstance(max_channel_ratio, (int, float)):
            raise TypeError(
                f"max_channel_ratio must be a float, got max_channel_ratio={max_channel_ratio!r}."
            )
        if not 0.0 < max_channel_ratio <= 1.0:
            raise ValueError(
                f"max_channel_ratio must be in (0, 1], got max_channel_ratio={max_channel_ratio!r}."
            )
        self.importance = make_importance(importance)
        self.max_channel_ratio = float(max_channel_ratio)
        ignored = _resolve_ignored(model, ignored_layers)
        plan = _plan_groups(model, example_inputs, select or _is_conv2d, ignored, self.importance)
        self.groups: list[ChannelGroup] = plan[0]
        self.skipped: dict[str, str] = plan[1]
        if not self.groups:
            reasons = "; ".join(f"{k}: {v}" for k, v in list(self.skipped.items())[:8])
            detail = reasons or "no convolution or linear layer was traced"
            raise ValueError(
                f"model has no prunable channel group ({detail}). Check prunable, "
                "ignored_layers and importance."
            )
        order = {name: i for i, (name, _) in enumerate(model.named_parameters())}
        touched = {s.param for g in self.groups for s in g._slices}
        self.param_names: list[str] = sorted(touched, key=lambda n: order.get(n, len(order)))
        self.num_channels: int = sum(g.channels for g in self.groups)

    @torch.no_grad()
    def scores(self, model: nn.Module, *, seed: int = 0, initial: bool = False) -> list[Tensor]:
        """Per-channel importance of every prunable group, from ``model``'s current state.

        The importance runs with the global CPU (and the model's CUDA device) random
        state forked and seeded from ``seed``, so a random criterion draws the same
        scores on every process and the caller's random state is left untouched.

        Args:
            model: The model the plan was built on, or a copy of it.
            seed: Seed of the importance's random draws.
            initial: If True and the importance needs gradients that do not exist yet
                (``"taylor"`` before the first backward pass), magnitude is used instead.

        Returns:
            One 1-d CPU tensor per group in :attr:`groups`, shape ``(channels,)``.

        Raises:
            ValueError: If scores are not finite because a masked parameter holds NaN or
                infinite values, gradients are missing for a gradient-based importance,
                or the importance returns no or wrongly shaped scores for a group.
        """
        importance = self.importance
        if isinstance(importance, tp.importance.GroupTaylorImportance):
            scored = dict.fromkeys(s.module for g in self.groups for s in g._scored)
            missing = [
                name
                for name in scored
                if isinstance(module := model.get_submodule(name), (_ConvNd, nn.Linear))
                and module.weight.grad is None
            ]
            if missing and initial:
                importance = make_importance("magnitude")
            elif missing:
                raise ValueError(
                    f"importance={type(importance).__name__} needs the gradients of the last "
                    f"backward pass, but {missing[:5]} have none. Call refresh_mask() after "
                    "loss.backward() and before optimizer.zero_grad()."
                )
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        cuda = [device.index or 0] if device.type == "cuda" else []
        out = []
        with torch.random.fork_rng(devices=cuda):
            torch.random.default_generator.manual_seed(_seed(seed + _IMPORTANCE_SEED_SALT))
            if cuda:
                torch.cuda.manual_seed(_seed(seed + _IMPORTANCE_SEED_SALT))
            for group in self.groups:
                imp = importance(_tp_group(model, group))
                if imp is None or imp.dim() != 1 or imp.numel() != group.channels:
                    got = None if imp is None else tuple(imp.shape)
                    raise ValueError(
                        f"importance {type(importance).__name__} returned {got} for the group "
                        f"of {group.root!r}, expected shape ({group.channels},)."
                    )
                out.append(imp.detach().to("cpu", torch.float64))
        # Non-finite weights make non-finite scores; check the weights only then (an
        # all-zero group also scores NaN under mean normalization, which is harmless).
        if not all(bool(torch.isfinite(s).all()) for s in out):
            bad = [n for n in self.param_names if not torch.isfinite(model.get_parameter(n)).all()]
            if bad:
                raise ValueError(
                    f"weights contain NaN or infinite values in {bad}; channel importance is "
                    "undefined. Check the training for divergence (learning rate, loss scaling)."
                )
        return out

    @torch.no_grad()
    def compute_masks(
        self,
        model: nn.Module,
        prune_ratio: float,
        *,
        random_ratio: float = 0.0,
        seed: int = 0,
        initial: bool = False,
    ) -> dict[str, Tensor]:
        """Chooses the channels to prune from the current weights and masks them.

        Args:
            model: The model the plan was built on, or a copy of it.
            prune_ratio: Fraction of all prunable channels the twin loses, in ``[0, 1)``.
            random_ratio: Part of ``prune_ratio`` chosen uniformly at random among the
                channels kept by importance, in ``[0, prune_ratio]``.
            seed: Seed of every random draw (random importance and random part).
            initial: See :meth:`scores`.

        Returns:
            ``{qualified parameter name: bool mask}`` for every name in
            :attr:`param_names`, same shape and device as the parameter, ``True`` where kept.

        Raises:
            ValueError: As :meth:`scores` and :func:`global_channel_masks`.
        """
        scores = self.scores(model, seed=seed, initial=initial)
        generator = torch.Generator().manual_seed(_seed(seed))
        keep = global_channel_masks(
            scores,
            prune_ratio,
            max_channel_ratio=self.max_channel_ratio,
            random_ratio=random_ratio,
            generator=generator,
        )
        masks = {
            name: torch.ones_like(model.get_parameter(name), dtype=torch.bool)
            for name in self.param_names
        }
        for group, kept in zip(self.groups, keep):
            for s in group._slices:
                mask = masks[s.param]
                dead = s.index[~kept[s.root]].to(mask.device)
                if dead.numel() == 0:
                    continue
                if s.conv_groups > 1:  # input slice of a grouped convolution
                    per_group = mask.shape[1]
                    grouped = mask.view(s.conv_groups, -1, *mask.shape[1:])
                    grouped[dead // per_group, :, dead % per_group] = False
                else:
                    mask.index_fill_(s.dim, dead, False)
        return masks

    def group_channel_sparsity(self, masks: Mapping[str, Tensor]) -> dict[str, float]:
        """Realised fraction of each group's channels that output zero under ``masks``.

        A channel counts as pruned when every output slice of it (weights and bias of
        the layers producing it, scale and shift of its norms) is masked out, read from
        the masks themselves.

        Args:
            masks: ``{qualified parameter name: bool mask}``, e.g. ``dict(wrapper.named_masks())``.

        Returns:
            ``{root layer name: fraction}`` in :attr:`groups` order.
        """
        return {g.root: float(_dead_channels(g, masks).float().mean()) for g in self.groups}

    def channel_sparsity(self, masks: Mapping[str, Tensor]) -> float:
        """Realised fraction of all prunable channels that output zero under ``masks``.

        Each group's channels count once, however many coupled layers share them:
        torch-pruning's definition of the global pruning ratio, which ``prune_ratio`` asks for.
        """
        dead = sum(int(_dead_channels(g, masks).sum()) for g in self.groups)
        return dead / self.num_channels

    def __repr__(self) -> str:
        return (
            f"ChannelDamage(groups={len(self.groups)}, channels={self.num_channels}, "
            f"importance={type(self.importance).__name__}, "
            f"max_channel_ratio={self.max_channel_ratio}, skipped={len(self.skipped)})"
        )


def layer_channel_sparsity(wrapper: SelfDamagingWrapper) -> dict[str, float]:
    """Fraction of each masked layer's output channels that the twin loses entirely.

    For every module whose ``weight`` the wrapper masks: the share of its output channels
    (dim 0; dim 1 for transposed convolutions; each entry of a 1-d norm or PReLU weight)
    whose weights are all masked out. Works for both damage kinds: with ``damage="weight"``
    it shows how many channels unstructured pruning kills by chance; with
    ``damage="channel"`` layers coupled only through their inputs (the ``fc`` after the
    last stage) report 0.

    Args:
        wrapper: A ``SelfDamagingWrapper``.

    Returns:
        ``{qualified module name: fraction}`` in the order of ``wrapper.named_masks()``.

    Examples:
        >>> import torchvision
        >>> from selfdamage import SelfDamagingWrapper
        >>> backbone = torchvision.models.resnet18(num_classes=10)
        >>> wrapper = SelfDamagingWrapper(
        ...     backbone, 0.5, damage="channel", example_inputs=torch.randn(1, 3, 32, 32)
        ... )
        >>> per_layer = layer_channel_sparsity(wrapper)
        >>> per_layer["fc"], 0.3 < per_layer["layer1.0.conv1"] < 0.7
        (0.0, True)
    """
    out: dict[str, float] = {}
    for name, mask in wrapper.named_masks():
        path, _, attr = name.rpartition(".")
        if attr != "weight":
            continue
        dead = _dead_outputs(wrapper.model.get_submodule(path), mask)
        out[path] = float(dead.float().mean())
    return out


def weight_channel_sparsity(wrapper: SelfDamagingWrapper) -> float:
    """Fraction of the masked layers' output channels whose weights are all masked out.

    The ``channel_sparsity`` of a weight-level twin: how many whole channels unstructured
    pruning happens to remove, pooled over every masked weight.
    """
    dead = total = 0
    for name, mask in wrapper.named_masks():
        path, _, attr = name.rpartition(".")
        if attr != "weight":
            continue
        channels = _dead_outputs(wrapper.model.get_submodule(path), mask)
        dead += int(channels.sum())
        total += channels.numel()
    return dead / total if total else 0.0


def _dead_outputs(module: nn.Module, mask: Tensor) -> Tensor:
    """Per output channel of ``module``: True if its whole weight slice is masked out."""
    dim = 1 if isinstance(module, _ConvNd) and module.transposed else 0
    if mask.dim() <= 1:
        return ~mask.reshape(-1)
    return ~mask.movedim(dim, 0).reshape(mask.shape[dim], -1).any(dim=1)


def _dead_channels(group: ChannelGroup, masks: Mapping[str, Tensor]) -> Tensor:
    """Per root channel of ``group``: True if every output slice of it is masked out."""
    dead = torch.ones(group.channels, dtype=torch.bool)
    for s in group._slices:
        if not s.output:
            continue
        mask = masks[s.param].detach().cpu()
        slice_dead = ~mask.movedim(s.dim, 0).reshape(mask.shape[s.dim], -1).any(dim=1)
        alive = torch.zeros(group.channels, dtype=torch.bool)
        alive[s.root[~slice_dead[s.index]]] = True
        dead &= ~alive
    return dead


def _is_conv2d(_name: str, module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d)


def _seed(value: int) -> int:
    """A valid ``manual_seed`` argument for any integer."""
    return value % (2**63)


def _tp_group(model: nn.Module, group: ChannelGroup) -> Any:
    """A torch-pruning ``Group`` with full indices over ``model``'s layers, for scoring."""
    out = tp.dependency.Group()
    for layer in group._scored:
        module = model.get_submodule(layer.module)
        handler = getattr(tp.pruner.function, layer.handler)
        node = tp.dependency.Node(module=module, grad_fn=None, name=layer.module)
        dep = tp.dependency.Dependency(handler, handler, source=node, target=node)
        out.add_dep(dep, list(layer.idxs))  # fresh lists: importances may sort in place
        out[len(out) - 1].root_idxs = list(layer.root_idxs)
    return out


def _resolve_ignored(
    model: nn.Module, ignored_layers: Iterable[nn.Module | str] | None
) -> set[nn.Module]:
    if ignored_layers is None:
        return set()
    if isinstance(ignored_layers, (nn.Module, str)):
        raise TypeError(
            "ignored_layers must be a list of modules or qualified names, got a single "
            f"{type(ignored_layers).__name__}; wrap it in a list: ignored_layers=[...]."
        )
    members = {id(m) for m in model.modules()}
    ignored: set[nn.Module] = set()
    for layer in ignored_layers:
        if isinstance(layer, str):
            try:
                module = model.get_submodule(layer)
            except AttributeError as error:
                raise ValueError(
                    f"ignored_layers names {layer!r}, which is not a submodule of "
                    f"{type(model).__name__}. Use qualified names from model.named_modules()."
                ) from error
        elif isinstance(layer, nn.Module):
            if id(layer) not in members:
                raise ValueError(
                    f"ignored_layers holds a {type(layer).__name__} that is not part of the "
                    "wrapped model. Pass submodules of the model itself (e.g. model.fc)."
                )
            module = layer
        else:
            raise TypeError(
                "ignored_layers must hold nn.Module instances or qualified names, got "
                f"{type(layer).__name__}: {layer!r}."
            )
        ignored.update(module.modules())
    return ignored


def _call(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def _prepare_inputs(model: nn.Module, example_inputs: Any) -> Any:
    """Example inputs on the model's device; float tensors require grad for tracing."""
    device = next((p.device for p in model.parameters()), None)

    def prepare(x: Any) -> Any:
        if isinstance(x, Tensor):
            x = x.detach().to(device) if device is not None else x.detach()
            return x.requires_grad_(True) if x.is_floating_point() else x
        if isinstance(x, dict):
            return {k: prepare(v) for k, v in x.items()}
        if isinstance(x, (tuple, list)):
            return type(x)(prepare(v) for v in x)
        return x

    return prepare(example_inputs)


def _build_graph(model: nn.Module, example_inputs: Any) -> tuple[Any, set[Any]]:
    """torch-pruning's dependency graph of ``model`` and its output ``grad_fn`` s.

    Tracing puts the model in eval mode; every module's mode is restored afterwards.
    """
    modes = [(m, m.training) for m in model.modules()]
    outputs: list[Any] = []

    def keep_outputs(out: Any) -> Any:
        outputs.extend(tp.utils.flatten_as_list(out))
        return out

    try:
        with torch.enable_grad():
            graph = tp.DependencyGraph().build_dependency(
                model,
                example_inputs=_prepare_inputs(model, example_inputs),
                forward_fn=_call,
                output_transform=keep_outputs,
                verbose=False,
            )
    except Exception as error:
        raise ValueError(
            f"could not trace {type(model).__name__} with example_inputs for channel-level "
            f"damage ({type(error).__name__}: {error}). Pass an input the model accepts: a "
            "tensor, a tuple of positional inputs or a dict of keyword inputs."
        ) from error
    finally:
        for module, mode in modes:
            module.training = mode
    return graph, {o.grad_fn for o in outputs if isinstance(o, Tensor) and o.grad_fn is not None}


_HANDLER_NAMES = {
    getattr(tp.pruner.function, n): n for n in dir(tp.pruner.function) if n.startswith("prune_")
}


def _slices_of(
    name: str, module: nn.Module, pruner: Any, is_out: bool, idxs: Tensor, root: Tensor
) -> list[_Slice] | str:
    """The parameter slices a handler names, or why they are unknown."""
    fn = tp.pruner.function

    def both(dim: int, output: bool = True) -> list[_Slice]:
        found = []
        for attr in ("weight", "bias"):
            if isinstance(getattr(module, attr, None), nn.Parameter):
                found.append(_Slice(f"{name}.{attr}", dim, idxs, root, output))
        return found

    if isinstance(pruner, fn.DepthwiseConvPruner):
        return both(0)
    if isinstance(pruner, fn.ConvPruner) and isinstance(module, _ConvNd):
        if module.transposed and module.groups > 1:
            return "grouped transposed convolution"
        if is_out:
            weight_dim = 1 if module.transposed else 0
            found = [_Slice(f"{name}.weight", weight_dim, idxs, root, True)]
            if module.bias is not None:
                found.append(_Slice(f"{name}.bias", 0, idxs, root, True))
            return found
        if module.transposed:
            return [_Slice(f"{name}.weight", 0, idxs, root, False)]
        return [_Slice(f"{name}.weight", 1, idxs, root, False, module.groups)]
    if isinstance(pruner, fn.LinearPruner) and isinstance(module, nn.Linear):
        if is_out:
            return both(0)
        return [_Slice(f"{name}.weight", 1, idxs, root, False)]
    if isinstance(pruner, (fn.BatchnormPruner, fn.GroupNormPruner, fn.InstanceNormPruner)):
        return both(0)
    if isinstance(pruner, fn.LayernormPruner) and isinstance(module, nn.LayerNorm):
        if len(module.normalized_shape) != 1:
            return "LayerNorm over more than one dimension"
        return both(0)
    if isinstance(pruner, fn.PReLUPruner):  # one shared slope has no channel slices
        return both(0) if getattr(module, "num_parameters", 1) > 1 else []
    return f"{type(module).__name__} layers are not supported"


def _reroot(graph: Any, group: Any, names: Mapping[Any, str], position: Mapping[str, int]) -> Any:
    """The same group, rooted at its first convolution or linear in module order.

    torch-pruning roots a group at whichever layer its trace met first (for a ResNet
    stage, often the downsample); rooting at the first layer makes the group's name
    predictable (``conv1`` for the stem's residual stream).
    """
    outputs = [
        dep.target.module
        for dep, _ in group
        if graph.is_out_channel_pruning_fn(dep.handler)
        and isinstance(dep.target.module, _ROOT_TYPES)
        and dep.target.module in names
    ]
    if not outputs:
        return group
    first = min(outputs, key=lambda m: position[names[m]])
    if first is group[0].dep.target.module:
        return group
    pruner = graph.get_pruner_of_module(first)
    channels = pruner.get_out_channels(first)
    return graph.get_pruning_group(first, pruner.prune_out_channels, list(range(channels)))


def _plan_groups(
    model: nn.Module,
    example_inputs: Any,
    select: Callable[[str, nn.Module], bool],
    ignored: set[nn.Module],
    importance: Any,
) -> tuple[list[ChannelGroup], dict[str, str]]:
    """Traces ``model`` and turns every channel group into plain data."""
    graph, output_fns = _build_graph(model, example_inputs)
    names = {module: name for name, module in model.named_modules()}
    position = {name: i for i, name in enumerate(names.values())}
    target_types = tuple(getattr(importance, "target_types", ()))
    groups: list[ChannelGroup] = []
    skipped: dict[str, str] = {}
    for group in graph.get_all_groups(ignored_layers=[], root_module_types=_ROOT_TYPES):
        group = _reroot(graph, group, names, position)
        root = names.get(group[0].dep.target.module, "?")
        reason = ""
        slices: list[_Slice] = []
        scored: list[_ScoredLayer] = []
        layers: list[str] = []
        for item in group:
            dep, idxs, root_idxs = item.dep, item.idxs, item.root_idxs
            node, handler = dep.target, dep.handler
            module = node.module
            is_out = graph.is_out_channel_pruning_fn(handler)
            if is_out and node.grad_fn in output_fns:  # the channels are a model output
                reason = reason or "model output"
            if node.type == tp.ops.OPTYPE.PARAMETER:
                reason = reason or "touches an nn.Parameter outside any layer"
                continue
            if module not in names:  # torch-pruning's parameter-free ops (add, cat, view)
                continue
            name = names[module]
            if is_out and module in ignored:
                reason = reason or f"{name} is in ignored_layers"
            if is_out and isinstance(module, _ROOT_TYPES) and not select(name, module):
                reason = reason or f"{name} is not selected by prunable"
            if not any(True for _ in module.parameters(recurse=False)):
                continue
            if root_idxs is None or any(r is None for r in root_idxs):
                reason = reason or f"{name} has indices without a root channel"
                continue
            found = _slices_of(
                name,
                module,
                handler.__self__,
                is_out,
                torch.tensor(idxs, dtype=torch.long),
                torch.tensor(root_idxs, dtype=torch.long),
            )
            if isinstance(found, str):
                reason = reason or found
                continue
            slices.extend(found)
            layers.append(name)
            if handler in _HANDLER_NAMES:
                scored.append(
                    _ScoredLayer(name, _HANDLER_NAMES[handler], tuple(idxs), tuple(root_idxs))
                )
        if (
            not reason
            and target_types
            and not any(isinstance(model.get_submodule(s.module), target_types) for s in scored)
        ):
            reason = f"{type(importance).__name__} scores none of its layers"
        if reason:
            skipped[root] = reason
            continue
        channels = len(group[0].idxs)
        groups.append(
            ChannelGroup(root, channels, tuple(dict.fromkeys(layers)), tuple(slices), tuple(scored))
        )
    groups.sort(key=lambda g: position.get(g.root, len(position)))
    skipped = dict(sorted(skipped.items(), key=lambda kv: position.get(kv[0], len(position))))
    return groups, skipped
