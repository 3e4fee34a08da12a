"""``python -m pipeline verify OUTPUT``: check a built corpus against its manifest, its schemas and itself.

What is checked, each as an independent recount of the files (nothing is taken from the
pipeline's own counters except to compare with):

- files: every file the manifest lists exists, with the size, sha256, rows (and shard tokens)
  it names; no file in ``docs/``, ``fates/``, ``shards/`` (or another folder of listed files)
  is missing from the manifest.
- schemas: ``fates`` is exactly ``FATES_SCHEMA``; ``docs`` starts with ``DOCS_SCHEMA``; shards
  hold ``input_ids`` (list<uint16>, or uint32 for vocabularies over 65,536) and ``word_start``
  (list<bool>) of equal lengths, at most ``max_seq_len``, with metadata naming the tokenizer,
  vocab sha256 and segmenter as the manifest does.
- fates: fate values and details follow the contract; rows are in (source, record) order with
  no repeat (so every record appears once); rows per source equal ``report.json`` ``sources``
  (the read stage's own count); counts per fate and reason, and ``unreadable_files``, equal
  ``report.json``; the fates and corpus counts of the manifest equal the report's (after
  ``pipeline pack``, which keeps the build's report, all but the shard totals).
- identities: the doc_ids of ``kept`` fates are exactly the doc_ids of ``docs`` (each once);
  every ``exact_dup``/``near_dup`` names a kept doc_id; ``"".join(words) == text`` for every doc,
  with no empty word; doc, char, word, example and token totals equal the report's (the
  manifest's example and token totals after ``pipeline pack``).

Memory: files are streamed in record batches (``BATCH_ROWS`` rows); only counters, one row of
state per source and the doc_ids of one pass are held. Doc_ids (32 hex digits) are compared in
passes by leading hex digits, so a pass holds at most about ``max_ids`` ids (16 bytes each as
numpy); a larger corpus takes more passes over the fates and docs files, not more memory.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from manifests import snapshot
from operators import storage
from operators.columns import (
    DETAIL,
    DOC_ID,
    DOCS_SCHEMA,
    EXACT_DUP,
    FATE,
    FATES,
    FATES_SCHEMA,
    FILTERED,
    INPUT_IDS,
    KEPT,
    NEAR_DUP,
    RECORD,
    REJECTED,
    SOURCE,
    TEXT,
    WORD_START,
    WORDS,
)

DATA_DIRS = ("docs", "fates", "shards")
REPORT_JSON = "report.json"
FILE_RECORD = -1  # the fates row of a file-level problem (operators.read.FILE_RECORD)
UNREADABLE = "unreadable_file"
BATCH_ROWS = 8192
MAX_IDS = 4_000_000  # doc_ids held at once; more docs take more passes
SHOWN = 5  # examples listed per kind of mismatch
SHARD_METADATA = ("tokenizer", "vocab_sha256", "segment_model", "max_seq_len")
DUPLICATES = (EXACT_DUP, NEAR_DUP)
HEX_ID = r"^[0-9a-f]{32}$"


class Problems(list):
    """Problems found, one line each; ``add`` keeps at most SHOWN of a kind plus a count of the rest."""

    def __init__(self) -> None:
        super().__init__()
        self._kinds: Counter[str] = Counter()

    def add(self, kind: str, message: str) -> None:
        self._kinds[kind] += 1
        if self._kinds[kind] <= SHOWN:
            self.append(message)

    def finish(self) -> list[str]:
        more = [f"... and {n - SHOWN} more of: {kind}" for kind, n in self._kinds.items() if n > SHOWN]
        return [*self, *more]


class CannotCheck(Exception):
    """No corpus at the path, or no such version: nothing was checked (exit 2, where problems found exit 1)."""


def verify(output: str, max_ids: int = MAX_IDS, version: int | None = None) -> list[str]:
    """Every problem found in the corpus at ``output`` (``version``: an archived one, see
    ``snapshot.resolve``); an empty list when it checks out. Raises ``CannotCheck`` when there is
    no corpus to check."""
    problems = Problems()
    try:
        manifest = snapshot.read_manifest(output)
        if manifest is not None and version is not None:
            output, manifest = snapshot.resolve(output, version)
    except snapshot.VersionError as error:
        raise CannotCheck(str(error)) from None
    except (OSError, ValueError) as error:
        return [f"manifest.json: cannot be read: {_one_line(error)}"]
    if manifest is None:
        raise CannotCheck(f"{output}: no manifest.json (not a built corpus)")
    entries = {entry["path"]: entry for entry in manifest.get("files", [])}
    bad = _check_files(output, entries, problems)
    report = _read_report(output, entries, bad, problems)
    listed = {d: [p for p in entries if p.startswith(f"{d}/") and p not in bad] for d in DATA_DIRS}

    fates = _scan_fates(output, listed["fates"], problems)
    docs = _scan_docs(output, listed["docs"], problems)
    shards = _scan_shards(output, listed["shards"], manifest, problems)
    _compare_ids(output, listed["fates"], listed["docs"], fates["kept"], docs["docs"], max_ids, problems)
    _compare_counts(manifest, report, fates, docs, shards, problems)
    return problems.finish()


# -- files -------------------------------------------------------------------------------------


def _check_files(output: str, entries: dict[str, dict], problems: Problems) -> set[str]:
    """Size, sha256, rows and tokens of every listed file; returns the files that failed (skipped below)."""
    bad: set[str] = set()
    for relative, entry in entries.items():
        filesystem, inner = storage.resolve(storage.join(output, relative))
        if filesystem.get_file_info(inner).type != pafs.FileType.File:
            problems.add("missing", f"{relative}: listed in the manifest but missing")
            bad.add(relative)
            continue
        size, digest = _digest(filesystem, inner)
        if size != entry.get("size") or digest != entry.get("sha256"):
            problems.add("checksum", f"{relative}: size/sha256 {size}/{digest[:12]} differ from the manifest's "
                         f"{entry.get('size')}/{str(entry.get('sha256'))[:12]}")
            bad.add(relative)
            continue
        try:
            counts = _table_counts(filesystem, inner)
        except (OSError, pa.ArrowException) as error:
            problems.add("unreadable", f"{relative}: cannot be read: {_one_line(error)}")
            bad.add(relative)
            continue
        for key, value in counts.items():
            if entry.get(key) != value:
                problems.add("file counts", f"{relative}: {value} {key}, the manifest says {entry.get(key)}")
    for directory in sorted({*DATA_DIRS, *(path.split("/", 1)[0] for path in entries if "/" in path)}):
        filesystem, inner = storage.resolve(storage.join(output, directory))
        for info in filesystem.get_file_info(pafs.FileSelector(inner, allow_not_found=True)):
            relative = f"{directory}/{info.base_name}"
            if relative not in entries:
                problems.add("unlisted", f"{relative}: on disk but not in the manifest")
    return bad


def _digest(filesystem: pafs.FileSystem, inner: str) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with filesystem.open_input_stream(inner) as stream:
        while chunk := stream.read(1 << 22):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _table_counts(filesystem: pafs.FileSystem, inner: str) -> dict[str, int]:
    """Rows of a Parquet file; rows and tokens of an Arrow shard, streamed batch by batch."""
    if inner.endswith(".parquet"):
        return {"rows": pq.ParquetFile(filesystem.open_input_file(inner)).metadata.num_rows}
    if inner.endswith(".arrow"):
        rows = tokens = 0
        for batch in _arrow_batches(filesystem, inner):
            rows += batch.num_rows
            tokens += _list_total(batch.column(INPUT_IDS))
        return {"rows": rows, "tokens": tokens}
    return {}


def _read_report(output: str, entries: dict[str, dict], bad: set[str], problems: Problems) -> dict[str, Any] | None:
    if REPORT_JSON not in entries or REPORT_JSON in bad:
        if REPORT_JSON not in entries:
            problems.add("report", f"{REPORT_JSON}: not listed in the manifest")
        return None
    filesystem, inner = storage.resolve(storage.join(output, REPORT_JSON))
    try:
        with filesystem.open_input_stream(inner) as stream:
            return json.loads(stream.read())
    except ValueError as error:
        problems.add("report", f"{REPORT_JSON}: not JSON: {_one_line(error)}")
        return None


# -- streaming scans -----------------------------------------------------------------------------


def _parquet_batches(output: str, relatives: list[str], columns: list[str], problems: Problems) -> Iterator[tuple[str, pa.RecordBatch]]:
    for relative in relatives:
        filesystem, inner = storage.resolve(storage.join(output, relative))
        try:
            parquet = pq.ParquetFile(filesystem.open_input_file(inner))
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns):
                yield relative, batch
        except (OSError, pa.ArrowException) as error:
            problems.add("unreadable", f"{relative}: cannot be read: {_one_line(error)}")


def _arrow_batches(filesystem: pafs.FileSystem, inner: str) -> Iterator[pa.RecordBatch]:
    with filesystem.open_input_stream(inner) as stream:
        yield from pa.ipc.open_stream(stream)


def _schema_of(output: str, relative: str) -> pa.Schema | None:
    filesystem, inner = storage.resolve(storage.join(output, relative))
    try:
        return pq.read_schema(filesystem.open_input_file(inner))
    except (OSError, pa.ArrowException):
        return None  # reported by the scan


def _scan_fates(output: str, relatives: list[str], problems: Problems) -> dict[str, Any]:
    """One pass: schema, contract rules, order, and counts per fate/reason and per source."""
    for relative in relatives:
        schema = _schema_of(output, relative)
        if schema is not None and not schema.remove_metadata().equals(FATES_SCHEMA):
            problems.add("schema", f"{relative}: schema {_fields(schema)} is not FATES_SCHEMA {_fields(FATES_SCHEMA)}")
    labels: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    unreadable: list[dict[str, str]] = []
    last: tuple[str, int] | None = None
    for relative, batch in _parquet_batches(output, relatives, FATES_SCHEMA.names, problems):
        table = pa.Table.from_batches([batch])
        _check_fate_rules(relative, table, problems)
        last = _check_order(relative, table, last, problems)
        for fate, n in _value_counts(table.column(FATE)):
            labels[fate] += n
        for fate in (FILTERED, REJECTED):
            details = table.filter(pc.equal(table.column(FATE), fate)).column(DETAIL)
            for detail, n in _value_counts(pc.fill_null(details, "")):
                labels[f"{fate}.{(detail or 'unknown').split(':', 1)[0]}"] += n
        for source, n in _value_counts(table.column(SOURCE)):
            sources[source] += n
        files = table.filter(pc.equal(table.column(RECORD), FILE_RECORD))
        unreadable += [{"source": s, "reason": d} for s, d in zip(files.column(SOURCE).to_pylist(), files.column(DETAIL).to_pylist())]
    counts = {fate: labels.get(fate, 0) for fate in FATES}
    counts.update({label: n for label, n in labels.items() if "." in label})
    counts["records"] = sum(labels.get(fate, 0) for fate in FATES)
    return {"counts": dict(sorted(counts.items())), "sources": dict(sources), "unreadable": unreadable, "kept": labels.get(KEPT, 0)}


def _check_fate_rules(relative: str, table: pa.Table, problems: Problems) -> None:
    fate, detail, record = table.column(FATE), table.column(DETAIL), table.column(RECORD)
    unknown = table.filter(pc.invert(pc.fill_null(pc.is_in(fate, pa.array(FATES)), False)))
    for row in unknown.slice(0, SHOWN).to_pylist():
        problems.add("fate value", f"{relative}: {row[SOURCE]} record {row[RECORD]}: unknown fate {row[FATE]!r}")
    kept_with_detail = table.filter(pc.and_(pc.equal(fate, KEPT), pc.is_valid(detail)))
    for row in kept_with_detail.slice(0, SHOWN).to_pylist():
        problems.add("fate detail", f"{relative}: {row[SOURCE]} record {row[RECORD]}: kept with a detail {row[DETAIL]!r}")
    needs_detail = pc.is_in(fate, pa.array([EXACT_DUP, NEAR_DUP, FILTERED, REJECTED]))
    missing = table.filter(pc.and_(needs_detail, pc.or_(pc.is_null(detail), pc.equal(pc.utf8_length(pc.fill_null(detail, "")), 0))))
    for row in missing.slice(0, SHOWN).to_pylist():
        problems.add("fate detail", f"{relative}: {row[SOURCE]} record {row[RECORD]}: {row[FATE]} without a reason")
    file_rows = pc.equal(record, FILE_RECORD)
    wrong_file_rows = table.filter(pc.and_(file_rows, pc.invert(pc.and_(pc.equal(fate, REJECTED),
                                                                        pc.starts_with(pc.fill_null(detail, ""), UNREADABLE)))))
    negative = table.filter(pc.less(record, FILE_RECORD))
    for row in [*wrong_file_rows.slice(0, SHOWN).to_pylist(), *negative.slice(0, SHOWN).to_pylist()]:
        problems.add("record", f"{relative}: {row[SOURCE]} record {row[RECORD]}: bad record number or file-level row")
    if table.column(DOC_ID).null_count or table.column(SOURCE).null_count or record.null_count:
        problems.add("nulls", f"{relative}: null source, record or doc_id")


def _check_order(relative: str, table: pa.Table, last: tuple[str, int] | None, problems: Problems) -> tuple[str, int] | None:
    """Rows ascend strictly by (source, record) across all files: every record appears once."""
    if not table.num_rows:
        return last
    source = table.column(SOURCE).combine_chunks()
    record = table.column(RECORD).combine_chunks()
    if last is not None:
        source = pa.concat_arrays([pa.array([last[0]], pa.string()), source])
        record = pa.concat_arrays([pa.array([last[1]], pa.int64()), record])
    before_s, after_s = source.slice(0, len(source) - 1), source.slice(1)
    before_r, after_r = record.slice(0, len(record) - 1), record.slice(1)
    ascending = pc.or_(pc.greater(after_s, before_s), pc.and_(pc.equal(after_s, before_s), pc.greater(after_r, before_r)))
    for index in np.flatnonzero(~pc.fill_null(ascending, False).to_numpy(zero_copy_only=False))[:SHOWN]:
        row, previous = (after_s[index].as_py(), after_r[index].as_py()), (before_s[index].as_py(), before_r[index].as_py())
        what = "appears twice" if row == previous else "is out of (source, record) order"
        problems.add("order", f"{relative}: {row[0]} record {row[1]} {what}")
    return source[-1].as_py(), record[-1].as_py()


def _scan_docs(output: str, relatives: list[str], problems: Problems) -> dict[str, int]:
    """One pass: schema, words join to text with no empty word, and totals."""
    for relative in relatives:
        schema = _schema_of(output, relative)
        if schema is None:
            continue
        head = pa.schema(list(schema)[: len(DOCS_SCHEMA)])
        if not head.equals(DOCS_SCHEMA):
            problems.add("schema", f"{relative}: schema {_fields(schema)} does not start with DOCS_SCHEMA {_fields(DOCS_SCHEMA)}")
    totals = Counter({"docs": 0, "chars": 0, "words": 0})
    for relative, batch in _parquet_batches(output, relatives, DOCS_SCHEMA.names, problems):
        text, words = batch.column(TEXT), batch.column(WORDS)
        joined = pc.binary_join(words, "")
        same = pc.fill_null(pc.equal(joined, text), False)
        for index in np.flatnonzero(~same.to_numpy(zero_copy_only=False))[:SHOWN]:
            problems.add("words", f"{relative}: doc {batch.column(DOC_ID)[index].as_py()}: words do not join to its text")
        flat = pc.list_flatten(words)
        if len(flat) and pc.min(pc.utf8_length(flat)).as_py() == 0:
            problems.add("words", f"{relative}: an empty word")
        if batch.column(DOC_ID).null_count:
            problems.add("nulls", f"{relative}: a doc without doc_id")
        totals["docs"] += batch.num_rows
        totals["chars"] += pc.sum(pc.utf8_length(text)).as_py() or 0
        totals["words"] += len(flat)
    return dict(totals)


def _scan_shards(output: str, relatives: list[str], manifest: dict, problems: Problems) -> dict[str, int]:
    """One pass: schema and metadata, equal lengths within max_seq_len, and totals."""
    tokenizer = manifest.get("tokenizer") or {}
    ids_type = pa.list_(pa.uint16() if tokenizer.get("vocab_size", 0) <= 1 << 16 else pa.uint32())
    totals = Counter({"examples": 0, "tokens": 0, "shards": len(relatives)})
    for relative in relatives:
        filesystem, inner = storage.resolve(storage.join(output, relative))
        try:
            reader = pa.ipc.open_stream(filesystem.open_input_stream(inner))
        except (OSError, pa.ArrowException) as error:
            problems.add("unreadable", f"{relative}: cannot be read: {_one_line(error)}")
            continue
        schema = reader.schema
        metadata = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
        if INPUT_IDS not in schema.names or schema.field(INPUT_IDS).type != ids_type:
            problems.add("schema", f"{relative}: input_ids must be {ids_type}")
        if WORD_START not in schema.names or schema.field(WORD_START).type != pa.list_(pa.bool_()):
            problems.add("schema", f"{relative}: word_start must be list<bool>")
        missing = [key for key in SHARD_METADATA if key not in metadata]
        if missing:
            problems.add("schema", f"{relative}: schema metadata lacks {', '.join(missing)}")
        expected = {"tokenizer": tokenizer.get("spec"), "vocab_sha256": tokenizer.get("vocab_sha256"), "segment_model": manifest.get("segment_model")}
        for key, value in expected.items():
            if key in metadata and value is not None and metadata[key] != str(value):
                problems.add("schema", f"{relative}: metadata {key} {metadata[key]!r}, the manifest says {value!r}")
        max_len = int(metadata.get("max_seq_len", 0)) or None
        try:
            for batch in reader:
                ids, starts = batch.column(INPUT_IDS), batch.column(WORD_START)
                lengths = pc.list_value_length(ids)
                if not pc.all(pc.equal(lengths, pc.list_value_length(starts))).as_py():
                    problems.add("shards", f"{relative}: input_ids and word_start differ in length")
                if max_len and len(lengths) and pc.max(lengths).as_py() > max_len:
                    problems.add("shards", f"{relative}: an example longer than max_seq_len {max_len}")
                totals["examples"] += batch.num_rows
                totals["tokens"] += pc.sum(lengths).as_py() or 0
        except (OSError, pa.ArrowException) as error:
            problems.add("unreadable", f"{relative}: cannot be read: {_one_line(error)}")
    return dict(totals)


# -- identities ----------------------------------------------------------------------------------


def _compare_ids(output: str, fates: list[str], docs: list[str], kept: int, doc_rows: int, max_ids: int, problems: Problems) -> None:
    """kept fates == docs, each doc_id once, and every duplicate names a kept doc; in passes by id prefix."""
    digits = 0
    while max(kept, doc_rows) / 16**digits > max_ids:
        digits += 1
    prefixes = [format(i, f"0{digits}x") if digits else "" for i in range(16**digits)]
    for index, prefix in enumerate(prefixes):
        kept_ids, duplicate_of, doc_ids = [], [], []
        columns = [DOC_ID, FATE, DETAIL, *((SOURCE, RECORD) if index == 0 else ())]
        for relative, batch in _parquet_batches(output, fates, columns, problems if index == 0 else Problems()):
            table = pa.Table.from_batches([batch])
            if index == 0:  # once: every doc_id is 32 hex digits, so the passes by prefix cover them all
                bad_ids = table.filter(pc.invert(pc.fill_null(pc.match_substring_regex(table.column(DOC_ID), HEX_ID), False)))
                for row in bad_ids.slice(0, SHOWN).to_pylist():
                    problems.add("doc_id", f"{relative}: {row[SOURCE]} record {row[RECORD]}: doc_id {row[DOC_ID]!r} is not 32 hex digits")
            kept_rows = table.filter(pc.equal(table.column(FATE), KEPT))
            kept_ids.append(_ids(kept_rows.column(DOC_ID), prefix))
            dup_rows = table.filter(pc.is_in(table.column(FATE), pa.array(DUPLICATES)))
            duplicate_of.append(_ids(dup_rows.column(DETAIL), prefix))
        for relative, batch in _parquet_batches(output, docs, [DOC_ID], problems if index == 0 else Problems()):
            doc_ids.append(_ids(batch.column(DOC_ID), prefix))
        kept_set, doc_set = np.sort(np.concatenate(kept_ids or [_EMPTY])), np.sort(np.concatenate(doc_ids or [_EMPTY]))
        for name, ids in (("docs", doc_set), ("kept fates", kept_set)):
            repeated = ids[1:][ids[1:] == ids[:-1]]
            for doc_id in np.unique(repeated)[:SHOWN]:
                problems.add(f"repeat {name}", f"{name}: doc_id {doc_id.decode()} appears more than once")
        for doc_id in np.setdiff1d(kept_set, doc_set)[:SHOWN]:
            problems.add("kept not in docs", f"fates: kept doc {doc_id.decode()} is not in docs")
        for doc_id in np.setdiff1d(doc_set, kept_set)[:SHOWN]:
            problems.add("docs not kept", f"docs: doc {doc_id.decode()} has no kept fates row")
        targets = np.concatenate(duplicate_of or [_EMPTY])
        for doc_id in np.unique(targets[~np.isin(targets, kept_set)])[:SHOWN]:
            problems.add("dangling duplicate", f"fates: a duplicate points at {doc_id.decode()}, which was not kept")


_EMPTY = np.array([], dtype="S32")


def _ids(column: pa.ChunkedArray | pa.Array, prefix: str) -> np.ndarray:
    """The ids that start with ``prefix``, as fixed-width bytes (null ids are dropped here, reported elsewhere)."""
    column = column.drop_null()
    if prefix:
        column = column.filter(pc.starts_with(column, prefix))
    return np.array(column.to_pylist(), dtype="S32") if len(column) else _EMPTY


def _compare_counts(manifest: dict, report: dict | None, fates: dict, docs: dict, shards: dict, problems: Problems) -> None:
    """The report's and the manifest's numbers against the recount."""
    if report is None:
        return
    reported = report.get("fates", {})
    for label in sorted(set(fates["counts"]) | {k for k in reported if k in FATES or "." in k or k == "records"}):
        if reported.get(label, 0) != fates["counts"].get(label, 0):
            problems.add("report fates", f"report.json: fates {label} = {reported.get(label, 0)}, the fates table has {fates['counts'].get(label, 0)}")
    if "sources" in report:
        counted = fates["sources"]
        for source in sorted(set(report["sources"]) | set(counted)):
            read, written = report["sources"].get(source), counted.get(source, 0)
            if read != written:
                problems.add("sources", f"{source}: {read} records read, {written} rows in fates")
    else:
        problems.add("report", "report.json has no per-source record counts (sources)")
    unreadable = sorted((row["source"], row["reason"]) for row in fates["unreadable"])
    if sorted((row["source"], row["reason"]) for row in report.get("unreadable_files", [])) != unreadable:
        problems.add("report", "report.json: unreadable_files differ from the fates table's file-level rows")
    built = report.get("corpus") or {}
    # a corpus re-packed before `pack` rewrote the report: the new shards' totals are in the manifest only
    stale = "packed" in manifest and "packed" not in report
    _compare_corpus("report.json", built, docs, problems)
    shard_totals = ("manifest.json", manifest.get("corpus", {})) if stale else ("report.json", built)
    _compare_corpus(*shard_totals, shards, problems)
    not_built = set(shards) if stale else set()
    for key in ("fates", "corpus"):
        if key in manifest and _without(manifest[key], not_built) != _without(report.get(key), not_built):
            problems.add("manifest", f"manifest.json: {key} differ from report.json's")


def _compare_corpus(name: str, corpus: dict, counted: dict, problems: Problems) -> None:
    for key, value in counted.items():
        if key in corpus and corpus[key] != value:
            problems.add("report corpus", f"{name}: corpus {key} = {corpus[key]}, the files have {value}")


def _without(counts: dict | None, keys: set[str]) -> dict | None:
    return None if counts is None else {key: value for key, value in counts.items() if key not in keys}


# -- helpers -------------------------------------------------------------------------------------


def _value_counts(column: pa.ChunkedArray | pa.Array) -> list[tuple[Any, int]]:
    counts = pc.value_counts(column.drop_null())
    return list(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))


def _list_total(column: pa.Array) -> int:
    return pc.sum(pc.list_value_length(column)).as_py() or 0


def _fields(schema: pa.Schema) -> str:
    return "(" + ", ".join(f"{field.name}: {field.type}" for field in schema) + ")"


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:200] or type(error).__name__


def main(output: str, max_ids: int = MAX_IDS, version: int | None = None) -> int:
    """Print the verdict; 0 when everything checks out, 1 when problems were found, 2 (one line on
    stderr) when there is no corpus or version to check."""
    try:
        problems = verify(output, max_ids, version)
    except CannotCheck as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem)
    if problems:
        print(f"verify: {output}: {len(problems)} problem(s)")
        return 1
    manifest = snapshot.resolve(output, version)[1]
    fates = manifest.get("fates", {})
    print(f"verify: {output}: ok (version {manifest.get('version')}, {len(manifest.get('files', []))} files, "
          f"{fates.get('records', '?')} records, {manifest.get('corpus', {}).get('docs', '?')} docs)")
    return 0
