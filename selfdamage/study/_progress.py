"""Progress bars of the study: on a terminal only, where the log lines would scroll by."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["progress_bar"]


def progress_bar(progress: bool, *, unit: str, **kwargs: Any) -> Any:
    """A tqdm bar counting ``unit`` on a terminal; None elsewhere (the log lines say enough).

    Examples:
        >>> progress_bar(False, unit="step", total=3) is None
        True
    """
    if not (progress and sys.stderr.isatty()):
        return None
    from tqdm.auto import tqdm

    return tqdm(unit=unit, leave=False, **kwargs)
