"""The study's report: the summary over runs, the terminal table and the chart.

Below the table, the data the study found (:func:`format_data`): its source, the class
profile as a text bar chart, the grouping rule, the labeled subset, the test split.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selfdamage.study._files import write_atomically
from selfdamage.study.evaluation import EXTRA_METRICS, METRICS
from selfdamage.study.profile import bar_chart
from selfdamage.study.stats import half_width, mean_std

__all__ = ["format_data", "format_table", "plot", "summarize"]

DIFFERENCE = "sdclr - baseline"


def summarize(runs: list[dict[str, Any]], variants: Sequence[str]) -> dict[str, Any]:
    """Mean and std of every metric per variant, each paired difference with the first.

    The first variant is the reference; every other one but ``balanced`` gets the row
    ``"<variant> - <reference>"`` (``paired_difference``; ``"sdclr - baseline"`` in
    the default design). With a balanced reference, ``gap_closed`` is SDCLR's gain over
    the baseline as a fraction of the balanced model's.

    Examples:
        >>> summarize([], ["baseline"])["baseline"]["runs"]
        0
    """
    summary: dict[str, Any] = {}
    for variant in variants:
        chosen = [r for r in runs if r["variant"] == variant]
        summary[variant] = {m: mean_std([r[m] for r in chosen]) for m in METRICS}
        for m in EXTRA_METRICS:
            if any(m in r for r in chosen):
                summary[variant][m] = mean_std([r.get(m) for r in chosen])
        summary[variant]["runs"] = len(chosen)
    reference = variants[0] if variants else None
    for variant in variants[1:]:
        difference = paired_difference(runs, variant, reference) if variant != "balanced" else None
        if difference is not None:
            summary[f"{variant} - {reference}"] = difference
    if DIFFERENCE in summary and "balanced" in variants:
        gap = {}
        for m in ("accuracy", "few"):
            cost = summary["balanced"][m]["mean"] - summary["baseline"][m]["mean"]
            gain = summary["sdclr"][m]["mean"] - summary["baseline"][m]["mean"]
            gap[m] = gain / cost if cost > 0 else None
        summary["gap_closed"] = gap
    return summary


def paired_difference(
    runs: list[dict[str, Any]], variant: str, reference: str | None
) -> dict[str, Any] | None:
    """The paired difference ``variant - reference`` of every metric; None without pairs.

    Runs are paired by (class order, seed). Per metric: the mean and std over the pairs,
    and ``ci95``, the half-width of the 95% t-interval over class orders (each order's
    mean difference over its seeds is one value), ``None`` with fewer than two orders.

    Examples:
        >>> runs = [{"variant": v, "order": 0, "seed": 0, "accuracy": a}
        ...     for v, a in (("baseline", 0.5), ("sdclr", 0.75))]
        >>> paired_difference(runs, "sdclr", "baseline")["accuracy"]["mean"]
        0.25
    """
    by_key = {(r["variant"], r["order"], r["seed"]): r for r in runs}
    pairs = [
        (by_key[(variant, o, s)], r)
        for (v, o, s), r in by_key.items()
        if v == reference and (variant, o, s) in by_key
    ]
    if not pairs:
        return None
    orders = sorted({b["order"] for _, b in pairs})
    difference: dict[str, Any] = {}
    extra = [m for m in EXTRA_METRICS if all(m in a and m in b for a, b in pairs)]
    for m in [m for m in METRICS[:-1] if m in pairs[0][0]] + extra:
        difference[m] = mean_std([a[m] - b[m] for a, b in pairs])
        per_order = [
            statistics.fmean(a[m] - b[m] for a, b in pairs if b["order"] == o) for o in orders
        ]
        std = statistics.stdev(per_order) if len(per_order) > 1 else None
        difference[m]["ci95"] = half_width(std, len(per_order))
    difference["runs"], difference["orders"] = len(pairs), len(orders)
    return difference


def format_table(results: dict[str, Any]) -> str:
    """The study's summary as a text table, in percent, mean ± std over runs.

    Below it: the 95% interval of each paired difference (e.g. SDCLR - baseline) over class
    orders (its half-width is the smallest effect the design detects) and the share of the
    imbalance gap closed.

    Examples:
        >>> stats = {m: {"mean": 0.5, "std": 0.01} for m in METRICS}
        >>> row = format_table({"summary": {"baseline": stats}}).splitlines()[2]
        >>> row.split()[:4]
        ['baseline', '50.0', '±', '1.0']
    """
    summary = results["summary"]
    header = ["", "overall", "many", "medium", "few", "std", "kNN", "damage AUROC"]
    metrics = list(METRICS)
    if any("balanced_accuracy" in stats for stats in summary.values()):
        header.insert(2, "balanced")
        metrics.insert(1, "balanced_accuracy")
    rows = [header]
    for variant, stats in summary.items():
        if variant != "gap_closed":
            rows.append([variant] + [_cell(stats.get(m)) for m in metrics])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    for name, difference in summary.items():
        if " - " in name and difference:
            lines.append("\n" + _interval_line(name, difference))
    gap = summary.get("gap_closed")
    if gap:
        closed = ", ".join(
            f"{name} {'-' if value is None else f'{100 * value:.0f}%'}"
            for name, value in (("overall", gap["accuracy"]), ("Few", gap["few"]))
        )
        lines.append(f"\nimbalance gap (balanced - baseline) closed by SDCLR: {closed}")
    if "data" in results:
        lines.append("\n" + format_data(results["data"]))
    return "\n".join(lines)


def format_data(info: dict[str, Any]) -> str:
    """The data the study found, as text: source, class profile chart, groups, probe, test.

    Args:
        info: ``results["data"]``, from ``selfdamage.study.profile.describe_data``.

    Examples:
        >>> info = {"source": "image folder pets", "classes": ["cat", "dog", "eel"],
        ...     "profile": "natural", "class_counts": [50, 10, 5], "imbalance_ratio": 10.0,
        ...     "group_rule": "thirds of the classes by training images (rarest third: Few)",
        ...     "groups": {"many": [0], "medium": [1], "few": [2]}, "probe_shots": 5,
        ...     "probe_shots_capped": True, "test_counts": [20, 20, 4],
        ...     "test_balanced": False, "image_shape": [3, 32, 32]}
        >>> print(format_data(info))
        data: image folder pets, 65 training images in 3 classes, 3x32x32
        class sizes trained on (natural long tail, as found; imbalance ratio 10.0):
          cat  ████████████████████████████████████████ 50
          dog  ████████ 10
          eel  ████ 5
        groups: thirds of the classes by training images (rarest third: Few): Many 1, Medium 1, Few 1 classes
        probe and kNN: 5 labeled images per class (capped by the rarest training class)
        test split: 44 images, imbalanced (4 to 20 per class): 'balanced' is the mean of the per-class accuracies; 'overall' counts every image; Many/Medium/Few are class-balanced
    """  # noqa: E501
    counts = info["class_counts"]
    profile = info["profile"]
    how = (
        "natural long tail, as found"
        if profile == "natural"
        else f"{profile} profile subsampled from the training split, class order 0"
    )
    shape = "x".join(str(v) for v in info["image_shape"])
    groups = info["groups"]
    lines = [
        f"data: {info['source']}, {sum(counts)} training images in {len(counts)} classes, {shape}",
        f"class sizes trained on ({how}; imbalance ratio {info['imbalance_ratio']:.1f}):",
        *("  " + line for line in bar_chart(counts, info["classes"])),
        f"groups: {info['group_rule']}: Many {len(groups['many'])}, Medium "
        f"{len(groups['medium'])}, Few {len(groups['few'])} classes",
    ]
    shots = info["probe_shots"]
    if shots == 0:
        lines.append("probe and kNN: every training image labeled")
    else:
        capped = " (capped by the rarest training class)" if info["probe_shots_capped"] else ""
        lines.append(f"probe and kNN: {shots} labeled images per class{capped}")
    test = info["test_counts"]
    if info["test_balanced"]:
        lines.append(f"test split: {sum(test)} images, {test[0]} per class")
    else:
        lines.append(
            f"test split: {sum(test)} images, imbalanced ({min(test)} to {max(test)} per "
            "class): 'balanced' is the mean of the per-class accuracies; 'overall' counts "
            "every image; Many/Medium/Few are class-balanced"
        )
    return "\n".join(lines)


def _interval_line(name: str, difference: dict[str, Any]) -> str:
    orders = difference.get("orders", 0)
    if orders < 2:
        return f"95% interval of {name}: needs at least 2 class orders (--class-orders)"
    parts = []
    for group, m in (("overall", "accuracy"), ("Few", "few")):
        mean, ci = difference[m]["mean"], difference[m]["ci95"]
        parts.append(f"{group} {100 * mean:+.1f} ± {100 * ci:.1f}")
    return (
        f"95% interval of {name} over {orders} class orders: {', '.join(parts)} "
        "(points; a true effect smaller than ± this half-width can read as zero)"
    )


def _cell(stat: dict[str, float | None] | None) -> str:
    mean = None if stat is None else stat.get("mean")
    if stat is None or mean is None:
        return "-"
    std = stat.get("std")
    return f"{100 * mean:.1f}" if std is None else f"{100 * mean:.1f} ± {100 * std:.1f}"


def one_line(run: dict[str, Any]) -> str:
    """A run's metrics in percent on one line, for the log.

    Examples:
        >>> one_line({"accuracy": 0.5, "damage_auroc": None})
        'accuracy 50.0'
    """
    return ", ".join(f"{m} {100 * run[m]:.1f}" for m in METRICS if run.get(m) is not None)


def title(settings: dict[str, Any], data: dict[str, Any] | None = None) -> str:
    """The chart's title: dataset, ratio, method, epochs, seeds and class orders.

    With ``data`` (``results["data"]``) of a natural long tail, its measured ratio.

    Examples:
        >>> title({"dataset": "fashion-mnist", "imbalance_ratio": 100.0, "method": "simclr",
        ...     "epochs": 30, "seeds": [0], "class_orders": 1})
        'fashion-mnist-LT (ratio 100), simclr, 30 epochs, 1 seed(s) x 1 class order(s)'
    """
    name = f"{settings['dataset']}-LT (ratio {settings['imbalance_ratio']:g})"
    if data is not None and data["profile"] == "natural":
        name = f"{settings['dataset']} (natural, ratio {data['imbalance_ratio']:.1f})"
    return (
        f"{name}, {settings['method']}, "
        f"{settings['epochs']} epochs, {len(settings['seeds'])} seed(s) x "
        f"{settings['class_orders']} class order(s)"
    )


def plot(summary: dict[str, Any], variants: Sequence[str], path: Path, *, title: str) -> None:
    """Group accuracies (Many, Medium, Few, overall) per variant with std error bars.

    Examples:
        >>> plot(results["summary"], ["baseline", "sdclr"], Path("groups.png"),
        ...     title="")  # doctest: +SKIP
    """
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
    write_atomically(path, lambda file: fig.savefig(file, dpi=120, format="png"))
    plt.close(fig)
