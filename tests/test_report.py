"""The report's counting: per-batch (key, count) rows summed on the driver (``report.sum_counts``)."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import ray.data

from pipeline import report


def parity_counts(batch: pa.Table) -> Counter[str]:
    values = batch.column("id").to_pylist()
    return Counter({"even": sum(v % 2 == 0 for v in values), "odd": sum(v % 2 == 1 for v in values), "rows": len(values)})


def test_counts_add_up_over_many_blocks_and_batches(ray_local):
    """Small blocks are bundled into one counting task, whose output block then holds the rows of
    several batches with the same keys: each must count."""
    ds = ray.data.range(10_000, override_num_blocks=40)
    assert report.sum_counts(ds, parity_counts) == Counter({"even": 5_000, "odd": 5_000, "rows": 10_000})
