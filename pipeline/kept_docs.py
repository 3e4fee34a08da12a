"""The kept documents' texts and words, for pass 2: where a build finds them.

- A full build: in its own records, in input order (``with_fates``: the records zipped with their
  fates rows, no join, no sort after segmentation; ``kept_of``, then ``segmented_docs.segment_docs``).
- A refresh whose unchanged files keep their kept documents (added, changed and removed files whose
  documents kept none of theirs in place): the previous docs rows of the unchanged files and the kept
  documents of the files read, segmented (``carried``, no join of texts).
- Any other refresh: by joins of the kept documents with this build's records, the previous docs
  and, for duplicates kept in a retracted document's place, their files read again (``texts``);
  then the previous docs table as the segmentation cache, by text hash (``segmented_docs``).

Every function returns lazy datasets (or materialized ones where a count or a second read needs
it); ``pipeline.passes`` connects them to pass 2.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray
from ray.data.expressions import col

from operators import normalize, read, write
from operators.columns import DETAIL, DOC_ID, FATE, KEPT, RECORD, SOURCE, TEXT, docs_schema
from operators.dedup import DedupOutput
from pipeline import refresh, segmented_docs
from pipeline.commit import DOC_COUNTS
from pipeline.config import BuildConfig

log = logging.getLogger("pipeline")

KEPT_ROWS = pa.schema([(DOC_ID, pa.string()), (SOURCE, pa.string()), (RECORD, pa.int64())])  # a kept document's place
KEPT_TEXTS = pa.schema([*KEPT_ROWS, (TEXT, pa.string())])  # and its text
FLAGGED_DOC_ID = "flagged_doc_id"  # a fates row's doc_id, beside the record's own (with_fates)


def _partitions(ds) -> int:
    return max(1, ds.num_blocks())


def with_fates(records, fates, fates_in_order: bool, cfg: BuildConfig):
    """(doc_id, source, record, text, fate, detail) of every record, in input order, lazily: dedup's fates
    rows attached to the records they name, with no join, for a build whose fates rows all name its
    records (a full build, or a refresh's new files).

    The one-task dedup graph lists the fates in the order the records were signed
    (``dedup.DedupOutput.in_order``); the distributed join leaves them in no particular order, and
    they are sorted back into it (``write.in_input_order``), narrow rows. Either way they line up
    with the records, and ``zip`` attaches them (at 16x bench/e2e.py's input a join of the texts and
    a sort after segmentation made the segment stage 55 s instead of 41 s).

    Ray 2.60 deprecates ``zip`` (removal planned for 2.64) because rows keep their order only with
    ``preserve_order``, which every build sets; ``paired`` checks that each pair is one record.
    The project pins Ray 2.60; a Ray without ``zip`` would need the join of ``texts`` here (it serves the
    refreshes that are not appends today)."""
    if not fates_in_order:
        fates = write.in_input_order(fates, cfg.write)
    zipped = _zipped(records.select_columns(KEPT_TEXTS.names), fates.select_columns([DOC_ID, FATE, DETAIL]))
    return zipped.map_batches(paired, fn_kwargs={"what": "records and their fates"}, batch_format="pyarrow",
                              batch_size=None, udf_modifying_row_count=False)


def kept_of(records):
    """(doc_id, source, record, text) of the kept documents among records with their fates (``with_fates``)."""
    return records.filter(expr=col(FATE) == KEPT).select_columns(KEPT_TEXTS.names)


def _zipped(rows, flags):
    """``rows`` zipped with ``flags``, one row each in the same order; the flags' doc_id becomes
    ``FLAGGED_DOC_ID``, for ``paired``."""
    with warnings.catch_warnings():  # Ray 2.60 deprecates zip: see with_fates
        warnings.filterwarnings("ignore", message=r"(?s).*`Dataset\.zip` is deprecated")
        return rows.zip(flags.rename_columns({DOC_ID: FLAGGED_DOC_ID}))


def paired(batch: pa.Table, what: str) -> pa.Table:
    """A zipped batch (``_zipped``) without the flags' doc_id, once each row is checked to pair one
    document: a row that pairs two (``what`` names the sides) would misplace or drop them, so the
    build stops."""
    if not pc.all(pc.equal(batch[DOC_ID], batch[FLAGGED_DOC_ID])).as_py():
        raise RuntimeError(f"{what} are not in the same (source, record) order")
    return batch.drop_columns([FLAGGED_DOC_ID])


def carried(cfg: BuildConfig, plan: refresh.Plan, previous: dict[str, Any], records, deduped: DedupOutput,
            kept_count: int, kept_before: int, unique: bool) -> tuple[Any, int, int, int] | None:
    """The docs table's rows for a refresh whose unchanged files keep their kept documents, lazily,
    with no join of texts: the unchanged files' rows of the previous docs table (read file by file
    in order; it has no record column: their records come from their kept fates rows, which line up
    with it once in (source, record) order), and the kept documents of the files read
    (``with_fates``), segmented; where files changed or left, their previous docs rows are the
    segmentation cache of those documents (``segmented_docs``). Returns (docs, documents to segment,
    documents whose words were carried or cached, previous docs files to link), or None where the
    general path must run: a new document joined two groups of old ones, so that an old kept
    document became a duplicate (``deduped.retracted``), or a duplicate in an unchanged file is kept
    in the place of a keeper that left, so its text is in no table at hand (the unchanged files then
    keep other than the ``kept_before`` documents the previous version kept in them).

    The two are put in (source, record) order in one task up to ``write.local_sort_max_docs`` documents
    (``write.docs_in_record_order``). Above it, where Ray's sort would do it, nothing is sorted: the
    documents read are segmented first (an execution of their own) and each run of files read (added
    or changed) streams between the unchanged files around it (``_in_runs``), one ordered stream (at
    16x bench/e2e.py's corpus, Ray's sort took over a quarter of a 20-document refresh: 40.7 s
    against 28.9 s).

    The previous docs files that hold only rows before the first file read or gone are the same files
    in this version, and so are the shard files packed from them: they are linked
    (``previous_version.link_docs``), and the rows returned start after them (``_linkable``)."""
    if deduped.retracted.count():
        return None
    unchanged, gone = plan.unchanged, plan.diff.changed + plan.diff.removed
    fresh = kept_count - kept_before  # kept documents of the files read, unless one was promoted (checked below)
    in_runs = fresh > 0 and kept_count > cfg.write.local_sort_max_docs  # no sort: documents read go in their place
    sources = unchanged + plan.to_read if in_runs else unchanged
    kept = deduped.fates.filter(expr=col(SOURCE).is_in(sources) & (col(FATE) == KEPT))
    places = write.in_record_order(kept.select_columns(KEPT_ROWS.names), cfg.write, KEPT_ROWS)
    if gone:  # a duplicate kept in the place of a keeper that left: more kept in the unchanged files than before
        kept_there = places.filter(expr=col(SOURCE).is_in(unchanged)) if in_runs else places
        if kept_there.count() != kept_before:  # materialized: from its blocks' metadata
            return None
    files = refresh.listed(previous, write.DOCS_DIR)
    starts = refresh.first_places(plan, files)
    fresh_docs, segmented_count, reused, fresh_blocks = None, fresh, kept_before, []
    if fresh:
        texts = kept_of(with_fates(records, deduped.fates.filter(expr=col(SOURCE).is_in(plan.to_read)),
                                   deduped.in_order, cfg))
        if gone:  # the documents that left are the cache (all the previous docs rows but the unchanged files')
            cache = segmented_docs.sources_cache(previous, starts, gone, int(previous["corpus"]["docs"]) - kept_before)
            fresh_docs, segmented_count, hits = segmented_docs.segmented(cfg, texts.materialize(), cache, unique,
                                                                         ordered=True)
            reused += hits
        else:
            fresh_docs = segmented_docs.segment_docs(cfg, texts)
        if in_runs:
            fresh_blocks, fresh_docs = fresh_docs.materialize().to_arrow_refs(), None
    linked = _linkable(cfg, plan, previous, files, starts)
    if linked:  # the rows from the first file not linked
        source, record = starts[linked]
        places = places.filter(expr=(col(SOURCE) > source) | ((col(SOURCE) == source) & (col(RECORD) >= record)))
    runs = _in_runs(files[linked:], starts[linked:], unchanged, plan.to_read, fresh_blocks, filtered=bool(gone))
    docs = write.read_runs(cfg.output, runs, docs_schema(cfg.segment.tasks))
    docs = _zipped(docs, places.select_columns([DOC_ID, RECORD]))
    docs = docs.map_batches(paired, fn_kwargs={"what": "docs and their kept fates rows"}, batch_format="pyarrow")
    rows_schema = segmented_docs.docs_rows(cfg)
    docs = docs.map_batches(refresh.conform, fn_kwargs={"schema": rows_schema}, batch_format="pyarrow")
    if fresh_docs is not None:
        # with preserve_order a union takes its inputs' blocks in turn: sorted, the documents read go to their place
        rows = kept_count - linked * write.DOCS_FILE_ROWS
        docs = write.docs_in_record_order(docs.union(fresh_docs), rows, rows_schema, cfg.write)
    return docs, segmented_count, reused, linked


def _in_runs(files: list[str], starts: list[tuple[str, int]], unchanged: list[str], read: list[str],
             fresh_blocks: list[Any], filtered: bool) -> list[Any]:
    """The runs of ``write.read_runs`` that give the docs rows in (source, record) order: the previous docs
    ``files`` (``starts``: their first rows' places) with their rows of the unchanged files, then, where the
    documents read came segmented first (``fresh_blocks``, in order), each run of files read in its place
    between the unchanged files, cut from those blocks (``_split_by_runs``). ``filtered``: the files hold
    rows of files that changed or left, which are left out."""
    if not fresh_blocks:
        return [write.FilesRun(files, unchanged if filtered else None)]
    is_read = set(read).__contains__
    groups = [list(run) for _, run in itertools.groupby(sorted(unchanged + read), key=is_read)]
    read_groups = [group for group in groups if is_read(group[0])]
    if len(read_groups) == 1:
        cut = [fresh_blocks]
    else:  # one task per block, returning its rows of each run of files read
        split = ray.remote(num_returns=len(read_groups))(_split_by_runs)
        pieces = [split.remote(block, read_groups) for block in fresh_blocks]
        cut = [[piece[i] for piece in pieces] for i in range(len(read_groups))]
    runs, next_cut = [], iter(cut)
    for group in groups:
        if is_read(group[0]):
            runs.append(next(next_cut))
        else:
            runs.append(write.FilesRun(write.files_holding(files, starts, group), group))
    return runs


def _split_by_runs(block: pa.Table, runs: list[list[str]]) -> tuple[pa.Table, ...]:
    """``block``'s rows of each run of sources, in order."""
    return tuple(block.filter(pc.is_in(block[SOURCE], value_set=pa.array(run, pa.string()))) for run in runs)


def _linkable(cfg: BuildConfig, plan: refresh.Plan, previous: dict[str, Any], files: list[str],
              starts: list[tuple[str, int]]) -> int:
    """How many of the previous docs ``files`` (``starts``: their first rows' places), from the first,
    this version takes as they are: those whose rows all come before the first file read (added or
    changed) or gone, in (source, record) order, while each is packed on its own with the same
    settings (no setting changed) and its manifest entry holds its documents' counters for the
    report. A file is known to end before that file where the next file starts before it; the last
    file, which new rows may fill, is never linked. The previous shard files must come from one write task
    per docs file, in order (a docs file always gives at least one example)."""
    if plan.changed_stages or not refresh.docs_files_pack_alone(cfg.tokenize):
        return 0
    if sorted(write.files_by_task(refresh.listed(previous, write.SHARDS_DIR))) != list(range(len(files))):
        return 0
    first_touched = min(plan.to_read + plan.diff.removed)
    counted = {entry["path"] for entry in previous["files"] if DOC_COUNTS in entry}
    linked = 0
    while linked + 1 < len(files) and files[linked] in counted and starts[linked + 1][0] < first_touched:
        linked += 1
    return linked


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
    if not kept.count():
        return ray.data.from_arrow(KEPT_TEXTS.empty_table()), 0, 0
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
        found = found.union(again.map_batches(refresh.conform, fn_kwargs={"schema": KEPT_TEXTS}, batch_format="pyarrow"))
    found = found.map_batches(refresh.conform, fn_kwargs={"schema": KEPT_TEXTS}, batch_format="pyarrow")
    return found.materialize(), promoted, len(files)
