"""SelfDamagingCallback in a real Lightning fit: refreshes, logging, checkpoints."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from lightly.models.modules import SimCLRProjectionHead
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

import selfdamage
from selfdamage import SelfDamagingWrapper
from selfdamage.adapters import ADAPTERS, MomentumAdapter, SimCLRAdapter
from selfdamage.lightning import SelfDamagingCallback


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def backbone() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1)
    )


class SDCLR(pl.LightningModule):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.model = SimCLRAdapter(backbone(), 8, 0.5, head=SimCLRProjectionHead(8, 16, 8))
        self.seen_refresh_counts: list[int] = []

    def training_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
        self.seen_refresh_counts.append(int(self.model.wrapper.refresh_count))
        x0, x1 = batch
        loss: Tensor = self.model(x0, x1)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class TwoWrappers(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.a = SelfDamagingWrapper(backbone(), 0.5)
        self.b = SelfDamagingWrapper(backbone(), 0.25)

    def training_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
        x0, x1 = batch
        loss: Tensor = (self.a(x0) - self.b.damaged(x1)).pow(2).mean()
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class NoWrapper(TwoWrappers):
    def __init__(self) -> None:
        pl.LightningModule.__init__(self)
        self.a = backbone()


def fit(module: pl.LightningModule) -> pl.Trainer:
    gen = torch.Generator().manual_seed(0)
    views = TensorDataset(
        torch.randn(16, 3, 8, 8, generator=gen), torch.randn(16, 3, 8, 8, generator=gen)
    )
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        limit_train_batches=2,
        callbacks=[SelfDamagingCallback()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, DataLoader(views, batch_size=4))
    return trainer


class TestSelfDamagingCallback:
    def test_refreshes_each_epoch_and_a_checkpoint_restores_the_twin(self, tmp_path: Path) -> None:
        module = SDCLR()
        trainer = fit(module)
        # 1 at construction, then +1 at the start of each epoch, before its first step.
        assert module.seen_refresh_counts == [2, 2, 3, 3]
        assert int(module.model.wrapper.refresh_count) == 3
        assert float(trainer.callback_metrics["selfdamage/sparsity"]) == pytest.approx(
            0.5, abs=0.02
        )

        path = tmp_path / "sdclr.ckpt"
        trainer.save_checkpoint(path)
        fresh = SDCLR(seed=1)
        masks = dict(module.model.wrapper.named_masks())
        assert any(not torch.equal(masks[n], m) for n, m in fresh.model.wrapper.named_masks())
        restored = SDCLR.load_from_checkpoint(path, seed=1)
        for name, mask in restored.model.wrapper.named_masks():
            assert torch.equal(mask, masks[name]), name
        twin = module.model.wrapper.twin_norms.state_dict()
        for key, value in restored.model.wrapper.twin_norms.state_dict().items():
            assert torch.equal(value, twin[key]), key
        for key in ("refresh_count", "mask_seed"):
            assert torch.equal(
                restored.model.wrapper.get_buffer(key), module.model.wrapper.get_buffer(key)
            )
        x = torch.randn(4, 3, 8, 8)
        module.eval()
        restored.eval()
        with torch.no_grad():
            torch.testing.assert_close(
                restored.model.wrapper.damaged(x), module.model.wrapper.damaged(x)
            )

    def test_logs_each_wrapper_under_its_name(self) -> None:
        module = TwoWrappers()
        trainer = fit(module)
        assert int(module.a.refresh_count) == int(module.b.refresh_count) == 3
        metrics = trainer.callback_metrics
        assert float(metrics["selfdamage/a/sparsity"]) == pytest.approx(0.5, abs=0.02)
        assert float(metrics["selfdamage/b/sparsity"]) == pytest.approx(0.25, abs=0.02)

    def test_module_without_wrapper_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="found no SelfDamagingWrapper in NoWrapper"):
            fit(NoWrapper())


class AnyMethod(pl.LightningModule):
    """A registered adapter in a LightningModule, as a user's ``training_step`` calls it."""

    def __init__(self, method: str, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.model = ADAPTERS[method](backbone(), 8, 0.5)

    def training_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
        if isinstance(self.model, MomentumAdapter):
            self.model.update_momentum(0.9)
        x0, x1 = batch
        loss: Tensor = self.model(x0, x1)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


@pytest.mark.parametrize("method", sorted(ADAPTERS))
def test_every_method_trains_and_resumes_exactly(tmp_path: Path, method: str) -> None:
    module = AnyMethod(method)
    trainer = fit(module)
    assert int(module.model.wrapper.refresh_count) == 3
    path = tmp_path / "run.ckpt"
    trainer.save_checkpoint(path)
    restored = AnyMethod.load_from_checkpoint(path, method=method, seed=1)
    state = module.state_dict()
    assert restored.state_dict().keys() == state.keys()
    for key, value in restored.state_dict().items():
        assert torch.equal(value, state[key]), key
    # Everything the next step depends on was in the checkpoint: it continues identically.
    x0, x1 = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    losses = [m.training_step([x0, x1], 0) for m in (module, restored)]
    assert torch.isfinite(losses[0]) and torch.equal(losses[0], losses[1])
    for key, value in restored.state_dict().items():  # and leaves the same state
        assert torch.equal(value, module.state_dict()[key]), key


class BareModelOptimizer(SDCLR):
    def configure_optimizers(self) -> torch.optim.Optimizer:
        # A training script's optimizer kept after wrapping: misses the twin's BatchNorm.
        return torch.optim.SGD(self.model.wrapper.model.parameters(), lr=0.1)


def test_callback_checks_the_optimizers() -> None:
    views = TensorDataset(torch.randn(8, 3, 8, 8), torch.randn(8, 3, 8, 8))
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        callbacks=[SelfDamagingCallback()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with pytest.raises(ValueError, match=r"twin_norms\..*wrapper\.parameters\(\)"):
        trainer.fit(BareModelOptimizer(), DataLoader(views, batch_size=4))


def test_load_from_checkpoint_without_masks_non_strict(tmp_path: Path) -> None:
    # A pretrained-backbone checkpoint: only the backbone's weights, loaded with strict=False.
    pretrained = SDCLR(seed=1)
    backbone_keys = "model.wrapper.model.backbone."
    state = {k: v for k, v in pretrained.state_dict().items() if k.startswith(backbone_keys)}
    path = tmp_path / "backbone.ckpt"
    torch.save({"state_dict": state, "pytorch-lightning_version": pl.__version__}, path)
    masks = dict(SDCLR(seed=0).model.wrapper.named_masks())
    restored = SDCLR.load_from_checkpoint(path, seed=0, strict=False)
    for key, value in state.items():
        assert torch.equal(restored.state_dict()[key], value), key
    for name, mask in restored.model.wrapper.named_masks():
        assert torch.equal(mask, masks[name]), name


class LosesALayer(SDCLR):
    """Its first conv falls under the global threshold once training starts."""

    def __init__(self) -> None:
        super().__init__()
        convs = nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.AdaptiveAvgPool2d(1)
        )
        self.model = SimCLRAdapter(convs, 8, 0.5, head=SimCLRProjectionHead(8, 16, 8))

    def on_train_start(self) -> None:
        with torch.no_grad():
            self.model.backbone[0].weight.mul_(1e-6)


def test_refresh_warning_points_outside_selfdamage() -> None:
    # Lightning calls the callback's hook; the warning must not name a line of selfdamage.
    with pytest.warns(UserWarning, match="the twin masks every entry of 'backbone.0.weight'") as w:
        fit(LosesALayer())
    (warning,) = [x for x in w if "every entry of 'backbone.0.weight'" in str(x.message)]
    package = str(Path(selfdamage.__file__).parent)
    assert not warning.filename.startswith(package), warning.filename
    assert "lightning" in warning.filename  # the line of Lightning that called the hook
