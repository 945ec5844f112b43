"""Hand-written references for the adapter tests: the twin built by hand, the losses."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from lightly.loss import BarlowTwinsLoss, DCLLoss, DCLWLoss, VICRegLoss
from lightly.models.modules import BarlowTwinsProjectionHead, SimCLRProjectionHead
from lightly.models.modules.heads import VICRegProjectionHead
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from selfdamage import SelfDamagingWrapper
from selfdamage.adapters import (
    BarlowTwinsAdapter,
    DCLAdapter,
    DCLWAdapter,
    TwoViewAdapter,
    VICRegAdapter,
)

FEATURES = 16


def tiny_backbone(batch_norm: bool = True, in_channels: int = 3) -> nn.Module:
    """Two convs and global pooling: ``(N, C, H, W) -> (N, 16, 1, 1)``."""

    def norm(channels: int) -> nn.Module:
        return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()

    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, stride=2, padding=1, bias=not batch_norm),
        norm(8),
        nn.ReLU(),
        nn.Conv2d(8, FEATURES, 3, stride=2, padding=1, bias=not batch_norm),
        norm(FEATURES),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
    )


def views(n: int = 8, seed: int = 0, size: int = 12) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=gen), torch.randn(
        n, 3, size, size, generator=gen
    )


def hand_twin(wrapper: SelfDamagingWrapper) -> nn.Module:
    """A separate copy of the wrapped model with masked weights and the twin's BN state."""
    twin = copy.deepcopy(wrapper.model)
    with torch.no_grad():
        for name, mask in wrapper.named_masks():
            twin.get_parameter(name).mul_(mask)
        for name, module in twin.named_modules():
            if isinstance(module, _BatchNorm) and wrapper.twin_norm:
                state = wrapper.twin_norms.get_submodule(name)
                for attr in ("weight", "bias", "running_mean", "running_var"):
                    if getattr(module, attr) is not None:  # None: affine=False (SimSiam's)
                        getattr(module, attr).copy_(getattr(state, attr))
    return twin


def expected_shared_grads(
    wrapper: SelfDamagingWrapper, dense: nn.Module, twin: nn.Module
) -> dict[str, Tensor]:
    """Gradient of each wrapper parameter from the hand-built dense copy and twin.

    Shared weights get both branches' gradients (the twin's through the mask); with twin
    normalization, dense BatchNorm parameters get only the dense branch's gradient and the
    twin's BatchNorm parameters the twin's.
    """
    masks = dict(wrapper.named_masks())
    norms = {n for n, m in dense.named_modules() if isinstance(m, _BatchNorm)}
    expected: dict[str, Tensor] = {}
    for name, param in dense.named_parameters():
        if param.grad is None:  # frozen (DINO's weight_g)
            continue
        grad = param.grad.clone()
        owner = name.rpartition(".")[0]
        twin_grad = twin.get_parameter(name).grad
        if owner in norms and wrapper.twin_norm:
            expected[f"twin_norms.{name}"] = twin_grad
        else:
            grad += twin_grad * masks[name] if name in masks else twin_grad
        expected[f"model.{name}"] = grad
    return expected


def ntxent(z0: Tensor, z1: Tensor, temperature: float) -> Tensor:
    """NT-Xent over 2N samples: each one's positive is its pair, every other one a negative."""
    z = F.normalize(torch.cat([z0, z1]), dim=1)
    n = z0.shape[0]
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, target)


def moco_half(q: Tensor, k: Tensor, bank: Tensor, temperature: float) -> Tensor:
    """InfoNCE of queries against their keys, negatives from ``bank`` (rows of unit keys)."""
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ bank.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))


def negative_cosine(p: Tensor, t: Tensor) -> Tensor:
    return -(F.normalize(p, dim=1) * F.normalize(t, dim=1)).sum(1).mean()


class LightlyTwoView(nn.Module):
    """The model of lightly's examples/pytorch/{barlowtwins,vicreg,dcl}.py with any head."""

    def __init__(self, backbone: nn.Module, projection_head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection_head = projection_head

    def forward(self, x: Tensor) -> Tensor:
        x = self.backbone(x).flatten(start_dim=1)
        z: Tensor = self.projection_head(x)
        return z


@dataclass(frozen=True)
class TwoViewExample:
    """A method of lightly's examples: its adapter, and the example's head and criterion.

    ``head(feature_dim)`` builds the example's head at our feature width (the examples
    use 512); ``criterion()`` the example's loss. Both are written from the examples,
    not read from the adapters.
    """

    adapter: type[TwoViewAdapter]
    head: Callable[[int], nn.Module]
    criterion: Callable[[], nn.Module]


TWO_VIEW_EXAMPLES = {
    "barlowtwins": TwoViewExample(
        BarlowTwinsAdapter, lambda d: BarlowTwinsProjectionHead(d, 2048, 2048), BarlowTwinsLoss
    ),
    "vicreg": TwoViewExample(
        VICRegAdapter,
        lambda d: VICRegProjectionHead(input_dim=d, hidden_dim=2048, output_dim=2048, num_layers=2),
        VICRegLoss,
    ),
    "dcl": TwoViewExample(DCLAdapter, lambda d: SimCLRProjectionHead(d, d, 128), DCLLoss),
    "dclw": TwoViewExample(DCLWAdapter, lambda d: SimCLRProjectionHead(d, d, 128), DCLWLoss),
}
"""Barlow Twins, VICReg, DCL and DCLW as lightly's examples build them."""


def linear_sizes(module: nn.Module) -> list[tuple[int, int]]:
    """``(in_features, out_features)`` of each ``nn.Linear`` in ``module``, in order."""
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]


def dino_cross_entropy(
    teacher: list[Tensor],
    student: list[Tensor],
    center: Tensor,
    teacher_temp: float = 0.04,
    student_temp: float = 0.1,
) -> Tensor:
    """DINO's loss on two views: teacher ``i`` against student ``j != i``, averaged."""
    terms = []
    for i, t in enumerate(teacher):
        target = F.softmax((t - center.view(1, -1)) / teacher_temp, dim=1)
        for j, s in enumerate(student):
            if i != j:
                log_p = F.log_softmax(s / student_temp, dim=1)
                terms.append(-(target * log_p).sum(1).mean())
    return torch.stack(terms).mean()


def assert_grad_close(grad: Tensor | None, reference: Tensor, name: str) -> None:
    """``grad`` is ``reference`` up to float32 rounding.

    Each entry within 1e-4 of the reference's, or within 1e-5 of the tensor's largest entry
    (at least 1e-6): another torch version or CPU sums the terms in another order, which
    moves a small entry by a few float32 steps of the largest term. A wrong branch or a
    missing half moves whole entries.
    """
    atol = max(1e-6, 1e-5 * float(reference.abs().max()))
    torch.testing.assert_close(grad, reference, rtol=1e-4, atol=atol, msg=name)


def assert_grads_match_plain(wrapper: SelfDamagingWrapper, plain: nn.Module) -> None:
    """With an undamaged, fresh twin: each wrapper gradient is the plain model's.

    A BatchNorm parameter's gradient is split between the dense layer (the dense pass)
    and the twin's copy (the twin pass); their sum is the plain model's.
    """
    twin_params = dict(wrapper.twin_norms.named_parameters()) if wrapper.twin_norm else {}
    for name, param in plain.named_parameters():
        if param.grad is None:
            assert wrapper.model.get_parameter(name).grad is None, name
            continue
        grad = wrapper.model.get_parameter(name).grad
        if name in twin_params:
            grad = grad + twin_params[name].grad
        assert_grad_close(grad, param.grad, name)


def assert_twin_pass_moves_only_twin_stats(
    wrapper: SelfDamagingWrapper, x: Tensor, **kwargs: object
) -> None:
    """A twin pass in training mode moves the twin's running statistics, never the dense ones."""
    dense = {name: b.clone() for name, b in wrapper.model.named_buffers()}
    twin = {name: b.clone() for name, b in wrapper.twin_norms.named_buffers()}
    wrapper.damaged(x, **kwargs)
    for name, buffer in wrapper.model.named_buffers():
        assert torch.equal(buffer, dense[name]), name
    moved = [
        name
        for name, buffer in wrapper.twin_norms.named_buffers()
        if buffer.is_floating_point() and not torch.equal(buffer, twin[name])
    ]
    assert moved and all(name.endswith(("running_mean", "running_var")) for name in moved)
