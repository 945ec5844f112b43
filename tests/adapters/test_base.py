"""What all adapters share: construction, cost, the dense model, errors."""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch
from torch import nn

from selfdamage import SelfDamagingWrapper, WeightDamage
from selfdamage.adapters import ADAPTERS as REGISTERED
from selfdamage.adapters import (
    BarlowTwinsAdapter,
    BYOLAdapter,
    DCLAdapter,
    DCLWAdapter,
    DINOAdapter,
    MoCoAdapter,
    MomentumAdapter,
    NNCLRAdapter,
    SimCLRAdapter,
    SimSiamAdapter,
    TiCoAdapter,
    VICRegAdapter,
)
from selfdamage.adapters._loss_options import memory_bank

from .helpers import FEATURES, tiny_backbone, views

ADAPTERS = list(REGISTERED.values())  # every registered method (test_registry names them)
# Losses that need 2 samples per view in any mode: Barlow Twins and VICReg normalize over
# the batch, DCL's one sample would have no negative.
Adapter = Any  # one of the classes above


def small_heads(cls: Adapter) -> dict[str, nn.Module]:
    """Narrow heads so that tests stay fast; each has BatchNorm, as the default heads do."""
    if cls in (BarlowTwinsAdapter, VICRegAdapter):
        return {"head": nn.Sequential(nn.Linear(FEATURES, 32), nn.BatchNorm1d(32), nn.ReLU())}
    if cls is BYOLAdapter:
        return {
            "head": nn.Sequential(
                nn.Linear(FEATURES, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 8)
            ),
            "predictor": nn.Sequential(
                nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 8)
            ),
        }
    if cls is TiCoAdapter:
        return {
            "head": nn.Sequential(
                nn.Linear(FEATURES, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 8)
            )
        }
    return {}


@pytest.mark.parametrize("cls", ADAPTERS)
class TestAdapters:
    def test_backbone_and_wrapper_are_exposed(self, cls: Adapter) -> None:
        backbone = tiny_backbone()
        adapter = cls(backbone, FEATURES, 0.5)
        assert adapter.backbone is backbone
        assert isinstance(adapter.wrapper, SelfDamagingWrapper)
        assert adapter.wrapper.model.backbone is backbone
        assert adapter.wrapper.sparsity == pytest.approx(0.5, abs=0.01)

    def test_default_heads_are_not_pruned(self, cls: Adapter) -> None:
        adapter = cls(tiny_backbone(), FEATURES, 0.5)
        names = [name for name, _ in adapter.wrapper.named_masks()]
        assert names == ["backbone.0.weight", "backbone.3.weight"]

    def test_prunable_predicate_sees_encoder_names(self, cls: Adapter) -> None:
        def head_linears(name: str, module: nn.Module) -> bool:
            return name.startswith("head.") and isinstance(module, nn.Linear)

        adapter = cls(tiny_backbone(), FEATURES, 0.5, prunable=head_linears)
        names = [name for name, _ in adapter.wrapper.named_masks()]
        assert names and all(name.startswith("head.") for name in names)

    @pytest.mark.parametrize("baseline", [False, True])
    def test_one_step_runs_the_backbone_twice_and_uses_every_parameter(
        self, cls: Adapter, baseline: bool
    ) -> None:
        torch.manual_seed(0)
        adapter = cls(tiny_backbone(), FEATURES, 0.5, baseline=baseline, **small_heads(cls))
        calls = {"online": 0, "momentum": 0}
        adapter.backbone.register_forward_hook(
            lambda *_: calls.__setitem__("online", calls["online"] + 1)
        )
        momentum = isinstance(adapter, MomentumAdapter)
        if momentum:
            adapter.momentum_encoder.backbone.register_forward_hook(
                lambda *_: calls.__setitem__("momentum", calls["momentum"] + 1)
            )
        loss = adapter(*views())
        assert loss.shape == () and torch.isfinite(loss)
        loss.backward()
        assert calls == {"online": 2, "momentum": 2 if momentum else 0}
        # No parameter goes unused, so DDP needs no find_unused_parameters.
        unused = [n for n, p in adapter.named_parameters() if p.requires_grad and p.grad is None]
        assert unused == []
        twin_params = [n for n, _ in adapter.named_parameters() if ".twin_norms." in n]
        assert bool(twin_params) != baseline

    def test_baseline_never_runs_the_twin(
        self, cls: Adapter, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        adapter = cls(tiny_backbone(), FEATURES, 0.5, baseline=True, **small_heads(cls))

        def fail(*_: object) -> None:
            raise AssertionError("damaged() called with baseline=True")

        monkeypatch.setattr(adapter.wrapper, "damaged", fail)
        adapter(*views())

    def test_embed_is_the_dense_backbone_and_keeps_the_mode(self, cls: Adapter) -> None:
        backbone = tiny_backbone()
        adapter = cls(backbone, FEATURES, 0.5, **small_heads(cls))
        x, _ = views()
        adapter.eval()
        with torch.no_grad():
            torch.testing.assert_close(adapter.embed(x), backbone(x).flatten(1), rtol=0, atol=0)
        assert not backbone.training
        adapter.train()
        adapter.embed(x)
        assert backbone.training

    def test_refresh_mask_counts_and_reprunes(self, cls: Adapter) -> None:
        adapter = cls(tiny_backbone(), FEATURES, 0.5)
        before = {n: m.clone() for n, m in adapter.wrapper.named_masks()}
        assert int(adapter.wrapper.refresh_count) == 1
        with torch.no_grad():
            for p in adapter.backbone.parameters():
                p.copy_(torch.randn_like(p))
        adapter.refresh_mask()
        assert int(adapter.wrapper.refresh_count) == 2
        assert any(not torch.equal(before[n], m) for n, m in adapter.wrapper.named_masks())

    def test_state_dict_restores_masks_and_twin(self, cls: Adapter) -> None:
        torch.manual_seed(0)
        adapter = cls(tiny_backbone(), FEATURES, 0.5, **small_heads(cls))
        adapter(*views()).backward()  # moves the twin's running statistics
        torch.manual_seed(1)
        fresh = cls(tiny_backbone(), FEATURES, 0.5, **small_heads(cls))
        fresh.load_state_dict(adapter.state_dict())
        for (name, mask), (_, restored) in zip(
            adapter.wrapper.named_masks(), fresh.wrapper.named_masks()
        ):
            assert torch.equal(mask, restored), name
        for key, value in adapter.wrapper.twin_norms.state_dict().items():
            torch.testing.assert_close(fresh.wrapper.twin_norms.state_dict()[key], value)

    def test_feature_dim_mismatch_is_explained_at_forward(self, cls: Adapter) -> None:
        backbone = nn.Sequential(nn.Conv2d(3, FEATURES, 3))  # a map, no pooling
        adapter = cls(backbone, FEATURES, 0.5, **small_heads(cls))
        with pytest.raises(ValueError, match=r"flattens to 1600 features .* feature_dim=16"):
            adapter(*views())

    @pytest.mark.parametrize(
        ("kwargs", "error", "message"),
        [
            ({"backbone": "resnet"}, TypeError, "backbone must be a torch.nn.Module, got str"),
            ({"feature_dim": 0}, ValueError, "feature_dim must be positive, got feature_dim=0"),
            ({"feature_dim": 16.0}, TypeError, "feature_dim must be an int"),
            ({"feature_dim": True}, TypeError, "feature_dim must be an int"),
            ({"head": "mlp"}, TypeError, "head must be a torch.nn.Module, got str"),
            ({"loss": print}, TypeError, "loss must be a torch.nn.Module"),
            ({"damage": 1}, TypeError, "damage must be a selfdamage.damage.Damage strategy"),
            ({"baseline": 1}, TypeError, "baseline must be a bool"),
            ({"damage": WeightDamage(0.5), "prunable": nn.Linear}, ValueError, "prunable="),
            ({"twin_norm": "yes"}, TypeError, "twin_norm must be a bool"),
            ({"prune_ratio": 1.0}, ValueError, "prune_ratio must be in"),
            ({"random_ratio": 0.9}, ValueError, "random_ratio must be in"),
        ],
    )
    def test_invalid_arguments(
        self, cls: Adapter, kwargs: dict[str, Any], error: type[Exception], message: str
    ) -> None:
        arguments: dict[str, Any] = {
            "backbone": tiny_backbone(),
            "feature_dim": FEATURES,
            "prune_ratio": 0.5,
            **kwargs,
        }
        with pytest.raises(error, match=re.escape(message)):
            cls(**arguments)

    def test_wrapped_backbone_is_rejected(self, cls: Adapter) -> None:
        wrapped = nn.Sequential(SelfDamagingWrapper(tiny_backbone(), 0.5))
        with pytest.raises(TypeError, match="backbone contains a SelfDamagingWrapper"):
            cls(wrapped, FEATURES)

    def test_lazy_backbone_is_rejected(self, cls: Adapter) -> None:
        lazy = nn.Sequential(nn.LazyConv2d(3, 1), tiny_backbone())
        with pytest.raises(ValueError, match=r"uninitialized \(lazy\).*'backbone\.0\.weight'"):
            cls(lazy, FEATURES)


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("cls", ADAPTERS)
class TestViewsCheck:
    """Bad view pairs are rejected before any pass: no state changes, one message."""

    @pytest.mark.parametrize(
        ("n0", "n1", "message"),
        [
            (4, 3, "x0 and x1 must have the same batch size, got x0.shape[0]=4 and x1.shape[0]=3."),
            (3, 4, "got x0.shape[0]=3 and x1.shape[0]=4."),
            (0, 0, "x0 and x1 must hold at least one sample, got x0.shape[0]=0."),
        ],
    )
    def test_mismatched_or_empty_views_fail_before_any_pass(
        self, cls: Adapter, n0: int, n1: int, message: str
    ) -> None:
        adapter = cls(tiny_backbone(), FEATURES, 0.5, **small_heads(cls))
        before = _state(adapter)
        x0, x1 = torch.randn(n0, 3, 12, 12), torch.randn(n1, 3, 12, 12)
        with pytest.raises(ValueError, match=re.escape(message)):
            adapter(x0, x1)
        after = _state(adapter)
        assert all(torch.equal(after[k], v) for k, v in before.items())  # no BN update
        bank = memory_bank(adapter.loss)
        if bank is not None:  # MoCo: nothing enqueued
            assert int(bank.bank_ptr) == 0
        if cls is NNCLRAdapter:  # the support set: nothing enqueued
            assert int(adapter.memory_bank.bank_ptr) == 0

    @pytest.mark.parametrize(
        ("x1", "error", "message"),
        [
            (
                lambda x0: list(x0),
                TypeError,
                "x1 must be a torch.Tensor like x0, got list. Stack the views of a batch "
                "into one tensor of x0's shape (4, 3, 12, 12)",
            ),
            (
                lambda x0: x0.double(),
                ValueError,
                "x0 and x1 must have the same dtype, got x0.dtype=torch.float32 and "
                "x1.dtype=torch.float64.",
            ),
            (
                lambda x0: x0[:, :1],
                ValueError,
                "x0 and x1 must have the same shape, got x0.shape=(4, 3, 12, 12) and "
                "x1.shape=(4, 1, 12, 12).",
            ),
            (
                lambda x0: x0[:, :, :8, :8],
                ValueError,
                "x0 and x1 must have the same shape, got x0.shape=(4, 3, 12, 12) and "
                "x1.shape=(4, 3, 8, 8).",
            ),
        ],
    )
    def test_views_of_another_kind_fail_before_any_pass(
        self, cls: Adapter, x1: Any, error: type[Exception], message: str
    ) -> None:
        adapter = cls(tiny_backbone(), FEATURES, 0.5, **small_heads(cls))
        before = _state(adapter)
        x0 = torch.randn(4, 3, 12, 12)
        with pytest.raises(error, match=re.escape(message)):
            adapter(x0, x1(x0))
        with pytest.raises(TypeError, match=re.escape("x0 must be a torch.Tensor like x1")):
            adapter([x0], x0)
        after = _state(adapter)
        assert all(torch.equal(after[k], v) for k, v in before.items())  # no BN update
        bank = memory_bank(adapter.loss)
        if bank is not None:  # MoCo: nothing enqueued
            assert int(bank.bank_ptr) == 0

    def test_scalar_view_is_rejected(self, cls: Adapter) -> None:
        adapter = cls(tiny_backbone(), FEATURES, 0.5, **small_heads(cls))
        with pytest.raises(ValueError, match=re.escape("x0 must have a batch dimension")):
            adapter(torch.tensor(1.0), torch.tensor(1.0))

    def test_batch_of_one_with_batchnorm_in_training_is_explained(self, cls: Adapter) -> None:
        adapter = cls(tiny_backbone(), FEATURES, 0.5, **small_heads(cls))
        x0, x1 = views(1)
        if cls in (MoCoAdapter, DINOAdapter):  # no BatchNorm1d in their default heads: runs
            adapter(x0, x1)
            return
        before = _state(adapter)
        with pytest.raises(ValueError, match=r"at least 2 samples .* BatchNorm1d .* head"):
            adapter(x0, x1)
        after = _state(adapter)
        assert all(torch.equal(after[k], v) for k, v in before.items())
        adapter.eval()
        needs_two = {  # the loss needs 2 samples in eval mode too (DCL's would be -inf)
            TiCoAdapter: "TiCoLoss needs a batch covariance",
            DCLAdapter: "DCL contrasts each sample with the batch's other samples",
            DCLWAdapter: "DCL contrasts each sample with the batch's other samples",
            VICRegAdapter: "VICReg's variance and covariance terms are statistics",
            BarlowTwinsAdapter: "Barlow Twins normalizes each projection feature",
        }
        if cls in needs_two:
            before = _state(adapter)
            with pytest.raises(ValueError, match=f"at least 2 samples.*{needs_two[cls]}"):
                adapter(x0, x1)
            after = _state(adapter)
            assert all(torch.equal(after[k], v) for k, v in before.items())
            return
        with torch.no_grad():
            assert torch.isfinite(adapter(x0, x1))  # eval mode: running statistics, fine

    def test_issue_example_moco_with_bank(self, cls: Adapter) -> None:
        if cls is not MoCoAdapter:
            pytest.skip("the issue's MoCo example")
        backbone = nn.Sequential(tiny_backbone(), nn.Flatten())
        adapter = MoCoAdapter(backbone, feature_dim=16, memory_bank_size=64)
        with pytest.raises(ValueError, match="same batch size"):
            adapter(torch.randn(4, 3, 16, 16), torch.randn(3, 3, 16, 16))
        assert int(adapter.loss.memory_bank.bank_ptr) == 0


@pytest.mark.parametrize("cls", [SimCLRAdapter, MoCoAdapter, NNCLRAdapter, DCLAdapter])
@pytest.mark.parametrize("temperature", [0.0, -0.1])
def test_non_positive_temperature_is_rejected(cls: Adapter, temperature: float) -> None:
    # lightly's NTXentLoss only rejects |temperature| < 1e-8: -0.1 would flip the objective.
    with pytest.raises(ValueError, match=r"temperature must be > 0\.0, got temperature="):
        cls(tiny_backbone(), FEATURES, temperature=temperature)


@pytest.mark.parametrize("cls", [SimCLRAdapter, MoCoAdapter, NNCLRAdapter, DCLAdapter])
@pytest.mark.parametrize("temperature", [float("nan"), float("inf")])
def test_non_finite_temperature_is_rejected(cls: Adapter, temperature: float) -> None:
    with pytest.raises(ValueError, match=r"temperature must be a finite number > 0\.0, got"):
        cls(tiny_backbone(), FEATURES, temperature=temperature)


@pytest.mark.parametrize("cls", [BYOLAdapter, SimSiamAdapter, NNCLRAdapter])
@pytest.mark.parametrize(("takes", "gives"), [(8, 16), (16, 8)])
def test_predictor_of_another_size_is_rejected_at_construction(
    cls: Adapter, takes: int, gives: int
) -> None:
    head = nn.Sequential(nn.Linear(FEATURES, 32), nn.ReLU(), nn.Linear(32, 8))
    predictor = nn.Sequential(nn.Linear(takes, 32), nn.ReLU(), nn.Linear(32, gives))
    message = f"predictor maps {takes} features to {gives}, but the head's projections have 8"
    with pytest.raises(ValueError, match=message):
        cls(tiny_backbone(), FEATURES, 0.5, head=head, predictor=predictor)
    fitting = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 8))
    cls(tiny_backbone(), FEATURES, 0.5, head=head, predictor=fitting)(*views(4))


@pytest.mark.parametrize("name", ["moco", "byol", "tico", "dino"])
def test_momentum_head_is_not_an_option(name: str) -> None:
    # The momentum head comes from the method (a copy of the head, DINO's teacher).
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(12, 8))
    with pytest.raises(TypeError, match="unexpected keyword argument 'momentum_head'"):
        REGISTERED[name](backbone, 8, momentum_head=nn.Linear(8, 8))
