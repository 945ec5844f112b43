"""TwoViewAdapter, and each of its methods against lightly's example and a hand-built twin."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import torch
from lightly.loss import BarlowTwinsLoss, NTXentLoss
from lightly.models.modules import BarlowTwinsProjectionHead
from torch import Tensor, nn

from selfdamage import ChannelDamage
from selfdamage.adapters import SimCLRAdapter, TwoViewAdapter, VICRegAdapter

from .helpers import (
    FEATURES,
    TWO_VIEW_EXAMPLES,
    LightlyTwoView,
    TwoViewExample,
    assert_grad_close,
    expected_shared_grads,
    hand_twin,
    tiny_backbone,
    views,
)

METHODS = sorted(TWO_VIEW_EXAMPLES)


def reference_of(adapter: TwoViewAdapter, example: TwoViewExample) -> LightlyTwoView:
    """lightly's example model with the adapter's initial weights, built separately."""
    reference = LightlyTwoView(copy.deepcopy(adapter.backbone), example.head(FEATURES))
    reference.projection_head.load_state_dict(adapter.wrapper.model.head.state_dict())
    return reference


def ours(name: str) -> str:
    """The encoder's name of a parameter or buffer of :class:`LightlyTwoView`."""
    return name.replace("projection_head.", "head.")


@pytest.mark.parametrize("method", METHODS)
class TestTwoViewMethods:
    def test_baseline_reproduces_lightly_example(self, method: str) -> None:
        torch.manual_seed(0)
        example = TWO_VIEW_EXAMPLES[method]
        adapter = example.adapter(tiny_backbone(), FEATURES, baseline=True)
        reference = reference_of(adapter, example)
        criterion = example.criterion()
        optimizers = [torch.optim.SGD(m.parameters(), lr=0.06) for m in (adapter, reference)]
        for step in range(3):
            x0, x1 = views(seed=step)
            loss = adapter(x0, x1)
            expected = criterion(reference(x0), reference(x1))
            torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)
            for optimizer, value in zip(optimizers, (loss, expected)):
                optimizer.zero_grad()
                value.backward()
                optimizer.step()
        state = adapter.wrapper.model.state_dict()
        for key, value in reference.state_dict().items():  # weights and BN statistics
            torch.testing.assert_close(state[ours(key)], value, rtol=1e-5, atol=1e-6, msg=key)

    def test_undamaged_twin_gives_the_plain_method_step(self, method: str) -> None:
        # prune_ratio=0 and a fresh twin: the twin is the dense model, so loss and
        # gradients are the plain method's, a BatchNorm's split between the two branches.
        torch.manual_seed(0)
        example = TWO_VIEW_EXAMPLES[method]
        adapter = example.adapter(tiny_backbone(), FEATURES, 0.0)
        reference = reference_of(adapter, example)
        x0, x1 = views()
        loss = adapter(x0, x1)
        expected = example.criterion()(reference(x0), reference(x1))
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
        loss.backward()
        expected.backward()
        params = dict(adapter.wrapper.named_parameters())
        assert any(name.startswith("twin_norms.") for name in params)
        for name, param in reference.named_parameters():
            grad = params[f"model.{ours(name)}"].grad
            twin = params.get(f"twin_norms.{ours(name)}")
            if twin is not None:
                grad = grad + twin.grad
            assert_grad_close(grad, param.grad, name)

    def test_damaged_step_matches_hand_built_twin(self, method: str) -> None:
        torch.manual_seed(0)
        adapter = TWO_VIEW_EXAMPLES[method].adapter(tiny_backbone(), FEATURES, 0.5)
        optimizer = torch.optim.SGD(adapter.parameters(), lr=0.06)
        adapter(*views(seed=1)).backward()  # one step, so twin and dense BN state differ
        optimizer.step()
        optimizer.zero_grad()

        dense = copy.deepcopy(adapter.wrapper.model)
        twin = hand_twin(adapter.wrapper)
        twin_stats = {k: v.clone() for k, v in adapter.wrapper.twin_norms.named_buffers()}
        x0, x1 = views(seed=2)
        loss = adapter(x0, x1)
        expected = TWO_VIEW_EXAMPLES[method].criterion()(dense(x0), twin(x1))
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)

        loss.backward()
        expected.backward()
        grads = expected_shared_grads(adapter.wrapper, dense, twin)
        for name, param in adapter.wrapper.named_parameters():
            torch.testing.assert_close(param.grad, grads[name], rtol=1e-4, atol=1e-6, msg=name)
        for name, _ in adapter.wrapper.named_masks():  # the twin's branch reaches them too
            assert twin.get_parameter(name).grad.abs().sum() > 0, name
        # The dense statistics saw x0 only; the twin's moved, with x1.
        for name, buffer in dense.named_buffers():
            torch.testing.assert_close(adapter.wrapper.model.get_buffer(name), buffer)
            if name.endswith(("running_mean", "running_var")):
                twin_buffer = adapter.wrapper.twin_norms.get_buffer(name)
                torch.testing.assert_close(twin_buffer, twin.get_buffer(name))
                assert not torch.equal(twin_buffer, twin_stats[name]), name


class TestTwoViewAdapter:
    def test_forward_is_the_loss_of_the_dense_and_twin_projections(self) -> None:
        torch.manual_seed(0)
        calls: list[tuple[Tensor, Tensor]] = []

        class Recording(nn.Module):
            def forward(self, z0: Tensor, z1: Tensor) -> Tensor:
                calls.append((z0.detach(), z1.detach()))
                return (z0 - z1).pow(2).mean()

        head = nn.Sequential(nn.Linear(FEATURES, 8), nn.BatchNorm1d(8))
        adapter = TwoViewAdapter(tiny_backbone(), FEATURES, 0.5, head=head, loss=Recording())
        assert adapter.wrapper.model.head is head
        dense = copy.deepcopy(adapter.wrapper.model)
        twin = hand_twin(adapter.wrapper)
        x0, x1 = views()
        adapter(x0, x1)
        (z0, z1), *rest = calls
        assert rest == []
        torch.testing.assert_close(z0, dense(x0))
        torch.testing.assert_close(z1, twin(x1))

    def test_the_issue_example_barlow_twins_with_lightly_parts(self) -> None:
        adapter = TwoViewAdapter(
            tiny_backbone(),
            FEATURES,
            0.5,
            head=BarlowTwinsProjectionHead(FEATURES, 32, 32),
            loss=BarlowTwinsLoss(),
        )
        loss = adapter(*views())
        loss.backward()
        assert torch.isfinite(loss) and not adapter.baseline

    def test_simclr_adapter_is_a_two_view_adapter(self) -> None:
        assert issubclass(SimCLRAdapter, TwoViewAdapter)
        assert SimCLRAdapter.forward is TwoViewAdapter.forward

    @pytest.mark.parametrize("missing", ["head", "loss"])
    def test_head_and_loss_are_required(self, missing: str) -> None:
        options: dict[str, Any] = {"head": nn.Linear(FEATURES, 8), "loss": BarlowTwinsLoss()}
        del options[missing]
        message = f"{missing} must be a torch.nn.Module, got None. TwoViewAdapter has no default"
        with pytest.raises(TypeError, match=message):
            TwoViewAdapter(tiny_backbone(), FEATURES, **options)
        with pytest.raises(TypeError, match=message):
            TwoViewAdapter(tiny_backbone(), FEATURES, **options, **{missing: None})

    @pytest.mark.parametrize(
        ("kwargs", "error", "message"),
        [
            ({"head": "mlp"}, TypeError, "head must be a torch.nn.Module, got str."),
            ({"loss": print}, TypeError, "loss must be a torch.nn.Module"),
            ({"feature_dim": 0}, ValueError, "feature_dim must be positive, got feature_dim=0"),
            (
                {"loss": NTXentLoss(memory_bank_size=(64, 8))},
                ValueError,
                "loss has a memory bank, but TwoViewAdapter contrasts within the batch",
            ),
        ],
    )
    def test_invalid_arguments(
        self, kwargs: dict[str, Any], error: type[Exception], message: str
    ) -> None:
        arguments: dict[str, Any] = {
            "backbone": tiny_backbone(),
            "feature_dim": FEATURES,
            "head": nn.Linear(FEATURES, 8),
            "loss": BarlowTwinsLoss(),
            **kwargs,
        }
        with pytest.raises(error, match=re.escape(message)):
            TwoViewAdapter(**arguments)


class TestChannelDamage:
    def test_compact_channel_twin_through_a_two_view_method(self) -> None:
        torch.manual_seed(0)
        backbone = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        damage = ChannelDamage(0.5, example_inputs=torch.randn(2, 3, 8, 8))
        model = VICRegAdapter(backbone, 16, damage=damage)
        assert damage.compact_active
        assert model.wrapper.channel_sparsity == pytest.approx(0.5, abs=0.05)
        loss = model(torch.randn(8, 3, 8, 8), torch.randn(8, 3, 8, 8))
        loss.backward()
        assert torch.isfinite(loss)
        assert all(p.grad is not None for p in backbone.parameters())
