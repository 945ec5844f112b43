"""Shared submodules and tied weights: the twin pass substitutes each slot once (issue 19.1).

``torch.func.functional_call`` left the twin's masked weight in the dense model when a
submodule was reachable under two names (pytorch/pytorch#164759). Every reference here is
a hand-masked ``copy.deepcopy`` of the model (``deepcopy`` keeps the sharing).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import pytest
import torch
from torch import Tensor, nn

from selfdamage import ChannelDamage, Damage, SelfDamagingWrapper, WeightDamage
from selfdamage._aliasing import find_aliases

TOLERANCE = {"rtol": 1e-6, "atol": 1e-6}


class SharedConv(nn.Module):
    """The issue's model: ``conv`` is also ``block.0``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.block = nn.Sequential(self.conv)

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x).mean((2, 3))


class SharedBlock(nn.Module):
    """A conv-BatchNorm block registered twice and used twice, between a stem and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.again = self.block
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.again(self.block(self.stem(x))).mean((2, 3)))


class TiedLM(nn.Module):
    """An embedding whose weight is also the output layer's (weight tying)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 6)
        self.mix = nn.Linear(6, 6)
        self.head = nn.Linear(6, 10, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens: Tensor) -> Tensor:
        return self.head(torch.tanh(self.mix(self.embed(tokens))))


class TiedConvs(nn.Module):
    """Two distinct convolutions holding one weight."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(4, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.b.weight = self.a.weight
        self.stem = nn.Conv2d(3, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.b(torch.relu(self.a(self.stem(x)))).mean((2, 3))


class LinearTwice(nn.Module):
    """One ``nn.Linear`` applied twice: a reused block, registered once."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(5, 5)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.tanh(self.fc(x)))


# (build, input, prunable, the masked parameters' first names)
CASES: dict[
    str, tuple[Callable[[], nn.Module], Callable[[], Tensor], tuple[type, ...], list[str]]
] = {
    "shared-conv": (SharedConv, lambda: torch.randn(2, 3, 8, 8), (nn.Conv2d,), ["conv.weight"]),
    "shared-block": (
        SharedBlock,
        lambda: torch.randn(2, 3, 6, 6),
        (nn.Conv2d,),
        ["block.0.weight", "stem.weight"],
    ),
    "tied-embedding": (
        TiedLM,
        lambda: torch.randint(0, 10, (3, 4)),
        (nn.Linear,),
        ["mix.weight", "embed.weight"],
    ),
    "tied-convs": (
        TiedConvs,
        lambda: torch.randn(2, 3, 6, 6),
        (nn.Conv2d,),
        ["a.weight", "stem.weight"],
    ),
    "linear-twice": (LinearTwice, lambda: torch.randn(3, 5), (nn.Linear,), ["fc.weight"]),
}


def build(case: str, prune_ratio: float = 0.5) -> tuple[nn.Module, SelfDamagingWrapper, Tensor]:
    make, inputs, prunable, _ = CASES[case]
    torch.manual_seed(0)
    model = make()
    wrapper = SelfDamagingWrapper(model, damage=WeightDamage(prune_ratio, prunable=prunable))
    return model, wrapper, inputs()


def hand_masked(model: nn.Module, masks: dict[str, Tensor]) -> nn.Module:
    """A deep copy whose masked weights are leaf Parameters holding ``weight * mask``."""
    reference = copy.deepcopy(model)
    with torch.no_grad():
        for name, mask in masks.items():
            reference.get_parameter(name).mul_(mask)
    return reference


def all_names(model: nn.Module) -> list[tuple[str, Tensor]]:
    return [
        *model.named_parameters(remove_duplicate=False),
        *model.named_buffers(remove_duplicate=False),
    ]


class TestFindAliases:
    def test_shared_submodule_is_one_slot(self) -> None:
        aliases = find_aliases(SharedConv())
        assert aliases.canonical == {
            "conv.weight": "conv.weight",
            "conv.bias": "conv.bias",
            "block.0.weight": "conv.weight",
            "block.0.bias": "conv.bias",
        }
        assert aliases.tied == {}

    def test_tied_weight_is_two_slots(self) -> None:
        aliases = find_aliases(TiedLM())
        assert aliases.canonical["head.weight"] == "embed.weight"
        assert aliases.tied == {"embed.weight": ("head.weight",)}

    def test_plain_model_has_no_alias(self) -> None:
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        aliases = find_aliases(model)
        assert aliases.tied == {}
        assert all(name == first for name, first in aliases.canonical.items())
        assert list(aliases.canonical) == [n for n, _ in all_names(model)]


@pytest.mark.parametrize("case", list(CASES))
class TestTwinOnAliasedModel:
    def test_masks_are_keyed_by_first_names(self, case: str) -> None:
        _, wrapper, _ = build(case)
        assert sorted(name for name, _ in wrapper.named_masks()) == sorted(CASES[case][3])

    def test_dense_model_never_changes(self, case: str) -> None:
        model, wrapper, x = build(case)
        dense_before = wrapper.eval()(x).detach().clone()
        before = {name: (tensor, tensor.detach().clone()) for name, tensor in all_names(model)}
        wrapper.train()  # twin passes in training mode: the twin's statistics move
        optimizer_free = torch.optim.SGD(wrapper.parameters(), lr=0.0)
        for _ in range(2):  # the second pass raised AttributeError before the fix
            wrapper.damaged(x).square().sum().backward()
            optimizer_free.step()
        for name, tensor in all_names(model):
            original, values = before[name]
            assert tensor is original, f"{name} was replaced"
            assert isinstance(tensor, nn.Parameter) == isinstance(original, nn.Parameter)
            assert torch.equal(tensor, values), f"{name} changed"
        wrapper.eval()
        assert torch.equal(model(x), dense_before)
        assert torch.equal(wrapper(x), dense_before)

    def test_twin_equals_hand_masked_copy(self, case: str) -> None:
        model, wrapper, x = build(case)
        wrapper.eval()  # the twin's BatchNorm state starts as a copy of the dense one
        reference = hand_masked(model, dict(wrapper.named_masks())).eval()
        torch.testing.assert_close(wrapper.damaged(x), reference(x), **TOLERANCE)

    def test_gradient_reaches_the_one_shared_parameter(self, case: str) -> None:
        model, wrapper, x = build(case)
        wrapper.eval()
        masks = dict(wrapper.named_masks())
        reference = hand_masked(model, masks).eval()
        reference(x).square().sum().backward()
        wrapper.damaged(x).square().sum().backward()
        for name, mask in masks.items():
            expected = reference.get_parameter(name).grad
            assert expected is not None
            grad = model.get_parameter(name).grad
            assert grad is not None, f"no gradient reached {name}"
            torch.testing.assert_close(grad, expected * mask, **TOLERANCE)


class TestSharedNormalization:
    def test_twin_pass_leaves_dense_running_statistics(self) -> None:
        model, wrapper, x = build("shared-block")
        assert wrapper._twin_names == ["block.1"]  # one twin state for the shared layer
        bn = model.block[1]
        assert isinstance(bn, nn.BatchNorm2d)
        mean, var = bn.running_mean.clone(), bn.running_var.clone()
        wrapper.train()
        wrapper.damaged(x)
        assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)


class TestStrategyNames:
    def test_alias_name_from_setup_becomes_first_name(self) -> None:
        class AliasDamage(Damage):
            def setup(self, model: nn.Module) -> Sequence[str]:
                return ["block.0.weight", "conv.weight"]

            def compute_masks(
                self, model: nn.Module, *, seed: int, first: bool
            ) -> dict[str, Tensor]:
                weight = model.get_parameter("conv.weight")
                return {"conv.weight": weight.abs() > weight.abs().median()}

        wrapper = SelfDamagingWrapper(SharedConv(), damage=AliasDamage(0.5))
        assert [name for name, _ in wrapper.named_masks()] == ["conv.weight"]
        assert "masks.conv.weight" in wrapper.state_dict()


class TestCompactTwinOnSharedSubmodule:
    def test_compact_copy_keeps_placeholders(self) -> None:
        torch.manual_seed(0)
        model = SharedBlock()
        x = torch.randn(2, 3, 6, 6)
        damage = ChannelDamage(0.5, example_inputs=x)
        wrapper = SelfDamagingWrapper(model, damage=damage)
        assert damage.compact_active
        masked = SelfDamagingWrapper(
            copy.deepcopy(model), damage=ChannelDamage(0.5, example_inputs=x, compact=False)
        )
        masked.masks.load_state_dict(wrapper.masks.state_dict())
        wrapper.eval(), masked.eval()
        torch.testing.assert_close(wrapper.damaged(x), masked.damaged(x), **TOLERANCE)
        compact = damage._compact
        assert compact is not None and compact._copy is not None
        # Before the fix the copy kept the last pass's gathered tensors (and their graph).
        assert all(t.device.type == "meta" for _, t in all_names(compact._copy))
