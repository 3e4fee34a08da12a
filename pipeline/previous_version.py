"""What a build takes from the version it replaces: its report when nothing changed (``up_to_date``),
its tables linked unchanged (``carry``), its documents and words beside this build's (``docs``; its
first docs files and their shard files linked unchanged, ``link_docs``), and its filtered and rejected
records beside this build's fates (``write_fates``). A full build takes none of it: its pass 2 makes
the docs and fates from its own records (``kept_docs.with_fates``).
"""

from __future__ import annotations

import logging
from typing import Any

from ray.data.expressions import col

from manifests import snapshot
from operators import dedup, write
from operators.columns import DEDUP_SCHEMA, FATE, FATES_SCHEMA, FILTERED, REJECTED, SOURCE
from operators.dedup import DedupOutput
from operators.dedup.rules import INDEX_KEPT
from pipeline import kept_docs, refresh, report, segmented_docs
from pipeline.commit import DOC_COUNTS, INDEX_DIR, DocCounts
from pipeline.config import BuildConfig

log = logging.getLogger("pipeline")


def carry(out: str, previous: dict[str, Any], version: int, tally) -> DocCounts:
    """The previous version's docs, fates, dedup audit and index, linked into this version unchanged; the
    fates and audit tables' counters, read from them, go to ``tally``."""
    for directory in (write.DOCS_DIR, write.FATES_DIR, write.DEDUP_DIR, INDEX_DIR):
        for path in refresh.listed(previous, directory):
            snapshot.link(out, path, write.renamed_for_version(path, version))
    for directory, schema, counters in ((write.FATES_DIR, FATES_SCHEMA, report.fate_counters),
                                        (write.DEDUP_DIR, DEDUP_SCHEMA, report.cluster_counters)):
        table = write.read_in_order(out, write.version_files(out, directory, version), schema)
        report.tallied(table, counters, tally).materialize()
    return DocCounts(reused=int(previous.get("corpus", {}).get("docs", 0)))


def docs(cfg: BuildConfig, plan: refresh.Plan, previous: dict[str, Any] | None, previous_docs,
         cache: segmented_docs.Cache | None, records, deduped: DedupOutput, kept_count: int, version: int,
         tally) -> tuple[Any, DocCounts]:
    """The docs table's rows of a refresh (or of a build whose segmentation ``cache`` is the previous docs
    table), lazily, to be segmented where they lack words: the unchanged files' previous docs rows and
    the documents read, when the unchanged files keep the documents they had (``kept_docs.carried``),
    else the kept documents' texts found by joins and their words looked up in the cache
    (``kept_docs.texts``, ``segmented_docs.segmented``)."""
    unique = bool(previous and previous.get("config", {}).get("dedup", {}).get("exact"))  # one doc per text
    carried = None
    if plan.carries_unchanged_docs and previous_docs is not None:
        kept_before = _kept_before(cfg, previous, plan)
        carried = kept_docs.carried(cfg, plan, previous, records, deduped, kept_count, kept_before, unique)
    if carried is not None:
        docs_rows, segmented, reused, linked = carried
        if linked:
            link_docs(cfg.output, previous, plan, version, linked, tally)
        return docs_rows, DocCounts(segmented, reused, linked=linked)
    kept = deduped.index.filter(expr=col(INDEX_KEPT)).select_columns(kept_docs.KEPT_ROWS.names).materialize()
    pending = records.filter(expr=col(FATE).is_null()) if records is not None else None
    texts, promoted, reread = kept_docs.texts(cfg, kept, pending, previous_docs, plan.unchanged)
    docs_rows, segmented, reused = segmented_docs.segmented(cfg, texts, cache, unique, ordered=False)
    return docs_rows, DocCounts(segmented, reused, promoted, reread)


def link_docs(out: str, previous: dict[str, Any], plan: refresh.Plan, version: int, count: int, tally) -> None:
    """The previous version's first ``count`` docs files and the shard files packed from them (write task
    ``i`` packs docs file ``i``: ``refresh.docs_files_pack_alone``), linked into this version; their
    documents' counters, from their manifest entries, go to ``tally``."""
    entries = {entry["path"]: entry for entry in previous["files"]}
    shards = write.files_by_task(refresh.listed(previous, write.SHARDS_DIR))
    docs_files = refresh.listed(previous, write.DOCS_DIR)[:count]
    for task, (path, place) in enumerate(zip(docs_files, refresh.first_places(plan, docs_files))):
        for linked in (path, *shards[task]):
            snapshot.link(out, linked, write.renamed_for_version(linked, version))
        report.add_docs_counts(tally, place, entries[path][DOC_COUNTS])


def _kept_before(cfg: BuildConfig, previous: dict[str, Any], plan: refresh.Plan) -> int:
    """The documents the previous version kept in the files this refresh leaves unchanged: all of them
    (its docs table's rows), less those of changed and removed files (its dedup index's kept rows)."""
    kept = int(previous["corpus"]["docs"])
    gone = plan.diff.changed + plan.diff.removed
    if not gone:
        return kept
    index = refresh.read_listed(cfg.output, previous, INDEX_DIR, dedup.index_schema(cfg.dedup))
    return kept - index.filter(expr=col(SOURCE).is_in(gone) & col(INDEX_KEPT)).count()


def write_fates(cfg: BuildConfig, out: str, previous: dict[str, Any] | None, version: int, fates, unchanged: list[str],
                tally) -> None:
    """This version's fates table: dedup's rows for this build's records and the unchanged files'
    documents, and the unchanged files' filtered and rejected records as the previous version has
    them, in (source, record) order; its counters go to ``tally``."""
    parts = [fates]
    if unchanged:
        carried = refresh.read_listed(out, previous, write.FATES_DIR, FATES_SCHEMA).filter(
            expr=col(SOURCE).is_in(unchanged) & col(FATE).is_in([FILTERED, REJECTED])
        )
        parts.append(carried.select_columns(FATES_SCHEMA.names))
    parts = [part.map_batches(refresh.conform, fn_kwargs={"schema": FATES_SCHEMA}, batch_format="pyarrow") for part in parts]
    table = write.in_record_order(parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0], cfg.write)
    write.write_table(report.tallied(table, report.fate_counters, tally), out, write.FATES_DIR, FATES_SCHEMA, version)


def up_to_date(out: str, previous: dict[str, Any], plan: refresh.Plan) -> dict[str, Any]:
    """Nothing changed: no file read, nothing written or committed; the committed report, marked."""
    built = report.read_report(out)
    built["refresh"] = {
        "mode": plan.mode, "reason": plan.reason, "noop": True, "from_version": int(previous["version"]),
        "changed_stages": [], "files": plan.diff.counts(), "records_read": 0, "files_reread": 0, "promoted": 0,
        "docs_files_linked": 0,
        "docs": {"segmented": 0, "reused": built.get("corpus", {}).get("docs", 0)},
    }
    built["version"] = int(previous["version"])
    log.info("%s is up to date (version %d): %s", out, previous["version"], plan.reason)
    return built


