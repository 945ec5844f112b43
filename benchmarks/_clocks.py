"""The clocks the cost scripts time with, and their ``--clock``/``--json`` options."""

from __future__ import annotations

import argparse
import time

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def add_clock_options(parser: argparse.ArgumentParser, default: str) -> None:
    """Adds ``--clock`` (a key of :data:`CLOCKS`, ``default`` if not given) and ``--json``."""
    parser.add_argument(
        "--clock",
        choices=CLOCKS,
        default=default,
        help="wall: time.perf_counter; cpu: time.process_time (the process's CPU time)",
    )
    parser.add_argument("--json", help="also write the results to this file")
