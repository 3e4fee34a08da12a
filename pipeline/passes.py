"""The build's two streaming passes and the dedup barrier between them, for the driver to connect.

Pass 1 (``read_and_dedup``) reads, normalizes and signs the records in one execution; the dedup
graph then decides on the keys alone, and the kept documents' texts are found (in this build's
records, or beside the previous version's docs). Pass 2 (``write_examples``) segments, tokenizes,
packs and writes them in one execution, and is also ``pack``'s. Nothing corpus-sized comes to the
driver: only counts and file lists.
"""

from __future__ import annotations

from typing import Any

import ray
from ray.data.expressions import col

from operators import dedup, normalize, pack, read, segment, tokenize, write
from operators.columns import SOURCE, docs_schema
from pipeline import kept_docs, previous_version, refresh, report, segmented_docs
from pipeline.commit import INDEX_DIR, DocCounts
from pipeline.config import BuildConfig


def read_and_dedup(
    cfg: BuildConfig, plan: refresh.Plan, previous: dict[str, Any] | None, out: str, version: int,
    timer: report.StageTimer, tally,
) -> tuple[Any, Any, DocCounts]:
    """Read and normalize the inputs the plan names, dedup them against the unchanged ones and write the
    dedup audit and index tables, and the fates table (or have pass 2 write it, as it takes a full
    build's kept documents from its records). Returns the records read (None when no file was read),
    the docs table's rows, cut into its files (``write.in_docs_files``) and still to be segmented
    where the cache lacks their words (lazy: ``write_examples`` runs segmentation in its pass), and
    the document counts. The records', fates' and audit's counters go to ``tally`` as they pass."""
    records, unchanged = None, plan.unchanged
    if plan.to_read:
        with timer("read+normalize+sign"):  # one execution: the dedup keys are signed as the records stream by
            normalized = normalize.apply(read.apply(plan.to_read, cfg.read), cfg.normalize)
            records = report.tallied(dedup.sign(normalized, cfg.dedup), report.record_counters, tally).materialize()
    existing = None
    if unchanged:  # the unchanged files' documents, as the previous version's dedup index holds them
        existing = refresh.read_listed(out, previous, INDEX_DIR, dedup.index_schema(cfg.dedup)).filter(expr=col(SOURCE).is_in(unchanged))
    with timer("dedup"):
        deduped = dedup.graph(dedup.keys(records, cfg.dedup, existing), cfg.dedup)
        write.write_dedup(report.tallied(deduped.audit, report.cluster_counters, tally), out, version)
        flagged = deduped.index  # materialized: every document, with whether it was kept
        write.write_table(flagged, out, INDEX_DIR, dedup.index_schema(cfg.dedup), version)
    kept_count = flagged.count() - deduped.duplicates.count()  # both materialized: counted from their blocks' metadata

    has_docs = bool(refresh.listed(previous, write.DOCS_DIR))
    previous_docs = refresh.read_listed(out, previous, write.DOCS_DIR, docs_schema(cfg.segment.tasks)) if has_docs else None
    cache = segmented_docs.previous_cache(previous) if has_docs and plan.reuse_segmentation else None
    if records is not None and not unchanged and cache is None and kept_count > 0:
        # every record and kept document is this build's, and none comes from a cache: in input order, pass 2
        # takes the kept documents from the records with their fates, and writes the fates as they pass
        decided = kept_docs.with_fates(records, deduped.fates, deduped.in_order, cfg)
        decided = write.tee_fates(report.tallied(decided, report.fate_counters, tally), out, version, plan.to_read)
        # cut into the docs files before segmentation: a file's segmentation, write and tokenizing run in one task
        kept = write.in_docs_files(kept_docs.kept_of(decided))
        return records, segmented_docs.segment_docs(cfg, kept), DocCounts(segmented=kept_count)
    with timer("kept texts"):
        docs, counts = previous_version.docs(cfg, plan, previous, previous_docs, cache, records, deduped, kept_count,
                                             version, tally)
        docs = write.in_docs_files(docs, segmented_docs.docs_rows(cfg).names)
    with timer("fates"):  # this build's records and the unchanged files' documents, and their filtered records
        previous_version.write_fates(cfg, out, previous, version, deduped.fates, unchanged, tally)
    return records, docs, counts


def write_examples(
    docs, cfg: BuildConfig, vocab, out: str, version: int, tally=None, docs_sources: list[str] | None = None,
    first_task: int = 0,
) -> None:
    """Tokenize and pack ``docs`` (the docs table's rows, in its order) into this version's shards, in one
    streaming execution: segmentation, when ``docs`` is still to be segmented, runs beside the CPU
    stages. With ``docs_sources`` (every input file) the docs table is written as it passes
    (``write.tee_docs``: ``docs`` come cut into its files, as ``read_and_dedup`` gives them).
    ``report.doc_counters`` of the documents go to ``tally`` when given. The one code path
    that writes shards: builds, refreshes and ``pack``. ``first_task``: the shard files linked before them
    (``previous_version.link_docs``)."""
    if docs_sources is not None:
        docs = write.tee_docs(docs, out, version, docs_schema(cfg.segment.tasks), docs_sources)
    tokenized = tokenize.apply(docs, cfg.tokenize)
    if tally is not None:
        # in the tokenizer's batches, a multiple of the packer's: Ray then fuses the packer's repartition, the
        # packer and the shard writer into the tokenizing tasks (pack.apply)
        tokenized = report.tallied(tokenized, report.doc_counters, tally, tokenize.batch_rows(cfg.tokenize))
    examples = pack.apply(tokenized, cfg.tokenize, vocab)
    schema = pack.shard_schema_for(vocab, cfg.segment.model, cfg.tokenize)
    try:
        write.write_shards(examples, out, schema, version, cfg.write, first_task)
    except ray.exceptions.RayError as error:  # segmentation runs here: a model that will not load, a piece too big
        if (reason := segment.stage_error(error)) is None:
            raise
        raise reason from error
