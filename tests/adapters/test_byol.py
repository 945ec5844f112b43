"""BYOLAdapter against lightly's BYOL example and against a twin built by hand."""

from __future__ import annotations

import copy

import pytest
import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import Tensor, nn

from selfdamage.adapters import BYOLAdapter

from .helpers import (
    FEATURES,
    expected_shared_grads,
    hand_twin,
    negative_cosine,
    tiny_backbone,
    views,
)


class LightlyBYOL(nn.Module):
    """The model of lightly's examples/pytorch/byol.py, with our adapter's head sizes."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection_head = BYOLProjectionHead(FEATURES, 4096, 256)
        self.prediction_head = BYOLPredictionHead(256, 4096, 256)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)

    def forward(self, x: Tensor) -> Tensor:
        y = self.backbone(x).flatten(start_dim=1)
        return self.prediction_head(self.projection_head(y))

    def forward_momentum(self, x: Tensor) -> Tensor:
        y = self.backbone_momentum(x).flatten(start_dim=1)
        return self.projection_head_momentum(y).detach()


class TestBYOLAdapter:
    def test_baseline_reproduces_lightly_example(self) -> None:
        torch.manual_seed(0)
        adapter = BYOLAdapter(tiny_backbone(), FEATURES, baseline=True)
        reference = LightlyBYOL(copy.deepcopy(adapter.backbone))
        head, predictor = adapter.wrapper.model.head, adapter.wrapper.model.predictor
        reference.projection_head.load_state_dict(head.state_dict())
        reference.projection_head_momentum.load_state_dict(head.state_dict())
        reference.prediction_head.load_state_dict(predictor.state_dict())
        criterion = NegativeCosineSimilarity()
        optimizers = [
            torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (adapter, reference)
        ]
        for step in range(3):
            m = cosine_schedule(step, 3, 0.9, 1.0)  # a low momentum, so the EMA shows
            adapter.update_momentum(m)
            update_momentum(reference.backbone, reference.backbone_momentum, m)
            update_momentum(reference.projection_head, reference.projection_head_momentum, m)
            x0, x1 = views(seed=step)
            loss = adapter(x0, x1)
            p0, z0 = reference(x0), reference.forward_momentum(x0)
            p1, z1 = reference(x1), reference.forward_momentum(x1)
            expected = 0.5 * (criterion(p0, z1) + criterion(p1, z0))
            torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
            for optimizer, value in zip(optimizers, (loss, expected)):
                optimizer.zero_grad()
                value.backward()
                optimizer.step()
        momentum = adapter.momentum_encoder.state_dict()
        for key, value in reference.backbone_momentum.state_dict().items():
            torch.testing.assert_close(momentum[f"backbone.{key}"], value, rtol=1e-5, atol=1e-6)

    def test_damaged_step_matches_hand_built_twin(self) -> None:
        torch.manual_seed(0)
        head = nn.Sequential(
            nn.Linear(FEATURES, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 8)
        )
        adapter = BYOLAdapter(tiny_backbone(), FEATURES, 0.5, head=head)
        optimizer = torch.optim.SGD(adapter.parameters(), lr=0.5)
        adapter(*views(seed=1)).backward()  # one step, so twin and dense BN state differ
        optimizer.step()
        optimizer.zero_grad()

        dense, twin = copy.deepcopy(adapter.wrapper.model), hand_twin(adapter.wrapper)
        momentum = copy.deepcopy(adapter.momentum_encoder)
        x0, x1 = views(seed=2)
        loss = adapter(x0, x1)
        t0, t1 = momentum(x0), momentum(x1)
        expected = (negative_cosine(dense(x0), t1) + negative_cosine(twin(x1), t0)) / 2
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)

        loss.backward()
        expected.backward()
        grads = expected_shared_grads(adapter.wrapper, dense, twin)
        for name, param in adapter.wrapper.named_parameters():
            torch.testing.assert_close(param.grad, grads[name], rtol=1e-4, atol=1e-6, msg=name)
        twin_norms = {n for n, _ in adapter.wrapper.twin_norms.named_modules() if n}
        assert {"head.1", "predictor.layers.1"} <= twin_norms  # dual BN in projector and predictor

    def test_momentum_network_is_backbone_and_projector(self) -> None:
        adapter = BYOLAdapter(tiny_backbone(), FEATURES, 0.5)
        online = adapter.wrapper.model
        momentum = adapter.momentum_encoder
        assert momentum.predictor is None
        count = sum(p.numel() for p in momentum.parameters())
        assert count == sum(
            p.numel() for m in (online.backbone, online.head) for p in m.parameters()
        )
        assert not any(p.requires_grad for p in momentum.parameters())
        with torch.no_grad():
            for param in online.parameters():
                param.add_(1.0)
        predictor = [p.clone() for p in online.predictor.parameters()]
        adapter.update_momentum(0.0)  # the momentum network becomes a copy
        for (name, ours), (_, theirs) in zip(
            momentum.named_parameters(), online.named_parameters()
        ):
            assert torch.equal(ours, theirs), name
        assert all(torch.equal(a, b) for a, b in zip(online.predictor.parameters(), predictor))

    def test_defaults_and_predictor_follows_the_head(self) -> None:
        adapter = BYOLAdapter(tiny_backbone(), FEATURES)
        assert isinstance(adapter.loss, NegativeCosineSimilarity)
        assert isinstance(adapter.wrapper.model.head, BYOLProjectionHead)
        assert isinstance(adapter.wrapper.model.predictor, BYOLPredictionHead)
        adapter = BYOLAdapter(tiny_backbone(), FEATURES, head=BYOLProjectionHead(FEATURES, 32, 24))
        linears = [m for m in adapter.wrapper.model.predictor.modules() if isinstance(m, nn.Linear)]
        assert (linears[0].in_features, linears[-1].out_features) == (24, 24)

    def test_head_without_linear_needs_a_predictor(self) -> None:
        with pytest.raises(ValueError, match="Pass predictor="):
            BYOLAdapter(tiny_backbone(), FEATURES, head=nn.Identity())
        adapter = BYOLAdapter(
            tiny_backbone(), FEATURES, head=nn.Identity(), predictor=nn.Linear(FEATURES, FEATURES)
        )
        assert adapter(*views()).isfinite()

    def test_predictor_must_be_a_module(self) -> None:
        with pytest.raises(TypeError, match=r"predictor must be a torch\.nn\.Module, got str"):
            BYOLAdapter(tiny_backbone(), FEATURES, predictor="mlp")  # type: ignore[arg-type]
