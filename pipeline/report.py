"""Build report: counts aggregated where the data lives, plus the time each stage took.

Counters travel, data stays: each batch of the fates table becomes a handful of
``(label, n)`` rows, summed by a distributed groupby, so the driver only ever holds one row
per distinct label (fate, or fate plus reason).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from ray.data.aggregate import Sum
from ray.data.expressions import col

from operators import storage
from operators.columns import DETAIL, FATE, FATES, FILTERED, INPUT_IDS, RECORD, REJECTED, SOURCE, TEXT, WORDS
from operators.read import FILE_RECORD

REPORT_JSON = "report.json"
REPORT_TEXT = "report.txt"


class StageTimer:
    """Wall time per named stage, in the order the stages ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


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


def _sums(batch: pa.Table, columns: dict[str, Any]) -> pa.Table:
    return pa.table({name: [measure(batch)] for name, measure in columns.items()})


def _total(ds, measures: dict[str, Any]) -> dict[str, int]:
    partial = ds.map_batches(_sums, fn_kwargs={"columns": measures}, batch_format="pyarrow")
    totals = partial.aggregate(*(Sum(name) for name in measures)) or {}
    return {name: int(totals.get(f"sum({name})") or 0) for name in measures}


def count_fates(fates) -> dict[str, int]:
    rows = fates.map_batches(_fate_labels, batch_format="pyarrow").groupby("label").sum("n").take_all()
    counts = {fate: 0 for fate in FATES}
    counts.update({row["label"]: int(row["sum(n)"]) for row in rows})
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


def throughput(timer: StageTimer, input_bytes: int) -> dict[str, dict[str, float]]:
    megabytes = input_bytes / 1e6
    return {
        stage: {"seconds": round(seconds, 3), "mb_per_s": round(megabytes / seconds, 3) if seconds else 0.0}
        for stage, seconds in timer.seconds.items()
    }


def human_report(report: dict[str, Any]) -> str:
    fates, corpus = report["fates"], report["corpus"]
    lines = [
        f"records {fates['records']}: kept {fates['kept']}, exact_dup {fates['exact_dup']}, "
        f"near_dup {fates['near_dup']}, filtered {fates['filtered']}, rejected {fates['rejected']}",
        *(f"  {label}: {n}" for label, n in fates.items() if "." in label),
        f"docs {corpus['docs']}, chars {corpus['chars']}, words {corpus['words']}, "
        f"tokens {corpus['tokens']}, examples {corpus['examples']}, shards {corpus['shards']}",
        *(f"unreadable: {row['source']}: {row['reason']}" for row in report["unreadable_files"]),
        f"input {report['input_bytes'] / 1e6:.2f} MB in {report['seconds']:.1f} s",
        *(
            f"  {stage:<12} {row['seconds']:8.2f} s  {row['mb_per_s']:8.3f} MB/s"
            for stage, row in report["stages"].items()
        ),
    ]
    return "\n".join(lines) + "\n"


def write_report(output: str, report: dict[str, Any]) -> list[str]:
    for name, body in ((REPORT_JSON, json.dumps(report, indent=2, ensure_ascii=False)), (REPORT_TEXT, human_report(report))):
        filesystem, inner = storage.resolve(storage.join(output, name))
        with filesystem.open_output_stream(inner) as stream:
            stream.write(body.encode())
    return [REPORT_JSON, REPORT_TEXT]
