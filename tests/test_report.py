"""The report's counting: each block's counters go to one ``report.Tally`` as the block passes (``report.tallied``)."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import ray.data

from operators.columns import DOC_ID
from pipeline import report


def parity_counts(batch: pa.Table) -> Counter[str]:
    values = batch.column("id").to_pylist()
    return Counter({"even": sum(v % 2 == 0 for v in values), "odd": sum(v % 2 == 1 for v in values), "rows": len(values)})


def test_the_documents_counts_go_to_the_docs_file_that_holds_each_batchs_first_row():
    """Batches counted on their way to the docs table, by their first row's place; files by their first row's."""
    by_place = {("a", 0): Counter(docs=2), ("a", 5): Counter(docs=3), ("b", 1): Counter(docs=1, words=4),
                ("b", 9): Counter(docs=2)}
    files = {"docs/f1": ("b", 1), "docs/f0": ("a", 0), "docs/f2": ("c", 0)}
    assert report.counts_per_docs_file(by_place, files) == {"docs/f0": {"docs": 5}, "docs/f1": {"docs": 3, "words": 4},
                                                             "docs/f2": {}}


def test_counts_add_up_over_many_blocks_and_batches(ray_local):
    """Every block counts once, whether counted whole or in batches that cut across blocks, and the rows
    pass unchanged."""
    blocks = [pa.table({DOC_ID: [f"d{i:05d}" for i in range(start, start + 250)], "id": list(range(start, start + 250))})
              for start in range(0, 10_000, 250)]
    want = Counter({"even": 5_000, "odd": 5_000, "rows": 10_000})
    for batch_size in (None, 1024):
        tally = report.start_tally()
        rows = report.tallied(ray.data.from_arrow(blocks), parity_counts, tally, batch_size).take_all()
        assert report.finish_tally(tally).totals == want
        assert [row["id"] for row in rows] == list(range(10_000))
