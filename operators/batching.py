"""How the stages' Ray Data maps take their batches.

A map that runs ``batch_size`` rows at a time asks Ray Data for input bundles of at least that
many rows, and when Ray fuses it with the maps before it into one task, the fused task bundles
the larger of their sizes *of the first map's input rows*. After the reader, whose input rows are
file paths, a normalize batch of 1,024 records made one task read every file (measured: pass 1
of bench/e2e.py's 16x build ran on one core). So maps that may be fused after another take
whole blocks (``batch_size=None``) and keep their own batch size inside the task (``in_slices``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa


def in_slices(batch: pa.Table, fn: Callable[..., pa.Table], rows: int, **kwargs: Any) -> pa.Table:
    """``fn(part, **kwargs)`` over ``batch`` at most ``rows`` rows at a time, the results end to end: what
    the map's ``batch_size`` would have given ``fn``, without Ray bundling anything for it."""
    if batch.num_rows <= rows:
        return fn(batch, **kwargs)
    return pa.concat_tables([fn(batch.slice(start, rows), **kwargs) for start in range(0, batch.num_rows, rows)])
