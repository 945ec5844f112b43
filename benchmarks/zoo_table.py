"""The model zoo's compatibility table: runs the zoo suite's checks, writes docs/zoo_table.inc.

Every case runs in its own child process under a memory limit and a timeout (the checks of
``tests/zoo/checks.py``, the same ones ``pytest --runslow tests/zoo`` runs), so a case that
exhausts memory is recorded instead of taking the machine down, and each case's time and
peak resident memory are measured on their own. Run from the repository root:

    python benchmarks/zoo_table.py                        # all cases, writes the table
    python benchmarks/zoo_table.py --only swin_t --no-write  # a few cases, print only
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from zoo.checks import (  # noqa: E402
    CHANNEL_RATIO,
    WEIGHT_RATIO,
    Outcome,
    run_case_isolated,
)
from zoo.models import EXPECTED_FAILURES, MODELS, ZooModel  # noqa: E402

OUT = ROOT / "docs" / "zoo_table.inc"


def _types(types: tuple[type, ...]) -> str:
    return ", ".join(f"``{t.__name__}``" for t in types)


def _cell(outcome: Outcome | None) -> str:
    if outcome is None:
        return "not run"
    if outcome.ok:
        return "works"
    message = " ".join(outcome.message.split())
    if len(message) > 160:
        message = message[:157] + "..."
    expected = EXPECTED_FAILURES.get((outcome.model, outcome.kind))
    reason = f" Why: {expected.reason}." if expected is not None else ""
    return f"fails: ``{outcome.error}``: {message.replace('`', '')}{reason}"


def table(results: dict[tuple[str, str], Outcome], models: list[ZooModel]) -> str:
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 18 14 26 14 28",
        "",
        "   * - Model",
        "     - Weight ``prunable``",
        f"     - Weight damage (``prune_ratio={WEIGHT_RATIO}``)",
        "     - Channel ``prunable``",
        f"     - Channel damage (``prune_ratio={CHANNEL_RATIO}``)",
    ]
    for model in models:
        weight = "weight" in model.kinds
        channel = "channel" in model.kinds
        lines += [
            f"   * - ``{model.name}`` ({model.size} px)",
            f"     - {_types(model.prunable) if weight else '—'}",
            f"     - {_cell(results.get((model.name, 'weight'))) if weight else '—'}",
            f"     - {_types(model.channel_prunable) if channel else '—'}",
            f"     - {_cell(results.get((model.name, 'channel'))) if channel else '—'}",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=None, help="substrings of model names")
    parser.add_argument("--memory-gib", type=float, default=8.0, help="RLIMIT_AS per case")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per case")
    parser.add_argument("--no-write", action="store_true", help="print, do not write the table")
    args = parser.parse_args()

    models = [m for m in MODELS if not args.only or any(s in m.name for s in args.only)]
    results: dict[tuple[str, str], Outcome] = {}
    start = time.perf_counter()
    print(f"{'case':48s} {'result':14s} {'seconds':>8s} {'peak MiB':>9s}")
    for model in models:
        for kind in model.kinds:
            outcome = run_case_isolated(
                model.name, kind, memory_gib=args.memory_gib, timeout_s=args.timeout
            )
            results[(model.name, kind)] = outcome
            result = "ok" if outcome.ok else outcome.error
            print(
                f"{model.name + ' ' + kind:48s} {result:14s} {outcome.seconds:8.1f} "
                f"{outcome.peak_rss_mib:9.0f}",
                flush=True,
            )
    print(f"total {time.perf_counter() - start:.0f} s")
    text = table(results, models)
    if args.no_write or args.only:
        print(text)
    else:
        OUT.write_text(text)
        print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
