"""The driver: checks what can fail early, then assembles the Ray Data graph stage by stage.

Stage logic lives in ``operators/``; this module only wires datasets together, decides where
marked rows leave the flow, and commits the snapshot. Nothing here pulls corpus-sized data
to the driver: datasets are materialized in Ray's object store, and only counts, file lists
and checksums come back.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import pyarrow as pa
import ray
import ray.data
from ray.data.expressions import col

from manifests import snapshot
from operators import dedup, normalize, pack, read, segment, storage, tokenize, write
from operators.columns import DETAIL, DOC_ID, FATE, FATES_SCHEMA, FINGERPRINT, KEPT, RECORD, SOURCE, TEXT, docs_schema
from pipeline import cluster, report
from pipeline.config import BuildConfig

log = logging.getLogger("pipeline")

DEDUP_COLUMNS = [DOC_ID, SOURCE, RECORD, TEXT, FINGERPRINT]
OUTPUT_DIRS = (write.DOCS_DIR, write.FATES_DIR, write.SHARDS_DIR, write.DEDUP_DIR)
STAGE_SECTIONS = ("read", "normalize", "dedup", "segment", "tokenize")
MANIFEST_KEYS = ("version", "config_fingerprint", "stage_fingerprints", "fates", "corpus", "tokenizer", "segment_model")


def connect_ray(num_cpus: int | None = None) -> None:
    """Join the cluster in RAY_ADDRESS (as under ``ray job submit``), else start a local one with
    ``num_cpus`` CPUs (default: all of the machine's)."""
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS") or "local"  # "local": never join a stray cluster by accident
        local = address == "local"
        ray.init(address=address, num_cpus=num_cpus if local else None, log_to_driver=False, **(cluster.LOCAL_RAY_OPTIONS if local else {}))
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # same inputs, same row order in every output
    context.enable_progress_bars = True


def input_bytes(files: list[str]) -> int:
    total = 0
    for path in files:
        filesystem, inner = storage.resolve(path)
        total += filesystem.get_file_info(inner).size or 0
    return total


def _mark_kept(batch: pa.Table) -> pa.Table:
    rows = batch.num_rows
    return batch.select([SOURCE, RECORD, DOC_ID]).append_column(FATE, pa.array([KEPT] * rows, pa.string())).append_column(
        DETAIL, pa.nulls(rows, pa.string())
    )


def _partitions(ds) -> int:
    return max(1, ds.num_blocks())


def build_corpus(cfg: BuildConfig, num_cpus: int | None = None) -> dict[str, Any]:
    """Build (or rebuild) the corpus at ``cfg.output``; return the report that was written.

    ``num_cpus`` sizes a local Ray instance the build starts itself (see ``connect_ray``)."""
    inputs = read.list_inputs(cfg.inputs)
    segment.check_config(cfg.segment)
    vocab = tokenize.vocab_info(cfg.tokenize.tokenizer)
    connect_ray(num_cpus)
    cluster.check_gpus(cfg.segment.num_gpus)  # fail fast: Ray would wait forever for GPU actors
    started, timer = time.perf_counter(), report.StageTimer()
    version = snapshot.next_version(cfg.output)
    # files no committed manifest lists (a build killed before its commit) would be read as this version's
    snapshot.remove_unlisted(cfg.output, OUTPUT_DIRS, snapshot.read_manifest(cfg.output) or {"files": []})
    log.info("building version %d of %s from %d input files", version, cfg.output, len(inputs))

    with timer("read+normalize"):
        records = normalize.apply(read.apply(inputs, cfg.read), cfg.normalize).materialize()
    pending = records.filter(expr=col(FATE).is_null())
    with timer("dedup"):
        deduped = dedup.apply(pending.select_columns(DEDUP_COLUMNS), cfg.dedup)
        duplicates = deduped.duplicates  # materialized
        write.write_dedup(deduped.audit, cfg.output, version)
    kept = pending
    if duplicates.count():  # Ray's join fails on a right side whose blocks are all empty and schema-less
        kept = pending.join(duplicates.select_columns([DOC_ID]), "left_anti", _partitions(records), on=(DOC_ID,))
    kept = kept.sort([SOURCE, RECORD]).materialize()

    with timer("segment"):
        try:
            write.write_docs(segment.apply(kept, cfg.segment), cfg.output, version, docs_schema(cfg.segment.tasks))
        except ray.exceptions.RayError as error:  # a model that fails to load in the actors, a piece out of GPU memory
            if (reason := segment.stage_error(error)) is None:
                raise
            raise reason from error
    docs = ray.data.read_parquet(
        _paths(cfg.output, write.version_files(cfg.output, write.DOCS_DIR, version)),
        filesystem=storage.filesystem(cfg.output),  # object stores configured as storage.resolve does
    ).materialize()  # read before the tokenizer's actors start: on one CPU they would leave the read none
    with timer("tokenize+pack"):
        tokenized = tokenize.apply(docs, cfg.tokenize).materialize()  # packed here, counted by the report: tokenized once
        examples = pack.apply(tokenized, cfg.tokenize, vocab)
        schema = pack.shard_schema_for(vocab, cfg.segment.model, cfg.tokenize)
        write.write_shards(examples, cfg.output, schema, version, cfg.write)
    with timer("fates"):
        fate_columns = FATES_SCHEMA.names
        fates = records.filter(expr=~col(FATE).is_null()).select_columns(fate_columns).union(
            duplicates.select_columns(fate_columns), kept.map_batches(_mark_kept, batch_format="pyarrow")
        )
        write.write_fates(fates.sort([SOURCE, RECORD]), cfg.output, version)

    written = [path for d in OUTPUT_DIRS for path in write.version_files(cfg.output, d, version)]
    fates_out = ray.data.read_parquet(
        _paths(cfg.output, [p for p in written if p.startswith(write.FATES_DIR)]),
        filesystem=storage.filesystem(cfg.output),
    )
    files = snapshot.describe_files(cfg.output, written)
    built = {
        "version": version,
        "config_fingerprint": cfg.fingerprint(),
        "stage_fingerprints": {section: cfg.fingerprint(section) for section in STAGE_SECTIONS},
        "input_bytes": input_bytes(inputs),
        "inputs": len(inputs),
        "sources": read.records_per_source(records, inputs),  # what the fates table must hold per file
        "fates": report.count_fates(fates_out),
        "unreadable_files": report.unreadable_files(fates_out),
        "corpus": {
            **report.doc_totals(docs),
            "examples": sum(f.get("rows", 0) for f in files if f["path"].startswith(write.SHARDS_DIR)),
            "tokens": sum(f.get("tokens", 0) for f in files if f["path"].startswith(write.SHARDS_DIR)),
            "shards": sum(f["path"].startswith(write.SHARDS_DIR) for f in files),
        },
        "tokenizer": {"spec": vocab.spec, "vocab_sha256": vocab.sha256, "vocab_size": vocab.size},
        "segment_model": cfg.segment.model,
    }
    with timer("report"):  # histograms where the data lives
        profile, pairs = report.profile(records, tokenized, fates_out)
        built.update(profile)
    built["seconds"] = round(time.perf_counter() - started, 3)
    built["stages"] = report.throughput(timer, built["input_bytes"])
    report_files = report.write_report(cfg.output, built, files, pairs)
    manifest = {**{k: built[k] for k in MANIFEST_KEYS}, "config": cfg.to_dict()}
    manifest["files"] = files + snapshot.describe_files(cfg.output, report_files)
    snapshot.commit(cfg.output, manifest)
    snapshot.remove_unlisted(cfg.output, OUTPUT_DIRS, manifest)
    return built


def _paths(output: str, relatives: list[str]) -> list[str]:
    return [storage.join(output, relative) for relative in relatives]
