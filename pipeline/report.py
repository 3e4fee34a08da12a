"""Build report: counts and histograms aggregated where the data lives, plus the time each stage took.

Counters travel, data stays: each batch of a table becomes one small row of counters (a
histogram is a fixed set of bins, so per-batch counts add up; so do counts per fate label),
which the driver adds up as they stream in. Duplicate-cluster sizes come from a distributed
groupby, so the driver only ever holds one row per distinct size. The only texts the driver
sees are the handful of duplicate pairs shown in ``report.html``.

Three files come out: ``report.json`` (every number), ``report.txt`` (the same as a table,
also printed by the CLI) and ``report.html`` (plots, see ``pipeline.report_html``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from ray.data.expressions import col

from operators.columns import (
    DETAIL,
    DOC_ID,
    EXACT_DUP,
    FATE,
    FATES,
    FILTERED,
    INPUT_IDS,
    NEAR_DUP,
    RECORD,
    REJECTED,
    SOURCE,
    TEXT,
    WORDS,
)
from operators.normalize import OPENCC_CHANGED
from operators.read import FILE_RECORD

REPORT_JSON = "report.json"
REPORT_TEXT = "report.txt"
REPORT_HTML = "report.html"
DUPLICATE_PAIRS = 4  # near-duplicate pairs shown side by side in report.html
SHUFFLE_PARTITION_ROWS = 500_000  # rows per partition when grouping duplicates by the kept doc
# Rows per counting task: a task per block would be ~500 tasks for the tokenizer's 256-row blocks of a
# 120,000-document corpus (9 s of a 2-CPU build); a batch of documents' text and tokens is tens of MB.
COUNTER_BATCH_ROWS = 8192

# Histogram bins: 0, then ten per decade (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten,
# whole numbers) up to 80 million; the last bin is open above. Fixed, so per-batch counts add up.
HISTOGRAM_STEPS = (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8)
HISTOGRAM_EDGES = (0, *sorted({int(m * 10**d) for d in range(8) for m in HISTOGRAM_STEPS}))

log = logging.getLogger("pipeline")


class StageTimer:
    """Wall time per named stage, in the order the stages ran; logs each stage as it ends."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        log.info("stage %s: started", stage)
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
            log.info("stage %s: done in %.1f s", stage, seconds)


def reason_of(detail: str | None) -> str:
    """The reason label of a filtered/rejected row: its detail up to the first colon."""
    return (detail or "unknown").split(":", 1)[0]


def _fate_labels(batch: pa.Table) -> pa.Table:
    labels: Counter[str] = Counter()
    for fate, detail in zip(batch.column(FATE).to_pylist(), batch.column(DETAIL).to_pylist()):
        labels[fate] += 1
        if fate in (FILTERED, REJECTED):
            labels[f"{fate}.{reason_of(detail)}"] += 1
    return pa.table({"label": list(labels), "n": list(labels.values())})


def _counter_row(batch: pa.Table, counters: Callable[[pa.Table], dict[str, int]], names: list[str]) -> pa.Table:
    counts = counters(batch)
    return pa.table({name: pa.array([int(counts.get(name, 0))], pa.int64()) for name in names})


def _sum_counters(ds, counters: Callable[[pa.Table], dict[str, int]], names: list[str]) -> dict[str, int]:
    """Every batch becomes one row of named counters; the driver adds the rows up as they stream in.

    Ray Data's ``aggregate`` would shuffle those rows through aggregator actors: a second or more
    per call for a few hundred numbers."""
    kwargs = {"counters": counters, "names": names}
    rows = ds.map_batches(_counter_row, fn_kwargs=kwargs, batch_format="pyarrow", batch_size=COUNTER_BATCH_ROWS)
    totals = dict.fromkeys(names, 0)
    for batch in rows.iter_batches(batch_size=None, batch_format="pyarrow"):
        for name in names:
            totals[name] += pc.sum(batch.column(name)).as_py() or 0
    return totals


def _total(ds, measures: dict[str, Any]) -> dict[str, int]:
    return _sum_counters(ds, lambda b: {name: measure(b) for name, measure in measures.items()}, list(measures))


def count_fates(fates) -> dict[str, int]:
    counts = Counter(dict.fromkeys(FATES, 0))
    labels = fates.map_batches(_fate_labels, batch_format="pyarrow", batch_size=None)  # a few rows per block
    for batch in labels.iter_batches(batch_size=None, batch_format="pyarrow"):
        counts.update(dict(zip(batch.column("label").to_pylist(), batch.column("n").to_pylist())))
    counts["records"] = sum(counts[fate] for fate in FATES)
    return dict(sorted(counts.items()))


def unreadable_files(fates) -> list[dict[str, str]]:
    """File-level problems (one row per file at most), so small enough to list."""
    rows = fates.filter(expr=col(RECORD) == FILE_RECORD).select_columns([SOURCE, DETAIL]).take_all()
    return sorted(({"source": row[SOURCE], "reason": row[DETAIL]} for row in rows), key=lambda row: row["source"])


def doc_totals(docs) -> dict[str, int]:
    return _total(
        docs,
        {
            "docs": lambda b: b.num_rows,
            "chars": lambda b: pc.sum(pc.utf8_length(b.column(TEXT))).as_py() or 0,
            "words": lambda b: pc.sum(pc.list_value_length(b.column(WORDS))).as_py() or 0,
        },
    )


def shard_totals(examples) -> dict[str, int]:
    return _total(
        examples,
        {
            "examples": lambda b: b.num_rows,
            "tokens": lambda b: pc.sum(pc.list_value_length(b.column(INPUT_IDS))).as_py() or 0,
        },
    )


# ---- histograms -------------------------------------------------------------------------------


def bin_counts(values: np.ndarray, edges: tuple[int, ...] = HISTOGRAM_EDGES) -> np.ndarray:
    """Counts of non-negative values per bin ``[edges[i], edges[i + 1])``; the last bin is open."""
    indexes = np.searchsorted(np.asarray(edges), np.asarray(values, dtype=np.int64), side="right") - 1
    return np.bincount(indexes, minlength=len(edges))


def _histogram_names(name: str) -> list[str]:
    return [f"{name}.bin{i}" for i in range(len(HISTOGRAM_EDGES))] + [f"{name}.sum"]


def _histogram_counters(name: str, values: pa.Array) -> dict[str, int]:
    numbers = values.drop_null().to_numpy(zero_copy_only=False)
    counts = bin_counts(numbers)
    return {**{f"{name}.bin{i}": int(n) for i, n in enumerate(counts)}, f"{name}.sum": int(numbers.sum())}


def histogram(totals: dict[str, int], name: str) -> dict[str, Any]:
    """The summed counters of one histogram as JSON: bins trimmed to the non-empty range.

    ``edges`` has one more entry than ``counts``: bin ``i`` holds values in
    ``[edges[i], edges[i + 1])``; a last edge of ``None`` means the bin is open above.
    """
    counts = [totals[f"{name}.bin{i}"] for i in range(len(HISTOGRAM_EDGES))]
    used = [i for i, n in enumerate(counts) if n]
    first, last = (used[0], used[-1]) if used else (0, -1)
    uppers = [*HISTOGRAM_EDGES[1:], None]
    return {
        "edges": [*HISTOGRAM_EDGES[first : last + 1], uppers[last]] if used else [],
        "counts": counts[first : last + 1],
        "total": sum(counts),
        "sum": totals[f"{name}.sum"],
    }


def _candidate_counters(batch: pa.Table) -> dict[str, int]:
    """Normalized records (all but those rejected on read): their lengths and OpenCC's changes."""
    lengths, changed = pc.utf8_length(batch.column(TEXT)), batch.column(OPENCC_CHANGED)
    return {
        **_histogram_counters("before", lengths),
        "opencc.chars_changed": pc.sum(changed).as_py() or 0,
        "opencc.records_changed": pc.sum(pc.greater(changed, 0)).as_py() or 0,
    }


def _doc_counters(batch: pa.Table) -> dict[str, int]:
    """Kept documents, tokenized: characters and tokens per document."""
    return {
        **_histogram_counters("after", pc.utf8_length(batch.column(TEXT))),
        **_histogram_counters("tokens", pc.list_value_length(batch.column(INPUT_IDS))),
    }


def _partitions(rows: int) -> int:
    return max(1, math.ceil(rows / SHUFFLE_PARTITION_ROWS))


def cluster_sizes(duplicates) -> list[list[int]]:
    """``[size, clusters]`` rows: how many duplicate groups have each size (the kept doc plus its
    duplicates), from the fates rows of the duplicates (``detail`` names the kept doc)."""
    rows = duplicates.count()
    if not rows:  # nothing to group (and an all-empty dataset may have no schema to group by)
        return []
    per_keeper = duplicates.groupby(DETAIL, num_partitions=_partitions(rows)).count()
    per_keeper = per_keeper.rename_columns({"count()": "duplicates"})
    rows = per_keeper.groupby("duplicates", num_partitions=1).count().take_all()
    return sorted([int(row["duplicates"]) + 1, int(row["count()"])] for row in rows)


def duplicate_pairs(records, duplicates, limit: int = DUPLICATE_PAIRS) -> list[dict[str, Any]]:
    """A few duplicates with the document kept in their place, texts included: the first
    near-duplicates in input order (exact duplicates only when there are none). Fetched by
    doc_id, so only these texts reach the driver."""
    picked = []
    for fate in (NEAR_DUP, EXACT_DUP):
        picked = duplicates.filter(expr=col(FATE) == fate).limit(limit).take_all()
        if picked:
            break
    if not picked:
        return []
    wanted = sorted({row[DOC_ID] for row in picked} | {row[DETAIL] for row in picked})
    found = records.filter(expr=col(DOC_ID).is_in(wanted)).select_columns([DOC_ID, SOURCE, RECORD, TEXT]).take_all()
    by_id = {row[DOC_ID]: row for row in found}
    return [
        {FATE: row[FATE], "duplicate": by_id[row[DOC_ID]], "kept": by_id[row[DETAIL]]}
        for row in picked
        if row[DOC_ID] in by_id and row[DETAIL] in by_id
    ]


def profile(records, tokenized, fates) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Distributions for the report, each computed where its data lives, and a few duplicate pairs.

    ``records``: every record after normalize (``text`` null where rejected on read);
    ``tokenized``: the kept documents with ``text`` and ``input_ids``; ``fates``: the fates table.
    Returns (the report's new keys, the duplicate pairs for report.html).
    """
    candidates = _sum_counters(
        records.select_columns([TEXT, OPENCC_CHANGED]),
        _candidate_counters,
        _histogram_names("before") + ["opencc.chars_changed", "opencc.records_changed"],
    )
    kept = _sum_counters(
        tokenized.select_columns([TEXT, INPUT_IDS]),
        _doc_counters,
        _histogram_names("after") + _histogram_names("tokens"),
    )
    duplicates = fates.filter(expr=col(FATE).is_in([EXACT_DUP, NEAR_DUP])).select_columns([DOC_ID, FATE, DETAIL])
    duplicates = duplicates.materialize()  # a few short strings per duplicate; read twice below
    sizes = cluster_sizes(duplicates)
    before = histogram(candidates, "before")
    built = {
        "lengths": {"before": before, "after": histogram(kept, "after")},
        "tokens_per_doc": histogram(kept, "tokens"),
        "opencc": {
            "chars_changed": candidates["opencc.chars_changed"],
            "records_changed": candidates["opencc.records_changed"],
            "records": before["total"],
            "chars": before["sum"],
        },
        "dedup_clusters": {
            "sizes": sizes,
            "clusters": sum(n for _, n in sizes),
            "duplicates": sum((size - 1) * n for size, n in sizes),
        },
    }
    return built, duplicate_pairs(records, duplicates)


def throughput(timer: StageTimer, input_bytes: int) -> dict[str, dict[str, float]]:
    megabytes = input_bytes / 1e6
    return {
        stage: {"seconds": round(seconds, 3), "mb_per_s": round(megabytes / seconds, 3) if seconds else 0.0}
        for stage, seconds in timer.seconds.items()
    }


# ---- the text report --------------------------------------------------------------------------


def _share(n: int, of: int) -> str:
    return f"{100 * n / of:5.1f}%" if of else ""


def human_report(report: dict[str, Any]) -> str:
    """The summary table printed by the CLI and written to report.txt."""
    fates, corpus = report["fates"], report["corpus"]
    records = fates["records"]
    width = 28
    lines = [f"{'records':<{width}}{records:>14,}"]
    for fate in FATES:
        lines.append(f"  {fate:<{width - 2}}{fates[fate]:>14,}  {_share(fates[fate], records)}")
        for label, n in fates.items():
            if label.startswith(f"{fate}."):
                lines.append(f"    {label.split('.', 1)[1]:<{width - 4}}{n:>14,}  {_share(n, records)}")
    lines.append("")
    for name in ("docs", "chars", "words", "tokens", "examples", "shards"):
        lines.append(f"{name:<{width}}{corpus.get(name, 0):>14,}")
    opencc = report.get("opencc")
    if opencc:
        lines.append(
            f"{'opencc changed chars':<{width}}{opencc['chars_changed']:>14,}  "
            f"{_share(opencc['chars_changed'], opencc['chars'])} of chars, in {opencc['records_changed']:,} records"
        )
    for row in report.get("unreadable_files", []):
        lines.append(f"unreadable: {row['source']}: {row['reason']}")
    megabytes = report["input_bytes"] / 1e6
    lines += ["", f"{'stage':<{width}}{'seconds':>14}{'MB/s':>10}"]
    for stage, row in report["stages"].items():
        lines.append(f"  {stage:<{width - 2}}{row['seconds']:>14.2f}{row['mb_per_s']:>10.3f}")
    total = report["seconds"]
    outside = total - sum(row["seconds"] for row in report["stages"].values())
    if outside >= 0.01:
        lines.append(f"  {'(between stages)':<{width - 2}}{outside:>14.2f}")
    lines.append(f"  {'total':<{width - 2}}{total:>14.2f}{(megabytes / total if total else 0.0):>10.3f}")
    lines.append(f"input {megabytes:,.2f} MB in {report.get('inputs', 0)} files")
    return "\n".join(lines) + "\n"


def write_report(
    output: str,
    report: dict[str, Any],
    files: list[dict[str, Any]] | None = None,
    pairs: list[dict[str, Any]] | None = None,
    suffix: str = "",
) -> list[str]:
    """report.json, report.txt and report.html; ``files`` (manifest entries) give examples per
    shard, ``pairs`` the duplicate pairs shown side by side. Returns the names written.

    ``suffix``: written as ``report.json<suffix>`` ..., staged for ``snapshot.commit`` to move into
    place, so that the committed version's report stays as it is until the commit."""
    from pipeline.report_html import render

    bodies = {
        REPORT_JSON: json.dumps(report, indent=2, ensure_ascii=False),
        REPORT_TEXT: human_report(report),
        REPORT_HTML: render(report, files or [], pairs or [], title=output),
    }
    from manifests.snapshot import write_bytes

    for name, body in bodies.items():
        write_bytes(output, name + suffix, body.encode())  # a new file: a hard-linked archived copy keeps its bytes
    return [name + suffix for name in bodies]
