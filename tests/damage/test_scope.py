"""The twin's scope: frozen weights, attention, weight-transforming layers, coverage."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfdamage.damage._scope import (
    all_frozen,
    is_frozen,
    module_kind,
    weight_coverage,
    weight_names,
    weight_transform,
)


class WSConv2d(nn.Conv2d):
    """A hand-written weight-standardizing convolution (as in NF-Nets / BiT)."""

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        out: Tensor = self._conv_forward(x, w, self.bias)
        return out


class PaddedConv2d(nn.Conv2d):
    """Overrides forward but uses its weight as is (like timm's Conv2dSame)."""

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self._conv_forward(F.pad(x, (1, 1, 1, 1)), self.weight, self.bias)
        return out


class TestWeightTransform:
    def test_plain_layers_use_their_weight(self) -> None:
        for layer in (
            nn.Conv2d(2, 3, 3),
            nn.Linear(3, 4),
            nn.Conv1d(2, 2, 3),
            PaddedConv2d(2, 3, 3),
        ):
            assert weight_transform(layer) is None, layer

    def test_parametrized_weight_norm_and_spectral_norm(self) -> None:
        weight_norm = nn.utils.parametrizations.weight_norm(nn.Conv2d(2, 3, 3))
        spectral = nn.utils.parametrizations.spectral_norm(nn.Linear(3, 4))
        assert "parametrized" in str(weight_transform(weight_norm))
        assert "parametrized" in str(weight_transform(spectral))

    def test_hook_based_weight_norm_and_spectral_norm(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            weight_norm = nn.utils.weight_norm(nn.Conv2d(2, 3, 3))
        spectral = nn.utils.spectral_norm(nn.Conv2d(2, 3, 3))
        assert "WeightNorm" in str(weight_transform(weight_norm))
        assert "SpectralNorm" in str(weight_transform(spectral))

    def test_hand_written_standardization_is_found_by_probing(self) -> None:
        layer = WSConv2d(2, 3, 3)
        state = torch.get_rng_state()
        assert "not linear in its weight" in str(weight_transform(layer))
        assert torch.equal(torch.get_rng_state(), state)  # the probe draws privately

    def test_timm_std_convs(self) -> None:
        layers = pytest.importorskip("timm.layers")
        for cls in ("StdConv2d", "StdConv2dSame", "ScaledStdConv2d", "ScaledStdConv2dSame"):
            layer = getattr(layers, cls)(4, 4, 3)
            assert "standardizes its weight" in str(weight_transform(layer)), cls


class TestWeightNames:
    def test_attention_projections(self) -> None:
        assert weight_names(nn.MultiheadAttention(8, 2)) == ["in_proj_weight"]
        separate = nn.MultiheadAttention(8, 2, kdim=4, vdim=6)
        assert weight_names(separate) == ["q_proj_weight", "k_proj_weight", "v_proj_weight"]
        assert weight_names(nn.Linear(2, 2)) == ["weight"]
        assert module_kind(separate.out_proj) == "Linear"


class TestFrozen:
    def test_predicates(self) -> None:
        layer = nn.Linear(2, 2)
        assert not is_frozen(layer.weight)
        layer.weight.requires_grad_(False)
        assert is_frozen(layer.weight) and not all_frozen(layer)  # bias still trainable
        layer.bias.requires_grad_(False)
        assert all_frozen(layer)
        assert not all_frozen(nn.BatchNorm1d(2, affine=False))


class TestCoverage:
    def test_counts_trainable_weights_by_kind(self) -> None:
        model = nn.Sequential(
            nn.Conv2d(2, 3, 3), nn.Linear(4, 5), nn.Linear(5, 6), nn.BatchNorm1d(6)
        )
        model[2].weight.requires_grad_(False)
        found = weight_coverage(model, {"0.weight"})
        assert found == {"Conv2d": (54, 54, []), "Linear": (0, 20, [("1.weight", 20)])}


def test_parametrized_weights_count_for_their_layer() -> None:
    """``0.parametrizations.weight.original`` belongs to the Conv2d, not a ParametrizationList."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 4))
    nn.utils.parametrizations.spectral_norm(model[0])
    found = weight_coverage(model, ["2.weight"])
    assert {kind: (done, total) for kind, (done, total, _) in found.items()} == {
        "Conv2d": (0, 18),
        "Linear": (8, 8),
    }
