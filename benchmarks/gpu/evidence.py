"""The GPU evidence study behind ``run.sh``: speed, smoke run, plan, study, results into OUT.

0. The speed of a plain SimCLR step and of three SDCLR steps, with their peak memory
   (``speed.py``; at most about 60 s, before the plan, which so accounts for it).
1. A smoke study of the whole path with the planned number of parallel jobs (3 epochs),
   which also measures the epoch and evaluation wall times.
2. A plan (:func:`selfdamage.study.budget.plan_study`): 300 epochs if they fit before the
   deadline, else fewer (never below 100), and class orders cut last.
3. The study: Fashion-MNIST-LT (ratio 100, n_max 1500), width 64, SimCLR vs SDCLR vs the
   balanced reference over the class orders, 5 probe draws (``--variants``: those variants
   and the balanced reference, e.g. ``--variants simclr sdclr sdclr+bcl``); then the table,
   the 95% interval of each paired difference with the first variant (SDCLR - baseline by
   default) and the smallest effect this design can detect.

OUT receives results.json (every run's record, ``performance``, and under ``evidence`` the
preflight's versions, the plan and the measurements) and groups.png (skipped without
matplotlib); run.sh tees the log there. Checkpoints and per-run files stay in --scratch.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import inspect
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import speed
import torch
import torch.nn.functional as F

from selfdamage.evaluation import linear_probe
from selfdamage.study import StudyConfig, format_table, run_study
from selfdamage.study._variants import study_variants
from selfdamage.study.budget import measure, plan_study
from selfdamage.study.models import build_backbone

CLASS_ORDERS = 3
MARGIN_S = 30.0  # for writing results and the unforeseen


def main(argv: list[str] | None = None) -> int:
    """Runs the evidence study; returns the exit status."""
    args = _parser().parse_args(argv)
    if not args.tiny and not torch.cuda.is_available():
        print("evidence.py: error: no CUDA GPU; use --tiny for a CPU smoke run", file=sys.stderr)
        return 2
    scratch, out = Path(args.scratch), Path(args.out)
    preflight = json.loads(Path(args.preflight).read_text()) if args.preflight else None
    chart = importlib.util.find_spec("matplotlib") is not None
    if not chart:
        print("matplotlib is not installed: the chart (groups.png) is skipped", flush=True)
    try:  # a bad --variants fails here, before any measurement
        base = base_config(args, chart)
    except (TypeError, ValueError) as error:
        print(f"evidence.py: error: {error}", file=sys.stderr)
        return 2
    print("== speed (a plain SimCLR step and three SDCLR steps)", flush=True)
    performance = speed.measure(tiny=args.tiny)
    print(f"speed: {performance['wall_s']:.0f} s", flush=True)
    variants = study_variants(base)
    runs_per_order = len(variants)
    jobs = args.jobs or (2 if args.tiny else CLASS_ORDERS * runs_per_order)
    threads = max(1, (os.cpu_count() or 1) // jobs)  # the probes run on the CPU
    base = dataclasses.replace(base, threads=threads)
    smoke_orders = 1 if args.tiny else CLASS_ORDERS
    tiny_epochs = 2 if any(v.gh for v in variants) else 1  # GH: a warm-up epoch
    smoke = dataclasses.replace(
        base,
        epochs=tiny_epochs if args.tiny else 3,
        max_steps=2 if args.tiny else None,
        class_orders=smoke_orders,
        jobs=min(jobs, smoke_orders * runs_per_order),
        out_dir=str(scratch / "smoke"),
    )
    print(f"== smoke study ({smoke.epochs} epochs, {smoke.jobs} parallel jobs)", flush=True)
    began = time.time()
    smoke_results = run_study(smoke)
    smoke_wall = time.time() - began
    epoch_s, eval_s = measure(smoke_results["runs"])
    reserve_s = probe_reserve_s(smoke)
    longest = max(sum(r["wall_time_s"][k] for k in ("pretrain", "evaluation"))
                  for r in smoke_results["runs"])  # fmt: skip
    overhead_s = max(0.0, smoke_wall - longest)  # process start, data loading, summary
    budget_s = args.deadline - time.time() - overhead_s - MARGIN_S
    print(f"measured: {epoch_s:.3f} s per epoch with {smoke.jobs} jobs in parallel, "
          f"{eval_s:.1f} s per evaluation (planned with {reserve_s:.1f} s more for probes "
          "that converge late), "
          f"{overhead_s:.1f} s overhead; "
          f"{budget_s:.0f} s left for the study")  # fmt: skip
    plan = plan_study(
        epoch_s=epoch_s,
        eval_s=eval_s + reserve_s,
        budget_s=max(budget_s, 1.0),
        runs_per_order=runs_per_order,
        max_jobs=jobs,
        class_orders=CLASS_ORDERS,
    )
    epochs = args.epochs or (tiny_epochs if args.tiny else plan.epochs)
    orders = args.class_orders or (2 if args.tiny else plan.class_orders)
    chosen = {"epochs": epochs, "class_orders": orders, "overridden": bool(args.epochs or
              args.class_orders or args.tiny)}  # fmt: skip
    print(f"plan: {plan}; chosen: {chosen}")
    if not plan.fits and not chosen["overridden"]:
        print(
            "warning: even 100 epochs and 2 class orders do not fit the budget; "
            "running them anyway",
            flush=True,
        )
    replay = (
        f"benchmarks/gpu/run.sh KIT OUT --epochs {epochs} --class-orders {orders} --jobs {jobs}"
        f"{' --tiny' if args.tiny else ''}{_variants_flag(args)}"
        f"   # or: selfdamage longtail --data-dir KIT/fashion-mnist --width {base.width} "
        f"--n-max {base.n_max} --batch-size {base.batch_size} --probe-shots {base.probe_shots} "
        f"--probe-draws {base.probe_draws}{' --max-steps 2' if args.tiny else ''} "
        f"--balanced-reference{_variants_flag(args)} --device {base.device} --epochs {epochs} "
        f"--class-orders {orders} --jobs {min(jobs, orders * runs_per_order)} "
        f"--threads {base.threads} "
        f"--checkpoint-every 50{'' if chart else ' --no-chart'} --out OUT"
    )
    print(f"replay: {replay}", flush=True)

    study = dataclasses.replace(
        base,
        epochs=epochs,
        max_steps=2 if args.tiny else None,
        class_orders=orders,
        jobs=min(jobs, orders * runs_per_order),
        out_dir=str(scratch / "study"),
    )
    print(f"== study ({epochs} epochs, {orders} class orders, {study.jobs} jobs)", flush=True)
    results = run_study(study)
    results["performance"] = performance
    results["evidence"] = {
        "preflight": preflight,
        "measured": {
            "epoch_s": epoch_s,
            "eval_s": eval_s,
            "probe_reserve_s": reserve_s,
            "overhead_s": overhead_s,
        },
        "budget_s": budget_s,
        "plan": plan.as_dict(),
        "chosen": chosen,
        "replay": replay,
        "smoke_runs": smoke_results["runs"],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    if chart:
        shutil.copy(scratch / "study" / "groups.png", out / "groups.png")
    print(format_table(results))
    print(_detectable(results["summary"]))
    shown = out / "groups.png" if chart else "skipped (no matplotlib)"
    print(f"\nResults: {out / 'results.json'}, chart: {shown}")
    return 0


def probe_reserve_s(config: StudyConfig, classes: int = 10) -> float:
    """Seconds an evaluation's probes may take beyond the smoke run's: all of their
    L-BFGS evaluations (``linear_probe``'s ``max_iter``, 5/4 of it for the line search).

    The smoke run's 3-epoch features let the probes converge sooner than trained ones may.
    One evaluation of the probe's objective and gradient is timed here, at the probe's
    shape (``probe_shots`` per class, the backbone's features, float64) with the runs'
    threads; the smoke run's own probe time stays counted too, as margin.
    """
    _, dims = build_backbone(config.backbone, config.width, channels=1)
    samples = config.probe_shots * classes
    features = torch.randn(samples, dims, dtype=torch.float64)
    labels = torch.arange(samples) % classes
    weight = torch.zeros(dims, classes, dtype=torch.float64, requires_grad=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads or threads)
    try:
        start = time.perf_counter()
        for _ in range(20):
            F.cross_entropy(features @ weight, labels).backward()
        per_evaluation = (time.perf_counter() - start) / 20
    finally:
        torch.set_num_threads(threads)
    max_iter = inspect.signature(linear_probe).parameters["max_iter"].default
    return config.probe_draws * max_iter * 5 / 4 * per_evaluation


def base_config(args: argparse.Namespace, chart: bool) -> StudyConfig:
    """The kit's study design (``threads`` set once the jobs are known): Fashion-MNIST-LT,
    width 64, the balanced reference, and ``--variants`` (default: SimCLR vs SDCLR)."""
    return StudyConfig(
        dataset="fashion-mnist",
        data_dir=args.data_dir,
        imbalance_ratio=100.0,
        n_max=300 if args.tiny else 1500,
        width=4 if args.tiny else 64,
        batch_size=64 if args.tiny else 256,
        balanced_reference=True,
        variants=tuple(args.variants) if args.variants else None,
        device="cpu" if args.tiny else "cuda",
        probe_shots=20 if args.tiny else 100,
        probe_draws=1 if args.tiny else 5,
        checkpoint_every=50,
        chart=chart,
        progress=False,
    )


def _variants_flag(args: argparse.Namespace) -> str:
    return f" --variants {' '.join(args.variants)}" if args.variants else ""


def _detectable(summary: dict[str, Any]) -> str:
    differences = {name: row for name, row in summary.items() if " - " in name}
    widths = [
        ("" if len(differences) == 1 else f"{variant}: ")
        + f"{name} ±{100 * difference[m]['ci95']:.1f} points"
        for variant, difference in differences.items()
        for name, m in (("overall", "accuracy"), ("Few", "few"))
        if difference.get(m, {}).get("ci95") is not None
    ]
    if not widths:
        return "smallest detectable effect: undefined (fewer than 2 class orders)"
    return (
        "smallest effect this design can detect (95% interval half-width over class orders, "
        f"from the observed spread): {', '.join(widths)}; a smaller true effect reads as zero."
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="the kit's fashion-mnist folder")
    parser.add_argument("--out", required=True, help="folder for results.json and groups.png")
    parser.add_argument("--scratch", required=True, help="folder for checkpoints and runs")
    parser.add_argument("--preflight", help="the versions preflight.py found (JSON)")
    parser.add_argument("--deadline", type=float, required=True, help="unix time to end by")
    parser.add_argument(
        "--tiny", action="store_true", help="CPU smoke run: 1 epoch (2 with +gh), 2 steps"
    )
    parser.add_argument("--epochs", type=int, help="replay: epochs instead of the plan's")
    parser.add_argument("--class-orders", type=int, help="replay: class orders instead")
    parser.add_argument("--jobs", type=int, help="parallel runs (default: all 9 at once)")
    parser.add_argument(
        "--variants",
        nargs="+",
        help="the study's variants, as selfdamage longtail --variants (default: simclr "
        "sdclr); the balanced reference is always added",
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
