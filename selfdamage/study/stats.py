"""Summary statistics of the study: mean and spread, and 95% t-intervals without scipy."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

__all__: list[str] = []  # the study's internals: no public name

# Two-sided 95% quantiles of Student's t (the 0.975 quantile) by degrees of freedom.
_T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip
_T975_LARGE = ((40, 2.0211), (60, 2.0003), (120, 1.9799))


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom.

    Exact to four decimals for ``df`` up to 30, 40, 60 and 120; in between, the value at
    the next smaller tabulated ``df`` (slightly conservative); 1.96 beyond 120.

    Raises:
        ValueError: If ``df < 1``.

    Examples:
        >>> t_quantile_975(2), t_quantile_975(45), t_quantile_975(1000)
        (4.3027, 2.0211, 1.96)
    """
    if df < 1:
        raise ValueError(f"df must be >= 1, got df={df!r}.")
    if df <= len(_T975):
        return _T975[df - 1]
    value = _T975[-1]
    for tabulated, quantile in _T975_LARGE:
        if df >= tabulated:
            value = quantile
    return 1.96 if df > 120 else value


def half_width(std: float | None, n: int) -> float | None:
    """Half-width of the 95% t-interval of a mean of ``n`` values with sample std ``std``.

    ``t(0.975, n - 1) * std / sqrt(n)``; also the smallest true effect such a design
    tells from zero at the 5% level, given that spread. ``None`` for fewer than 2 values.

    Examples:
        >>> round(half_width(0.01, 3), 6)  # 4.3027 * 0.01 / sqrt(3)
        0.024842
        >>> half_width(None, 1) is None
        True
    """
    if n < 2 or std is None:
        return None
    return t_quantile_975(n - 1) * std / math.sqrt(n)


def mean_std(values: Sequence[float | None]) -> dict[str, float | None]:
    """Mean and sample standard deviation of the values that are not ``None``.

    Examples:
        >>> mean_std([0.70, 0.74, None])["mean"]
        0.72
        >>> mean_std([0.5])
        {'mean': 0.5, 'std': None}
    """
    present = [v for v in values if v is not None]
    if not present:
        return {"mean": None, "std": None}
    std = statistics.stdev(present) if len(present) > 1 else None  # undefined for one run
    return {"mean": statistics.fmean(present), "std": std}
