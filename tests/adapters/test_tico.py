"""TiCoAdapter against lightly's TiCo example, with the running covariance by hand."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from lightly.loss import NegativeCosineSimilarity, TiCoLoss
from lightly.models.modules.heads import TiCoProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from selfdamage.adapters import MomentumAdapter, TiCoAdapter

from .helpers import (
    FEATURES,
    assert_grad_close,
    expected_shared_grads,
    hand_twin,
    tiny_backbone,
    views,
)

N = 8
D = 8  # projection dimension of the small test head
BETA, RHO = 0.9, 8.0


def small_head() -> nn.Module:
    return TiCoProjectionHead(FEATURES, 32, D)


class LightlyTiCo(nn.Module):
    """The model of lightly's examples/pytorch/tico.py, with the small test head."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection_head = small_head()
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)

    def forward(self, x: Tensor) -> Tensor:
        return self.projection_head(self.backbone(x).flatten(start_dim=1))

    def forward_momentum(self, x: Tensor) -> Tensor:
        y = self.backbone_momentum(x).flatten(start_dim=1)
        return self.projection_head_momentum(y).detach()


def hand_tico(z_a: Tensor, z_b: Tensor, covariance: Tensor) -> tuple[Tensor, Tensor]:
    """TiCo's loss by hand (the TiCo paper, eq. 5) and the covariance after the EMA step."""
    z_a, z_b = F.normalize(z_a, dim=1), F.normalize(z_b, dim=1)
    b = (z_a.T @ z_a).detach() / len(z_a)
    updated = BETA * covariance + (1 - BETA) * b
    invariance = 1 - (z_a * z_b).sum(dim=1).mean()
    contrast = RHO * ((z_a @ updated) * z_a).sum(dim=1).mean()
    return invariance + contrast, updated


def hand_step(
    z0: Tensor, z1: Tensor, k0: Tensor, k1: Tensor, covariance: Tensor
) -> tuple[Tensor, Tensor]:
    """The symmetric step: both halves see C before the step; C moves by the dense half."""
    twin_half, _ = hand_tico(z1, k0, covariance)
    dense_half, covariance = hand_tico(z0, k1, covariance)
    return (twin_half + dense_half) / 2, covariance


def norms(module: nn.Module) -> dict[str, Tensor]:
    return {
        f"{name}.{stat}": getattr(m, stat).clone()
        for name, m in module.named_modules()
        if isinstance(m, _BatchNorm)
        for stat in ("running_mean", "running_var")
    }


def copy_heads(adapter: TiCoAdapter, reference: LightlyTiCo) -> None:
    head = adapter.wrapper.model.head.state_dict()
    reference.projection_head.load_state_dict(head)
    reference.projection_head_momentum.load_state_dict(head)


class TestTiCoAdapter:
    def test_baseline_is_symmetric_lightly_tico_with_one_update_per_step(self) -> None:
        torch.manual_seed(0)
        adapter = TiCoAdapter(tiny_backbone(), FEATURES, baseline=True, head=small_head())
        reference = LightlyTiCo(copy.deepcopy(adapter.backbone))
        copy_heads(adapter, reference)
        adapter.double()  # float64: the tolerance can be tight over several SGD steps
        reference.double()
        covariance = torch.zeros(D, D, dtype=torch.float64)  # lightly's lazy start
        assert torch.equal(adapter.loss.C, covariance)
        optimizers = [
            torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (adapter, reference)
        ]
        for step in range(3):
            m = cosine_schedule(step, 3, 0.9, 1.0)  # a low momentum, so the EMA shows
            adapter.update_momentum(m)
            update_momentum(reference.backbone, reference.backbone_momentum, m)
            update_momentum(reference.projection_head, reference.projection_head_momentum, m)
            x0, x1 = (x.double() for x in views(N, seed=step))
            loss = adapter(x0, x1)
            z0, z1 = reference(x0), reference(x1)
            k0, k1 = reference.forward_momentum(x0), reference.forward_momentum(x1)
            expected, covariance = hand_step(z0, z1, k0, k1, covariance)
            torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(adapter.loss.C, covariance, rtol=1e-10, atol=1e-12)
            for optimizer, value in zip(optimizers, (loss, expected)):
                optimizer.zero_grad()
                value.backward()
                optimizer.step()
        momentum = adapter.momentum_encoder.state_dict()
        for key, value in reference.backbone_momentum.state_dict().items():
            torch.testing.assert_close(momentum[f"backbone.{key}"], value, rtol=1e-10, atol=1e-10)

    def test_zero_damage_with_a_fresh_twin_is_the_plain_method(self) -> None:
        torch.manual_seed(0)
        adapter = TiCoAdapter(tiny_backbone(), FEATURES, 0.0, head=small_head())
        reference = LightlyTiCo(copy.deepcopy(adapter.backbone))
        copy_heads(adapter, reference)
        x0, x1 = views(N)
        loss = adapter(x0, x1)
        k0, k1 = reference.forward_momentum(x0), reference.forward_momentum(x1)
        expected, covariance = hand_step(reference(x0), reference(x1), k0, k1, torch.zeros(D, D))
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(adapter.loss.C, covariance, rtol=1e-5, atol=1e-7)
        loss.backward()
        expected.backward()
        grads = dict(adapter.wrapper.named_parameters())
        for name, param in reference.named_parameters():
            if not param.requires_grad:
                continue
            ours = name.replace("projection_head.", "head.")
            grad = grads[f"model.{ours}"].grad
            if f"twin_norms.{ours}" in grads:  # a BatchNorm: dense (x0) + twin (x1) halves
                grad = grad + grads[f"twin_norms.{ours}"].grad
            assert_grad_close(grad, param.grad, name)

    def test_damaged_step_matches_hand_built_twin_and_dense_covariance(self) -> None:
        torch.manual_seed(0)
        adapter = TiCoAdapter(tiny_backbone(), FEATURES, 0.5, head=small_head())
        optimizer = torch.optim.SGD(adapter.parameters(), lr=0.5)
        adapter.update_momentum(0.5)
        adapter(*views(N, seed=1)).backward()  # one step: twin and dense BN state differ
        optimizer.step()
        optimizer.zero_grad()
        covariance = adapter.loss.C.clone()
        assert covariance.abs().sum() > 0

        dense, twin = copy.deepcopy(adapter.wrapper.model), hand_twin(adapter.wrapper)
        momentum = copy.deepcopy(adapter.momentum_encoder)
        twin_norms = norms(adapter.wrapper.twin_norms)
        x0, x1 = views(N, seed=2)
        loss = adapter(x0, x1)
        z0, z1 = dense(x0), twin(x1)
        expected, covariance = hand_step(z0, z1, momentum(x0), momentum(x1), covariance)
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
        # C moved exactly once, by the dense projections: 0.9 * C + 0.1 * B(z0).
        torch.testing.assert_close(adapter.loss.C, covariance, rtol=1e-5, atol=1e-7)

        loss.backward()
        expected.backward()
        grads = expected_shared_grads(adapter.wrapper, dense, twin)
        for name, param in adapter.wrapper.named_parameters():
            torch.testing.assert_close(param.grad, grads[name], rtol=1e-4, atol=1e-6, msg=name)
        twin_grads = [p.grad for n, p in twin.named_parameters() if n.startswith("backbone.")]
        assert all(g is not None and g.abs().sum() > 0 for g in twin_grads)  # both branches
        for key, value in norms(dense).items():  # the twin pass left dense statistics alone
            torch.testing.assert_close(norms(adapter.wrapper.model)[key], value, msg=key)
        moved = norms(adapter.wrapper.twin_norms)
        assert all(not torch.equal(moved[k], v) for k, v in twin_norms.items())

    def test_covariance_round_trips_and_evaluation_leaves_it(self) -> None:
        torch.manual_seed(0)
        adapter = TiCoAdapter(tiny_backbone(), FEATURES, 0.5, head=small_head())
        adapter(*views(N, seed=1)).backward()
        state = adapter.state_dict()
        assert torch.equal(state["loss.C"], adapter.loss.C) and state["loss.C"].abs().sum() > 0
        torch.manual_seed(1)
        fresh = TiCoAdapter(tiny_backbone(), FEATURES, 0.5, head=small_head())
        fresh.load_state_dict(state)  # strict
        x0, x1 = views(N, seed=2)
        assert torch.equal(fresh(x0, x1), adapter(x0, x1))
        assert torch.equal(fresh.loss.C, adapter.loss.C)
        before = adapter.loss.C.clone()
        with torch.no_grad():
            adapter(x0, x1)
        assert torch.equal(adapter.loss.C, before)

    def test_is_a_momentum_adapter_of_the_dense_model(self) -> None:
        adapter = TiCoAdapter(tiny_backbone(), FEATURES, 0.5, head=small_head())
        assert isinstance(adapter, MomentumAdapter)
        with torch.no_grad():
            for param in adapter.wrapper.model.parameters():
                param.add_(1.0)
        adapter.update_momentum(0.0)  # the momentum network becomes a copy
        for (name, ours), (_, theirs) in zip(
            adapter.momentum_encoder.named_parameters(), adapter.wrapper.model.named_parameters()
        ):
            assert torch.equal(ours, theirs), name

    def test_defaults(self) -> None:
        adapter = TiCoAdapter(tiny_backbone(), FEATURES)
        assert isinstance(adapter.wrapper.model.head, TiCoProjectionHead)
        assert (adapter.loss.beta, adapter.loss.rho) == (0.9, 8.0)
        assert adapter.loss.C.shape == (256, 256)
        adapter = TiCoAdapter(tiny_backbone(), FEATURES, head=small_head(), beta=0.5, rho=2.0)
        assert (adapter.loss.beta, adapter.loss.rho) == (0.5, 2.0)
        assert adapter.loss.C.shape == (D, D)

    @pytest.mark.parametrize(
        ("kwargs", "error", "message"),
        [
            ({"loss": TiCoLoss(), "beta": 0.5}, ValueError, "beta=0.5 configures"),
            ({"loss": TiCoLoss(), "rho": 1.0}, ValueError, "rho=1.0 configures"),
            ({"beta": 1.5}, ValueError, "beta must be in"),
            ({"rho": -1.0}, ValueError, "rho must be"),
            ({"loss": NegativeCosineSimilarity()}, TypeError, "loss must be a lightly TiCoLoss"),
            ({"head": nn.Identity()}, ValueError, "Cannot read the head's output dimension"),
        ],
    )
    def test_invalid_arguments(
        self, kwargs: dict[str, object], error: type[Exception], message: str
    ) -> None:
        with pytest.raises(error, match=message):
            TiCoAdapter(tiny_backbone(), FEATURES, **kwargs)  # type: ignore[arg-type]
