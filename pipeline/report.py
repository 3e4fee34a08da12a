"""Build report: counts and histograms aggregated where the data lives, plus the time each stage took.

Counters travel, data stays: each block of a table is counted as it streams to its writer (a
histogram is a fixed set of bins, so per-block counts add up; so do counts per fate label or per
source), and the counts go to one small actor (``Tally``) that adds them up; no table is read
again for the report (``tallied``, ``summarize``). Duplicate-cluster sizes come from the dedup
audit's kept rows, so the driver only ever holds one counter per distinct size. The only texts
the driver sees are the handful of duplicate pairs shown in ``report.html``.

Three files come out: ``report.json`` (every number), ``report.txt`` (the same as a table,
also printed by the CLI) and ``report.html`` (plots, see ``pipeline.report_html``).
"""

from __future__ import annotations

import bisect
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

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
    KEPT,
    NEAR_DUP,
    RECORD,
    REJECTED,
    SOURCE,
    TEXT,
    WORDS,
)
from operators import storage
from operators.normalize import OPENCC_CHANGED
from operators.read import FILE_RECORD
from pipeline import histograms
from pipeline.report_html import render

REPORT_JSON = "report.json"
REPORT_TEXT = "report.txt"
REPORT_HTML = "report.html"
DUPLICATE_PAIRS = 4  # near-duplicate pairs shown side by side in report.html
# characters of each pair's texts kept in report.json (difflib in report.html is quadratic in the worst case)
PAIR_TEXT_CHARS = 6000
KEY_SEP = "\x00"  # between a counter key's parts: no source (order keys refuse NUL) or label holds one
KEY_PARTS = {"fate": 1, "unreadable": 2, "pick": 5, "source": 1, "size": 1}  # parts after each kind's prefix

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


class Tally:
    """Counters of the blocks that pass through the build's executions on their way to being written
    (records, fates, audit, documents): a Ray actor, one per build. Each block's counts are kept under
    the counter's name and the block's first row (``_first_place``), so a task that Ray runs again
    replaces its own counts instead of adding them twice."""

    def __init__(self) -> None:
        self._parts: dict[str, Counter[str]] = {}

    def add(self, key: str, counts: Counter[str]) -> None:
        self._parts[key] = counts

    def total(self) -> Counter[str]:
        return sum(self._parts.values(), Counter())

    def parts(self, name: str) -> dict[str, Counter[str]]:
        """The counts of counter ``name`` per block, by the rest of their keys."""
        start = name + KEY_SEP
        return {key[len(start) :]: counts for key, counts in self._parts.items() if key.startswith(start)}


class Tallied(NamedTuple):
    totals: Counter[str]
    # the documents' counters (doc_counters) by the place (source, record) of each counted batch's first row,
    # where the batches were on their way to the docs table (``_tally_block``)
    docs_by_place: dict[tuple[str, int], Counter[str]]


def start_tally():
    import ray

    return ray.remote(num_cpus=0)(Tally).remote()


def finish_tally(tally) -> Tallied:
    """The tally's totals and the documents' counters by place; the actor is ended."""
    import ray

    totals, parts = ray.get([tally.total.remote(), tally.parts.remote(doc_counters.__name__)])
    ray.kill(tally)
    places = {key: key.split(KEY_SEP) for key in parts}
    return Tallied(totals, {(place[0], int(place[1])): parts[key] for key, place in places.items() if len(place) == 2})


def tallied(ds, counters: Callable[[pa.Table], Counter[str]], tally, batch_size: int | None = None) -> Any:
    """``ds`` unchanged, its batches (whole blocks, or ``batch_size`` rows) counted into ``tally``
    (``start_tally``) as they pass. The documents' counts are kept by the place of each batch's first
    row (``finish_tally``): a refresh takes a linked docs file's counts from the manifest."""
    return ds.map_batches(_tally_block, fn_kwargs={"counters": counters, "tally": tally}, batch_format="pyarrow",
                          batch_size=batch_size, udf_modifying_row_count=False)


def _tally_block(block: pa.Table, counters: Callable[[pa.Table], Counter[str]], tally) -> pa.Table:
    import ray

    if block.num_rows:
        ray.get(tally.add.remote(_keyed(counters.__name__, *_first_place(block)), counters(block)))
    return block


def _first_place(block: pa.Table) -> tuple:
    """A block's key in the tally: its first row's (source, record) where its rows have one (records, fates,
    audit, and documents on their way to the docs table), else its first doc_id (documents read back from
    the docs table, which has no record column)."""
    if RECORD in block.column_names:
        return block[SOURCE][0].as_py(), block[RECORD][0].as_py()
    return (block[DOC_ID][0].as_py(),)


def add_docs_counts(tally, place: tuple[str, int], counts: dict[str, int]) -> None:
    """The documents' counters of a docs file this build links instead of writing (``place``: its first row's)."""
    import ray

    ray.get(tally.add.remote(_keyed(doc_counters.__name__, *place), Counter(counts)))


def counts_per_docs_file(docs_by_place: dict[tuple[str, int], Counter[str]], first_places: dict[str, tuple[str, int]]
                         ) -> dict[str, dict[str, int]]:
    """The documents' counters summed per docs file (``first_places``: each file's first row's place): a
    counted batch belongs to the file that holds its first row."""
    files = sorted(first_places, key=first_places.__getitem__)
    starts = [first_places[path] for path in files]
    sums: dict[str, Counter[str]] = {path: Counter() for path in files}
    for place, counts in docs_by_place.items():
        sums[files[max(0, bisect.bisect_right(starts, place) - 1)]].update(counts)
    return {path: {key: n for key, n in sorted(counts.items()) if n} for path, counts in sums.items()}


def _keyed(prefix: str, *parts: Any) -> str:
    return KEY_SEP.join((prefix, *map(str, parts)))


def _with_prefix(totals: Counter[str], prefix: str) -> dict[tuple[str, ...], int]:
    """The counters of one kind, by the parts of the rest of their key (the last part may hold anything)."""
    start, parts = prefix + KEY_SEP, KEY_PARTS[prefix]
    return {tuple(key[len(start) :].split(KEY_SEP, parts - 1)): n for key, n in totals.items() if key.startswith(start)}


def fate_counters(batch: pa.Table) -> Counter[str]:
    """Fates per label and reason, the file-level rows (a file that could not be read), and the batch's
    first few duplicates of each kind (``duplicate_pairs`` picks the first in input order among them)."""
    counts: Counter[str] = Counter()
    picks: Counter[str] = Counter()
    columns = (batch.column(c).to_pylist() for c in (FATE, DETAIL, RECORD, SOURCE, DOC_ID))
    for fate, detail, record, source, doc_id in zip(*columns):
        counts[_keyed("fate", fate)] += 1
        if fate in (FILTERED, REJECTED):
            counts[_keyed("fate", f"{fate}.{reason_of(detail)}")] += 1
        elif fate in (NEAR_DUP, EXACT_DUP) and picks[fate] < DUPLICATE_PAIRS:
            picks[fate] += 1
            counts[_keyed("pick", fate, source, f"{record:020d}", doc_id, detail)] += 1
        if record == FILE_RECORD:
            counts[_keyed("unreadable", source, detail)] += 1
    return counts


# ---- histograms -------------------------------------------------------------------------------


def _histogram_counters(name: str, values: pa.Array) -> dict[str, int]:
    numbers = values.drop_null().to_numpy(zero_copy_only=False)
    counts = histograms.bin_counts(numbers)
    return {**{f"{name}.bin{i}": int(n) for i, n in enumerate(counts)}, f"{name}.sum": int(numbers.sum())}


def histogram(totals: dict[str, int], name: str) -> dict[str, Any]:
    """The summed counters of one histogram as JSON (``histograms.as_json``)."""
    counts = [totals[f"{name}.bin{i}"] for i in range(len(histograms.HISTOGRAM_EDGES))]
    return histograms.as_json(counts, totals[f"{name}.sum"])


def record_counters(batch: pa.Table) -> Counter[str]:
    """Records after normalize: rows per source, and the lengths and OpenCC changes of the normalized
    ones (all but those rejected on read)."""
    counts = Counter(_histogram_counters("before", pc.utf8_length(batch.column(TEXT))))
    changed = batch.column(OPENCC_CHANGED)
    counts["opencc.chars_changed"] = pc.sum(changed).as_py() or 0
    counts["opencc.records_changed"] = pc.sum(pc.greater(changed, 0)).as_py() or 0
    per_source = pc.value_counts(batch.column(SOURCE).combine_chunks())
    for source, n in zip(per_source.field("values").to_pylist(), per_source.field("counts").to_pylist()):
        counts[_keyed("source", source)] = n
    return counts


def doc_counters(batch: pa.Table) -> Counter[str]:
    """Kept documents, tokenized: documents, characters, words and tokens, per corpus and per document."""
    lengths = pc.utf8_length(batch.column(TEXT))
    return Counter({
        "docs": batch.num_rows,
        "chars": pc.sum(lengths).as_py() or 0,
        "words": pc.sum(pc.list_value_length(batch.column(WORDS))).as_py() or 0,
        **_histogram_counters("after", lengths),
        **_histogram_counters("tokens", pc.list_value_length(batch.column(INPUT_IDS))),
    })


def cluster_counters(batch: pa.Table) -> Counter[str]:
    """Audit rows: duplicate clusters per size (each cluster has one kept row, which carries its size)."""
    kept = batch.filter(pc.equal(batch.column(FATE), KEPT))
    return Counter({_keyed("size", size): n for size, n in Counter(kept.column("size").to_pylist()).items()})


def duplicate_pairs(records, picks: dict[tuple[str, ...], int], limit: int = DUPLICATE_PAIRS) -> list[dict[str, Any]]:
    """A few duplicates with the document kept in their place, texts included: the first
    near-duplicates in input order (exact duplicates only when there are none), from the fates
    pass's picks. Fetched by doc_id, so only these texts reach the driver; none when ``records`` is None
    (no file was read)."""
    if records is None:
        return []
    picked = []
    for fate in (NEAR_DUP, EXACT_DUP):
        rows = sorted((source, int(record), doc_id, kept) for (f, source, record, doc_id, kept) in picks if f == fate)
        picked = [{FATE: fate, DOC_ID: doc_id, DETAIL: kept} for _, _, doc_id, kept in rows[:limit]]
        if picked:
            break
    if not picked:
        return []
    wanted = sorted({row[DOC_ID] for row in picked} | {row[DETAIL] for row in picked})
    found = records.filter(expr=col(DOC_ID).is_in(wanted)).select_columns([DOC_ID, SOURCE, RECORD, TEXT]).take_all()
    by_id = {row[DOC_ID]: {**row, TEXT: (row[TEXT] or "")[:PAIR_TEXT_CHARS]} for row in found}
    return [
        {FATE: row[FATE], "duplicate": by_id[row[DOC_ID]], "kept": by_id[row[DETAIL]]}
        for row in picked
        if row[DOC_ID] in by_id and row[DETAIL] in by_id
    ]


class Summary(NamedTuple):
    """What the build's tables say, counted where they live: one pass over each table."""

    sources: dict[str, int]  # records the read stage gave each file read (0 for an empty one)
    fates: dict[str, int]  # per fate, per fate.reason, and ``records``
    unreadable: list[dict[str, str]]  # files that could not be read: source, reason
    docs: dict[str, int]  # kept documents: docs, chars, words
    profile: dict[str, Any]  # the report's distributions (lengths, tokens, OpenCC, duplicate clusters)
    pairs: list[dict[str, Any]]  # a few duplicate pairs with their texts, for report.html
    docs_by_place: dict[tuple[str, int], Counter[str]]  # the documents' counters by place (``Tallied``)


def summarize(counted: Tallied, records, files_read: list[str]) -> Summary:
    """``counted``: the totals of ``record_counters``, ``doc_counters``, ``fate_counters`` and
    ``cluster_counters`` over the build's records, kept documents, fates and audit rows (their keys
    do not overlap), and the documents' counters by place; ``records``: every record read after
    normalize, for the duplicate pairs' texts (None when no file was read)."""
    counts = counted.totals
    sizes = sorted([int(size), n] for (size,), n in _with_prefix(counts, "size").items())
    before = histogram(counts, "before")
    profile = {
        "lengths": {"before": before, "after": histogram(counts, "after")},
        "tokens_per_doc": histogram(counts, "tokens"),
        "opencc": {
            "chars_changed": counts["opencc.chars_changed"],
            "records_changed": counts["opencc.records_changed"],
            "records": before["total"],
            "chars": before["sum"],
        },
        "dedup_clusters": {
            "sizes": sizes,
            "clusters": sum(n for _, n in sizes),
            "duplicates": sum((size - 1) * n for size, n in sizes),
        },
    }
    fates = Counter(dict.fromkeys(FATES, 0))
    fates.update({label: n for (label,), n in _with_prefix(counts, "fate").items()})
    fates["records"] = sum(fates[fate] for fate in FATES)
    unreadable = [{"source": source, "reason": reason} for source, reason in sorted(_with_prefix(counts, "unreadable"))]
    sources = dict.fromkeys(files_read, 0)
    sources.update({source: n for (source,), n in _with_prefix(counts, "source").items()})
    return Summary(
        sources=dict(sorted(sources.items())),
        fates=dict(sorted(fates.items())),
        unreadable=unreadable,
        docs={name: counts[name] for name in ("docs", "chars", "words")},
        profile=profile,
        pairs=duplicate_pairs(records, _with_prefix(counts, "pick")),
        docs_by_place=counted.docs_by_place,
    )


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
    if packed := report.get("packed"):
        lines.append(f"shards re-packed by `pack` as version {report['version']} from version {packed['from_version']} "
                     f"(max_seq_len {packed['max_seq_len']}, packing {packed['packing']}) in {packed['seconds']:.2f} s")
    return "\n".join(lines) + "\n"


def read_report(output: str) -> dict[str, Any]:
    """The committed report.json of the corpus at ``output``."""
    filesystem, inner = storage.resolve(storage.join(output, REPORT_JSON))
    with filesystem.open_input_stream(inner) as stream:
        return json.loads(stream.read())


def stage_report(output: str, report: dict[str, Any], files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """report.json, report.txt and report.html, written as ``<name>.staged`` for ``snapshot.commit`` to
    move into place, so that the committed version's report stays as it is until the commit. ``files``
    (manifest entries) give examples per shard; the report's ``duplicate_pairs`` are shown side by
    side. Returns the three files' manifest entries, under the names the commit gives them."""
    from manifests.snapshot import STAGED, describe_files, write_bytes

    bodies = {
        REPORT_JSON: json.dumps(report, indent=2, ensure_ascii=False),
        REPORT_TEXT: human_report(report),
        REPORT_HTML: render(report, files, report.get("duplicate_pairs", []), title=output),
    }
    for name, body in bodies.items():
        write_bytes(output, name + STAGED, body.encode())  # a new file: a hard-linked archived copy keeps its bytes
    entries = describe_files(output, [name + STAGED for name in bodies])
    return [{**entry, "path": name} for entry, name in zip(entries, bodies)]
