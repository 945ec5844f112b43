"""``adapter(x0, x1, return_per_sample=True)``: each sample's loss, from the step's own loss calls.

Every per-sample value is compared with a reference written here from the method's formula
(loops over anchors, pairs and views), on the inputs the adapter's loss received: the dense
and the twin projections, the momentum targets, the bank, center or covariance before the
step. The mean is compared with the loss lightly's loss module returned (1e-6 absolute and
relative; float32). The twin pairing itself is checked with a twin built by hand.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from lightly.loss import BarlowTwinsLoss, DINOLoss, NTXentLoss
from lightly.models.modules import BarlowTwinsProjectionHead
from torch import Tensor, nn

from selfdamage import ChannelDamage
from selfdamage.adapters import (
    ADAPTERS,
    BYOLAdapter,
    DCLAdapter,
    DCLWAdapter,
    DINOAdapter,
    MoCoAdapter,
    NNCLRAdapter,
    SelfDamagingAdapter,
    SimCLRAdapter,
    SimSiamAdapter,
    TiCoAdapter,
    TwoViewAdapter,
)
from selfdamage.longtail.temperature import CosineTemperature

from .helpers import FEATURES, hand_twin, tiny_backbone, views

N = 8
TOL = {"rtol": 1e-6, "atol": 1e-6}
OPTIONS: dict[str, dict[str, Any]] = {
    "moco": {"memory_bank_size": 32},
    "nnclr": {"memory_bank_size": 32},
}
PER_SAMPLE = ["byol", "dcl", "dclw", "dino", "moco", "nnclr", "simclr", "simsiam", "tico"]
BATCH_LEVEL = {
    "barlowtwins": "BarlowTwinsAdapter: its loss, BarlowTwinsLoss, is a function of the whole "
    "batch's cross-correlation matrix",
    "vicreg": "VICRegAdapter: its loss, VICRegLoss, has variance and covariance terms",
}


@pytest.fixture(autouse=True)
def quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # coverage notes, lightly's torch.tensor
        yield


def build(name: str, seed: int = 0, **kwargs: Any) -> SelfDamagingAdapter:
    torch.manual_seed(seed)
    return ADAPTERS[name](tiny_backbone(), FEATURES, 0.5, **{**OPTIONS.get(name, {}), **kwargs})


def warm(adapter: SelfDamagingAdapter) -> None:
    """One step, so banks, covariance and center hold values and twin BN state differs."""
    optimizer = torch.optim.SGD(adapter.parameters(), lr=0.1)
    adapter(*views(N, seed=1)).backward()
    optimizer.step()
    optimizer.zero_grad()


class LossCalls:
    """The inputs of every call of an adapter's loss and the state the call started from."""

    def __init__(self, adapter: SelfDamagingAdapter) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]] = []
        self.handle = adapter.loss.register_forward_pre_hook(self.record, with_kwargs=True)

    def record(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        def frozen(x: Any) -> Any:
            return [frozen(t) for t in x] if isinstance(x, list) else x.detach().clone()

        state = {k: v.detach().clone() for k, v in module.state_dict(keep_vars=True).items()}
        state["temperature"] = getattr(module, "temperature", None)
        self.calls.append((tuple(frozen(a) for a in args), dict(kwargs), state))


# The references: each method's per-sample loss written from its formula.


def ntxent_reference(z0: Tensor, z1: Tensor, t: float) -> Tensor:
    """Sample i: the mean of its two anchors' NT-Xent, every other one of 2N a negative."""
    w = F.normalize(torch.cat([z0, z1]), dim=1).double()
    n = len(z0)
    losses = torch.zeros(n, dtype=torch.float64)
    for i in range(n):
        for a, p in ((i, i + n), (i + n, i)):
            logits = torch.stack([w[a] @ w[k] / t for k in range(2 * n) if k != a])
            positive = w[a] @ w[p] / t
            losses[i] += (torch.logsumexp(logits, 0) - positive) / 2
    return losses


def dcl_reference(z0: Tensor, z1: Tensor, t: float, sigma: float | None) -> Tensor:
    """As NT-Xent without the positive in the denominator; DCLW weights the positive term."""
    u, v = F.normalize(z0, dim=1).double(), F.normalize(z1, dim=1).double()
    n = len(z0)
    weight = torch.ones(n, dtype=torch.float64)
    if sigma is not None:  # the negative von Mises-Fisher weight, the same for both anchors
        weight = 2 - n * torch.softmax((u * v).sum(1) / sigma, 0)
    w = torch.cat([u, v])
    losses = torch.zeros(n, dtype=torch.float64)
    for i in range(n):
        for a, p in ((i, i + n), (i + n, i)):
            logits = torch.stack([w[a] @ w[k] / t for k in range(2 * n) if k not in (a, p)])
            losses[i] += (torch.logsumexp(logits, 0) - weight[i] * (w[a] @ w[p]) / t) / 2
    return losses


def queue_reference(q: Tensor, k: Tensor, bank: Tensor, t: float) -> Tensor:
    """Each query's InfoNCE: its key against the bank's keys."""
    q, k, bank = (F.normalize(x, dim=1).double() for x in (q, k, bank))
    rows = []
    for i in range(len(q)):
        logits = torch.cat([(q[i] @ k[i]).view(1), bank @ q[i]]) / t
        rows.append(torch.logsumexp(logits, 0) - logits[0])
    return torch.stack(rows)


def negative_cosine_reference(p: Tensor, z: Tensor) -> Tensor:
    return torch.stack([-(a @ b) / (a.norm() * b.norm()) for a, b in zip(p.double(), z.double())])


def tico_reference(za: Tensor, zb: Tensor, c: Tensor, beta: float, rho: float) -> Tensor:
    u, v = F.normalize(za, dim=1).double(), F.normalize(zb, dim=1).double()
    mixed = beta * c.double() + (1 - beta) * sum(torch.outer(x, x) for x in u) / len(u)
    return torch.stack([1 - a @ b + rho * (a @ mixed @ a) for a, b in zip(u, v)])


def dino_reference(
    teacher: list[Tensor], student: list[Tensor], center: Tensor, teacher_temp: float = 0.04
) -> Tensor:
    """Teacher view i against student view j != i (two views: 2 pairs), per sample."""
    losses = torch.zeros(len(teacher[0]), dtype=torch.float64)
    for i, t in enumerate(teacher):
        target = F.softmax((t.double() - center.double().view(1, -1)) / teacher_temp, dim=1)
        for j, s in enumerate(student):
            if i != j:
                losses -= (target * F.log_softmax(s.double() / 0.1, dim=1)).sum(1) / 2
    return losses


def reference(name: str, adapter: SelfDamagingAdapter, calls: LossCalls) -> Tensor:
    """The per-sample losses of the recorded calls, as the method's formula gives them."""
    terms = []
    for args, _, state in calls.calls:
        if name in ("simclr", "nnclr"):
            terms.append(ntxent_reference(*args, state["temperature"]))
        elif name in ("dcl", "dclw"):
            terms.append(
                dcl_reference(*args, state["temperature"], 0.5 if name == "dclw" else None)
            )
        elif name == "moco":
            rows = queue_reference(*args, state["memory_bank.bank"], state["temperature"])
            terms.append(rows.view(2, -1).mean(0))  # q0 against k1, then q1 against k0
        elif name in ("byol", "simsiam"):
            terms.append(negative_cosine_reference(*args))
        elif name == "tico":
            terms.append(tico_reference(*args, state["C"], 0.9, 8.0))
        elif name == "dino":
            terms.append(dino_reference(*args, state["center"]))
    return torch.stack(terms).mean(0).float()


class TestPerSampleValues:
    @pytest.mark.parametrize("name", PER_SAMPLE)
    def test_each_value_is_the_methods_formula_and_the_mean_is_lightlys_loss(
        self, name: str
    ) -> None:
        adapter = build(name)
        warm(adapter)
        calls = LossCalls(adapter)
        loss, per_sample = adapter(*views(N, seed=2), return_per_sample=True)
        expected_calls = {"simclr": 1, "dcl": 1, "dclw": 1, "moco": 1, "dino": 1}.get(name, 2)
        assert len(calls.calls) == expected_calls
        assert per_sample.shape == (N,)
        assert per_sample.dtype == torch.float32
        assert not per_sample.requires_grad
        assert loss.requires_grad and loss.shape == ()
        torch.testing.assert_close(
            per_sample, reference(name, adapter, calls), rtol=1e-5, atol=1e-5
        )
        torch.testing.assert_close(per_sample.mean(), loss.detach(), **TOL)

    def test_the_pair_is_dense_view_against_twin_view(self) -> None:
        # Independent of the loss's inputs: z0 from a dense copy, z1 from a twin built by hand.
        adapter = build("simclr")
        warm(adapter)
        dense, twin = copy.deepcopy(adapter.wrapper.model), hand_twin(adapter.wrapper)
        x0, x1 = views(N, seed=2)
        _, per_sample = adapter(x0, x1, return_per_sample=True)
        with torch.no_grad():
            expected = ntxent_reference(dense(x0), twin(x1), 0.2).float()
        torch.testing.assert_close(per_sample, expected, rtol=1e-5, atol=1e-5)
        with torch.no_grad():  # not the dense-dense pair
            dense_pair = ntxent_reference(dense(x0), dense(x1), 0.2).float()
        assert not torch.allclose(per_sample, dense_pair, atol=1e-3)

    def test_moco_queries_meet_the_bank_before_the_step(self) -> None:
        adapter = build("moco")
        warm(adapter)
        dense, twin = copy.deepcopy(adapter.wrapper.model), hand_twin(adapter.wrapper)
        momentum = copy.deepcopy(adapter.momentum_encoder)
        bank = adapter.loss.memory_bank.bank.clone()
        x0, x1 = views(N, seed=2)
        _, per_sample = adapter(x0, x1, return_per_sample=True)
        with torch.no_grad():
            q0, q1, k0, k1 = dense(x0), twin(x1), momentum(x0), momentum(x1)
        dense_query, twin_query = (
            queue_reference(q0, k1, bank, 0.2),
            queue_reference(q1, k0, bank, 0.2),
        )
        torch.testing.assert_close(per_sample, ((dense_query + twin_query) / 2).float(), **TOL)

    @pytest.mark.parametrize(
        "adapter_type", [SimCLRAdapter, DCLAdapter, DCLWAdapter, MoCoAdapter, NNCLRAdapter]
    )
    def test_the_scheduled_temperature_is_used(
        self, adapter_type: type[SelfDamagingAdapter]
    ) -> None:
        schedule = CosineTemperature(tau_min=0.1, tau_max=1.0, period_epochs=8)
        for _ in range(3):
            schedule.step()
        tau = 0.1 + 0.45 * (1 + math.cos(math.pi * 3 / 4))  # Kukleva et al.'s cosine at epoch 3
        name = next(key for key, value in ADAPTERS.items() if value is adapter_type)
        adapter = build(name, temperature=schedule)
        calls = LossCalls(adapter)
        loss, per_sample = adapter(*views(N, seed=2), return_per_sample=True)
        assert all(state["temperature"] == pytest.approx(tau) for _, _, state in calls.calls)
        torch.testing.assert_close(
            per_sample, reference(name, adapter, calls), rtol=1e-5, atol=1e-5
        )
        torch.testing.assert_close(per_sample.mean(), loss.detach(), **TOL)

    def test_dino_epoch_reaches_the_teacher_temperature(self) -> None:
        # float64: a teacher temperature of 0.02 over 2048 outputs rounds to ~2e-6 in float32.
        torch.manual_seed(0)
        loss_fn = DINOLoss(2048, warmup_teacher_temp=0.02, warmup_teacher_temp_epochs=5)
        adapter = DINOAdapter(tiny_backbone(), FEATURES, 0.5, loss=loss_fn).double()
        x0, x1 = (x.double() for x in views(N, seed=2))
        calls = LossCalls(adapter)
        warm_up, per_sample = adapter(x0, x1, epoch=0, return_per_sample=True)
        (teacher, student), _, state = calls.calls[0]
        expected = dino_reference(teacher, student, state["center"], teacher_temp=0.02)
        # 1e-7: lightly's teacher temperatures are float32 tensors (0.02 to about 8 digits)
        torch.testing.assert_close(per_sample, expected, rtol=1e-7, atol=1e-7)
        torch.testing.assert_close(per_sample.mean(), warm_up.detach(), rtol=1e-9, atol=1e-9)
        final, per_sample = adapter(x0, x1, epoch=5, return_per_sample=True)
        (teacher, student), _, state = calls.calls[1]
        expected = dino_reference(teacher, student, state["center"], teacher_temp=0.04)
        torch.testing.assert_close(per_sample, expected, rtol=1e-7, atol=1e-7)
        torch.testing.assert_close(per_sample.mean(), final.detach(), rtol=1e-9, atol=1e-9)

    @pytest.mark.parametrize("damage", ["channel", "baseline"])
    def test_composes_with_channel_damage_and_the_baseline(self, damage: str) -> None:
        # The pair is whatever the step contrasts: the compact twin's view, or (baseline,
        # BCL-I) a second dense view.
        torch.manual_seed(0)
        options: dict[str, Any] = {"baseline": True}
        if damage == "channel":
            options = {"damage": ChannelDamage(0.5, example_inputs=torch.randn(2, 3, 12, 12))}
        adapter = SimCLRAdapter(tiny_backbone(), FEATURES, **options)
        twin = adapter.wrapper if damage == "baseline" else adapter.wrapper.damaged
        x0, x1 = views(N)
        _, per_sample = adapter(x0, x1, return_per_sample=True)
        with torch.no_grad():
            expected = ntxent_reference(adapter.wrapper(x0), twin(x1), 0.2).float()
        torch.testing.assert_close(per_sample, expected, rtol=1e-5, atol=1e-5)

    def test_eval_without_gradient(self) -> None:
        adapter = build("byol").eval()
        with torch.no_grad():
            loss, per_sample = adapter(*views(N), return_per_sample=True)
        torch.testing.assert_close(per_sample.mean(), loss, **TOL)


class TestNothingElseChanges:
    @pytest.mark.parametrize("name", sorted(ADAPTERS))
    def test_default_call_and_the_option_give_the_same_loss_state_and_gradients(
        self, name: str
    ) -> None:
        adapter = build(name)
        warm(adapter)
        twin = copy.deepcopy(adapter)
        x0, x1 = views(N, seed=2)
        torch.manual_seed(5)
        plain = adapter(x0, x1)
        torch.manual_seed(5)
        if name in BATCH_LEVEL:
            assert torch.equal(plain, twin(x0, x1, return_per_sample=False))
            return
        loss, _ = twin(x0, x1, return_per_sample=True)
        assert torch.equal(plain, loss)
        plain.backward()
        loss.backward()
        for (key, a), b in zip(adapter.state_dict().items(), twin.state_dict().values()):
            assert torch.equal(a, b), key  # banks, covariance, center, BN statistics
        for (key, a), b in zip(adapter.named_parameters(), twin.parameters()):
            assert (a.grad is None and b.grad is None) or torch.equal(a.grad, b.grad), key

    @pytest.mark.parametrize("name", PER_SAMPLE)
    def test_no_pass_is_added(self, name: str) -> None:
        adapter = build(name)
        modules = [adapter.backbone] + [
            module for key, module in adapter.named_children() if key == "momentum_encoder"
        ]
        counts = [0] * len(modules)

        def counter(i: int) -> Callable[..., None]:
            def count(*_: Any) -> None:
                counts[i] += 1

            return count

        for i, module in enumerate(modules):
            module.register_forward_hook(counter(i))
        adapter(*views(N))
        plain = list(counts)
        adapter(*views(N), return_per_sample=True)
        assert [c - p for c, p in zip(counts, plain)] == plain
        assert plain[0] == 2  # one dense pass, one twin pass

    def test_return_per_sample_must_be_a_bool(self) -> None:
        with pytest.raises(TypeError, match="return_per_sample must be a bool"):
            build("simclr")(*views(N), return_per_sample=1)


class TestBatchLevelLossesAreRefused:
    @pytest.mark.parametrize("name", sorted(BATCH_LEVEL))
    def test_refused_before_any_pass(self, name: str) -> None:
        adapter = build(name)
        before = copy.deepcopy(adapter.state_dict())
        passes: list[int] = []
        adapter.backbone.register_forward_hook(lambda *_: passes.append(1))
        message = f"return_per_sample=True is not available for {BATCH_LEVEL[name]}"
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            adapter(*views(N), return_per_sample=True)
        assert not passes
        for key, value in adapter.state_dict().items():
            assert torch.equal(value, before[key]), key


class TestTwoViewAdapterWithYourLoss:
    def make(self, loss: nn.Module, head: nn.Module | None = None) -> TwoViewAdapter:
        torch.manual_seed(0)
        return TwoViewAdapter(
            tiny_backbone(), FEATURES, 0.5, head=head or nn.Linear(FEATURES, 8), loss=loss
        )

    def test_a_loss_with_a_per_sample_method(self) -> None:
        class Distance(nn.Module):
            def per_sample(self, z0: Tensor, z1: Tensor) -> Tensor:
                return (z0 - z1).pow(2).sum(1)

            def forward(self, z0: Tensor, z1: Tensor) -> Tensor:
                return self.per_sample(z0, z1).mean()

        adapter = self.make(Distance())
        dense, twin = copy.deepcopy(adapter.wrapper.model), hand_twin(adapter.wrapper)
        x0, x1 = views(N)
        loss, per_sample = adapter(x0, x1, return_per_sample=True)
        with torch.no_grad():
            expected = torch.stack([(a - b).pow(2).sum() for a, b in zip(dense(x0), twin(x1))])
        torch.testing.assert_close(per_sample, expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(per_sample.mean(), loss.detach(), **TOL)

    def test_a_torch_loss_with_reduction_mean(self) -> None:
        adapter = self.make(nn.MSELoss())
        loss, per_sample = adapter(*views(N), return_per_sample=True)
        assert adapter.loss.reduction == "mean"  # restored
        assert per_sample.shape == (N,)
        torch.testing.assert_close(per_sample.mean(), loss.detach(), **TOL)

    def test_lightly_ntxent_given_as_loss(self) -> None:
        adapter = self.make(NTXentLoss(temperature=0.3))
        calls = LossCalls(adapter)
        _, per_sample = adapter(*views(N), return_per_sample=True)
        torch.testing.assert_close(
            per_sample, ntxent_reference(*calls.calls[0][0], 0.3).float(), rtol=1e-5, atol=1e-5
        )

    def test_a_loss_without_per_sample_form_is_refused(self) -> None:
        class Spread(nn.Module):
            def forward(self, z0: Tensor, z1: Tensor) -> Tensor:
                return torch.cat([z0, z1]).var(0).sum()

        with pytest.raises(
            ValueError,
            match="not available for TwoViewAdapter: its loss, Spread, has no known "
            "per-sample form: give it a per_sample",
        ):
            self.make(Spread())(*views(N), return_per_sample=True)
        barlow = self.make(BarlowTwinsLoss(), BarlowTwinsProjectionHead(FEATURES, 32, 32))
        with pytest.raises(ValueError, match="BarlowTwinsLoss, is a function of the whole batch"):
            barlow(*views(N), return_per_sample=True)


@pytest.mark.parametrize("adapter_type", [BYOLAdapter, SimSiamAdapter, TiCoAdapter])
def test_non_contrastive_methods_give_per_sample_losses(
    adapter_type: type[SelfDamagingAdapter],
) -> None:
    # BYOL, SimSiam (negative cosine) and TiCo are means over samples too.
    torch.manual_seed(0)
    loss, per_sample = adapter_type(tiny_backbone(), FEATURES, 0.5)(
        *views(N), return_per_sample=True
    )
    torch.testing.assert_close(per_sample.mean(), loss.detach(), **TOL)
