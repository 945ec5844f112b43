"""The long-tail study: a base method against SDCLR under one protocol.

For every class order and seed, the study pretrains the base method (``baseline``) and
SDCLR (``sdclr``) with identical settings (backbone, heads, augmentations, data order,
initial weights, schedule) on the same long-tailed subset, and, optionally, the base method
on a balanced subset of the same size (``balanced``), which shows what the imbalance costs
at all. Each model is then evaluated with the paper's protocol:

- a linear probe on frozen dense features, trained on a *balanced* labeled subset of the
  training split (``probe_shots`` per class, several draws) and tested on the test split;
- Many / Medium / Few accuracy by class frequency in the long-tailed subset, and the
  standard deviation of the three ("balancedness");
- kNN accuracy with the same balanced labeled subsets as memory;
- the AUROC of damage scores (dense vs twin disagreement) for telling Few-class samples of
  the long-tailed set from the others.

Results are reported per variant as mean and standard deviation over runs, plus the
paired difference SDCLR minus baseline, in a JSON file, a PNG chart and a terminal table.
Training checkpoints are written every epoch; ``resume=True`` continues exactly.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from lightly.models.modules.memory_bank import MemoryBankModule
from lightly.utils.scheduler import cosine_schedule
from torch import Tensor, nn
from tqdm.auto import tqdm

from selfdamage.adapters import BYOLAdapter, MoCoAdapter, SimCLRAdapter
from selfdamage.adapters._base import MomentumAdapter, SelfDamagingAdapter
from selfdamage.backbones import cifar_resnet18
from selfdamage.data import balanced_indices, load_cifar, load_fashion_mnist, longtail_indices
from selfdamage.data.batch_views import BatchViews
from selfdamage.evaluation import auroc, damage_scores, group_accuracy, knn_predict, linear_probe

__all__ = ["BACKBONES", "DATASETS", "METHODS", "VARIANTS", "run_longtail_study"]

logger = logging.getLogger(__name__)

DATASETS = ("fashion-mnist", "cifar10", "cifar100")
METHODS = ("simclr", "moco", "byol")
BACKBONES = ("resnet18-cifar", "resnet18")
VARIANTS = ("baseline", "sdclr", "balanced")
METRICS = ("accuracy", "many", "medium", "few", "balancedness", "knn", "damage_auroc")

_STATS = {  # per-channel mean and std of the training images, in [0, 1]
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


@dataclass(frozen=True)
class _Data:
    train_images: Tensor  # uint8 (N, C, H, W)
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def run_longtail_study(
    *,
    out_dir: str | Path,
    dataset: str = "fashion-mnist",
    data_dir: str | Path | None = None,
    download: bool = False,
    method: str = "simclr",
    damage: str = "weight",
    backbone: str = "resnet18-cifar",
    width: int = 8,
    epochs: int = 30,
    batch_size: int = 256,
    lr: float = 0.5,
    weight_decay: float = 1e-4,
    temperature: float = 0.2,
    prune_ratio: float = 0.9,
    imbalance_ratio: float = 100.0,
    n_max: int | None = 1500,
    seeds: Sequence[int] = (0,),
    class_orders: int = 1,
    balanced_reference: bool = False,
    probe_shots: int = 100,
    probe_draws: int = 5,
    device: str = "cpu",
    resume: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Pretrains the base method and SDCLR on long-tailed data and evaluates both.

    Args:
        out_dir: Where ``results.json``, ``groups.png``, per-run results (``runs/``) and
            training checkpoints (``checkpoints/``) go.
        dataset: One of :data:`DATASETS`.
        data_dir: Folder with the dataset files. Default: the Debian package's folder for
            Fashion-MNIST; required for CIFAR.
        download: Let torchvision download CIFAR into ``data_dir``.
        method: The base method, one of :data:`METHODS`.
        damage: ``"weight"`` (the paper) or ``"channel"`` (structured damage).
        backbone: ``"resnet18-cifar"`` (3x3 stem, no max-pool, ``width`` channels) or
            ``"resnet18"`` (torchvision's, 64 channels).
        width: First-stage width of ``resnet18-cifar``; 64 in the paper.
        epochs: Pretraining epochs per run.
        batch_size: Pretraining batch size (the last incomplete batch is dropped).
        lr: SGD learning rate at ``batch_size`` 256 (scaled linearly), with momentum 0.9,
            a linear warm-up over a tenth of the epochs (at most 10) and a cosine decay
            per step, as in the paper's scripts.
        weight_decay: SGD weight decay.
        temperature: Temperature of the contrastive loss (SimCLR, MoCo).
        prune_ratio: The twin's prune ratio.
        imbalance_ratio: Largest over smallest class size of the long-tailed subset.
        n_max: Size of the largest class; ``None`` uses the smallest class of the split.
        seeds: Training seeds; each gives one run per variant and class order.
        class_orders: Number of class orders (which classes are head and tail); order
            ``k`` is drawn with seed ``k``.
        balanced_reference: Also pretrain the base method on a balanced subset of the
            same size as the long-tailed one.
        probe_shots: Labeled samples per class for the linear probe and kNN; 0 uses the
            whole (balanced) training split.
        probe_draws: Number of labeled subsets drawn; metrics are averaged over them.
        device: Where to train, e.g. ``"cpu"`` or ``"cuda"``.
        resume: Continue from the checkpoints and results in ``out_dir``.
        max_steps: Stop each epoch after this many steps (for smoke tests).
        progress: Show tqdm progress bars.

    Returns:
        The content of ``results.json``: settings, per-run metrics and the summary.

    Raises:
        ValueError: If an option is not one of the allowed values.
        FileNotFoundError: If the dataset is missing; the message says how to get it.

    Examples:
        >>> results = run_longtail_study(out_dir="runs/longtail", epochs=1)  # doctest: +SKIP
        >>> results["summary"]["sdclr"]["few"]["mean"]  # doctest: +SKIP
    """
    settings = dict(locals())
    settings["out_dir"] = str(out_dir)
    settings["data_dir"] = None if data_dir is None else str(data_dir)
    settings["seeds"] = list(seeds)
    _check_choice("dataset", dataset, DATASETS)
    _check_choice("method", method, METHODS)
    _check_choice("backbone", backbone, BACKBONES)
    _check_choice("damage", damage, ("weight", "channel"))
    for name in ("epochs", "batch_size", "class_orders", "probe_draws", "width"):
        _check_positive(name, settings[name])
    if probe_shots < 0:
        raise ValueError(f"probe_shots must be >= 0, got probe_shots={probe_shots!r}.")
    if not seeds:
        raise ValueError("seeds must name at least one seed, got seeds=[].")

    out = Path(out_dir)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "checkpoints").mkdir(exist_ok=True)
    dev = torch.device(device)
    data = _load_data(dataset, data_dir, download, three_channels=backbone == "resnet18")
    variants = VARIANTS if balanced_reference else VARIANTS[:2]

    runs: list[dict[str, Any]] = []
    for order in range(class_orders):
        split = longtail_indices(
            data.train_labels, imbalance_ratio, class_order=order, seed=order, n_max=n_max
        )
        logger.info(
            "class order %d: %d long-tailed samples, class counts %s (head to tail: %s)",
            order,
            len(split.indices),
            list(split.class_counts),
            list(split.class_order),
        )
        for seed in seeds:
            for variant in variants:
                name = f"{variant}-order{order}-seed{seed}"
                result_path = out / "runs" / f"{name}.json"
                if resume and result_path.exists():
                    logger.info("%s: already evaluated, reading %s", name, result_path)
                    runs.append(json.loads(result_path.read_text()))
                    continue
                if variant == "balanced":
                    per_class = len(split.indices) // data.num_classes
                    indices = balanced_indices(data.train_labels, per_class, seed=order)
                else:
                    indices = split.indices
                model = _build_model(
                    method,
                    backbone,
                    width,
                    data,
                    seed=seed,
                    damage=variant == "sdclr",
                    damage_kind=damage,
                    prune_ratio=prune_ratio,
                    temperature=temperature,
                ).to(dev)
                losses = _pretrain(
                    model,
                    data,
                    torch.from_numpy(np.array(indices)),
                    name=name,
                    checkpoint=out / "checkpoints" / f"{name}.pt",
                    resume=resume,
                    seed=seed,
                    epochs=epochs,
                    batch_size=batch_size,
                    lr=lr,
                    weight_decay=weight_decay,
                    max_steps=max_steps,
                    progress=progress,
                )
                metrics = _evaluate(
                    model,
                    data,
                    split.class_counts,
                    torch.from_numpy(np.array(split.indices)),
                    with_damage=variant != "balanced",
                    probe_shots=probe_shots,
                    probe_draws=probe_draws,
                )
                run = {
                    "name": name,
                    "variant": variant,
                    "order": order,
                    "seed": seed,
                    "class_counts": list(split.class_counts),
                    "losses": losses,
                    **metrics,
                }
                result_path.write_text(json.dumps(run, indent=2))
                logger.info("%s: %s", name, _one_line(run))
                runs.append(run)

    summary = _summarize(runs, variants)
    results = {"settings": settings, "runs": runs, "summary": summary}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    _plot(summary, variants, out / "groups.png", title=_title(settings))
    return results


def format_table(results: dict[str, Any]) -> str:
    """The study's summary as a text table, in percent, mean ± std over runs.

    Examples:
        >>> print(format_table(json.load(open("runs/longtail/results.json"))))  # doctest: +SKIP
    """
    summary = results["summary"]
    header = ["", "overall", "many", "medium", "few", "std", "kNN", "damage AUROC"]
    rows = [header]
    for variant, stats in summary.items():
        if variant != "gap_closed":
            rows.append([variant] + [_cell(stats.get(m)) for m in METRICS])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    gap = summary.get("gap_closed")
    if gap:
        closed = ", ".join(
            f"{name} {'-' if value is None else f'{100 * value:.0f}%'}"
            for name, value in (("overall", gap["accuracy"]), ("Few", gap["few"]))
        )
        lines.append(f"\nimbalance gap (balanced - baseline) closed by SDCLR: {closed}")
    return "\n".join(lines)


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} must be one of {options}, got {name}={value!r}.")


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {name}={value!r}.")


def _load_data(
    dataset: str, data_dir: str | Path | None, download: bool, *, three_channels: bool
) -> _Data:
    if dataset == "fashion-mnist":
        train_x, train_y = load_fashion_mnist(data_dir, train=True)
        test_x, test_y = load_fashion_mnist(data_dir, train=False)
        train_x, test_x = train_x.unsqueeze(1), test_x.unsqueeze(1)
    else:
        if data_dir is None:
            raise ValueError(
                f"dataset={dataset!r} needs data_dir: the folder torchvision reads "
                f"{dataset.upper()} from (pass download=True / --download to fetch it there)."
            )
        name = cast(Literal["cifar10", "cifar100"], dataset)
        train_x, train_y = load_cifar(data_dir, name, train=True, download=download)
        test_x, test_y = load_cifar(data_dir, name, train=False, download=download)
        train_x, test_x = train_x.permute(0, 3, 1, 2), test_x.permute(0, 3, 1, 2)
    mean, std = _STATS[dataset]
    if three_channels and train_x.shape[1] == 1:
        train_x, test_x = train_x.expand(-1, 3, -1, -1), test_x.expand(-1, 3, -1, -1)
        mean, std = mean * 3, std * 3
    return _Data(
        train_x.contiguous(),
        train_y,
        test_x.contiguous(),
        test_y,
        int(train_y.max()) + 1,
        mean,
        std,
    )


def _build_model(
    method: str,
    backbone_name: str,
    width: int,
    data: _Data,
    *,
    seed: int,
    damage: bool,
    damage_kind: str,
    prune_ratio: float,
    temperature: float,
) -> SelfDamagingAdapter:
    torch.manual_seed(seed)  # same initial weights for every variant of a seed
    channels = data.train_images.shape[1]
    if backbone_name == "resnet18-cifar":
        backbone: nn.Module = cifar_resnet18(width=width, in_channels=channels)
        feature_dim = 8 * width
    else:
        import torchvision

        backbone = torchvision.models.resnet18()
        backbone.fc = nn.Identity()
        feature_dim = 512
    options: dict[str, Any] = {"damage": damage}
    if damage and damage_kind == "channel":
        side = data.train_images.shape[-1]
        options = {"damage": "channel", "example_inputs": torch.randn(2, channels, side, side)}
    if method == "simclr":
        return SimCLRAdapter(backbone, feature_dim, prune_ratio, temperature=temperature, **options)
    if method == "moco":
        return MoCoAdapter(backbone, feature_dim, prune_ratio, temperature=temperature, **options)
    return BYOLAdapter(backbone, feature_dim, prune_ratio, **options)


def _pretrain(
    model: SelfDamagingAdapter,
    data: _Data,
    indices: Tensor,
    *,
    name: str,
    checkpoint: Path,
    resume: bool,
    seed: int,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    max_steps: int | None,
    progress: bool,
) -> list[float]:
    device = next(model.parameters()).device
    images = data.train_images[indices].to(device)
    steps = len(images) // batch_size
    if steps == 0:
        raise ValueError(
            f"batch_size={batch_size} is larger than the training subset ({len(images)} "
            "samples); lower batch_size."
        )
    if max_steps is not None:
        steps = min(steps, max_steps)
    views = BatchViews(images.shape[-1], mean=data.mean, std=data.std).to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr * batch_size / 256, momentum=0.9, weight_decay=weight_decay
    )
    total, warmup = epochs * steps, min(10, epochs // 10) * steps
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, total, warmup)
    )
    losses: list[float] = []
    start = 0
    if resume and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        _load_memory_banks(model, state["memory_banks"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start, losses = state["epoch"], state["losses"]
        logger.info("%s: resuming after epoch %d from %s", name, start, checkpoint)

    bar = tqdm(
        total=total,
        initial=start * steps,
        desc=name,
        unit="step",
        leave=False,
        disable=not progress,
    )
    for epoch in range(start, epochs):
        model.train()
        model.refresh_mask()
        gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(images), device=device, generator=gen)
        epoch_loss = torch.zeros((), device=device)
        for step in range(steps):
            batch = images[order[step * batch_size : (step + 1) * batch_size]].float() / 255
            x0, x1 = views(batch, generator=gen), views(batch, generator=gen)
            if isinstance(model, MomentumAdapter):
                model.update_momentum(cosine_schedule(epoch * steps + step, total, 0.99, 1.0))
            loss = model(x0, x1)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
            epoch_loss += loss.detach()
            bar.update(1)
        losses.append(float(epoch_loss) / steps)
        bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{losses[-1]:.4f}")
        logger.info("%s: epoch %d/%d, loss %.4f", name, epoch + 1, epochs, losses[-1])
        torch.save(
            {
                "model": model.state_dict(),
                "memory_banks": _memory_banks(model),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "epoch": epoch + 1,
                "losses": losses,
            },
            checkpoint,
        )
    bar.close()
    return losses


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _memory_banks(model: nn.Module) -> dict[str, Tensor]:
    """The memory banks' non-persistent buffers, which ``state_dict`` leaves out."""
    return {
        f"{name}.{buffer}": getattr(module, buffer).clone()
        for name, module in model.named_modules()
        if isinstance(module, MemoryBankModule)
        for buffer in ("bank", "bank_ptr")
    }


def _load_memory_banks(model: nn.Module, banks: dict[str, Tensor]) -> None:
    for key, value in banks.items():
        name, _, buffer = key.rpartition(".")
        setattr(model.get_submodule(name), buffer, value.clone())


@torch.no_grad()
def _embed(model: SelfDamagingAdapter, images: Tensor, data: _Data) -> Tensor:
    return torch.cat([model.embed(x) for x in _batches(images, data, model)]).cpu()


def _batches(images: Tensor, data: _Data, model: nn.Module) -> Iterator[Tensor]:
    """Normalized float batches of ``uint8`` images, on the model's device."""
    device = next(model.parameters()).device
    mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(data.std, device=device).view(1, -1, 1, 1)
    for start in range(0, len(images), 1024):
        yield (images[start : start + 1024].to(device).float() / 255 - mean) / std


def _evaluate(
    model: SelfDamagingAdapter,
    data: _Data,
    class_counts: Sequence[int],
    longtail: Tensor,
    *,
    with_damage: bool,
    probe_shots: int,
    probe_draws: int,
) -> dict[str, Any]:
    model.eval()
    test_features = _embed(model, data.test_images, data)
    if probe_shots == 0:
        draws = [np.arange(len(data.train_labels))]
    else:
        draws = [
            balanced_indices(data.train_labels, probe_shots, seed=10_000 + d)
            for d in range(probe_draws)
        ]
    needed = torch.as_tensor(np.unique(np.concatenate(draws)))
    features = torch.zeros(len(data.train_labels), test_features.shape[1])
    features[needed] = _embed(model, data.train_images[needed], data)

    per_draw: list[dict[str, float]] = []
    for d, idx in enumerate(draws):
        idx_t = torch.from_numpy(np.array(idx))
        train_f, train_y = features[idx_t], data.train_labels[idx_t]
        groups = group_accuracy(
            linear_probe(train_f, train_y, test_features, seed=d), data.test_labels, class_counts
        )
        knn = knn_predict(train_f, train_y, test_features, k=min(200, len(idx)))
        knn_acc = float((knn == data.test_labels).float().mean())
        per_draw.append({**_group_metrics(groups.to_dict()), "knn": knn_acc})
    metrics: dict[str, Any] = {
        m: statistics.fmean(d[m] for d in per_draw) for m in METRICS if m != "damage_auroc"
    }
    metrics["probe_draws"] = per_draw
    metrics["groups"] = {
        key: groups.to_dict()[f"{key}_classes"] for key in ("many", "medium", "few")
    }
    metrics["damage_auroc"] = None
    if with_damage:
        if not model.damage:
            model.refresh_mask()  # the baseline's twin: its final weights, pruned
        images = data.train_images[longtail]
        scores = damage_scores(model.wrapper, _batches(images, data, model))
        few = torch.isin(data.train_labels[longtail], torch.as_tensor(metrics["groups"]["few"]))
        metrics["damage_auroc"] = auroc(scores, few)
    return metrics


def _group_metrics(groups: dict[str, Any]) -> dict[str, float]:
    return {m: float(groups[m]) for m in ("accuracy", "many", "medium", "few", "balancedness")}


def _summarize(runs: list[dict[str, Any]], variants: Sequence[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for variant in variants:
        chosen = [r for r in runs if r["variant"] == variant]
        summary[variant] = {m: _mean_std([r[m] for r in chosen]) for m in METRICS}
        summary[variant]["runs"] = len(chosen)
    by_key = {(r["variant"], r["order"], r["seed"]): r for r in runs}
    pairs = [
        (by_key[("sdclr", o, s)], r)
        for (v, o, s), r in by_key.items()
        if v == "baseline" and ("sdclr", o, s) in by_key
    ]
    summary["sdclr - baseline"] = {
        m: _mean_std([a[m] - b[m] for a, b in pairs]) for m in METRICS[:-1]
    }
    summary["sdclr - baseline"]["runs"] = len(pairs)
    if "balanced" in variants and pairs:
        gap = {}
        for m in ("accuracy", "few"):
            cost = summary["balanced"][m]["mean"] - summary["baseline"][m]["mean"]
            gain = summary["sdclr"][m]["mean"] - summary["baseline"][m]["mean"]
            gap[m] = gain / cost if cost > 0 else None
        summary["gap_closed"] = gap
    return summary


def _mean_std(values: list[float | None]) -> dict[str, float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return {"mean": None, "std": None}
    std = statistics.stdev(present) if len(present) > 1 else None  # undefined for one run
    return {"mean": statistics.fmean(present), "std": std}


def _cell(stat: dict[str, float | None] | None) -> str:
    mean = None if stat is None else stat.get("mean")
    if stat is None or mean is None:
        return "-"
    std = stat.get("std")
    return f"{100 * mean:.1f}" if std is None else f"{100 * mean:.1f} ± {100 * std:.1f}"


def _one_line(run: dict[str, Any]) -> str:
    parts = [f"{m} {100 * run[m]:.1f}" for m in METRICS if run.get(m) is not None]
    return ", ".join(parts)


def _title(settings: dict[str, Any]) -> str:
    return (
        f"{settings['dataset']}-LT (ratio {settings['imbalance_ratio']:g}), {settings['method']}, "
        f"{settings['epochs']} epochs, {len(settings['seeds'])} seed(s) x "
        f"{settings['class_orders']} class order(s)"
    )


def _plot(summary: dict[str, Any], variants: Sequence[str], path: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = ("many", "medium", "few", "accuracy")
    labels = ("Many", "Medium", "Few", "Overall")
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(variants)
    for i, variant in enumerate(variants):
        means = [100 * (summary[variant][g]["mean"] or 0.0) for g in groups]
        stds = [100 * (summary[variant][g]["std"] or 0.0) for g in groups]
        xs = [j + (i - (len(variants) - 1) / 2) * width for j in range(len(groups))]
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=variant)
    ax.set_xticks(range(len(groups)), labels)
    ax.set_ylabel("linear-probe accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    lows = [100 * (summary[v][g]["mean"] or 0.0) for v in variants for g in groups]
    ax.set_ylim(max(0.0, min(lows) - 10), min(100.0, max(lows) + 5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
