"""The ``selfdamage`` command line: ``selfdamage longtail ...``.

Also available as ``python -m selfdamage``. ``selfdamage --help`` lists the subcommands.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from selfdamage import __version__
from selfdamage.study.config import add_arguments, from_arguments

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
    p = commands.add_parser(
        "longtail",
        help="train a base method and SDCLR on long-tailed data and compare them",
        description=(
            "Pretrains the base method (baseline) and SDCLR with identical settings on a "
            "long-tailed subset, evaluates both with a linear probe on a balanced labeled "
            "set (Many/Medium/Few accuracy, balancedness), kNN and damage-score AUROC, and "
            "writes results.json, groups.png and checkpoints to --out. The defaults finish "
            "in about 6 minutes on 2 CPU cores. Options that depend on the method (--lr, "
            "--temperature, --weight-decay) default to the method's own values. --variants "
            "(e.g. simclr sdclr sdclr+bcl) trains other variants, with the plug-ins +bcl, "
            "+ts and +gh, and reports each paired difference with the first."
        ),
    )
    p.set_defaults(command="longtail", run=_run_longtail)
    add_arguments(p)  # one option per StudyConfig field
    p.add_argument("--quiet", action="store_true", help="log warnings only")


def _run_longtail(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from selfdamage.study import format_table, run_study

    try:
        results = run_study(from_arguments(args))
    except (FileNotFoundError, TypeError, ValueError, ImportError) as error:
        parser.exit(2, f"selfdamage longtail: error: {error}\n")
    print(format_table(results))
    print(f"\nResults: {args.out_dir}/results.json, chart: {args.out_dir}/groups.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
