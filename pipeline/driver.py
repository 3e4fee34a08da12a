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
import warnings
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data
from ray.data.expressions import col

from manifests import fingerprints, ledger, snapshot
from operators import dedup, normalize, pack, read, segment, storage, tokenize, write
from operators.columns import (
    DEDUP_SCHEMA,
    DETAIL,
    DOC_ID,
    DOCS_SCHEMA,
    FATE,
    FATES_SCHEMA,
    FILTERED,
    KEPT,
    RECORD,
    REJECTED,
    SOURCE,
    TEXT,
    WORDS,
    docs_schema,
)
from operators.dedup_rules import INDEX_KEPT
from operators.normalize import OPENCC_CHANGED
from pipeline import cluster, refresh, report
from pipeline.config import BuildConfig

log = logging.getLogger("pipeline")

KEPT_ROWS = pa.schema([(DOC_ID, pa.string()), (SOURCE, pa.string()), (RECORD, pa.int64())])  # a kept document's place
FLAGGED_DOC_ID = "flagged_doc_id"  # a record's dedup flag's doc_id, beside the record's own (_kept_in_input_order)
INDEX_DIR = "index"  # the dedup index: every deduplicated document's keys, for the next refresh
DATA_DIRS = (write.DOCS_DIR, write.FATES_DIR, write.SHARDS_DIR, write.DEDUP_DIR, INDEX_DIR)
OUTPUT_DIRS = (*DATA_DIRS, ledger.LEDGER_DIR)
MANIFEST_KEYS = (
    "version", "config_fingerprint", "stage_fingerprints", "fates", "corpus", "tokenizer", "segment_model", "refresh"
)


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
            plan = refresh.plan(previous, cfg.output, inputs, prints, _listed(previous, INDEX_DIR) != [],
                                connect=lambda: connect_ray(num_cpus))
        if plan.mode == refresh.NOOP:
            return _up_to_date(cfg.output, previous, plan)
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
            records, counts = None, _carry(out, previous, version, tally)
        docs_files = write.version_files(out, write.DOCS_DIR, version)
        docs, docs_sources = write.read_in_order(out, docs_files, docs_schema(cfg.segment.tasks)), None
    else:
        records, docs, counts = _read_dedup_segment(cfg, plan, previous, out, version, timer, tally)
        docs_sources = inputs  # the docs table is written as the documents stream to the shards
    with timer("segment+tokenize+pack"):
        write_examples(docs, cfg, vocab, out, version, tally, docs_sources)
    written = [path for d in DATA_DIRS for path in write.version_files(out, d, version)]
    with timer("report"):
        summary = report.summarize(report.finish_tally(tally), _records_for_report(records), plan.to_read)
    sources = dict(summary.sources)
    old_counts = {} if plan.previous_ledger is None else dict(
        zip(plan.previous_ledger[ledger.URI].to_pylist(), plan.previous_ledger[ledger.RECORDS].to_pylist())
    )
    sources.update({uri: int(old_counts.get(uri, 0)) for uri in plan.unchanged})
    unreadable = summary.unreadable
    written.append(ledger.write(out, version, ledger.complete(plan.rows, plan.previous_ledger, sources, unreadable)))
    files = snapshot.describe_files(out, written)
    records_read = sum(sources.get(uri, 0) for uri in plan.to_read)
    built = {
        "version": version,
        "config_fingerprint": cfg.fingerprint(),
        "stage_fingerprints": prints,
        "input_bytes": input_bytes(inputs),
        "inputs": len(inputs),
        "sources": dict(sorted(sources.items())),  # what the fates table must hold per file
        "fates": summary.fates,
        "unreadable_files": unreadable,
        "corpus": {
            **summary.docs,
            "examples": sum(f.get("rows", 0) for f in files if f["path"].startswith(write.SHARDS_DIR)),
            "tokens": sum(f.get("tokens", 0) for f in files if f["path"].startswith(write.SHARDS_DIR)),
            "shards": sum(f["path"].startswith(write.SHARDS_DIR) for f in files),
        },
        "tokenizer": {"spec": vocab.spec, "vocab_sha256": vocab.sha256, "vocab_size": vocab.size},
        "segment_model": cfg.segment.model,
        "refresh": {
            "mode": plan.mode,
            "reason": plan.reason,
            "noop": False,
            "from_version": None if previous is None else int(previous["version"]),
            "changed_stages": plan.changed_stages if previous is not None else [],
            "files": plan.diff.counts(),
            "records_read": records_read,
            "files_reread": counts.reread,
            "promoted": counts.promoted,
            "docs": {"segmented": counts.segmented, "reused": counts.reused},
        },
    }
    built.update(summary.profile)
    built["seconds"] = round(time.perf_counter() - started, 3)
    built["stages"] = report.throughput(timer, built["input_bytes"])
    if previous is not None:  # before the report files are replaced: the version being replaced stays whole
        snapshot.archive(out, previous)
    built["duplicate_pairs"] = summary.pairs
    reports = report.stage_report(out, built, files)
    manifest = {**{k: built[k] for k in MANIFEST_KEYS}, "config": cfg.to_dict(), "files": files + reports}
    snapshot.commit(out, manifest, staged=[entry["path"] for entry in reports])
    snapshot.remove_unlisted(out, OUTPUT_DIRS, manifest)
    return built


class DocCounts(NamedTuple):
    """Where this version's documents got their words, for report.json's refresh section."""

    segmented: int = 0  # by LTP in this build
    reused: int = 0  # from the previous version
    promoted: int = 0  # duplicates kept in the place of a document the refresh retracted
    reread: int = 0  # unchanged files read again to find those duplicates' texts


def _carry(out: str, previous: dict[str, Any], version: int, tally) -> DocCounts:
    """The previous version's docs, fates, dedup audit and index, linked into this version unchanged; the
    fates and audit tables' counters, read from them, go to ``tally``."""
    for directory in (write.DOCS_DIR, write.FATES_DIR, write.DEDUP_DIR, INDEX_DIR):
        for path in _listed(previous, directory):
            snapshot.link(out, path, write.renamed_for_version(path, version))
    for directory, schema, counters in ((write.FATES_DIR, FATES_SCHEMA, report.fate_counters),
                                        (write.DEDUP_DIR, DEDUP_SCHEMA, report.cluster_counters)):
        table = write.read_in_order(out, write.version_files(out, directory, version), schema)
        report.tallied(table, counters, tally).materialize()
    return DocCounts(reused=int(previous.get("corpus", {}).get("docs", 0)))


def _read_dedup_segment(
    cfg: BuildConfig, plan: refresh.Plan, previous: dict[str, Any] | None, out: str, version: int,
    timer: report.StageTimer, tally,
) -> tuple[Any, Any, DocCounts]:
    """Read and normalize the inputs the plan names, dedup them against the unchanged ones and write the
    fates, dedup audit and index tables. Returns the records read (None when no file was read), the
    docs table's rows still to be segmented where the cache lacks their words (lazy: ``write_examples``
    runs segmentation in its pass) and the document counts. The records', fates' and audit's counters
    go to ``tally`` as they pass."""
    records, unchanged = None, plan.unchanged
    if plan.to_read:
        with timer("read+normalize+sign"):  # one execution: the dedup keys are signed as the records stream by
            normalized = normalize.apply(read.apply(plan.to_read, cfg.read), cfg.normalize)
            records = report.tallied(dedup.sign(normalized, cfg.dedup), report.record_counters, tally).materialize()
    pending = records.filter(expr=col(FATE).is_null()) if records is not None else None
    existing = None
    if unchanged:  # the unchanged files' documents, as the previous version's dedup index holds them
        existing = _read(out, previous, INDEX_DIR).filter(expr=col(SOURCE).is_in(unchanged))
    with timer("dedup"):
        deduped = dedup.graph(dedup.keys(records, cfg.dedup, existing), cfg.dedup)
        duplicates = deduped.duplicates  # materialized: every duplicate, old and new
        write.write_dedup(report.tallied(deduped.audit, report.cluster_counters, tally), out, version)
        flagged = deduped.index  # materialized: every document, with whether it was kept
        write.write_table(flagged, out, INDEX_DIR, dedup.index_schema(cfg.dedup), version)
    kept_count = flagged.count() - duplicates.count()  # both materialized: counted from their blocks' metadata

    previous_docs = _read(out, previous, write.DOCS_DIR) if previous is not None and _listed(previous, write.DOCS_DIR) else None
    cache_docs = previous_docs if plan.reuse_segmentation else None
    # every kept document is in this build's records, and none comes from a cache: they keep the input order
    in_order = pending is not None and not unchanged and cache_docs is None and kept_count > 0
    with timer("kept texts"):
        if in_order:
            texts, promoted, reread = _kept_in_input_order(pending, flagged, deduped.index_in_order), 0, 0
            kept = texts  # every kept document's doc_id, source and record, with its text
        else:
            kept = flagged.filter(expr=col(INDEX_KEPT)).select_columns(KEPT_ROWS.names).materialize()
        appended = None
        if plan.only_appends and previous_docs is not None:
            appended = _appended_docs(cfg, plan, out, previous, pending, kept, flagged, existing, deduped.index_in_order)
        if appended is not None:
            (docs, segmented, reused), promoted, reread = appended, 0, 0
        else:
            if not in_order:
                texts, promoted, reread = _texts(cfg, kept, pending, previous_docs, unchanged)
            unique = bool(previous and previous.get("config", {}).get("dedup", {}).get("exact"))  # one doc per text
            docs, segmented, reused = _segment(cfg, texts, cache_docs, unique, in_order)
    with timer("fates"):
        fate_columns = FATES_SCHEMA.names
        parts = [duplicates.select_columns(fate_columns), kept.map_batches(_mark_kept, batch_format="pyarrow")]
        if records is not None:
            parts.append(records.filter(expr=~col(FATE).is_null()).select_columns(fate_columns))
        if unchanged:  # filtered and rejected records of unchanged files, as they were
            carried = _read(out, previous, write.FATES_DIR).filter(
                expr=col(SOURCE).is_in(unchanged) & col(FATE).is_in([FILTERED, REJECTED])
            )
            parts.append(carried.select_columns(fate_columns))
        parts = [part.map_batches(refresh.conform, fn_kwargs={"schema": FATES_SCHEMA}, batch_format="pyarrow") for part in parts]
        fates = write.in_record_order(parts[0].union(*parts[1:]), cfg.write)
        fates = report.tallied(fates, report.fate_counters, tally)
        write.write_table(fates, out, write.FATES_DIR, FATES_SCHEMA, version)
    return records, docs, DocCounts(segmented, reused, promoted, reread)


def _kept_in_input_order(pending, flagged, flags_in_order: bool):
    """(doc_id, source, record, text) of every kept document, in input order, for a build whose kept
    documents are all among its records: no join moves the texts, and no sort follows segmentation.

    The dedup index lists the documents in the order they were signed when the graph ran in one task
    (``dedup.DedupOutput.index_in_order``); the distributed join leaves them in no particular order,
    and they are sorted by (source, record), narrow rows. Either way they line up with the records,
    which are read in that order, and ``zip`` attaches the flags (at 16x bench/e2e.py's input a
    join of the texts and a sort after segmentation made the segment stage 55 s instead of 41 s).

    Ray 2.60 deprecates ``zip`` (removal planned for 2.64) because rows keep their order only with
    ``preserve_order``, which every build sets; ``_kept_texts`` checks that each pair is one document.
    The project pins Ray 2.60; on a Ray without ``zip``, ``_texts`` and the join serve every build."""
    if not flags_in_order:
        flagged = flagged.select_columns([SOURCE, RECORD, DOC_ID, INDEX_KEPT]).sort([SOURCE, RECORD])
    flags = flagged.select_columns([DOC_ID, INDEX_KEPT]).rename_columns({DOC_ID: FLAGGED_DOC_ID})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*`Dataset\.zip` is deprecated")
        zipped = pending.select_columns([DOC_ID, SOURCE, RECORD, TEXT]).zip(flags)
    return zipped.map_batches(_kept_texts, batch_format="pyarrow").materialize()


def _kept_texts(batch: pa.Table) -> pa.Table:
    """Records zipped with their dedup flags to the kept ones' texts; a record paired with another's flag
    is a bug that would keep the wrong documents, so it stops the build."""
    if not pc.all(pc.equal(batch[DOC_ID], batch[FLAGGED_DOC_ID])).as_py():
        raise RuntimeError("records and their dedup flags are not in the same (source, record) order")
    return batch.filter(batch[INDEX_KEPT]).select([DOC_ID, SOURCE, RECORD, TEXT])


def _appended_docs(cfg: BuildConfig, plan: refresh.Plan, out: str, previous: dict[str, Any], pending, kept, flagged,
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
    previous_docs = write.read_in_order(out, _listed(previous, write.DOCS_DIR), docs_schema(cfg.segment.tasks))
    with warnings.catch_warnings():  # zip: see _kept_in_input_order
        warnings.filterwarnings("ignore", message=r"(?s).*`Dataset\.zip` is deprecated")
        carried = previous_docs.filter(expr=col(SOURCE).is_in(unchanged)).zip(
            places.rename_columns({DOC_ID: FLAGGED_DOC_ID}))
    carried = carried.map_batches(_with_records, batch_format="pyarrow")
    new = _kept_in_input_order(pending, flagged.filter(expr=col(SOURCE).is_in(plan.to_read)), flags_in_order)
    segmented = new.count()
    full = pa.schema([*docs_schema(cfg.segment.tasks), (RECORD, pa.int64())])
    parts = [carried, *([segment.apply(new, cfg.segment)] if segmented else [])]
    parts = [part.map_batches(refresh.conform, fn_kwargs={"schema": full}, batch_format="pyarrow") for part in parts]
    if len(parts) == 1:
        return parts[0], segmented, carried_count
    # with preserve_order a union takes its inputs' blocks in turn: sorted, the new files' documents go to their place
    return parts[0].union(*parts[1:]).sort([SOURCE, RECORD]), segmented, carried_count


def _with_records(batch: pa.Table) -> pa.Table:
    """Previous docs rows zipped with their records; a row paired with another document's record is a bug
    that would misname and misorder the docs files, so it stops the build."""
    if not pc.all(pc.equal(batch[DOC_ID], batch[FLAGGED_DOC_ID])).as_py():
        raise RuntimeError("previous docs and their dedup index rows are not in the same (source, record) order")
    return batch.drop_columns([FLAGGED_DOC_ID])


def _texts(cfg: BuildConfig, kept, pending, previous_docs, unchanged: list[str]):
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
    texts = sources[0].union(*sources[1:]) if len(sources) > 1 else sources[0] if sources else None
    joined = kept if texts is None or not texts.count() else kept.join(texts, "left_outer", _partitions(kept), on=(DOC_ID,))
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
    texts = found.map_batches(refresh.conform, fn_kwargs={"schema": text_schema}, batch_format="pyarrow")
    return texts.materialize(), promoted, len(files)


def _segment(cfg: BuildConfig, texts, cache_docs, unique: bool, in_order: bool) -> tuple[Any, int, int]:
    """The docs table's rows, lazily: ``texts`` segmented (by LTP only where the cache lacks their words),
    sorted by (source, record) unless they are ``in_order`` already. Also returns (documents to
    segment, documents whose words come from the cache)."""
    schema = docs_schema(cfg.segment.tasks)
    tags = [name for name in schema.names if name not in DOCS_SCHEMA.names]
    full = pa.schema([*schema, (RECORD, pa.int64())])
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
    segmented = misses.count()
    if segmented:
        parts.append(segment.apply(misses, cfg.segment))
    parts = [part.map_batches(refresh.conform, fn_kwargs={"schema": full}, batch_format="pyarrow") for part in parts]
    if not parts:
        parts = [ray.data.from_arrow(full.empty_table())]
    docs = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    if not in_order:
        docs = docs.sort([SOURCE, RECORD])
    return docs, segmented, texts.count() - segmented


def _records_for_report(records):
    if records is not None:
        return records
    return ray.data.from_arrow(
        pa.table({DOC_ID: pa.array([], pa.string()), SOURCE: pa.array([], pa.string()), RECORD: pa.array([], pa.int64()),
                  TEXT: pa.array([], pa.string()), OPENCC_CHANGED: pa.array([], pa.int64())})
    )


def _listed(manifest: dict[str, Any] | None, directory: str) -> list[str]:
    if not manifest:
        return []
    return [e["path"] for e in manifest.get("files", []) if e["path"].startswith(f"{directory}/")]


def _read(out: str, manifest: dict[str, Any], directory: str):
    """The Parquet table of ``directory`` as ``manifest`` lists it."""
    return ray.data.read_parquet(_paths(out, _listed(manifest, directory)), filesystem=storage.filesystem(out))


def _up_to_date(out: str, previous: dict[str, Any], plan: refresh.Plan) -> dict[str, Any]:
    """Nothing changed: no file read, nothing written or committed; the committed report, marked."""
    built = report.read_report(out)
    built["refresh"] = {
        "mode": plan.mode, "reason": plan.reason, "noop": True, "from_version": int(previous["version"]),
        "changed_stages": [], "files": plan.diff.counts(), "records_read": 0, "files_reread": 0, "promoted": 0,
        "docs": {"segmented": 0, "reused": built.get("corpus", {}).get("docs", 0)},
    }
    built["version"] = int(previous["version"])
    log.info("%s is up to date (version %d): %s", out, previous["version"], plan.reason)
    return built


def _paths(output: str, relatives: list[str]) -> list[str]:
    return [storage.join(output, relative) for relative in relatives]
