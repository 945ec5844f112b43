"""The evaluation protocol on a hand-built dataset whose answers are known."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import torch
from torch import nn

from selfdamage.adapters import SimCLRAdapter
from selfdamage.study.data import StudyData
from selfdamage.study.evaluation import METRICS, evaluate

# Three classes told apart by where the image is bright: nowhere, left half, right half.
_HALVES = {0: (20, 20), 1: (220, 20), 2: (20, 220)}


def _images(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    images = torch.empty(len(labels), 1, 4, 4)
    for i, label in enumerate(labels.tolist()):
        left, right = _HALVES[label]
        images[i, :, :, :2], images[i, :, :, 2:] = left, right
    noise = torch.randint(-10, 11, images.shape, generator=generator)
    return (images + noise).clamp(0, 255).to(torch.uint8)


def _data() -> StudyData:
    generator = torch.Generator().manual_seed(0)
    train_y = torch.arange(3).repeat_interleave(20)
    test_y = torch.arange(3).repeat_interleave(10)
    return StudyData(
        _images(train_y, generator), train_y, _images(test_y, generator), test_y, 3, (0.5,), (0.25,)
    )


def _model(baseline: bool) -> SimCLRAdapter:
    """Features: the mean brightness of the left and of the right half of the image."""
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
    backbone = nn.Sequential(conv, nn.AdaptiveAvgPool2d((1, 2)), nn.Flatten())
    return SimCLRAdapter(backbone, feature_dim=2, prune_ratio=0.5, baseline=baseline)


class TestEvaluate:
    def test_separable_classes_are_all_right(self) -> None:
        data = _data()
        longtail = torch.arange(len(data.train_labels))
        metrics = evaluate(
            _model(baseline=True), data, (20, 8, 2), longtail,
            with_damage=False, probe_shots=5, probe_draws=2,
        )  # fmt: skip
        for name in ("accuracy", "many", "medium", "few", "knn"):
            assert metrics[name] == 1.0, name
        assert metrics["balancedness"] == 0.0
        assert metrics["damage_auroc"] is None
        assert len(metrics["probe_draws"]) == 2
        # Groups by the long-tailed counts: class 0 is Many, 1 Medium, 2 Few.
        assert metrics["groups"] == {"many": [0], "medium": [1], "few": [2]}
        assert set(METRICS) <= set(metrics)

    def test_whole_split_with_zero_shots(self) -> None:
        data = _data()
        metrics = evaluate(
            _model(baseline=False), data, (20, 8, 2), torch.arange(60),
            with_damage=False, probe_shots=0, probe_draws=3,
        )  # fmt: skip
        assert len(metrics["probe_draws"]) == 1  # one "draw": the whole training split
        assert metrics["accuracy"] == 1.0

    def test_damage_auroc_prunes_the_baselines_final_weights(self) -> None:
        data = _data()
        model = _model(baseline=True)
        refreshes = int(model.wrapper.refresh_count)
        metrics = evaluate(
            model, data, (20, 8, 2), torch.arange(60),
            with_damage=True, probe_shots=5, probe_draws=1,
        )  # fmt: skip
        assert int(model.wrapper.refresh_count) == refreshes + 1
        assert 0.0 <= metrics["damage_auroc"] <= 1.0

    def test_warnings_from_below_point_at_the_caller(self, monkeypatch: pytest.MonkeyPatch) -> None:
        model = _model(baseline=True)
        refresh = model.refresh_mask

        def warning_refresh() -> None:
            warnings.warn("from below", UserWarning, stacklevel=2)
            refresh()

        monkeypatch.setattr(model, "refresh_mask", warning_refresh)
        with pytest.warns(UserWarning, match="from below") as got:
            evaluate(model, _data(), (20, 8, 2), torch.arange(60),
                     with_damage=True, probe_shots=5, probe_draws=1)  # fmt: skip
        assert [w.filename for w in got] == [__file__]


class _Streamed:
    """An ImageSource over a tensor: the images are only reachable batch by batch."""

    def __init__(self, images: torch.Tensor) -> None:
        self._images = images
        self.shape = tuple(images.shape)
        self.read = 0

    def batches(self, indices: Sequence[int], batch_size: int) -> Iterator[torch.Tensor]:
        for start in range(0, len(indices), batch_size):
            chosen = list(indices[start : start + batch_size])
            self.read += len(chosen)
            yield self._images[torch.tensor(chosen)]


class TestOwnData:
    def test_streamed_images_give_the_same_metrics(self) -> None:
        data = _data()
        streamed = StudyData(
            _Streamed(data.train_images), data.train_labels, _Streamed(data.test_images),
            data.test_labels, 3, data.mean, data.std,
        )  # fmt: skip
        kwargs: dict[str, Any] = {"with_damage": True, "probe_shots": 5, "probe_draws": 2}
        expected = evaluate(_model(baseline=True), data, (20, 8, 2), torch.arange(60), **kwargs)
        got = evaluate(_model(baseline=True), streamed, (20, 8, 2), torch.arange(60), **kwargs)
        for name in METRICS:
            assert got[name] == pytest.approx(expected[name], abs=1e-6), name
        assert streamed.test_images.read == 30  # type: ignore[union-attr]

    def test_imbalanced_test_split_adds_balanced_accuracy(self) -> None:
        # Classes 1 and 2 look the same: the probe gives both one answer, so one of them
        # is always right and the other always wrong; class 0 is always right.
        train_y = torch.arange(3).repeat_interleave(6)
        test_y = torch.tensor([0] * 10 + [1] * 10 + [2] * 2)
        halves = {0: (20, 20), 1: (220, 20), 2: (220, 20)}

        def images(labels: torch.Tensor) -> torch.Tensor:
            out = torch.empty(len(labels), 1, 4, 4, dtype=torch.uint8)
            for i, label in enumerate(labels.tolist()):
                out[i, :, :, :2], out[i, :, :, 2:] = halves[label]
            return out

        data = StudyData(images(train_y), train_y, images(test_y), test_y, 3, (0.5,), (0.25,))
        metrics = evaluate(
            _model(baseline=True), data, (6, 6, 6), torch.arange(18),
            with_damage=False, probe_shots=3, probe_draws=1,
        )  # fmt: skip
        # Per class: 1, and 1 and 0 for classes 1 and 2 in some order: mean 2/3 either way.
        assert metrics["balanced_accuracy"] == pytest.approx(2 / 3)
        assert metrics["accuracy"] in (pytest.approx(20 / 22), pytest.approx(12 / 22))

    def test_balanced_test_split_has_no_balanced_accuracy(self) -> None:
        metrics = evaluate(
            _model(baseline=True), _data(), (20, 8, 2), torch.arange(60),
            with_damage=False, probe_shots=5, probe_draws=1,
        )  # fmt: skip
        assert "balanced_accuracy" not in metrics

    def test_count_thresholds_group_the_classes(self) -> None:
        metrics = evaluate(
            _model(baseline=True), _data(), (200, 50, 10), torch.arange(60),
            with_damage=False, probe_shots=5, probe_draws=1, thresholds=(100, 20),
        )  # fmt: skip
        assert metrics["groups"] == {"many": [0], "medium": [1], "few": [2]}
        with pytest.raises(ValueError, match="the Few group is empty"):
            evaluate(
                _model(baseline=True), _data(), (200, 50, 30), torch.arange(60),
                with_damage=False, probe_shots=5, probe_draws=1, thresholds=(100, 20),
            )  # fmt: skip
