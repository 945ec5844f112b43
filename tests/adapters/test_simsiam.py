"""SimSiamAdapter against lightly's SimSiam example and against a twin built by hand."""

from __future__ import annotations

import copy

import pytest
import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead
from torch import Tensor, nn

from selfdamage.adapters import SimSiamAdapter

from .helpers import (
    FEATURES,
    assert_grads_match_plain,
    assert_twin_pass_moves_only_twin_stats,
    expected_shared_grads,
    hand_twin,
    negative_cosine,
    tiny_backbone,
    views,
)


class LightlySimSiam(nn.Module):
    """The model of lightly's examples/pytorch/simsiam.py, at our feature width."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection_head = SimSiamProjectionHead(FEATURES, FEATURES, 128)
        self.prediction_head = SimSiamPredictionHead(128, 64, 128)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.backbone(x).flatten(start_dim=1)
        z = self.projection_head(f)
        p = self.prediction_head(z)
        return z.detach(), p


def load_heads(reference: LightlySimSiam, adapter: SimSiamAdapter) -> None:
    reference.projection_head.load_state_dict(adapter.wrapper.model.head.state_dict())
    reference.prediction_head.load_state_dict(adapter.wrapper.model.predictor.state_dict())


class TestSimSiamAdapter:
    def test_baseline_reproduces_lightly_example(self) -> None:
        torch.manual_seed(0)
        adapter = SimSiamAdapter(tiny_backbone(), FEATURES, baseline=True)
        reference = LightlySimSiam(copy.deepcopy(adapter.backbone))
        load_heads(reference, adapter)
        criterion = NegativeCosineSimilarity()
        optimizers = [torch.optim.SGD(m.parameters(), lr=0.06) for m in (adapter, reference)]
        for step in range(3):
            x0, x1 = views(seed=step)
            loss = adapter(x0, x1)
            (z0, p0), (z1, p1) = reference(x0), reference(x1)
            expected = 0.5 * (criterion(z0, p1) + criterion(z1, p0))  # the example's order
            torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
            for optimizer, value in zip(optimizers, (loss, expected)):
                optimizer.zero_grad()
                value.backward()
                optimizer.step()
        ours = adapter.wrapper.model.state_dict()
        for key, value in reference.state_dict().items():
            key = key.replace("projection_head.", "head.").replace("prediction_head.", "predictor.")
            torch.testing.assert_close(ours[key], value, rtol=1e-5, atol=1e-6, msg=key)

    def test_undamaged_fresh_twin_is_a_plain_simsiam_step(self) -> None:
        torch.manual_seed(0)
        adapter = SimSiamAdapter(tiny_backbone(), FEATURES, 0.0)
        reference = LightlySimSiam(copy.deepcopy(adapter.backbone))
        load_heads(reference, adapter)
        x0, x1 = views(seed=3)
        loss = adapter(x0, x1)
        (z0, p0), (z1, p1) = reference(x0), reference(x1)
        expected = 0.5 * (negative_cosine(p0, z1) + negative_cosine(p1, z0))
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
        loss.backward()
        expected.backward()
        plain = copy.deepcopy(adapter.wrapper.model)  # the reference's gradients, our names
        for (_, ours), (_, theirs) in zip(plain.named_parameters(), reference.named_parameters()):
            ours.grad = theirs.grad
        assert_grads_match_plain(adapter.wrapper, plain)

    def test_damaged_step_matches_hand_built_twin(self) -> None:
        torch.manual_seed(0)
        adapter = SimSiamAdapter(tiny_backbone(), FEATURES, 0.5)
        optimizer = torch.optim.SGD(adapter.parameters(), lr=0.5)
        adapter(*views(seed=1)).backward()  # one step, so twin and dense BN state differ
        optimizer.step()
        optimizer.zero_grad()

        dense, twin = copy.deepcopy(adapter.wrapper.model), hand_twin(adapter.wrapper)
        x0, x1 = views(seed=2)
        loss = adapter(x0, x1)
        z0, p0 = dense(x0, with_projection=True)
        z1, p1 = twin(x1, with_projection=True)
        # The dense prediction's target is the twin's projection, and vice versa.
        expected = (negative_cosine(p0, z1.detach()) + negative_cosine(p1, z0.detach())) / 2
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)

        loss.backward()
        expected.backward()
        grads = expected_shared_grads(adapter.wrapper, dense, twin)
        for name, param in adapter.wrapper.named_parameters():
            torch.testing.assert_close(param.grad, grads[name], rtol=1e-4, atol=1e-6, msg=name)
        for name in ("backbone.0.weight", "head.layers.0.weight", "predictor.layers.0.weight"):
            assert dense.get_parameter(name).grad.abs().sum() > 0, name  # through both branches
            assert twin.get_parameter(name).grad.abs().sum() > 0, name
        twin_norms = {n for n, _ in adapter.wrapper.twin_norms.named_modules() if n}
        assert {"head.layers.7", "predictor.layers.1"} <= twin_norms  # dual BN in both heads
        # Each branch updated its own running statistics, and only its own.
        for name, buffer in dense.named_buffers():
            torch.testing.assert_close(adapter.wrapper.model.get_buffer(name), buffer)
            torch.testing.assert_close(
                adapter.wrapper.twin_norms.get_buffer(name), twin.get_buffer(name)
            )
        assert_twin_pass_moves_only_twin_stats(adapter.wrapper, x1, with_projection=True)

    def test_defaults_and_predictor_follows_the_head(self) -> None:
        adapter = SimSiamAdapter(tiny_backbone(), FEATURES)
        assert isinstance(adapter.loss, NegativeCosineSimilarity)
        assert isinstance(adapter.wrapper.model.head, SimSiamProjectionHead)
        assert isinstance(adapter.wrapper.model.predictor, SimSiamPredictionHead)
        adapter = SimSiamAdapter(tiny_backbone(), FEATURES, head=nn.Linear(FEATURES, 24))
        linears = [m for m in adapter.wrapper.model.predictor.modules() if isinstance(m, nn.Linear)]
        assert [(m.in_features, m.out_features) for m in linears] == [(24, 12), (12, 24)]

    def test_state_dict_round_trip(self) -> None:
        torch.manual_seed(0)
        adapter = SimSiamAdapter(tiny_backbone(), FEATURES, 0.5)
        adapter(*views(seed=1)).backward()
        torch.manual_seed(1)
        fresh = SimSiamAdapter(tiny_backbone(), FEATURES, 0.5)
        fresh.load_state_dict(adapter.state_dict())
        x0, x1 = views(seed=2)
        torch.testing.assert_close(fresh(x0, x1), adapter(x0, x1), rtol=0, atol=0)

    def test_head_without_linear_needs_a_predictor(self) -> None:
        with pytest.raises(ValueError, match="Pass predictor=SimSiamPredictionHead"):
            SimSiamAdapter(tiny_backbone(), FEATURES, head=nn.Identity())

    def test_predictor_must_be_a_module(self) -> None:
        with pytest.raises(TypeError, match=r"predictor must be a torch\.nn\.Module, got str"):
            SimSiamAdapter(tiny_backbone(), FEATURES, predictor="mlp")  # type: ignore[arg-type]
