"""The kept documents' texts and words, for pass 2: where a build finds them.

- A full build: in its own records, in input order (``in_input_order``: the records zipped with
  their dedup flags, no join, no sort after segmentation).
- A refresh that only adds files: the previous docs rows of the unchanged files and the new files'
  kept documents, segmented (``appended``, no join).
- Any other refresh: by joins of the kept documents with this build's records, the previous docs
  and, for duplicates kept in a retracted document's place, their files read again (``texts``);
  then the previous docs table as the segmentation cache, by text hash (``segmented``).

Every function returns lazy datasets (or materialized ones where a count or a second read needs
it); the driver connects them to pass 2.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray
from ray.data.expressions import col

from operators import normalize, read, segment, write
from operators.columns import DOC_ID, DOCS_SCHEMA, FATE, RECORD, SOURCE, TEXT, WORDS, docs_schema
from operators.dedup_rules import INDEX_KEPT
from pipeline import refresh
from pipeline.config import BuildConfig

log = logging.getLogger("pipeline")

KEPT_ROWS = pa.schema([(DOC_ID, pa.string()), (SOURCE, pa.string()), (RECORD, pa.int64())])  # a kept document's place
FLAGGED_DOC_ID = "flagged_doc_id"  # a record's dedup flag's doc_id, beside the record's own (in_input_order)


def _docs_rows(cfg: BuildConfig) -> pa.Schema:
    """A docs row as pass 2 takes it: the docs table's columns and the record (for the docs files' names)."""
    return pa.schema([*docs_schema(cfg.segment.tasks), (RECORD, pa.int64())])


def _partitions(ds) -> int:
    return max(1, ds.num_blocks())


def in_input_order(pending, flagged, flags_in_order: bool):
    """(doc_id, source, record, text) of every kept document, in input order, for a build whose kept
    documents are all among its records: no join moves the texts, and no sort follows segmentation.

    The dedup index lists the documents in the order they were signed when the graph ran in one task
    (``dedup.DedupOutput.in_order``); the distributed join leaves them in no particular order,
    and they are sorted by (source, record), narrow rows. Either way they line up with the records,
    which are read in that order, and ``zip`` attaches the flags (at 16x bench/e2e.py's input a
    join of the texts and a sort after segmentation made the segment stage 55 s instead of 41 s).

    Ray 2.60 deprecates ``zip`` (removal planned for 2.64) because rows keep their order only with
    ``preserve_order``, which every build sets; ``kept_texts`` checks that each pair is one document.
    The project pins Ray 2.60; on a Ray without ``zip``, ``texts`` and the join serve every build."""
    if not flags_in_order:
        flagged = flagged.select_columns([SOURCE, RECORD, DOC_ID, INDEX_KEPT]).sort([SOURCE, RECORD])
    zipped = _zipped(pending.select_columns([DOC_ID, SOURCE, RECORD, TEXT]), flagged.select_columns([DOC_ID, INDEX_KEPT]))
    return zipped.map_batches(kept_texts, batch_format="pyarrow").materialize()


def kept_texts(batch: pa.Table) -> pa.Table:
    """Records zipped with their dedup flags to the kept ones' texts; a record paired with another's flag
    would keep the wrong documents."""
    _check_pairs(batch, "records and their dedup flags")
    return batch.filter(batch[INDEX_KEPT]).select([DOC_ID, SOURCE, RECORD, TEXT])


def _zipped(rows, flags):
    """``rows`` zipped with ``flags``, one row each in the same order; the flags' doc_id becomes
    ``FLAGGED_DOC_ID``, for ``_check_pairs``."""
    with warnings.catch_warnings():  # Ray 2.60 deprecates zip: see in_input_order
        warnings.filterwarnings("ignore", message=r"(?s).*`Dataset\.zip` is deprecated")
        return rows.zip(flags.rename_columns({DOC_ID: FLAGGED_DOC_ID}))


def _check_pairs(batch: pa.Table, what: str) -> None:
    """Stops the build when a zipped row pairs two documents: a bug that would misplace or drop them."""
    if not pc.all(pc.equal(batch[DOC_ID], batch[FLAGGED_DOC_ID])).as_py():
        raise RuntimeError(f"{what} are not in the same (source, record) order")


def appended(cfg: BuildConfig, plan: refresh.Plan, out: str, previous: dict[str, Any], pending, kept, flagged,
             existing, flags_in_order: bool) -> tuple[Any, int, int] | None:
    """The docs table's rows for a refresh that only adds files (``plan.only_appends``), lazily, with no
    join and no cache lookup: the unchanged files' documents as the previous docs table holds them
    (read file by file in order; it has no record column: their records come from the kept rows of the
    dedup index, which line up with it once in (source, record) order), then the new files' kept
    documents, segmented, the two sorted together. Returns (docs, documents to segment, documents
    carried), or None when a new document joined two groups of old ones, so that an old kept
    document became a duplicate: the general path then runs."""
    unchanged = plan.unchanged
    old_kept = kept.filter(expr=col(SOURCE).is_in(unchanged)).select_columns(KEPT_ROWS.names)
    carried_count = old_kept.count()
    if carried_count != existing.filter(expr=col(INDEX_KEPT)).count():
        return None
    places = write.in_record_order(old_kept, cfg.write, KEPT_ROWS).select_columns([DOC_ID, RECORD])
    previous_docs = write.read_in_order(out, refresh.listed(previous, write.DOCS_DIR), docs_schema(cfg.segment.tasks))
    carried = _zipped(previous_docs.filter(expr=col(SOURCE).is_in(unchanged)), places)
    carried = carried.map_batches(_with_records, batch_format="pyarrow")
    new = in_input_order(pending, flagged.filter(expr=col(SOURCE).is_in(plan.to_read)), flags_in_order)
    segmented = new.count()
    full = _docs_rows(cfg)
    parts = [carried, *([segment.apply(new, cfg.segment)] if segmented else [])]
    parts = [part.map_batches(refresh.conform, fn_kwargs={"schema": full}, batch_format="pyarrow") for part in parts]
    if len(parts) == 1:
        return parts[0], segmented, carried_count
    # with preserve_order a union takes its inputs' blocks in turn: sorted, the new files' documents go to their place
    return parts[0].union(*parts[1:]).sort([SOURCE, RECORD]), segmented, carried_count


def _with_records(batch: pa.Table) -> pa.Table:
    """Previous docs rows zipped with their records; a row paired with another document's record would
    misname and misorder the docs files."""
    _check_pairs(batch, "previous docs and their dedup index rows")
    return batch.drop_columns([FLAGGED_DOC_ID])


def texts(cfg: BuildConfig, kept, pending, previous_docs, unchanged: list[str]):
    """(doc_id, source, record, text) of every kept document, and (promoted, files re-read).

    Texts come from this build's records, from the previous docs table (unchanged files' kept
    documents), and for duplicates in unchanged files that take the place of a retracted keeper
    (promoted: in neither), from their files, read and normalized again."""
    sources = []
    if pending is not None:
        sources.append(pending.select_columns([DOC_ID, TEXT]))
    if unchanged and previous_docs is not None:
        sources.append(previous_docs.filter(expr=col(SOURCE).is_in(unchanged)).select_columns([DOC_ID, TEXT]))
    text_schema = pa.schema([(DOC_ID, pa.string()), (SOURCE, pa.string()), (RECORD, pa.int64()), (TEXT, pa.string())])
    if not kept.count():
        return ray.data.from_arrow(text_schema.empty_table()), 0, 0
    known = sources[0].union(*sources[1:]) if len(sources) > 1 else sources[0] if sources else None
    joined = kept if known is None or not known.count() else kept.join(known, "left_outer", _partitions(kept), on=(DOC_ID,))
    if TEXT not in joined.schema().names:
        joined = joined.map_batches(lambda b: b.append_column(TEXT, pa.nulls(b.num_rows, pa.string())), batch_format="pyarrow")
    joined = joined.materialize()
    missing = joined.filter(expr=col(TEXT).is_null()).select_columns([DOC_ID, SOURCE, RECORD]).materialize()
    found = joined.filter(expr=~col(TEXT).is_null())
    promoted = missing.count()
    files = sorted(missing.unique(SOURCE)) if promoted else []
    if promoted:
        log.info("re-reading %d unchanged file(s) for %d duplicate(s) kept in a retracted document's place", len(files), promoted)
        again = normalize.apply(read.apply(files, cfg.read), cfg.normalize).filter(expr=col(FATE).is_null())
        again = missing.join(again.select_columns([DOC_ID, TEXT]), "inner", _partitions(missing), on=(DOC_ID,))
        found = found.union(again.map_batches(refresh.conform, fn_kwargs={"schema": text_schema}, batch_format="pyarrow"))
    found = found.map_batches(refresh.conform, fn_kwargs={"schema": text_schema}, batch_format="pyarrow")
    return found.materialize(), promoted, len(files)


def segmented(cfg: BuildConfig, texts, cache_docs, unique: bool, in_order: bool) -> tuple[Any, int, int]:
    """The docs table's rows, lazily: ``texts`` segmented (by LTP only where the cache lacks their words),
    sorted by (source, record) unless they are ``in_order`` already. Also returns (documents to
    segment, documents whose words come from the cache)."""
    full = _docs_rows(cfg)
    tags = [name for name in full.names if name not in (*DOCS_SCHEMA.names, RECORD)]
    hits, misses = None, texts
    if cache_docs is not None and texts.count():
        keyed = texts.map_batches(refresh.with_text_hash, batch_format="pyarrow")
        cache = cache_docs.select_columns([TEXT, WORDS, *tags]).map_batches(refresh.with_text_hash, batch_format="pyarrow")
        cache = cache.select_columns([refresh.TEXT_HASH, WORDS, *tags])
        if cache.count():
            if not unique:
                cache = cache.groupby(refresh.TEXT_HASH).map_groups(refresh.first_per_hash, batch_format="pyarrow")
            joined = keyed.join(cache, "left_outer", _partitions(texts), on=(refresh.TEXT_HASH,)).materialize()
            hits = joined.filter(expr=~col(WORDS).is_null())
            misses = joined.filter(expr=col(WORDS).is_null()).select_columns([DOC_ID, SOURCE, RECORD, TEXT]).materialize()
    parts = []
    if hits is not None:
        parts.append(hits)
    to_segment = misses.count()
    if to_segment:
        parts.append(segment.apply(misses, cfg.segment))
    parts = [part.map_batches(refresh.conform, fn_kwargs={"schema": full}, batch_format="pyarrow") for part in parts]
    if not parts:
        parts = [ray.data.from_arrow(full.empty_table())]
    docs = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    if not in_order:
        docs = docs.sort([SOURCE, RECORD])
    return docs, to_segment, texts.count() - to_segment
