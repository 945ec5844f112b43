"""The model zoo's compatibility table: runs the zoo suite's checks, writes docs/zoo_table.inc.

Every case runs in its own child process under a memory limit and a timeout (the checks of
``tests/zoo/checks.py``, the same ones ``pytest --runslow tests/zoo`` runs), so a case that
exhausts memory is recorded instead of taking the machine down, and each case's time and
peak resident memory are measured on their own. Run from the repository root:

    python benchmarks/zoo_table.py                        # all cases, writes the table
    python benchmarks/zoo_table.py --only swin_t --no-write  # a few cases, print only
    python benchmarks/zoo_table.py --no-timing            # without the step ratios

The step ratios (an SDCLR step with weight damage 0.9, channel damage 0.5 with the compact
and the masked twin, each against a plain two-view step) come from
``benchmarks/step_cost.py --arch <zoo model> --threads 1 --clock cpu``, one child process
per model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
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
from zoo.models import BATCH, EXPECTED_FAILURES, MODELS, ZooModel  # noqa: E402

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


MODES = ("weight", "compact", "masked")
"""The step-cost modes: weight damage, channel damage with the compact and the masked twin."""


def step_ratios(name: str, batch_size: int, rounds: int, timeout_s: float) -> dict[str, float]:
    """``benchmarks/step_cost.py --arch name`` in a child process: the ratio of each mode.

    One thread, timed by CPU time (``--threads 1 --clock cpu``), so that other jobs on the
    machine hardly change it; empty if the child fails or runs out of time.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ratios.json"
        cmd = [
            sys.executable,
            str(ROOT / "benchmarks" / "step_cost.py"),
            *("--arch", name, "--batch-size", str(batch_size), "--rounds", str(rounds)),
            *("--threads", "1", "--clock", "cpu", "--json", str(out)),
        ]
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        try:
            subprocess.run(cmd, capture_output=True, timeout=timeout_s, env=env, check=True)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            return {}
        ratios: dict[str, float] = json.loads(out.read_text())["ratios"]
        return ratios


def _ratios(ratios: dict[str, float] | None) -> str:
    if ratios is None:
        return "not measured"
    return " / ".join(f"{ratios[m]:.2f}" if m in ratios else "—" for m in MODES)


def table(
    results: dict[tuple[str, str], Outcome],
    models: list[ZooModel],
    ratios: dict[str, dict[str, float]],
    timing: str,
) -> str:
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 16 12 22 12 24 14",
        "",
        f"   * - Model (input size, batch of the example: {BATCH})",
        "     - Weight ``prunable``",
        f"     - Weight damage (``prune_ratio={WEIGHT_RATIO}``)",
        "     - Channel ``prunable``",
        f"     - Channel damage (``prune_ratio={CHANNEL_RATIO}``)",
        f"     - Step x plain: weight / compact / masked ({timing})",
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
            f"     - {_ratios(ratios.get(model.name))}",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=None, help="substrings of model names")
    parser.add_argument("--memory-gib", type=float, default=8.0, help="RLIMIT_AS per case")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per case")
    parser.add_argument("--no-write", action="store_true", help="print, do not write the table")
    parser.add_argument("--batch-size", type=int, default=4, help="batch of the timed steps")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per model")
    parser.add_argument("--no-timing", action="store_true", help="skip the step ratios")
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
    ratios: dict[str, dict[str, float]] = {}
    if not args.no_timing:
        for model in models:
            ratios[model.name] = step_ratios(model.name, args.batch_size, args.rounds, args.timeout)
            print(f"{model.name:48s} step x plain {_ratios(ratios[model.name])}", flush=True)
    print(f"total {time.perf_counter() - start:.0f} s")
    timing = (
        f"batch {args.batch_size}, median of {args.rounds} interleaved rounds, 1 thread, CPU time"
    )
    text = table(results, models, ratios, timing)
    if args.no_write or args.only:
        print(text)
    else:
        OUT.write_text(text)
        print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
