"""The report's histograms: fixed bins, so that counts made batch by batch add up, and their JSON form."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# 0, then ten bins per decade (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten, whole numbers)
# up to 80 million; the last bin is open above.
HISTOGRAM_STEPS = (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8)
HISTOGRAM_EDGES = (0, *sorted({int(m * 10**d) for d in range(8) for m in HISTOGRAM_STEPS}))


def bin_counts(values: Sequence[int] | np.ndarray, edges: tuple[int, ...] = HISTOGRAM_EDGES) -> np.ndarray:
    """Counts of non-negative values per bin ``[edges[i], edges[i + 1])``; the last bin is open."""
    indexes = np.searchsorted(np.asarray(edges), np.asarray(values, dtype=np.int64), side="right") - 1
    return np.bincount(indexes, minlength=len(edges))


def as_json(counts: Sequence[int], total: int) -> dict[str, Any]:
    """One histogram as JSON, from its count per bin and the sum of its values: bins trimmed to the
    non-empty range. ``edges`` has one more entry than ``counts``: bin ``i`` holds values in
    ``[edges[i], edges[i + 1])``; a last edge of ``None`` means the bin is open above."""
    counts = [int(n) for n in counts]
    used = [i for i, n in enumerate(counts) if n]
    first, last = (used[0], used[-1]) if used else (0, -1)
    uppers = [*HISTOGRAM_EDGES[1:], None]
    return {
        "edges": [*HISTOGRAM_EDGES[first : last + 1], uppers[last]] if used else [],
        "counts": counts[first : last + 1],
        "total": sum(counts),
        "sum": int(total),
    }


def of_values(values: Sequence[int]) -> dict[str, Any]:
    """The JSON histogram of a short list of numbers held in memory (shard sizes, say)."""
    return as_json(bin_counts(values), sum(values))
