"""The driver: checks what can fail early, then assembles the Ray Data graph stage by stage.

Stage logic lives in ``operators/``; this module only wires datasets together and decides where
marked rows leave the flow; ``pipeline.previous_version`` holds what a refresh takes from the version
it replaces, and ``pipeline.commit`` writes the new one. Nothing here pulls corpus-sized data
to the driver: datasets are materialized in Ray's object store, and only counts, file lists
and checksums come back.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import ray
import ray.data
from ray.data.expressions import col

from manifests import fingerprints, snapshot
from operators import dedup, normalize, pack, read, segment, tokenize, write
from operators.columns import SOURCE, docs_schema
from pipeline import cluster, commit, kept_docs, previous_version, refresh, report
from pipeline.commit import INDEX_DIR, OUTPUT_DIRS, DocCounts
from pipeline.config import BuildConfig

log = logging.getLogger("pipeline")

def connect_ray(num_cpus: int | None = None) -> None:
    """Join the cluster in RAY_ADDRESS (as under ``ray job submit``), else start a local one with
    ``num_cpus`` CPUs (default: all of the machine's)."""
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS") or "local"  # "local": never join a stray cluster by accident
        local = address == "local"
        ray.init(address=address, num_cpus=num_cpus if local else None, log_to_driver=False, **(cluster.LOCAL_RAY_OPTIONS if local else {}))
    context = ray.data.DataContext.get_current()
    cluster.configure_data_context(context)
    context.execution_options.preserve_order = True  # same inputs, same row order in every output
    context.enable_progress_bars = True


def build_corpus(cfg: BuildConfig, num_cpus: int | None = None) -> dict[str, Any]:
    """Build the corpus at ``cfg.output``, or refresh the one there; return the report that was written
    (for a build with nothing to do, the committed version's report with ``refresh.noop`` true).

    ``num_cpus`` sizes a local Ray instance the build starts itself (see ``connect_ray``)."""
    inputs = read.list_inputs(cfg.inputs)
    segment.check_config(cfg.segment)
    vocab = tokenize.vocab_info(cfg.tokenize.tokenizer)
    started, timer = time.perf_counter(), report.StageTimer()
    first_build = snapshot.read_manifest(cfg.output) is None
    if first_build:  # Ray's checks (GPUs) come before anything is written
        _connect(cfg, num_cpus)
    holder = snapshot.acquire_lock(cfg.output)  # one writer per output: a second build stops here
    try:
        previous = snapshot.read_manifest(cfg.output)
        if previous is not None:
            snapshot.restore_unversioned(cfg.output, previous)  # a build that died just before its commit
        prints = fingerprints.stage_fingerprints(cfg.to_dict(), vocab.sha256)
        with timer("ledger"):  # file sizes and times against the ledger: Ray is not needed to find nothing to do
            plan = refresh.plan(previous, cfg.output, inputs, prints, refresh.listed(previous, INDEX_DIR) != [],
                                connect=lambda: connect_ray(num_cpus))
        if plan.mode == refresh.NOOP:
            return previous_version.up_to_date(cfg.output, previous, plan)
        if not first_build:
            _connect(cfg, num_cpus)
        return _build(cfg, inputs, vocab, previous, prints, plan, started, timer)
    finally:
        snapshot.release_lock(cfg.output, holder)


def write_examples(
    docs, cfg: BuildConfig, vocab, out: str, version: int, tally=None, docs_sources: list[str] | None = None
) -> None:
    """Tokenize and pack ``docs`` (the docs table's rows, in its order) into this version's shards, in one
    streaming execution: segmentation, when ``docs`` is still to be segmented, runs beside the CPU
    stages. With ``docs_sources`` (every input file) the docs table is written as it passes
    (``write.tee_docs``). ``report.doc_counters`` of the documents go to ``tally`` when given. The one code path
    that writes shards: builds, refreshes and ``pack``."""
    if docs_sources is not None:
        docs = write.tee_docs(docs, out, version, docs_schema(cfg.segment.tasks), docs_sources)
    tokenized = tokenize.apply(docs, cfg.tokenize)
    if tally is not None:
        tokenized = report.tallied(tokenized, report.doc_counters, tally)
    examples = pack.apply(tokenized, cfg.tokenize, vocab)
    schema = pack.shard_schema_for(vocab, cfg.segment.model, cfg.tokenize)
    try:
        write.write_shards(examples, out, schema, version, cfg.write)
    except ray.exceptions.RayError as error:  # segmentation runs here: a model that will not load, a piece too big
        if (reason := segment.stage_error(error)) is None:
            raise
        raise reason from error


def _connect(cfg: BuildConfig, num_cpus: int | None) -> None:
    connect_ray(num_cpus)
    cluster.check_gpus(cfg.segment.num_gpus)  # fail fast: Ray would wait forever for GPU actors


def _build(
    cfg: BuildConfig, inputs: list[str], vocab, previous: dict[str, Any] | None, prints: dict[str, str],
    plan: refresh.Plan, started: float, timer: report.StageTimer,
) -> dict[str, Any]:
    out = cfg.output
    version = snapshot.next_version(out)
    # files no committed manifest lists (a build killed before its commit) would be read as this version's
    snapshot.remove_unlisted(out, OUTPUT_DIRS, previous or {"files": []})
    log.info("building version %d of %s (%s: %s) from %d input files; reading %d",
             version, out, plan.mode, plan.reason, len(inputs), len(plan.to_read))
    tally = report.start_tally()  # the report's counters, from every table as it is written
    if plan.carries_everything:  # only tokenize/write settings changed: docs, fates, dedup, index as they are
        with timer("carry"):
            records, counts = None, previous_version.carry(out, previous, version, tally)
        docs_files = write.version_files(out, write.DOCS_DIR, version)
        docs, docs_sources = write.read_in_order(out, docs_files, docs_schema(cfg.segment.tasks)), None
    else:
        records, docs, counts = _read_dedup_segment(cfg, plan, previous, out, version, timer, tally)
        docs_sources = inputs  # the docs table is written as the documents stream to the shards
    with timer("segment+tokenize+pack"):
        write_examples(docs, cfg, vocab, out, version, tally, docs_sources)
    with timer("report"):
        summary = report.summarize(report.finish_tally(tally), records, plan.to_read)
    return commit.build(cfg, inputs, vocab, previous, prints, plan, version, summary, counts, started, timer)


def _read_dedup_segment(
    cfg: BuildConfig, plan: refresh.Plan, previous: dict[str, Any] | None, out: str, version: int,
    timer: report.StageTimer, tally,
) -> tuple[Any, Any, DocCounts]:
    """Read and normalize the inputs the plan names, dedup them against the unchanged ones and write the
    dedup audit and index tables, and the fates table (or have pass 2 write it, as it takes a full
    build's kept documents from its records). Returns the records read (None when no file was read),
    the docs table's rows still to be segmented where the cache lacks their words (lazy:
    ``write_examples`` runs segmentation in its pass) and the document counts. The records', fates'
    and audit's counters go to ``tally`` as they pass."""
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
    cached = previous_docs is not None and plan.reuse_segmentation  # the previous docs are the segmentation cache
    if records is not None and not unchanged and not cached and kept_count > 0:
        # every record and kept document is this build's, and none comes from a cache: in input order, pass 2
        # takes the kept documents from the records with their fates, and writes the fates as they pass
        decided = kept_docs.with_fates(records, deduped.fates, deduped.in_order, cfg)
        decided = write.tee_fates(report.tallied(decided, report.fate_counters, tally), out, version, plan.to_read)
        return records, kept_docs.segment_docs(cfg, kept_docs.kept_of(decided)), DocCounts(segmented=kept_count)
    with timer("kept texts"):
        docs, counts = previous_version.docs(cfg, plan, previous, previous_docs, records, deduped, kept_count)
    with timer("fates"):  # this build's records and the unchanged files' documents, and their filtered records
        previous_version.write_fates(cfg, out, previous, version, deduped.fates, unchanged, tally)
    return records, docs, counts
