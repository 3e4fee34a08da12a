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
from operators.columns import DETAIL, DOC_ID, FATE, FATES_SCHEMA, FINGERPRINT, KEPT, RECORD, SOURCE, TEXT
from pipeline import report
from pipeline.config import BuildConfig

log = logging.getLogger("pipeline")

DEDUP_COLUMNS = [DOC_ID, SOURCE, RECORD, TEXT, FINGERPRINT]
OUTPUT_DIRS = (write.DOCS_DIR, write.FATES_DIR, write.SHARDS_DIR)
STAGE_SECTIONS = ("read", "normalize", "dedup", "segment", "tokenize")
MANIFEST_KEYS = ("version", "config_fingerprint", "stage_fingerprints", "fates", "corpus", "tokenizer", "segment_model")


def connect_ray() -> None:
    """Join the cluster in RAY_ADDRESS (as under ``ray job submit``), else start a local one."""
    if not ray.is_initialized():
        # "local" starts a new instance: without it ray.init() joins any cluster already running here
        ray.init(address=os.environ.get("RAY_ADDRESS") or "local", log_to_driver=False)
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


def build_corpus(cfg: BuildConfig) -> dict[str, Any]:
    """Build (or rebuild) the corpus at ``cfg.output``; return the report that was written."""
    inputs = read.list_inputs(cfg.inputs)
    segment.check_config(cfg.segment)
    vocab = tokenize.vocab_info(cfg.tokenize.tokenizer)
    connect_ray()
    started, timer = time.perf_counter(), report.StageTimer()
    version = snapshot.next_version(cfg.output)
    log.info("building version %d of %s from %d input files", version, cfg.output, len(inputs))

    with timer("read+normalize"):
        records = normalize.apply(read.apply(inputs, cfg.read), cfg.normalize).materialize()
    pending = records.filter(expr=col(FATE).is_null())
    with timer("dedup"):
        duplicates = dedup.apply(pending.select_columns(DEDUP_COLUMNS), cfg.dedup).materialize()
    kept = pending
    if duplicates.count():  # Ray's join fails on a right side whose blocks are all empty and schema-less
        kept = pending.join(duplicates.select_columns([DOC_ID]), "left_anti", _partitions(records), on=(DOC_ID,))
    kept = kept.sort([SOURCE, RECORD]).materialize()

    with timer("segment"):
        write.write_docs(segment.apply(kept, cfg.segment), cfg.output, version)
    docs = ray.data.read_parquet(_paths(cfg.output, write.version_files(cfg.output, write.DOCS_DIR, version)))
    with timer("tokenize+pack"):
        examples = pack.apply(tokenize.apply(docs, cfg.tokenize), cfg.tokenize, vocab)
        schema = pack.shard_schema(vocab.spec, vocab.sha256, vocab.size, cfg.segment.model, cfg.tokenize.max_seq_len)
        write.write_shards(examples, cfg.output, schema, version, cfg.write)
    with timer("fates"):
        fate_columns = FATES_SCHEMA.names
        fates = records.filter(expr=~col(FATE).is_null()).select_columns(fate_columns).union(
            duplicates.select_columns(fate_columns), kept.map_batches(_mark_kept, batch_format="pyarrow")
        )
        write.write_fates(fates.sort([SOURCE, RECORD]), cfg.output, version)

    written = [path for d in OUTPUT_DIRS for path in write.version_files(cfg.output, d, version)]
    fates_out = ray.data.read_parquet(_paths(cfg.output, [p for p in written if p.startswith(write.FATES_DIR)]))
    files = snapshot.describe_files(cfg.output, written)
    built = {
        "version": version,
        "config_fingerprint": cfg.fingerprint(),
        "stage_fingerprints": {section: cfg.fingerprint(section) for section in STAGE_SECTIONS},
        "input_bytes": input_bytes(inputs),
        "inputs": len(inputs),
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
    built["seconds"] = round(time.perf_counter() - started, 3)
    built["stages"] = report.throughput(timer, built["input_bytes"])
    report_files = report.write_report(cfg.output, built)
    manifest = {**{k: built[k] for k in MANIFEST_KEYS}, "config": cfg.to_dict()}
    manifest["files"] = files + snapshot.describe_files(cfg.output, report_files)
    snapshot.commit(cfg.output, manifest)
    snapshot.remove_unlisted(cfg.output, OUTPUT_DIRS, manifest)
    return built


def _paths(output: str, relatives: list[str]) -> list[str]:
    return [storage.join(output, relative) for relative in relatives]
