"""The compact twin against torch-pruning's physical pruning of a deep copy."""

from __future__ import annotations

import copy
import pickle
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch_pruning as tp
import torchvision
from fixtures.make_v0_1_checkpoints import tiny_model
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.modules.batchnorm import _BatchNorm

from selfdamage import ChannelDamage, SelfDamagingWrapper
from selfdamage.adapters import DINOAdapter, SimCLRAdapter
from selfdamage.backbones import cifar_resnet18
from selfdamage.damage import compact as compact_module
from tests import ddp_harness
from tests.damage.helpers import ChannelNet, channel_wrapper, images

SIZE = 32
FIXTURES = Path(__file__).parents[1] / "fixtures"


def _no_dropout(model: nn.Module) -> nn.Module:
    """Dropout and stochastic depth off, so train-mode passes are deterministic."""
    for module in model.modules():
        if hasattr(module, "p") and isinstance(module.p, float):
            module.p = 0.0
    return model


MODELS: dict[str, Callable[[], nn.Module]] = {
    "cifar_resnet18": lambda: cifar_resnet18(width=16),
    "resnet50": lambda: torchvision.models.resnet50(num_classes=10),
    "mobilenet_v3_small": lambda: _no_dropout(
        torchvision.models.mobilenet_v3_small(num_classes=10)
    ),
    "efficientnet_b0": lambda: _no_dropout(torchvision.models.efficientnet_b0(num_classes=10)),
}


def _wrap(name: str, *, compact: bool = True, ratio: float = 0.5) -> SelfDamagingWrapper:
    torch.manual_seed(0)
    model = MODELS[name]()
    damage = ChannelDamage(ratio, example_inputs=torch.randn(2, 3, SIZE, SIZE), compact=compact)
    return SelfDamagingWrapper(model, damage=damage)


def _twin_tensors(wrapper: SelfDamagingWrapper) -> dict[str, Tensor]:
    """Every tensor the masked twin uses, full size: masked weights, twin norm state."""
    masks = dict(wrapper.named_masks())
    out = {}
    for name, value in [*wrapper.model.named_parameters(), *wrapper.model.named_buffers()]:
        path, _, attr = name.rpartition(".")
        if path in wrapper._twin_names:
            value = (
                wrapper.twin_norms.get_submodule(path).get_buffer(attr)
                if attr.startswith(("running", "num_"))
                else wrapper.twin_norms.get_submodule(path).get_parameter(attr)
            )
        out[name] = value.detach() * masks[name] if name in masks else value.detach().clone()
    return out


def _pruned_reference(
    wrapper: SelfDamagingWrapper,
    tensors: dict[str, Tensor],
    dtype: torch.dtype,
    example: Tensor | None = None,
) -> nn.Module:
    """A deep copy holding ``tensors``, physically pruned by torch-pruning.

    Dead channels are read from the root layers' masks (output rows all False); groups
    the damage keeps at full size are left unpruned (masked).
    """
    damage = wrapper.damage
    assert isinstance(damage, ChannelDamage)
    model = copy.deepcopy(wrapper.model).to(dtype)
    with torch.no_grad():
        for name, value in [*model.named_parameters(), *model.named_buffers()]:
            value.copy_(tensors[name])
    masks = dict(wrapper.named_masks())
    example = torch.randn(1, 3, SIZE, SIZE) if example is None else example
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example.to(dtype))
    for group in damage.groups:
        if group.root in damage.compact_protected:
            continue
        dead = ~masks[f"{group.root}.weight"].flatten(1).any(1)
        if not dead.any():
            continue
        root = model.get_submodule(group.root)
        handler = (
            tp.prune_linear_out_channels
            if isinstance(root, nn.Linear)
            else (tp.prune_conv_out_channels)
        )
        graph.get_pruning_group(root, handler, torch.nonzero(dead).flatten().tolist()).prune()
    return model.train(wrapper.training)  # tracing left it in eval mode


def _tags(wrapper: SelfDamagingWrapper, example: Tensor | None = None) -> nn.Module:
    """The reference pruned the same way, holding each entry's flat index instead."""
    tensors = {
        name: torch.arange(v.numel(), dtype=torch.float64).reshape(v.shape)
        for name, v in [*wrapper.model.named_parameters(), *wrapper.model.named_buffers()]
    }
    return _pruned_reference(wrapper, tensors, torch.float64, example)


def _shared(wrapper: SelfDamagingWrapper, name: str) -> Tensor:
    path, _, attr = name.rpartition(".")
    if path in wrapper._twin_names:
        return wrapper.twin_norms.get_submodule(path).get_parameter(attr)
    return wrapper.model.get_parameter(name)


@pytest.mark.parametrize("name", list(MODELS))
class TestAgainstPhysicalPruning:
    def test_output_gradients_and_statistics(self, name: str) -> None:
        wrapper = _wrap(name)
        damage = wrapper.damage
        assert isinstance(damage, ChannelDamage)
        assert damage.compact_active and damage.fallback_reason is None
        before = _twin_tensors(wrapper)
        reference = _pruned_reference(wrapper, before, torch.float32)
        tags = _tags(wrapper)
        masks = dict(wrapper.named_masks())
        x = images(4, SIZE, seed=1)
        weight = torch.randn(4, 10 if name != "cifar_resnet18" else 128)

        (wrapper.damaged(x) * weight).sum().backward()
        out = wrapper.damaged(x).detach()  # second pass: statistics updated twice
        (reference(x) * weight).sum().backward()
        expected = reference(x).detach()
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)

        for ref_name, ref_param in reference.named_parameters():
            index = tags.get_parameter(ref_name).long().flatten()
            grad = torch.zeros(index.max() + 1 if index.numel() else 0)
            full = torch.zeros(_shared(wrapper, ref_name).numel())
            full[index] = ref_param.grad.flatten()  # type: ignore[union-attr]
            full = full.reshape(_shared(wrapper, ref_name).shape)
            if ref_name in masks:
                full = full * masks[ref_name]
            got = _shared(wrapper, ref_name).grad
            got = torch.zeros_like(full) if got is None else got
            torch.testing.assert_close(got, full, rtol=1e-4, atol=1e-5, msg=ref_name)
            del grad

        # Running statistics: kept channels equal the reference's, dead ones unchanged.
        after = _twin_tensors(wrapper)
        for ref_name, ref_buffer in reference.named_buffers():
            if not ref_name.endswith(("running_mean", "running_var")):
                continue
            index = tags.get_buffer(ref_name).long()
            torch.testing.assert_close(after[ref_name][index], ref_buffer, msg=ref_name)
            untouched = torch.ones_like(after[ref_name], dtype=torch.bool)
            untouched[index] = False
            assert torch.equal(after[ref_name][untouched], before[ref_name][untouched])

        wrapper.eval()
        reference.eval()
        torch.testing.assert_close(wrapper.damaged(x), reference(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["cifar_resnet18", "mobilenet_v3_small"])
@pytest.mark.parametrize("train", [True, False])
def test_equals_masked_twin_within_a_refresh(name: str, train: bool) -> None:
    compact, masked = _wrap(name), _wrap(name, compact=False)
    assert compact.damage.compact_active and not masked.damage.compact_active  # type: ignore[attr-defined]
    masked.load_state_dict(compact.state_dict())
    compact.train(train)
    masked.train(train)
    x = images(4, SIZE, seed=2)
    for _ in range(2):
        torch.testing.assert_close(compact.damaged(x), masked.damaged(x), rtol=1e-4, atol=1e-4)
    for (key, a), b in zip(compact.state_dict().items(), masked.state_dict().values()):
        if "running" in key:  # dead channels: masked twin's drift to zero, compact's kept
            continue
        torch.testing.assert_close(a, b, msg=key)


def test_layer_norm_model_equals_physical_pruning_not_masking() -> None:
    """Over channels, LayerNorm sees the masked twin's zeros; the compact twin is the pruned net."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 16),
        nn.LayerNorm(16),
        nn.ReLU(),
        nn.Linear(16, 12),
        nn.ReLU(),
        nn.Linear(12, 3),
    )
    x = torch.randn(5, 6)
    damage = ChannelDamage(0.5, example_inputs=x[:2], prunable=(nn.Linear,))
    wrapper = SelfDamagingWrapper(model, damage=damage)
    assert damage.compact_active
    reference = _pruned_reference(wrapper, _twin_tensors(wrapper), torch.float32, x[:1])
    tags = _tags(wrapper, x[:1])
    assert reference[1].normalized_shape[0] < 16  # the LayerNorm lost channels
    weight = torch.randn(5, 3)
    (wrapper.damaged(x) * weight).sum().backward()
    (reference(x) * weight).sum().backward()
    torch.testing.assert_close(wrapper.damaged(x), reference(x))
    for name, param in reference.named_parameters():
        full = torch.zeros(model.get_parameter(name).numel())
        full[tags.get_parameter(name).long().flatten()] = param.grad.flatten()  # type: ignore[union-attr]
        grad = model.get_parameter(name).grad
        torch.testing.assert_close(grad, full.reshape(grad.shape), msg=name)  # type: ignore[union-attr]
    masked = SelfDamagingWrapper(
        copy.deepcopy(model),
        damage=ChannelDamage(0.5, example_inputs=x[:2], prunable=(nn.Linear,), compact=False),
    )
    masked.load_state_dict(wrapper.state_dict())
    assert not torch.allclose(masked.damaged(x), wrapper.damaged(x))


class TestState:
    def test_state_dict_deepcopy_pickle_to(self) -> None:
        wrapper = _wrap("cifar_resnet18")
        wrapper.refresh_mask()
        x = images(2, SIZE)
        wrapper.eval()
        expected = wrapper.damaged(x)
        fresh = _wrap("cifar_resnet18")
        fresh.load_state_dict(wrapper.state_dict())  # masks_changed rebuilds the copy
        fresh.eval()
        for other in (fresh, copy.deepcopy(wrapper), pickle.loads(pickle.dumps(wrapper))):
            assert other.damage.compact_active  # type: ignore[attr-defined]
            torch.testing.assert_close(other.damaged(x), expected)
        moved = copy.deepcopy(wrapper).to(torch.float64)
        torch.testing.assert_close(moved.damaged(x.double()).float(), expected)
        # How the twin runs is not a damage setting: checkpoints load across compact=True/False.
        assert "compact" not in wrapper.damage.settings

    def test_v0_1_channel_checkpoint(self) -> None:
        saved = torch.load(FIXTURES / "v0_1_wrapper_channel.pt", weights_only=True)
        damage = ChannelDamage(0.5, example_inputs=saved["input"][:2])
        wrapper = SelfDamagingWrapper(tiny_model(), damage=damage)
        wrapper.load_state_dict(saved["state_dict"])  # strict: the format did not change
        assert damage.compact_active
        with torch.no_grad():
            twin = wrapper.eval().damaged(saved["input"])
        torch.testing.assert_close(twin, saved["twin"], rtol=1e-5, atol=1e-6)

    def test_compact_false_is_todays_masked_twin(self) -> None:
        wrapper = _wrap("cifar_resnet18", compact=False)
        damage = wrapper.damage
        assert isinstance(damage, ChannelDamage)
        assert not damage.compact_active and damage.fallback_reason is None
        assert damage.compact is False

    def test_dino_adapter_copies_after_a_step(self) -> None:
        """The copy's weight_norm weight (DINO's last layer) keeps no graph after a pass."""
        torch.manual_seed(0)
        backbone = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        damage = ChannelDamage(0.5, example_inputs=images(2, 8))
        adapter = DINOAdapter(backbone, 8, damage=damage)
        assert damage.compact_active
        adapter(images(4, 8), images(4, 8, seed=1)).backward()
        copies = [copy.deepcopy(adapter), pickle.loads(pickle.dumps(adapter))]
        for module in (adapter, *copies):
            module.zero_grad()  # deepcopy copies .grad, pickle does not
        x0, x1 = images(4, 8, seed=2), images(4, 8, seed=3)
        expected = adapter(x0, x1)
        expected.backward()
        for other in copies:
            assert other.damage.compact_active
            loss = other(x0, x1)
            loss.backward()
            torch.testing.assert_close(loss, expected, rtol=0, atol=0)
            for (name, a), b in zip(adapter.named_parameters(), other.parameters()):
                torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=0, msg=name)

    def test_dtype_change_keeps_the_compact_twin(self) -> None:
        x = images()
        masked = channel_wrapper(compact=False).double().eval()
        for dtype in (torch.float16, torch.bfloat16, torch.float64):
            wrapper = channel_wrapper().to(dtype)
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)
                wrapper.refresh_mask()
            assert wrapper.damage.compact_active, wrapper.damage.fallback_reason  # type: ignore[attr-defined]
        masked.load_state_dict(wrapper.state_dict())
        wrapper.eval()
        expected = masked.damaged(x.double())
        torch.testing.assert_close(wrapper.damaged(x.double()), expected, rtol=1e-12, atol=1e-12)

    def test_adapter_features_keep_their_width(self) -> None:
        damage = ChannelDamage(0.5, example_inputs=torch.randn(2, 3, SIZE, SIZE))
        adapter = SimCLRAdapter(cifar_resnet18(width=16), feature_dim=128, damage=damage)
        assert damage.compact_active
        loss = adapter(images(4, SIZE), images(4, SIZE, seed=3))
        loss.backward()
        assert torch.isfinite(loss)


class TestProtectionAndFallback:
    def test_grouped_convolution_is_protected(self) -> None:
        wrapper = channel_wrapper()
        damage = wrapper.damage
        assert isinstance(damage, ChannelDamage)
        assert damage.compact_active
        assert damage.compact_protected["stem.0"] == "grouped convolution grouped.0"
        masked = channel_wrapper(compact=False)
        masked.load_state_dict(wrapper.state_dict())
        for train in (True, False):
            wrapper.train(train)
            masked.train(train)
            torch.testing.assert_close(wrapper.damaged(images()), masked.damaged(images()))

    def test_channel_count_as_python_int_is_protected(self) -> None:
        class Reshaping(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.a = nn.Conv2d(3, 8, 3, padding=1)
                self.b = nn.Conv2d(8, 8, 3, padding=1)
                self.head = nn.Linear(8, 4)

            def forward(self, x: Tensor) -> Tensor:
                x = torch.relu(self.a(x))
                x = x.reshape(x.shape[0], 8, x.shape[2], x.shape[3])  # 8 as a Python int
                return self.head(torch.relu(self.b(x)).mean((2, 3)))

        torch.manual_seed(0)
        damage = ChannelDamage(0.5, example_inputs=images(2))
        wrapper = SelfDamagingWrapper(Reshaping(), damage=damage)
        assert damage.compact_active
        assert "a" in damage.compact_protected
        assert wrapper.damaged(images()).shape == (4, 4)

    def test_weight_normed_layer_is_copied(self) -> None:
        """torch.nn.utils.weight_norm's computed weight (lightly's DINO head) is no obstacle."""

        def net() -> nn.Module:
            torch.manual_seed(0)
            last = nn.utils.weight_norm(nn.Linear(6, 4))  # type: ignore[no-untyped-call]
            pool = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), *pool, nn.Linear(8, 6), last)

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)  # weight_norm's
            models = [net(), net()]
        for model in models:
            model(images())  # the computed weight now carries a graph
        damage = ChannelDamage(0.5, example_inputs=images(2))
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            wrapper = SelfDamagingWrapper(models[0], damage=damage)
        assert damage.compact_active
        masked = SelfDamagingWrapper(
            models[1], damage=ChannelDamage(0.5, example_inputs=images(2), compact=False)
        )
        masked.load_state_dict(wrapper.state_dict())
        torch.testing.assert_close(wrapper.damaged(images()), masked.damaged(images()))

    @pytest.mark.parametrize("adapter", [False, True])
    def test_a_batch_of_one_example_keeps_the_compact_twin(self, adapter: bool) -> None:
        """BatchNorm cannot train on one value per channel (a 1x1 map after global
        pooling, a BatchNorm1d head): the copy's check must not depend on the batch size."""
        torch.manual_seed(0)
        damage = ChannelDamage(0.5, example_inputs=torch.randn(1, 3, SIZE, SIZE))
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            if adapter:  # a projection head with BatchNorm1d
                SimCLRAdapter(cifar_resnet18(width=16), feature_dim=128, damage=damage)
            else:  # layer4 runs on a 1x1 map at 32 px
                SelfDamagingWrapper(torchvision.models.resnet18(num_classes=10), damage=damage)
        assert damage.compact_active, damage.fallback_reason

    def test_falls_back_once_with_the_reason(self) -> None:
        class DataDependent(ChannelNet):
            def forward(self, x: Tensor) -> Tensor:
                if bool(x.sum() > -1e9):  # cannot run on meta tensors
                    return super().forward(x)
                return super().forward(-x)

        torch.manual_seed(0)
        damage = ChannelDamage(0.5, example_inputs=images(2))
        with pytest.warns(RuntimeWarning, match="compact channel twin unavailable") as record:
            wrapper = SelfDamagingWrapper(DataDependent(), damage=damage)
        assert len(record) == 1
        assert not damage.compact_active
        assert "cannot run" in str(damage.fallback_reason)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            wrapper.refresh_mask()  # the same reason warns once
        masked = SelfDamagingWrapper(
            DataDependent(), damage=ChannelDamage(0.5, example_inputs=images(2), compact=False)
        )
        masked.load_state_dict(wrapper.state_dict())
        torch.testing.assert_close(wrapper.damaged(images()), masked.damaged(images()))


def _ddp_wrapper(rank: int) -> SelfDamagingWrapper:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 6, 3),
        nn.Flatten(),
        nn.Linear(216, 4),
    )
    torch.manual_seed(1000 + rank)
    damage = ChannelDamage(0.5, example_inputs=torch.randn(2, 3, 8, 8), importance="random")
    wrapper = SelfDamagingWrapper(model, damage=damage)
    assert damage.compact_active
    return wrapper


def _ddp_wrapper_own_weights(rank: int) -> SelfDamagingWrapper:
    """Each rank starts from its own weights, so its masks at construction are its own."""
    torch.manual_seed(rank)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3), nn.Flatten(),
        nn.Linear(216, 4),
    )  # fmt: skip
    damage = ChannelDamage(0.5, example_inputs=torch.randn(2, 3, 8, 8))
    wrapper = SelfDamagingWrapper(model, damage=damage)
    assert damage.compact_active
    return wrapper


class TestDistributed:
    def test_gradients_match_single_process(self, tmp_path: Path) -> None:
        gen = torch.Generator().manual_seed(7)
        batch = torch.randn(8, 3, 8, 8, generator=gen), torch.randn(8, 3, 8, 8, generator=gen)
        ddp_harness.check_twin_step(_ddp_wrapper, batch, tmp_path)

    def test_masks_broadcast_by_ddp_rebuild_the_copy(self, tmp_path: Path) -> None:
        # DDP writes rank 0's weights and masks into rank 1's tensors when it wraps the
        # model; rank 1's compact copy, built from its own masks, must follow them.
        own = [dict(_ddp_wrapper_own_weights(rank).named_masks()) for rank in (0, 1)]
        assert any(not torch.equal(own[0][name], own[1][name]) for name in own[0])
        gen = torch.Generator().manual_seed(7)
        batch = torch.randn(8, 3, 8, 8, generator=gen), torch.randn(8, 3, 8, 8, generator=gen)
        ddp_harness.check_twin_step(_ddp_wrapper_own_weights, batch, tmp_path, refresh=False)

    def test_in_place_mask_writes_rebuild_the_copy_at_the_next_pass(self) -> None:
        # What DDP's broadcast does, in one process: raw writes, no refresh, no load.
        source, target = _ddp_wrapper_own_weights(0), _ddp_wrapper_own_weights(1)
        with torch.no_grad():
            for name, tensor in source.state_dict().items():
                target.state_dict()[name].copy_(tensor)
        x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(target.damaged(x), source.damaged(x), rtol=0, atol=0)

    def test_masks_are_checked_once_per_refresh_not_per_step(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        wrapper = _ddp_wrapper_own_weights(0)
        groups = len(wrapper.damage.groups)
        calls: list[int] = []
        real = compact_module.dead_channels
        monkeypatch.setattr(compact_module, "dead_channels", lambda *a: calls.append(1) or real(*a))
        x = torch.randn(2, 3, 8, 8)
        for _ in range(3):
            wrapper.damaged(x)
        assert len(calls) == groups  # the first pass only
        wrapper.refresh_mask()
        assert len(calls) == 2 * groups  # update() reads the masks
        for _ in range(3):
            wrapper.damaged(x)
        assert len(calls) == 3 * groups

    def test_a_pass_without_mask_values_leaves_the_check_pending(self) -> None:
        x = torch.randn(2, 3, 8, 8)
        meta = _ddp_wrapper_own_weights(0).to("meta")
        assert meta.damaged(x.to("meta")).shape == (2, 4)
        source, target = _ddp_wrapper_own_weights(0), _ddp_wrapper_own_weights(1)
        with FakeTensorMode(allow_non_fake_inputs=True):
            assert target.damaged(x).shape == (2, 4)
        try:
            exported = torch.export.export(_TwinOnly(target).eval(), (x,))
        except torch._dynamo.exc.Unsupported as error:  # torch 2.5 cannot export a twin pass
            assert "get_parameter" in str(error)
        else:
            assert exported.module()(x).shape == (2, 4)
        with torch.no_grad():  # DDP's broadcast, after those passes
            for name, tensor in source.state_dict().items():
                target.state_dict()[name].copy_(tensor)
        torch.testing.assert_close(target.damaged(x), source.damaged(x), rtol=0, atol=0)

    def test_sync_batch_norm_converted_after_wrapping_runs_in_the_copy(self) -> None:
        # docs/distributed.rst: convert after building the adapter. On one process,
        # SyncBatchNorm computes BatchNorm2d's numbers; which class runs is the difference.
        wrappers = [
            nn.SyncBatchNorm.convert_sync_batchnorm(channel_wrapper(compact=compact))
            for compact in (True, False)
        ]
        wrappers[1].load_state_dict(wrappers[0].state_dict())
        ran: list[Counter[str]] = []

        def count(module: nn.Module, args: tuple[Tensor, ...]) -> None:
            if isinstance(module, _BatchNorm) and not args[0].is_meta:  # not the copy's checks
                ran[-1][type(module).__name__] += 1

        outputs = []
        for wrapper in wrappers:
            ran.append(Counter())
            hook = nn.modules.module.register_module_forward_pre_hook(count)
            try:
                outputs.append(wrapper.eval().damaged(images()))
            finally:
                hook.remove()
        assert wrappers[0].damage.compact_active  # type: ignore[attr-defined]
        assert ran[0] == ran[1] == {"SyncBatchNorm": 5}
        norms = [
            Counter(type(m) for m in model.modules() if isinstance(m, _BatchNorm))
            for model in (wrappers[0].damage._compact._copy, wrappers[0].model)  # type: ignore[attr-defined]
        ]
        assert norms[0] == norms[1]
        torch.testing.assert_close(outputs[0], outputs[1])

    def test_a_copy_pickled_before_the_check_existed_runs(self) -> None:
        wrapper = _ddp_wrapper_own_weights(0)
        compact = wrapper.damage._compact  # type: ignore[attr-defined]
        del compact.__dict__["_unchecked"]  # as in 0.2.0's pickles
        restored = pickle.loads(pickle.dumps(wrapper))
        assert restored.damage._compact._unchecked is None  # type: ignore[attr-defined]
        compact._unchecked = None  # what 0.2.0's class held
        x = torch.randn(2, 3, 8, 8)
        torch.testing.assert_close(restored.damaged(x), wrapper.damaged(x), rtol=0, atol=0)


class _TwinOnly(nn.Module):
    def __init__(self, wrapper: SelfDamagingWrapper) -> None:
        super().__init__()
        self.wrapper = wrapper

    def forward(self, x: Tensor) -> Tensor:
        return self.wrapper.damaged(x)


class TestTraining:
    """Autocast and resume behave as with the masked twin."""

    def test_autocast_bf16_close_to_the_masked_twin(self) -> None:
        compact, masked = _wrap("cifar_resnet18"), _wrap("cifar_resnet18", compact=False)
        compact.eval(), masked.eval()
        x = images(4, SIZE)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, reference = compact.damaged(x), masked.damaged(x)
        assert out.dtype == reference.dtype == torch.bfloat16
        # bf16 keeps ~3 significant digits; the two twins sum in different orders.
        torch.testing.assert_close(out.float(), reference.float(), rtol=0.05, atol=0.05)
        out.float().square().sum().backward()
        for name, mask in compact.named_masks():
            grad = _shared(compact, name).grad  # the twin's own BatchNorm for norm layers
            assert grad is not None and grad.dtype == torch.float32
            assert torch.isfinite(grad).all()
            assert not grad[~mask].any(), f"{name}: a dead entry got gradient from the twin"

    def test_resume_continues_identically(self) -> None:
        def epochs(wrapper: SelfDamagingWrapper, optimizer: torch.optim.Optimizer, start: int,
                   stop: int) -> None:  # fmt: skip
            for epoch in range(start, stop):
                wrapper.refresh_mask()
                for step in range(2):
                    seed = 10 * epoch + 2 * step
                    x0, x1 = images(4, SIZE, seed=seed), images(4, SIZE, seed=seed + 1)
                    (wrapper(x0) - wrapper.damaged(x1)).square().mean().backward()
                    optimizer.step()
                    optimizer.zero_grad()

        def sgd(wrapper: SelfDamagingWrapper) -> torch.optim.Optimizer:
            return torch.optim.SGD(wrapper.parameters(), lr=0.05, momentum=0.9)

        straight = _wrap("cifar_resnet18")
        epochs(straight, sgd(straight), 0, 4)

        first = _wrap("cifar_resnet18")
        optimizer = sgd(first)
        epochs(first, optimizer, 0, 2)
        state, optimizer_state = copy.deepcopy(first.state_dict()), optimizer.state_dict()
        resumed = _wrap("cifar_resnet18")
        resumed.load_state_dict(state)
        optimizer = sgd(resumed)
        optimizer.load_state_dict(optimizer_state)
        epochs(resumed, optimizer, 2, 4)

        assert resumed.damage.compact_active  # type: ignore[attr-defined]
        for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
            assert torch.equal(a, b), name


def test_norm_layers_training_under_an_eval_root() -> None:
    """Test-time BN adaptation: the twin's statistics move where each norm layer trains."""
    compact, masked = channel_wrapper(), channel_wrapper(compact=False)
    masked.load_state_dict(compact.state_dict())
    before = {k: v.clone() for k, v in compact.twin_norms.state_dict().items()}
    for wrapper in (compact, masked):
        wrapper.eval()
        for module in wrapper.model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.train()
        with torch.no_grad():
            wrapper.damaged(images())
    masks = dict(compact.named_masks())
    moved = 0
    for key, value in compact.twin_norms.state_dict().items():
        if not key.endswith(("running_mean", "running_var")):
            continue
        layer = key.rsplit(".", 1)[0]
        kept = masks.get(f"{layer}.weight", torch.ones_like(value, dtype=torch.bool))
        reference = masked.twin_norms.state_dict()[key]
        torch.testing.assert_close(value[kept], reference[kept], msg=key)
        moved += int((value[kept] != before[key][kept]).sum())
    assert moved > 0


class _TrainOnlyHead(nn.Module):
    """A head that runs in training only, like GoogLeNet's auxiliary classifiers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.aux = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 4, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        h = torch.relu(self.bn1(self.conv1(x)))
        out = self.pool(self.conv2(h)).flatten(1)
        return (out, self.pool(self.aux(h)).flatten(1)) if self.training else out


def test_train_only_path_is_checked() -> None:
    torch.manual_seed(0)
    model = _TrainOnlyHead()
    x = images(4, 8)
    compact = SelfDamagingWrapper(model, damage=ChannelDamage(0.5, example_inputs=x[:2]))
    masked = SelfDamagingWrapper(
        copy.deepcopy(model), damage=ChannelDamage(0.5, example_inputs=x[:2], compact=False)
    )
    masked.load_state_dict(compact.state_dict())
    for out, reference in zip(compact.train().damaged(x), masked.train().damaged(x)):
        torch.testing.assert_close(out, reference)


def test_warns_once_when_most_groups_stay_full_size() -> None:
    """Grouped convolutions keep every group full size: the compact twin saves nothing."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=2), nn.ReLU(),
        nn.Conv2d(8, 8, 3, groups=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )  # fmt: skip
    damage = ChannelDamage(0.5, example_inputs=images(2))
    with pytest.warns(UserWarning, match="keeps 3 of 3 channel groups at full size") as record:
        wrapper = SelfDamagingWrapper(net, damage=damage)
    assert sum("full size" in str(r.message) for r in record) == 1
    assert len(damage.compact_protected) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wrapper.refresh_mask()


def test_no_warning_when_few_groups_stay_full_size() -> None:
    torch.manual_seed(0)
    damage = ChannelDamage(0.5, example_inputs=images(2, SIZE))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SelfDamagingWrapper(cifar_resnet18(width=8), damage=damage)
    assert 2 * len(damage.compact_protected) < len(damage.groups)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN in this torch")
class TestOneDNNPrimitiveCache:
    """Dense and compact convolution shapes that overflow oneDNN's primitive cache make
    every CPU step compile its kernels again: the masked twin runs instead, with the fix."""

    def test_falls_back_when_the_shapes_overflow_the_cache(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # A CIFAR ResNet-18: 20 convolutions, all resized: 6 * (20 + 20) = 240 primitives.
        def wrap() -> SelfDamagingWrapper:
            torch.manual_seed(0)
            damage = ChannelDamage(0.5, example_inputs=images(2, SIZE))
            return SelfDamagingWrapper(cifar_resnet18(width=8), damage=damage)

        monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "239")
        with pytest.warns(RuntimeWarning, match="primitive cache holds \\(239\\)") as record:
            wrapper = wrap()
        assert "ONEDNN_PRIMITIVE_CACHE_CAPACITY=256" in str(record[0].message)
        damage = wrapper.damage
        assert isinstance(damage, ChannelDamage) and not damage.compact_active
        monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "240")
        wrapper.refresh_mask()
        assert damage.compact_active
        monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY")
        with torch.backends.mkldnn.flags(enabled=False):  # no oneDNN, no cache to thrash
            monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "1")
            wrapper.refresh_mask()
            assert damage.compact_active

    @pytest.mark.slow
    def test_densenet121_falls_back_by_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
        monkeypatch.delenv("DNNL_PRIMITIVE_CACHE_CAPACITY", raising=False)
        torch.manual_seed(0)
        damage = ChannelDamage(0.5, example_inputs=images(2, SIZE))
        with pytest.warns(RuntimeWarning, match="120 convolutions"):
            SelfDamagingWrapper(torchvision.models.densenet121(num_classes=10), damage=damage)
        assert not damage.compact_active
