"""The ``selfdamage`` command line: ``selfdamage longtail ...``.

Also available as ``python -m selfdamage``. ``selfdamage --help`` lists the subcommands.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from selfdamage import __version__

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status.

    Args:
        argv: Arguments without the program name. Default: ``sys.argv[1:]``.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    return int(args.run(args, parser))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="selfdamage",
        description="Self-Damaging Contrastive Learning (SDCLR) for PyTorch.",
    )
    parser.add_argument("--version", action="version", version=f"selfdamage {__version__}")
    parser.set_defaults(command=None)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_longtail(commands)
    return parser


def _add_longtail(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from selfdamage import study

    p = commands.add_parser(
        "longtail",
        help="train a base method and SDCLR on long-tailed data and compare them",
        description=(
            "Pretrains the base method (baseline) and SDCLR with identical settings on a "
            "long-tailed subset, evaluates both with a linear probe on a balanced labeled "
            "set (Many/Medium/Few accuracy, balancedness), kNN and damage-score AUROC, and "
            "writes results.json, groups.png and checkpoints to --out. The defaults finish "
            "in about 6 minutes on 2 CPU cores."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.set_defaults(command="longtail", run=_run_longtail)
    data = p.add_argument_group("data")
    data.add_argument("--dataset", choices=study.DATASETS, default="fashion-mnist")
    data.add_argument(
        "--data-dir",
        help="dataset folder (default for Fashion-MNIST: /usr/share/datasets/fashion-mnist)",
    )
    data.add_argument("--download", action="store_true", help="let torchvision fetch CIFAR")
    data.add_argument("--imbalance-ratio", type=float, default=100.0)
    data.add_argument(
        "--n-max", type=int, default=1500, help="size of the largest class; 0: all samples"
    )
    data.add_argument("--class-orders", type=int, default=1, help="class orders (head/tail)")
    model = p.add_argument_group("model and training")
    model.add_argument("--method", choices=study.METHODS, default="simclr")
    model.add_argument("--damage", choices=("weight", "channel"), default="weight")
    model.add_argument("--backbone", choices=study.BACKBONES, default="resnet18-cifar")
    model.add_argument("--width", type=int, default=8, help="resnet18-cifar width (paper: 64)")
    model.add_argument("--prune-ratio", type=float, default=0.9)
    model.add_argument("--temperature", type=float, default=0.2)
    model.add_argument("--epochs", type=int, default=30)
    model.add_argument("--batch-size", type=int, default=256)
    model.add_argument("--lr", type=float, default=0.5, help="SGD lr at batch size 256")
    model.add_argument("--weight-decay", type=float, default=1e-4)
    model.add_argument("--seeds", type=int, nargs="+", default=[0])
    model.add_argument(
        "--balanced-reference",
        action="store_true",
        help="also train the base method on a balanced subset of the same size",
    )
    model.add_argument("--device", default="cpu")
    model.add_argument("--max-steps", type=int, help="steps per epoch at most (smoke tests)")
    evaluation = p.add_argument_group("evaluation")
    evaluation.add_argument("--probe-shots", type=int, default=100, help="labels per class; 0: all")
    evaluation.add_argument("--probe-draws", type=int, default=5)
    output = p.add_argument_group("output")
    output.add_argument("--out", default="runs/longtail", help="folder for results")
    output.add_argument("--resume", action="store_true", help="continue a run in --out")
    output.add_argument("--no-progress", action="store_true", help="no progress bars")
    output.add_argument("--quiet", action="store_true", help="log warnings only")


def _run_longtail(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from selfdamage.study import format_table, run_longtail_study

    try:
        results = run_longtail_study(
            out_dir=args.out,
            dataset=args.dataset,
            data_dir=args.data_dir,
            download=args.download,
            method=args.method,
            damage=args.damage,
            backbone=args.backbone,
            width=args.width,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            weight_decay=args.weight_decay,
            temperature=args.temperature,
            prune_ratio=args.prune_ratio,
            imbalance_ratio=args.imbalance_ratio,
            n_max=args.n_max or None,
            seeds=args.seeds,
            class_orders=args.class_orders,
            balanced_reference=args.balanced_reference,
            probe_shots=args.probe_shots,
            probe_draws=args.probe_draws,
            device=args.device,
            resume=args.resume,
            max_steps=args.max_steps,
            progress=not args.no_progress,
        )
    except (FileNotFoundError, ValueError) as error:
        parser.exit(2, f"selfdamage longtail: error: {error}\n")
    print(format_table(results))
    print(f"\nResults: {args.out}/results.json, chart: {args.out}/groups.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
