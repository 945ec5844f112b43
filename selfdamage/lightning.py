"""PyTorch Lightning integration: re-prune every twin at the start of every epoch.

Needs PyTorch Lightning (``pip install 'selfdamage[lightning]'``); ``import selfdamage``
does not import this module. The callback subclasses ``pytorch_lightning.Callback``, the
package lightly depends on; where only the ``lightning`` distribution is installed it
subclasses ``lightning.pytorch.Callback`` instead.
"""

from __future__ import annotations

from torch import nn

try:
    import pytorch_lightning as pl
except ImportError:  # pragma: no cover - depends on what is installed
    try:
        import lightning.pytorch as pl  # type: ignore[no-redef]
    except ImportError as error:
        raise ImportError(
            "selfdamage.lightning needs PyTorch Lightning: pip install 'selfdamage[lightning]'"
        ) from error

from selfdamage._warnings import warns_at_caller
from selfdamage.wrapper import SelfDamagingWrapper

__all__ = ["SelfDamagingCallback"]


class SelfDamagingCallback(pl.Callback):
    """Refreshes every :class:`~selfdamage.wrapper.SelfDamagingWrapper` each epoch and logs it.

    At every ``on_train_epoch_start`` it calls ``refresh_mask()`` on each wrapper found
    in ``pl_module.modules()`` (the adapters' ``adapter.wrapper`` included), then logs the
    twin's sparsity as ``"selfdamage/sparsity"``, or as ``"selfdamage/<name>/sparsity"``
    with the wrapper's qualified name when the module holds several. Under DDP every rank
    refreshes from the same weights and so draws the same masks. Momentum updates
    (``update_momentum``) stay in the user's ``training_step``. Warnings of a refresh (a
    fully masked layer, say) point at the line of Lightning that called the hook.

    At the start of training it checks that the trainer's optimizers update every
    trainable parameter of each wrapper
    (:meth:`~selfdamage.wrapper.SelfDamagingWrapper.check_optimizer`): an optimizer built
    from the bare model's parameters would leave the twin's BatchNorm untrained.

    Raises:
        ValueError: At the start of fitting, if the LightningModule holds no wrapper; at
            the start of training, if an optimizer misses a wrapper's parameters.

    Examples:
        >>> import pytorch_lightning as pl
        >>> import torch
        >>> from torch import nn
        >>> from selfdamage.adapters import SimCLRAdapter
        >>> class SDCLR(pl.LightningModule):
        ...     def __init__(self) -> None:
        ...         super().__init__()
        ...         backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        ...         self.model = SimCLRAdapter(backbone, feature_dim=8, prune_ratio=0.5)
        ...     def training_step(self, batch, batch_idx):
        ...         x0, x1 = batch
        ...         return self.model(x0, x1)
        ...     def configure_optimizers(self):
        ...         return torch.optim.SGD(self.parameters(), lr=0.1)
        >>> views = torch.utils.data.TensorDataset(torch.randn(8, 3, 8, 8), torch.randn(8, 3, 8, 8))
        >>> trainer = pl.Trainer(
        ...     max_epochs=2, accelerator="cpu", callbacks=[SelfDamagingCallback()],
        ...     logger=False, enable_checkpointing=False, enable_progress_bar=False,
        ...     enable_model_summary=False,
        ... )
        >>> module = SDCLR()
        >>> trainer.fit(module, torch.utils.data.DataLoader(views, batch_size=4))
        >>> int(module.model.wrapper.refresh_count)  # 1 at construction, +1 per epoch
        3
    """

    @warns_at_caller
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Checks that there is a wrapper to refresh."""
        if not _wrappers(pl_module):
            raise ValueError(
                f"SelfDamagingCallback found no SelfDamagingWrapper in "
                f"{type(pl_module).__name__}. Give the LightningModule an adapter from "
                "selfdamage.adapters or a SelfDamagingWrapper as a submodule, or drop the "
                "callback."
            )

    @warns_at_caller
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Checks that the optimizers update every trainable parameter of each wrapper.

        Skipped for a wrapper none of whose parameters is in an optimizer: the
        parameters were flattened or sharded by the strategy (FSDP, DeepSpeed), and
        there is nothing to compare.
        """
        held = {id(p) for opt in trainer.optimizers for g in opt.param_groups for p in g["params"]}
        for wrapper in _wrappers(pl_module).values():
            if any(id(p) in held for p in wrapper.parameters()):
                wrapper.check_optimizer(*trainer.optimizers)

    @warns_at_caller
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Re-prunes each twin from the current dense weights and logs its sparsity."""
        wrappers = _wrappers(pl_module)
        for name, wrapper in wrappers.items():
            wrapper.refresh_mask()
            key = "selfdamage/sparsity" if len(wrappers) == 1 else f"selfdamage/{name}/sparsity"
            pl_module.log(key, wrapper.sparsity, on_step=False, on_epoch=True)


def _wrappers(module: nn.Module) -> dict[str, SelfDamagingWrapper]:
    return {
        name: child
        for name, child in module.named_modules()
        if isinstance(child, SelfDamagingWrapper)
    }
