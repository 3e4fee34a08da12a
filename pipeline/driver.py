"""The driver: checks what can fail early, plans the version, then runs the build as its list of passes.

What each pass does is in ``pipeline.passes`` (and the stages in ``operators/``); ``pipeline.refresh``
plans a refresh, ``pipeline.previous_version`` holds what it takes from the version it replaces,
and ``pipeline.commit`` writes the new one. Nothing here pulls corpus-sized data to the driver:
only counts, file lists and checksums come back.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from manifests import fingerprints, snapshot
from operators import read, segment, tokenize, write
from operators.columns import docs_schema
from pipeline import cluster, commit, passes, previous_version, refresh, report
from pipeline.commit import INDEX_DIR, OUTPUT_DIRS
from pipeline.config import BuildConfig

log = logging.getLogger("pipeline")


def build_corpus(cfg: BuildConfig, num_cpus: int | None = None) -> dict[str, Any]:
    """Build the corpus at ``cfg.output``, or refresh the one there; return the report that was written
    (for a build with nothing to do, the committed version's report with ``refresh.noop`` true).

    ``num_cpus`` sizes a local Ray instance the build starts itself (see ``cluster.connect_ray``)."""
    inputs = read.list_inputs(cfg.inputs)
    segment.check_config(cfg.segment)
    started, timer = time.perf_counter(), report.StageTimer()
    first_build = snapshot.read_manifest(cfg.output) is None
    with ThreadPoolExecutor(max_workers=1) as background:  # the tokenizer loads while Ray starts its daemons
        loading = background.submit(tokenize.vocab_info, cfg.tokenize.tokenizer)
        if first_build:  # Ray's checks (GPUs) come before anything is written
            _connect(cfg, num_cpus)
        vocab = loading.result()
    holder = snapshot.acquire_lock(cfg.output)  # one writer per output: a second build stops here
    try:
        previous = snapshot.read_manifest(cfg.output)
        if previous is not None:
            snapshot.restore_unversioned(cfg.output, previous)  # a build that died just before its commit
        prints = fingerprints.stage_fingerprints(cfg.to_dict(), vocab.sha256)
        with timer("ledger"):  # file sizes and times against the ledger: Ray is not needed to find nothing to do
            plan = refresh.plan(previous, cfg.output, inputs, prints, refresh.listed(previous, INDEX_DIR) != [],
                                connect=lambda: cluster.connect_ray(num_cpus))
        if plan.mode == refresh.NOOP:
            return previous_version.up_to_date(cfg.output, previous, plan)
        if not first_build:
            _connect(cfg, num_cpus)
        return _build(cfg, inputs, vocab, previous, prints, plan, started, timer)
    finally:
        snapshot.release_lock(cfg.output, holder)


def _connect(cfg: BuildConfig, num_cpus: int | None) -> None:
    cluster.connect_ray(num_cpus)
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
        records, docs, counts = passes.read_and_dedup(cfg, plan, previous, out, version, timer, tally)
        docs_sources = inputs  # the docs table is written as the documents stream to the shards
    with timer("segment+tokenize+pack"):
        passes.write_examples(docs, cfg, vocab, out, version, tally, docs_sources, counts.linked)
    with timer("report"):
        summary = report.summarize(report.finish_tally(tally), records, plan.to_read)
    return commit.build(cfg, inputs, vocab, previous, prints, plan, version, summary, counts, started, timer)
