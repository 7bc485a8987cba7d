"""Small statistics helpers shared by the load generator, the ceiling and the report."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["log_histogram", "percentiles", "quantile"]


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of already sorted values (no interpolation: p99 is a real sample)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def percentiles(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}
    return {
        "p50": quantile(ordered, 0.50),
        "p90": quantile(ordered, 0.90),
        "p99": quantile(ordered, 0.99),
        "max": float(ordered[-1]),
        "mean": sum(ordered) / len(ordered),
        "count": float(len(ordered)),
    }


def log_histogram(values: Sequence[float], per_decade: int = 20) -> list[tuple[float, int]]:
    """(upper bound, count) bins on a log scale, for plots and the JSON file (positive values)."""
    counts: dict[int, int] = {}
    for v in values:
        if v > 0:
            b = math.ceil(math.log10(v) * per_decade)
            counts[b] = counts.get(b, 0) + 1
    return [(10 ** (b / per_decade), counts[b]) for b in sorted(counts)]
