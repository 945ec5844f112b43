from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import ddp_harness
import pytest
import torch
import torch.nn.functional as F
import torchvision
from lightly.models.utils import update_momentum
from torch import Tensor, nn
from torch.nn.utils import parametrize

from selfdamage import SelfDamagingWrapper, WeightDamage


class SmallNet(nn.Module):
    """Conv, BatchNorm2d, Linear and BatchNorm1d layers: every kind the wrapper touches."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 12)
        self.bn_fc = nn.BatchNorm1d(12)
        self.out = nn.Linear(12, 6)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.conv2(x)).mean((2, 3))
        return self.out(F.relu(self.bn_fc(self.fc(x))))


def reference_twin(
    net: SmallNet, masks: Mapping[str, Tensor], norm: Mapping[str, Tensor], x: Tensor, train: bool
) -> Tensor:
    """SmallNet's twin written out by hand: masked convs, BatchNorm from ``norm``."""

    def bn(h: Tensor, name: str) -> Tensor:
        return F.batch_norm(
            h,
            norm[f"{name}.running_mean"],
            norm[f"{name}.running_var"],
            norm[f"{name}.weight"],
            norm[f"{name}.bias"],
            training=train,
            momentum=0.1,
            eps=1e-5,
        )

    h = F.conv2d(x, net.conv1.weight * masks["conv1.weight"], None, padding=1)
    h = F.relu(bn(h, "bn1"))
    w2 = net.conv2.weight * masks["conv2.weight"]
    h = F.relu(F.conv2d(h, w2, net.conv2.bias, stride=2, padding=1)).mean((2, 3))
    return net.out(F.relu(bn(net.fc(h), "bn_fc")))


def twin_state(wrapper: SelfDamagingWrapper) -> dict[str, Tensor]:
    """The twin normalization state, keyed like the model's own norm state."""
    return dict(wrapper.twin_norms.named_parameters()) | dict(wrapper.twin_norms.named_buffers())


def ntxent(a: Tensor, b: Tensor, temperature: float = 0.5) -> Tensor:
    """Symmetric NT-Xent over 2N samples, written out (positives: a_i with b_i)."""
    z = F.normalize(torch.cat([a, b]), dim=1)
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))
    n = len(a)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, target)


@pytest.fixture
def net() -> SmallNet:
    torch.manual_seed(0)
    return SmallNet()


def images(n: int = 8, seed: int = 1) -> Tensor:
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


class TestDenseEquivalence:
    @pytest.mark.parametrize("train", [True, False])
    def test_resnet_bit_exact_with_same_updates(self, train: bool) -> None:
        torch.manual_seed(0)
        model = torchvision.models.resnet18(num_classes=10)
        bare = copy.deepcopy(model)
        wrapper = SelfDamagingWrapper(model, prune_ratio=0.9).train(train)
        bare.train(train)
        x = torch.randn(4, 3, 32, 32)
        assert torch.equal(wrapper(x), bare(x))
        for (name, a), (_, b) in zip(model.state_dict().items(), bare.state_dict().items()):
            assert torch.equal(a, b), name

    def test_mixed_layers_and_twin_state_untouched(self, net: SmallNet) -> None:
        bare = copy.deepcopy(net)
        wrapper = SelfDamagingWrapper(net, prune_ratio=0.5)
        twin_before = {k: v.clone() for k, v in twin_state(wrapper).items()}
        x = images()
        assert torch.equal(wrapper(x), bare(x))
        assert torch.equal(net.bn_fc.running_mean, bare.bn_fc.running_mean)
        assert net.bn1.num_batches_tracked.item() == 1
        for name, value in twin_state(wrapper).items():
            assert torch.equal(value, twin_before[name]), name

    def test_forwards_extra_arguments(self) -> None:
        class Scaled(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.conv = nn.Conv2d(1, 1, 1)

            def forward(self, x: Tensor, scale: float, *, shift: float = 0.0) -> Tensor:
                return self.conv(x) * scale + shift

        model = Scaled()
        wrapper = SelfDamagingWrapper(model, prune_ratio=0.0)
        x = torch.randn(1, 1, 2, 2)
        assert torch.equal(wrapper(x, 2.0, shift=1.0), model(x, 2.0, shift=1.0))
        assert torch.equal(wrapper.damaged(x, 2.0, shift=1.0), model(x, 2.0, shift=1.0))


class TestModelUntouched:
    def test_same_object_names_keys_and_no_hooks(self, net: SmallNet) -> None:
        keys_before = list(net.state_dict())
        names_before = [n for n, _ in net.named_parameters()]
        wrapper = SelfDamagingWrapper(net, prune_ratio=0.5)
        wrapper.damaged(images())
        wrapper.refresh_mask()
        assert wrapper.model is net and type(net) is SmallNet
        assert list(net.state_dict()) == keys_before
        assert [n for n, _ in net.named_parameters()] == names_before
        for module in net.modules():
            assert not parametrize.is_parametrized(module)
            assert not module._forward_hooks and not module._forward_pre_hooks
            assert not module._backward_hooks

    def test_optimizer_sees_twin_norm_parameters(self, net: SmallNet) -> None:
        wrapper = SelfDamagingWrapper(net, prune_ratio=0.5)
        ids = {id(p) for p in wrapper.parameters()}
        assert {id(p) for p in net.parameters()} <= ids
        assert {id(p) for p in wrapper.twin_norms.parameters()} <= ids
        # BatchNorm2d and BatchNorm1d: weight and bias each.
        assert len(list(wrapper.twin_norms.parameters())) == 4


class TestMasks:
    def test_mask_from_construction(self, net: SmallNet) -> None:
        wrapper = SelfDamagingWrapper(net, prune_ratio=0.5)
        n = net.conv1.weight.numel() + net.conv2.weight.numel()
        assert isinstance(wrapper.sparsity, float)
        assert abs(wrapper.sparsity * n - 0.5 * n) <= 1
        assert wrapper.damaged(images()).shape == (8, 6)

    def test_global_smallest_magnitudes(self, net: SmallNet) -> None:
        wrapper = SelfDamagingWrapper(net, prune_ratio=0.7)
        # Reference: a full sort of |w| over both convs (the wrapper uses kthvalue).
        flat = torch.cat([net.conv1.weight.flatten(), net.conv2.weight.flatten()]).abs()
        k = round(0.7 * flat.numel())
        expected_pruned = torch.zeros_like(flat, dtype=torch.bool)
        expected_pruned[torch.sort(flat, stable=True).indices[:k]] = True
        masks = dict(wrapper.named_masks())
        assert list(masks) == ["conv1.weight", "conv2.weight"]
        got_pruned = ~torch.cat([masks["conv1.weight"].flatten(), masks["conv2.weight"].flatten()])
        assert torch.equal(got_pruned, expected_pruned)
        assert all(m.dtype == torch.bool for m in masks.values())

    @pytest.mark.parametrize("prunable", [(nn.Conv2d, nn.Linear), lambda name, m: name == "fc"])
    def test_prunable_types_and_predicate(self, net: SmallNet, prunable: object) -> None:
        wrapper = SelfDamagingWrapper(net, prune_ratio=0.5, prunable=prunable)  # type: ignore[arg-type]
        names = [name for name, _ in wrapper.named_masks()]
        if isinstance(prunable, tuple):
            assert names == ["conv1.weight", "conv2.weight", "fc.weight", "out.weight"]
        else:
            assert names == ["fc.weight"]

    def test_refresh_is_not_cumulative(self, net: SmallNet) -> None:
        wrapper = SelfDamagingWrapper(net, prune_ratio=0.6)
        first = {k: v.clone() for k, v in wrapper.named_masks()}
        wrapper.refresh_mask()
        assert all(torch.equal(first[k], v) for k, v in wrapper.named_masks())
        with torch.no_grad():  # make the pruned weights the largest ones
            for name, mask in first.items():
                weight = net.get_parameter(name)
                weight.copy_(torch.where(mask, weight * 1e-3, weight * 1e3))
        wrapper.refresh_mask()
        n = sum(m.numel() for m in first.values())
        assert abs(wrapper.sparsity * n - 0.6 * n) <= 1  # still the ratio, not compounded
        assert all(not torch.equal(first[k], v) for k, v in wrapper.named_masks())

    def test_random_part_counts_and_seeding(self, net: SmallNet) -> None:
        wrapper = SelfDamagingWrapper(net, prune_ratio=0.6, random_ratio=0.3)
        masks = dict(wrapper.named_masks())
        flat = torch.cat([net.conv1.weight.flatten(), net.conv2.weight.flatten()]).abs()
        pruned = ~torch.cat([masks["conv1.weight"].flatten(), masks["conv2.weight"].flatten()])
        n = flat.numel()
        assert int(pruned.sum()) == round(0.6 * n)
        smallest = torch.sort(flat, stable=True).indices[: round(0.3 * n)]
        assert pruned[smallest].all()
        wrapper.refresh_mask()  # a new draw for the random part
        pruned_again = ~torch.cat([m.flatten() for _, m in wrapper.named_masks()])
        assert not torch.equal(pruned, pruned_again)

    def test_float64_model_keeps_the_larger_of_two_weights_equal_in_float32(self) -> None:
        model = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.Conv2d(1, 1, 1, bias=False))
        model = model.double()
        with torch.no_grad():  # 1 + 1e-12 == 1 in float32
            model[0].weight.fill_(1.0 + 1e-12)
            model[1].weight.fill_(1.0)
        with pytest.warns(UserWarning, match="masks every entry of '1.weight'"):
            wrapper = SelfDamagingWrapper(model, 0.5)
        masks = {name: mask.item() for name, mask in wrapper.named_masks()}
        assert masks == {"0.weight": True, "1.weight": False}

    def test_zero_ratio_twin_equals_dense(self, net: SmallNet) -> None:
        wrapper = SelfDamagingWrapper(net, prune_ratio=0.0)
        reference = copy.deepcopy(net)
        x = images()
        assert wrapper.sparsity == 0.0
        assert torch.equal(wrapper.damaged(x), reference(x))  # train mode: batch statistics
        for name in ("bn1", "bn_fc"):  # same statistics update, in the twin's own state
            ref_bn = reference.get_submodule(name)
            assert torch.equal(
                wrapper.twin_norms.get_buffer(f"{name}.running_mean"), ref_bn.running_mean
            )
        wrapper.eval()
        reference.eval()
        assert torch.equal(wrapper.damaged(x), reference(x))


class TestTwinForward:
    @pytest.mark.parametrize("train", [True, False])
    def test_matches_hand_written_twin(self, net: SmallNet, train: bool) -> None:
        wrapper = SelfDamagingWrapper(net, prune_ratio=0.6).train(train)
        with torch.no_grad():  # make twin statistics differ from the dense ones
            for name, buf in wrapper.twin_norms.named_buffers():
                if "running" in name:
                    buf.copy_(torch.rand_like(buf) + 0.5)
        norm = {k: v.clone() for k, v in twin_state(wrapper).items()}
        x = images()
        expected = reference_twin(net, dict(wrapper.named_masks()), norm, x, train)
        torch.testing.assert_close(wrapper.damaged(x), expected, rtol=1e-5, atol=1e-6)

    def test_twin_pass_updates_only_twin_statistics(self, net: SmallNet) -> None:
        wrapper = SelfDamagingWrapper(net, prune_ratio=0.6)
        dense_before = {k: v.clone() for k, v in net.state_dict().items()}
        twin_before = {k: v.clone() for k, v in twin_state(wrapper).items()}
        x = images()
        wrapper.damaged(x)
        for name, value in net.state_dict().items():
            assert torch.equal(value, dense_before[name]), name
        # By hand: bn1 sees conv1 with the masked weight; momentum 0.1 update.
        h = F.conv2d(x, net.conv1.weight * wrapper.masks.get_buffer("conv1.weight"), padding=1)
        expected_mean = 0.9 * twin_before["bn1.running_mean"] + 0.1 * h.mean((0, 2, 3))
        got = wrapper.twin_norms.get_buffer("bn1.running_mean")
        torch.testing.assert_close(got, expected_mean.detach(), rtol=1e-5, atol=1e-6)
        assert wrapper.twin_norms.get_buffer("bn1.num_batches_tracked").item() == 1

    def test_eval_uses_each_branch_statistics(self, net: SmallNet) -> None:
        wrapper = SelfDamagingWrapper(net, prune_ratio=0.0).eval()
        with torch.no_grad():
            wrapper.twin_norms.get_buffer("bn_fc.running_mean").add_(3.0)
        x = images()
        reference = copy.deepcopy(net).eval()
        assert torch.equal(wrapper(x), reference(x))
        assert not torch.allclose(wrapper.damaged(x), reference(x))

    def test_shared_norm_never_updates_dense_statistics(self, net: SmallNet) -> None:
        wrapper = SelfDamagingWrapper(net, prune_ratio=0.6, twin_norm=False)
        assert not list(wrapper.twin_norms.parameters())
        before = {k: v.clone() for k, v in net.state_dict().items()}
        x = images()
        out = wrapper.damaged(x)
        for name, value in net.state_dict().items():
            assert torch.equal(value, before[name]), name
        dense_norm = {k: v.clone() for k, v in net.state_dict().items() if k.startswith("bn")}
        dense_norm |= {k: v for k, v in net.named_parameters() if k.startswith("bn")}
        expected = reference_twin(net, dict(wrapper.named_masks()), dense_norm, x, True)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


class TestGradients:
    def test_one_backward_equals_reference_two_backward_recipe(self, net: SmallNet) -> None:
        wrapper = SelfDamagingWrapper(net, prune_ratio=0.6)
        reference = copy.deepcopy(wrapper)
        x0, x1 = images(seed=1), images(seed=2)

        ntxent(wrapper(x0), wrapper.damaged(x1)).backward()

        # Reference recipe (SDCLR code): a no-grad twin pass, L(f1, sg(f2)) backward, then a
        # re-run twin pass and L(sg(f1), f2) backward. The twin is written out by hand.
        ref_net = reference.model
        masks = dict(reference.named_masks())
        twin_params = dict(reference.twin_norms.named_parameters())

        def twin(x: Tensor) -> Tensor:
            stats = {k: v.clone() for k, v in reference.twin_norms.named_buffers()}
            return reference_twin(ref_net, masks, twin_params | stats, x, True)  # type: ignore[arg-type]

        with torch.no_grad():
            f2 = twin(x1)
        f1 = ref_net(x0)
        ntxent(f1, f2).backward()
        ntxent(f1.detach(), twin(x1)).backward()

        got = dict(wrapper.named_parameters())
        for name, param in reference.named_parameters():
            assert param.grad is not None, name
            torch.testing.assert_close(got[name].grad, param.grad, rtol=1e-4, atol=1e-6)

    def test_masked_weights_get_gradient_only_from_dense_branch(self, net: SmallNet) -> None:
        wrapper = SelfDamagingWrapper(net, prune_ratio=0.6)
        x0, x1 = images(seed=1), images(seed=2)
        twin_out = wrapper.damaged(x1)
        (twin_grad,) = torch.autograd.grad(twin_out.square().sum(), net.conv1.weight)
        mask = wrapper.masks.get_buffer("conv1.weight")
        assert torch.all(twin_grad[~mask] == 0) and twin_grad[mask].abs().sum() > 0

        dense_out = wrapper(x0)
        (dense_grad,) = torch.autograd.grad(
            dense_out.square().sum(), net.conv1.weight, retain_graph=True
        )
        (both,) = torch.autograd.grad(
            dense_out.square().sum() + wrapper.damaged(x1).square().sum(), net.conv1.weight
        )
        torch.testing.assert_close(both[~mask], dense_grad[~mask], rtol=1e-5, atol=1e-7)


class TestCompatibility:
    def test_deepcopy_is_independent(self, net: SmallNet) -> None:
        wrapper = SelfDamagingWrapper(net, prune_ratio=0.6)
        clone = copy.deepcopy(wrapper)
        x = images()
        assert clone.model is not net
        assert torch.equal(clone.damaged(x), wrapper.damaged(x))
        clone.masks.get_buffer("conv1.weight").fill_(True)
        assert not wrapper.masks.get_buffer("conv1.weight").all()
        assert wrapper.twin_norms.get_buffer("bn1.num_batches_tracked").item() == 1
        clone.damaged(x)
        assert wrapper.twin_norms.get_buffer("bn1.num_batches_tracked").item() == 1

    def test_to_dtype_keeps_bool_masks(self, net: SmallNet) -> None:
        wrapper = SelfDamagingWrapper(net, prune_ratio=0.6).to(torch.float64)
        for _, mask in wrapper.named_masks():
            assert mask.dtype == torch.bool
        out = wrapper.damaged(images().double())
        assert out.dtype == torch.float64

    def test_to_device_moves_masks(self, net: SmallNet) -> None:
        wrapper = SelfDamagingWrapper(net, prune_ratio=0.6).to("meta")
        assert all(m.device.type == "meta" for _, m in wrapper.named_masks())
        assert wrapper.twin_norms.get_buffer("bn1.running_mean").device.type == "meta"

    def test_autocast_bfloat16(self, net: SmallNet) -> None:
        wrapper = SelfDamagingWrapper(net, prune_ratio=0.6).eval()
        x = images()
        full = wrapper.damaged(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = wrapper.damaged(x)
        assert half.dtype == torch.bfloat16
        torch.testing.assert_close(half.float(), full, rtol=0.05, atol=0.05)

    def test_channels_last(self) -> None:
        torch.manual_seed(0)
        wrapper = SelfDamagingWrapper(torchvision.models.resnet18(num_classes=8), 0.9).eval()
        x = torch.randn(2, 3, 32, 32)
        expected = wrapper.damaged(x)
        wrapper.to(memory_format=torch.channels_last)
        got = wrapper.damaged(x.to(memory_format=torch.channels_last))
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)

    def test_torch_compile(self, net: SmallNet) -> None:
        wrapper = SelfDamagingWrapper(net, prune_ratio=0.6)
        reference = copy.deepcopy(wrapper)
        x0, x1 = images(seed=1), images(seed=2)

        def step(w: SelfDamagingWrapper) -> Tensor:
            return ntxent(w(x0), w.damaged(x1))

        compiled = torch.compile(step, backend="aot_eager", fullgraph=False)
        compiled(wrapper).backward()
        step(reference).backward()
        for (name, a), (_, b) in zip(wrapper.named_parameters(), reference.named_parameters()):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)
        torch.testing.assert_close(
            wrapper.twin_norms.get_buffer("bn1.running_mean"),
            reference.twin_norms.get_buffer("bn1.running_mean"),
        )

    def test_lightly_update_momentum_on_model(self, net: SmallNet) -> None:
        wrapper = SelfDamagingWrapper(net, prune_ratio=0.6)
        momentum = copy.deepcopy(wrapper.model)
        old = [p.detach().clone() for p in momentum.parameters()]
        with torch.no_grad():
            for p in net.parameters():
                p.add_(1.0)
        update_momentum(wrapper.model, momentum, m=0.9)
        for o, p, q in zip(old, net.parameters(), momentum.parameters()):
            torch.testing.assert_close(q, 0.9 * o + 0.1 * p.detach())


class TestCheckpoint:
    def test_state_dict_round_trip(self, net: SmallNet) -> None:
        wrapper = SelfDamagingWrapper(net, prune_ratio=0.6, random_ratio=0.2)
        wrapper.damaged(images())  # move the twin statistics
        state = copy.deepcopy(wrapper.state_dict())
        assert any(k.startswith("masks.") for k in state)
        assert any(k.startswith("twin_norms.") for k in state)

        torch.manual_seed(123)  # a fresh wrapper draws a different seed and mask
        restored = SelfDamagingWrapper(SmallNet(), prune_ratio=0.6, random_ratio=0.2)
        restored.load_state_dict(state)
        for key, value in restored.state_dict().items():
            assert torch.equal(value, state[key]), key
        wrapper.refresh_mask()
        restored.refresh_mask()  # the random part continues the same sequence
        for (_, a), (_, b) in zip(wrapper.named_masks(), restored.named_masks()):
            assert torch.equal(a, b)

    @pytest.mark.parametrize("stored", ["float", "bytes"])
    def test_assigned_masks_are_bool_zero_or_one(self, net: SmallNet, stored: str) -> None:
        # load_state_dict(assign=True) installs the checkpoint's mask tensors as they are.
        wrapper = SelfDamagingWrapper(net, prune_ratio=0.6)
        state = copy.deepcopy(wrapper.state_dict())
        for key in [k for k in state if k.startswith("masks.")]:
            if stored == "float":
                state[key] = state[key].float()
            else:  # a bool mask whose kept entries are stored as the byte 3, not 1
                state[key] = (state[key].view(torch.uint8) * 3).view(torch.bool)
        torch.manual_seed(5)
        restored = SelfDamagingWrapper(SmallNet(), prune_ratio=0.6)
        restored.load_state_dict(state, assign=True)
        masks = dict(wrapper.named_masks())
        for name, mask in restored.named_masks():
            assert mask.dtype == torch.bool
            assert torch.equal(mask.view(torch.uint8), masks[name].view(torch.uint8)), name
        restored.eval()
        x = images()
        expected = reference_twin(restored.model, masks, twin_state(restored), x, train=False)
        torch.testing.assert_close(restored.damaged(x), expected, rtol=1e-6, atol=1e-6)

    def test_resumed_training_continues_identically(self) -> None:
        def make(seed: int) -> tuple[SelfDamagingWrapper, torch.optim.Optimizer]:
            torch.manual_seed(seed)
            wrapper = SelfDamagingWrapper(SmallNet(), prune_ratio=0.6, random_ratio=0.2)
            return wrapper, torch.optim.SGD(wrapper.parameters(), lr=0.1, momentum=0.9)

        def epoch(wrapper: SelfDamagingWrapper, opt: torch.optim.Optimizer, e: int) -> None:
            wrapper.refresh_mask()
            for step in range(2):
                x0, x1 = images(seed=10 * e + step), images(seed=100 + 10 * e + step)
                ntxent(wrapper(x0), wrapper.damaged(x1)).backward()
                opt.step()
                opt.zero_grad()

        full, full_opt = make(0)
        for e in range(3):
            epoch(full, full_opt, e)

        first, first_opt = make(0)
        epoch(first, first_opt, 0)
        checkpoint = copy.deepcopy({"model": first.state_dict(), "opt": first_opt.state_dict()})
        resumed, resumed_opt = make(99)
        resumed.load_state_dict(checkpoint["model"])
        resumed_opt.load_state_dict(checkpoint["opt"])
        for e in (1, 2):
            epoch(resumed, resumed_opt, e)

        for key, value in full.state_dict().items():
            assert torch.equal(resumed.state_dict()[key], value), key


class TestErrors:
    @pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5])
    def test_prune_ratio_range(self, net: SmallNet, ratio: float) -> None:
        with pytest.raises(
            ValueError, match=rf"prune_ratio must be in \[0.0, 1.0\), got prune_ratio={ratio}"
        ):
            SelfDamagingWrapper(net, prune_ratio=ratio)

    @pytest.mark.parametrize("ratio", ["0.5", True, None])
    def test_prune_ratio_type(self, net: SmallNet, ratio: object) -> None:
        with pytest.raises(TypeError, match="prune_ratio must be a float"):
            SelfDamagingWrapper(net, prune_ratio=ratio)  # type: ignore[arg-type]

    @pytest.mark.parametrize("ratio", [0.7, -0.1])
    def test_random_ratio_range(self, net: SmallNet, ratio: float) -> None:
        with pytest.raises(ValueError, match=r"random_ratio must be in \[0.0, prune_ratio=0.6\]"):
            SelfDamagingWrapper(net, prune_ratio=0.6, random_ratio=ratio)

    def test_no_prunable_weights(self) -> None:
        with pytest.raises(ValueError, match=r"no prunable weights.*Conv2d.*Sequential"):
            SelfDamagingWrapper(nn.Sequential(nn.Linear(3, 3), nn.ReLU()))

    def test_prunable_without_weight(self) -> None:
        with pytest.raises(
            ValueError, match=r"prunable selected '1' \(ReLU\), which has no weight"
        ):
            SelfDamagingWrapper(nn.Sequential(nn.Conv2d(1, 1, 1), nn.ReLU()), prunable=nn.ReLU)

    def test_bad_prunable_type(self, net: SmallNet) -> None:
        with pytest.raises(TypeError, match="prunable must be a module type"):
            SelfDamagingWrapper(net, prunable=5)  # type: ignore[arg-type]

    def test_not_a_module(self) -> None:
        with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module, got function"):
            SelfDamagingWrapper(lambda x: x)  # type: ignore[arg-type]

    def test_wrapping_a_wrapper(self, net: SmallNet) -> None:
        wrapper = SelfDamagingWrapper(net)
        with pytest.raises(TypeError, match="already a SelfDamagingWrapper"):
            SelfDamagingWrapper(wrapper)
        with pytest.raises(TypeError, match="contains a SelfDamagingWrapper at '0'"):
            SelfDamagingWrapper(nn.Sequential(wrapper))

    def test_data_parallel_model(self, net: SmallNet) -> None:
        parallel = nn.DataParallel(net)
        with pytest.raises(
            TypeError,
            match=r"model is a DataParallel: torch\.func\.functional_call.*cannot run "
            r"DataParallel\. Wrap the bare model \(SelfDamagingWrapper\(model\.module\)\), "
            r"then wrap the wrapper.*in DistributedDataParallel",
        ):
            SelfDamagingWrapper(parallel)
        SelfDamagingWrapper(parallel.module).damaged(torch.randn(2, 3, 8, 8))  # the advice

    def test_data_parallel_inside_model(self, net: SmallNet) -> None:
        model = nn.Sequential(nn.DataParallel(net))
        with pytest.raises(
            TypeError, match=r"holds a DataParallel at '0'.*model\.0 = model\.0\.module"
        ):
            SelfDamagingWrapper(model)

    def test_distributed_data_parallel_model(self, net: SmallNet, tmp_path: Path) -> None:
        store = f"file://{tmp_path / 'store'}"
        torch.distributed.init_process_group("gloo", init_method=store, rank=0, world_size=1)
        try:
            parallel = nn.parallel.DistributedDataParallel(net)
            with pytest.raises(
                TypeError, match=r"model is a DistributedDataParallel: DDP synchronizes"
            ):
                SelfDamagingWrapper(parallel)
        finally:
            torch.distributed.destroy_process_group()

    @pytest.mark.parametrize(
        ("lazy", "name"),
        [
            (lambda: nn.LazyConv2d(4, 3), "0.weight"),  # a parameter
            (lambda: nn.LazyBatchNorm2d(affine=False), "0.running_mean"),  # buffers only
        ],
        ids=["LazyConv2d", "LazyBatchNorm2d"],
    )
    def test_uninitialized_lazy_model(self, lazy: Callable[[], nn.Module], name: str) -> None:
        model = nn.Sequential(lazy(), nn.Conv2d(4, 4, 1), nn.AdaptiveAvgPool2d(1))
        with pytest.raises(
            ValueError,
            match=rf"model has uninitialized \(lazy\) .*'{re.escape(name)}'.*Run one forward "
            r"pass with an example batch before wrapping, so the lazy modules know their shapes",
        ):
            SelfDamagingWrapper(model, 0.5)
        model(torch.randn(1, 4, 8, 8))  # the advice
        assert SelfDamagingWrapper(model, 0.5).damaged(torch.randn(2, 4, 8, 8)).shape == (
            2,
            4,
            1,
            1,
        )

    def test_twin_norm_type(self, net: SmallNet) -> None:
        with pytest.raises(TypeError, match="twin_norm must be a bool"):
            SelfDamagingWrapper(net, twin_norm="yes")  # type: ignore[arg-type]

    def test_non_finite_weights_at_refresh(self, net: SmallNet) -> None:
        wrapper = SelfDamagingWrapper(net)
        with torch.no_grad():
            net.conv2.weight[0, 0, 0, 0] = float("inf")
        with pytest.raises(ValueError, match=r"NaN or infinite.*conv2\.weight"):
            wrapper.refresh_mask()

    def test_load_state_dict_other_architecture(self, net: SmallNet) -> None:
        wrapper = SelfDamagingWrapper(net)
        before = {k: v.clone() for k, v in wrapper.state_dict().items()}
        other = SelfDamagingWrapper(torchvision.models.resnet18(num_classes=6))
        with pytest.raises(ValueError, match=r"does not match.*shape mismatch: model\.conv1"):
            wrapper.load_state_dict(other.state_dict())
        for key, value in wrapper.state_dict().items():  # raised before anything is copied
            assert torch.equal(value, before[key]), key

    def test_load_state_dict_nested_wrapper(self, net: SmallNet) -> None:
        # Missing keys are PyTorch's to report, wherever the wrapper sits (adapters, Lightning).
        outer = nn.Sequential(SelfDamagingWrapper(net))
        state = {k: v for k, v in outer.state_dict().items() if ".masks." not in k}
        with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "0\.masks\.conv1'):
            outer.load_state_dict(state)
        missing = outer.load_state_dict(state, strict=False).missing_keys
        assert missing == ["0.masks.conv1.weight", "0.masks.conv2.weight"]

    def test_load_state_dict_other_prunable_setting(self, net: SmallNet) -> None:
        wrapper = SelfDamagingWrapper(net)
        other = SelfDamagingWrapper(copy.deepcopy(net), prunable=(nn.Conv2d, nn.Linear))
        with pytest.raises(ValueError, match=r"other damage settings.*prunable: checkpoint"):
            wrapper.load_state_dict(other.state_dict())


class TestStrategy:
    def test_shorthands_mean_weight_damage(self, net: SmallNet) -> None:
        wrapper = SelfDamagingWrapper(net, 0.6, random_ratio=0.2, prunable=nn.Conv2d)
        assert isinstance(wrapper.damage, WeightDamage)
        assert wrapper.damage.settings == {
            "prune_ratio": 0.6,
            "random_ratio": 0.2,
            "prunable": "Conv2d",
        }
        assert (wrapper.prune_ratio, wrapper.random_ratio) == (0.6, 0.2)

    def test_strategy_is_the_damage_attribute(self, net: SmallNet) -> None:
        damage = WeightDamage(0.5)
        wrapper = SelfDamagingWrapper(net, damage=damage)
        assert wrapper.damage is damage and wrapper.prune_ratio == 0.5
        assert "damage=WeightDamage(prune_ratio=0.5" in repr(wrapper)

    def test_same_masks_as_the_shorthand(self) -> None:
        torch.manual_seed(0)
        a = SelfDamagingWrapper(SmallNet(), 0.7, random_ratio=0.1)
        torch.manual_seed(0)
        b = SelfDamagingWrapper(SmallNet(), damage=WeightDamage(0.7, random_ratio=0.1))
        assert torch.equal(a.mask_seed, b.mask_seed)
        for (name, mask), (_, other) in zip(a.named_masks(), b.named_masks()):
            assert torch.equal(mask, other), name

    @pytest.mark.parametrize(
        ("args", "kwargs", "shown"),
        [
            ((0.9,), {}, "prune_ratio=0.9"),  # the default value, passed explicitly
            ((), {"random_ratio": 0.0}, "random_ratio=0.0"),
            ((), {"prunable": (nn.Conv2d,)}, "prunable="),
        ],
    )
    def test_shorthand_with_strategy_is_an_error(
        self, net: SmallNet, args: tuple[object, ...], kwargs: dict[str, object], shown: str
    ) -> None:
        with pytest.raises(ValueError, match=rf"{re.escape(shown)}.*given together with damage="):
            SelfDamagingWrapper(net, *args, damage=WeightDamage(0.5), **kwargs)  # type: ignore[arg-type]

    def test_not_a_strategy(self, net: SmallNet) -> None:
        with pytest.raises(TypeError, match=r"damage must be a selfdamage\.damage\.Damage"):
            SelfDamagingWrapper(net, damage=0.5)  # type: ignore[arg-type]

    def test_unknown_keyword(self, net: SmallNet) -> None:
        with pytest.raises(TypeError, match="unexpected keyword argument 'prune'"):
            SelfDamagingWrapper(net, prune=0.5)

    def test_signature_shows_the_defaults(self) -> None:
        signature = str(inspect.signature(SelfDamagingWrapper))
        assert "prune_ratio: 'float' = 0.9" in signature
        assert "random_ratio: 'float' = 0.0" in signature


def _ddp_make_model() -> nn.Module:
    """A model without batch statistics, so DDP is exactly a bigger batch."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3),
        nn.Flatten(),
        nn.Linear(288, 4),
    )


def _ddp_batch() -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(7)
    return torch.randn(8, 3, 8, 8, generator=gen), torch.randn(8, 3, 8, 8, generator=gen)


def _ddp_wrapper(rank: int) -> SelfDamagingWrapper:
    model = _ddp_make_model()
    torch.manual_seed(1000 + rank)  # every rank draws its own seed for the random part
    return SelfDamagingWrapper(model, 0.6, random_ratio=0.3)


class TestDistributed:
    def test_masks_identical_and_gradients_match_single_process(self, tmp_path: Path) -> None:
        ddp_harness.check_twin_step(_ddp_wrapper, _ddp_batch(), tmp_path)
