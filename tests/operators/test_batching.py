"""``in_slices``: a map that takes whole blocks still runs its function a configured number of rows at a time."""

from __future__ import annotations

import pyarrow as pa

from operators.batching import in_slices


def test_in_slices_gives_the_function_at_most_rows_and_joins_its_results_in_order():
    seen = []

    def doubled(part: pa.Table, factor: int) -> pa.Table:
        seen.append(part.num_rows)
        return pa.table({"x": pa.compute.multiply(part["x"], factor)})

    batch = pa.table({"x": list(range(10))})
    assert in_slices(batch, doubled, 4, factor=2)["x"].to_pylist() == [2 * x for x in range(10)]
    assert seen == [4, 4, 2]
    seen.clear()
    assert in_slices(batch, doubled, 10, factor=1).equals(batch) and seen == [10]
