from __future__ import annotations

import io
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from lightly.utils.lars import LARS

from selfdamage.adapters import SelfDamagingAdapter
from selfdamage.study import training
from selfdamage.study._progress import progress_bar
from selfdamage.study.data import StudyData
from selfdamage.study.models import METHOD_TABLE, METHODS, build_model
from selfdamage.study.training import (
    TrainSettings,
    build_optimizer,
    load_checkpoint,
    lr_factor,
    pretrain,
)


class Payload:
    """An arbitrary object: unpickling it could run any code."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("unpickled an arbitrary object",))


def tiny_data(n: int = 32) -> StudyData:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 16, 16), dtype=torch.uint8, generator=gen)
    labels = torch.arange(n) % 4
    return StudyData(images, labels, images[:8], labels[:8], 4, (0.5,), (0.25,))


def tiny_model(method: str = "simclr") -> SelfDamagingAdapter:
    return build_model(
        method, "resnet18-cifar", 2, (1, 16, 16), seed=0, sdclr=True, damage="weight",
        prune_ratio=0.5, temperature=METHOD_TABLE[method].defaults["temperature"],
    )  # fmt: skip


def train(
    checkpoint: Path, *, method: str = "simclr", resume: bool = False, **options: Any
) -> list[float]:
    settings = TrainSettings(**{"epochs": 1, "batch_size": 16, "lr": 0.1, "weight_decay": 0.0,
                                **options})  # fmt: skip
    model = tiny_model(method)
    return pretrain(model, tiny_data(), torch.arange(32), settings, name="run",
                    checkpoint=checkpoint, resume=resume, seed=0)  # fmt: skip


class TestCheckpoints:
    def test_every_k_epochs_and_the_last(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        saved: list[int] = []
        save = torch.save

        def recording_save(obj: Any, path: Any) -> None:
            saved.append(obj["epoch"])
            save(obj, path)

        monkeypatch.setattr(torch, "save", recording_save)
        losses = train(tmp_path / "t.pt", epochs=5, checkpoint_every=2)
        assert saved == [2, 4, 5] and len(losses) == 5

    def test_a_save_stopped_midway_keeps_the_previous_checkpoint(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        straight = train(tmp_path / "straight.pt", epochs=2)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["straight.pt"]  # no temporary
        save = torch.save

        def stopped_midway(obj: Any, file: Any) -> None:
            if obj["epoch"] < 2:
                return save(obj, file)
            whole = io.BytesIO()
            save(obj, whole)
            half = whole.getvalue()[: len(whole.getvalue()) // 2]
            if isinstance(file, (str, Path)):  # a save straight onto the checkpoint
                Path(file).write_bytes(half)
            else:
                file.write(half)
            raise KeyboardInterrupt  # the run is stopped while writing epoch 2's checkpoint

        monkeypatch.setattr(torch, "save", stopped_midway)
        with pytest.raises(KeyboardInterrupt):
            train(tmp_path / "resumed.pt", epochs=2, checkpoint_every=1)
        assert torch.load(tmp_path / "resumed.pt", weights_only=True)["epoch"] == 1
        assert sorted(p.name for p in tmp_path.iterdir()) == ["resumed.pt", "straight.pt"]
        monkeypatch.setattr(torch, "save", save)
        assert train(tmp_path / "resumed.pt", epochs=2, resume=True) == straight

    def test_epoch_line_is_logged_after_its_checkpoint(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        events: list[str] = []
        save = torch.save

        def recording_save(obj: Any, file: Any) -> None:
            save(obj, file)
            events.append("checkpoint")

        monkeypatch.setattr(torch, "save", recording_save)
        monkeypatch.setattr(training.logger, "info", lambda msg, *args: events.append(msg % args))
        train(tmp_path / "t.pt", epochs=2, checkpoint_every=1)
        # A log watcher that sees "epoch 2/2" can stop the run: its checkpoint is written.
        assert [e[:12] for e in events] == ["checkpoint", "run: epoch 1", "checkpoint",
                                            "run: epoch 2"]  # fmt: skip

    def test_only_tensors_and_plain_types(self, tmp_path: Path) -> None:
        train(tmp_path / "t.pt", method="moco")
        state = torch.load(tmp_path / "t.pt", weights_only=True)  # would raise otherwise
        assert state["epoch"] == 1 and "loss.memory_bank.bank" in state["model"]
        assert "memory_banks" not in state  # the bank is in the state_dict now

    def test_resumes_a_0_2_checkpoint_with_banks_beside_the_state_dict(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # 0.2 saved the bank under "memory_banks"; its state_dict had no bank keys.
        save = torch.save

        def also_save_as_0_2(obj: Any, path: Any) -> None:
            save(obj, path)
            if obj["epoch"] == 1:
                model = dict(obj["model"])
                banks = {k: model.pop(k) for k in list(model) if "memory_bank" in k}
                assert set(banks) == {"loss.memory_bank.bank", "loss.memory_bank.bank_ptr"}
                assert int(banks["loss.memory_bank.bank_ptr"]) > 0  # real keys, not fresh
                save({**obj, "model": model, "memory_banks": banks}, tmp_path / "old.pt")

        monkeypatch.setattr(torch, "save", also_save_as_0_2)
        train(tmp_path / "straight.pt", method="moco", epochs=2, checkpoint_every=1)
        monkeypatch.setattr(torch, "save", save)
        train(tmp_path / "old.pt", method="moco", epochs=2, checkpoint_every=1, resume=True)
        straight = torch.load(tmp_path / "straight.pt", weights_only=True)
        resumed = torch.load(tmp_path / "old.pt", weights_only=True)
        assert resumed["losses"] == straight["losses"] and len(resumed["losses"]) == 2
        for key, value in straight["model"].items():  # the bank included
            assert torch.equal(resumed["model"][key], value), key

    def test_pickled_object_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "evil.pt"
        torch.save({"model": {}, "epoch": 1, "payload": Payload()}, path)
        with pytest.raises(ValueError, match="refusing to load"):
            load_checkpoint(path, torch.device("cpu"))
        with pytest.raises(ValueError, match="start without --resume"):
            train(path, resume=True, epochs=2)

    def test_dino_resumes_exactly_with_its_center(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        straight = train(tmp_path / "straight.pt", method="dino", epochs=2)
        write = training.write_atomically

        def crash_after_first_epoch(path: Path, content: Any) -> None:
            write(path, content)
            raise KeyboardInterrupt

        monkeypatch.setattr(training, "write_atomically", crash_after_first_epoch)
        with pytest.raises(KeyboardInterrupt):
            train(tmp_path / "resumed.pt", method="dino", epochs=2, checkpoint_every=1)
        assert torch.load(tmp_path / "resumed.pt", weights_only=True)["epoch"] == 1
        monkeypatch.setattr(training, "write_atomically", write)
        resumed = train(tmp_path / "resumed.pt", method="dino", epochs=2, resume=True)
        assert resumed == straight
        one, two = (
            torch.load(tmp_path / f, weights_only=True) for f in ("straight.pt", "resumed.pt")
        )
        assert one["model"]["loss.center"].abs().sum() > 0
        for key, value in one["model"].items():
            assert torch.equal(two["model"][key], value), key


class TestWarnings:
    def test_warnings_from_below_point_at_the_caller(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        model = tiny_model()
        refresh = model.refresh_mask

        def warning_refresh() -> None:
            warnings.warn("from below", UserWarning, stacklevel=2)
            refresh()

        monkeypatch.setattr(model, "refresh_mask", warning_refresh)
        settings = TrainSettings(epochs=1, batch_size=16, lr=0.1, weight_decay=0.0)
        with pytest.warns(UserWarning, match="from below") as got:
            pretrain(model, tiny_data(), torch.arange(32), settings, name="run",
                     checkpoint=tmp_path / "t.pt", resume=False, seed=0)  # fmt: skip
        assert [w.filename for w in got] == [__file__]

    def test_build_model_warnings_point_at_the_caller(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from selfdamage.study import models

        build = models.ADAPTERS["simclr"]

        def warning_build(*args: Any, **kwargs: Any) -> Any:
            warnings.warn("from below", UserWarning, stacklevel=2)
            return build(*args, **kwargs)

        monkeypatch.setitem(models.ADAPTERS, "simclr", warning_build)
        with pytest.warns(UserWarning, match="from below") as got:
            tiny_model()  # helpers live in this file: the caller's line is here
        assert [w.filename for w in got] == [__file__]


class TestProgress:
    def test_no_bar_without_a_terminal(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(sys, "stderr", io.StringIO())
        assert progress_bar(True, unit="step", total=3) is None

    def test_bar_on_a_terminal(self, monkeypatch: pytest.MonkeyPatch) -> None:
        class Tty(io.StringIO):
            def isatty(self) -> bool:
                return True

        monkeypatch.setattr(sys, "stderr", Tty())
        bar = progress_bar(True, unit="step", total=3, file=sys.stderr)
        assert bar is not None
        bar.close()
        assert progress_bar(False, unit="step", total=3) is None

    def test_epoch_lines_in_the_log(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level("INFO", logger="selfdamage.study.training"):
            train(tmp_path / "t.pt", epochs=2, progress=True)
        lines = [r.getMessage() for r in caplog.records if "epoch" in r.getMessage()]
        assert [line.split(",")[0] for line in lines] == ["run: epoch 1/2", "run: epoch 2/2"]


class TestSchedule:
    def test_warmup_then_cosine(self) -> None:
        assert [lr_factor(s, 10, 2) for s in (0, 1)] == [0.5, 1.0]
        assert lr_factor(6, 10, 2) == pytest.approx(0.5)  # half way through the decay
        assert lr_factor(0, 10, 0) == 1.0


def test_batch_larger_than_subset(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch_size=64 is larger than the training subset"):
        train(tmp_path / "t.pt", batch_size=64)


@pytest.mark.parametrize("method", METHODS)
def test_bf16_autocast_and_channels_last_path(tmp_path: Path, method: str) -> None:
    # The CUDA defaults, exercised on the CPU (which supports bf16 autocast too).
    losses = train(tmp_path / "t.pt", method=method, epochs=2, amp=True, channels_last=True)
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    state = torch.load(tmp_path / "t.pt", weights_only=True)
    assert all(v.dtype != torch.bfloat16 for v in state["model"].values())  # fp32 weights


class TestOptimizers:
    @pytest.mark.parametrize(
        ("name", "expected"),
        [("sgd", torch.optim.SGD), ("lars", LARS), ("adamw", torch.optim.AdamW)],
    )
    def test_the_named_optimizer_trains(
        self, tmp_path: Path, name: str, expected: type[torch.optim.Optimizer]
    ) -> None:
        built: list[torch.optim.Optimizer] = []
        original = training.build_optimizer

        def recording(*args: Any, **kwargs: Any) -> torch.optim.Optimizer:
            built.append(original(*args, **kwargs))
            return built[-1]

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(training, "build_optimizer", recording)
            losses = train(tmp_path / "t.pt", optimizer=name)
        assert [type(o) for o in built] == [expected] and all(map(math.isfinite, losses))
        assert built[0].param_groups[0]["lr"] == pytest.approx(0.0)  # cosine decayed to 0

    def test_sgd_step_is_momentum_sgd(self) -> None:
        # Two steps by hand: v = g + wd * w, buffer b = 0.9 * b + v (b = v at first), w -= lr * b.
        weight = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
        optimizer = build_optimizer("sgd", [weight], lr=0.1, weight_decay=0.5)
        w, b = weight.detach().clone(), torch.zeros(2, dtype=torch.float64)
        for step, grad in enumerate(([0.2, 0.4], [-0.1, 0.3])):
            g = torch.tensor(grad, dtype=torch.float64)
            weight.grad = g.clone()
            optimizer.step()
            v = g + 0.5 * w
            b = v if step == 0 else 0.9 * b + v
            w = w - 0.1 * b
        torch.testing.assert_close(weight.detach(), w, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("method", "key"), [("nnclr", "memory_bank.bank"), ("tico", "loss.C")])
def test_method_state_is_trained_and_checkpointed(tmp_path: Path, method: str, key: str) -> None:
    train(tmp_path / "t.pt", method=method)
    state = torch.load(tmp_path / "t.pt", weights_only=True)["model"]
    assert not torch.equal(state[key], tiny_model(method).state_dict()[key])
    if method == "tico":  # a MomentumAdapter: the study moved its momentum encoder
        key = "momentum_encoder.head.layers.0.weight"
        assert not torch.equal(state[key], tiny_model(method).state_dict()[key])
