from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from selfdamage.evaluation import extract_features


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.AdaptiveAvgPool2d(1)
    )


def _loader() -> DataLoader:
    inputs = torch.randn(10, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    return DataLoader(TensorDataset(inputs, torch.arange(10) % 3), batch_size=4)


class TestExtractFeatures:
    def test_features_are_the_eval_mode_outputs(self) -> None:
        model = _model()
        model.get_buffer("1.running_mean").fill_(0.5)  # eval-mode BN must use these
        features, labels = extract_features(model, _loader())
        inputs = torch.cat([x for x, _ in _loader()])
        model.eval()
        with torch.no_grad():
            expected = model(inputs).flatten(1)
        assert features.shape == (10, 4)
        assert torch.allclose(features, expected, atol=1e-6)
        assert labels.tolist() == (torch.arange(10) % 3).tolist()
        assert labels.dtype == torch.int64
        assert not features.requires_grad

    def test_restores_each_submodule_mode_and_running_stats(self) -> None:
        model = _model().train()
        model[2].eval()  # a mixed state must come back as it was
        stats = {k: v.clone() for k, v in model.state_dict().items()}
        extract_features(model, _loader())
        assert [m.training for m in model] == [True, True, False, True]
        for key, value in model.state_dict().items():
            assert torch.equal(value, stats[key]), key

    def test_restores_mode_after_an_error(self) -> None:
        model = _model().train()
        with pytest.raises(TypeError, match=r"labels are needed"):
            extract_features(model, [torch.randn(2, 3, 8, 8)])
        assert model.training

    def test_model_must_return_a_tensor(self) -> None:
        with pytest.raises(TypeError, match=r"feature tensor, got tuple"):
            extract_features(_Pair(), _loader())

    def test_empty_loader(self) -> None:
        with pytest.raises(ValueError, match=r"loader is empty"):
            extract_features(_model(), [])


class _Pair(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x
