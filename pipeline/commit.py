"""Committing a version, the end of a build or a ``pack``: its ledger, report files and manifest,
written as one snapshot once its tables are.

The report's figures come from the tally that counted every table as it was written
(``report.summarize``), so nothing here reads a table again. ``publish`` is the one order of a
commit for both: the version being replaced is archived first (it stays whole under
``versions/``), the report files are staged, the manifest is replaced in one step, and files that
no manifest lists are removed.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from manifests import ledger, snapshot
from operators import write
from pipeline import refresh, report
from pipeline.config import BuildConfig

INDEX_DIR = "index"  # the dedup index: every deduplicated document's keys, for the next refresh
DATA_DIRS = (write.DOCS_DIR, write.FATES_DIR, write.SHARDS_DIR, write.DEDUP_DIR, INDEX_DIR)
OUTPUT_DIRS = (*DATA_DIRS, ledger.LEDGER_DIR)
DOC_COUNTS = "doc_counts"  # a docs file's manifest entry: its documents' report counters (a refresh may link the file)
MANIFEST_KEYS = (
    "version", "config_fingerprint", "stage_fingerprints", "fates", "corpus", "tokenizer", "segment_model", "refresh"
)


class DocCounts(NamedTuple):
    """Where this version's documents got their words, for report.json's refresh section."""

    segmented: int = 0  # by LTP in this build
    reused: int = 0  # from the previous version
    promoted: int = 0  # duplicates kept in the place of a document the refresh retracted
    reread: int = 0  # unchanged files read again to find those duplicates' texts
    linked: int = 0  # docs files linked from the previous version with their shard files, not written again


def shard_totals(files: list[dict[str, Any]]) -> dict[str, int]:
    """Examples, tokens and shard files among a version's files (``snapshot.describe_files`` entries)."""
    shards = [entry for entry in files if entry["path"].startswith(f"{write.SHARDS_DIR}/")]
    return {"examples": sum(entry.get("rows", 0) for entry in shards),
            "tokens": sum(entry.get("tokens", 0) for entry in shards), "shards": len(shards)}


def with_docs_counts(files: list[dict[str, Any]], docs_by_place: dict[tuple[str, int], Any], sources: list[str]
                     ) -> list[dict[str, Any]]:
    """``files`` (manifest entries), each docs file's with its documents' counters (``DOC_COUNTS``) where this
    build counted the documents on their way to the docs table (``report.Tallied``): a refresh that links a
    docs file instead of writing it takes its counters from there. ``sources``: what the docs files'
    names index (every input file)."""
    docs = [entry["path"] for entry in files if entry["path"].startswith(f"{write.DOCS_DIR}/")]
    if not docs or not docs_by_place:
        return files
    per_file = report.counts_per_docs_file(docs_by_place, dict(zip(docs, write.docs_file_places(docs, sources))))
    return [{**entry, DOC_COUNTS: per_file[entry["path"]]} if per_file.get(entry["path"]) else entry for entry in files]


def publish(out: str, manifest: dict[str, Any], built: dict[str, Any], files: list[dict[str, Any]],
           previous: dict[str, Any] | None, directories: tuple[str, ...]) -> dict[str, Any]:
    """Commit ``manifest`` listing ``files`` and the report files of ``built``; return what was committed.
    Files of ``directories`` that it does not list are removed after the commit."""
    if previous is not None:  # before the report files are replaced: the version being replaced stays whole
        snapshot.archive(out, previous)
    reports = report.stage_report(out, built, files)
    committed = {**manifest, "files": files + reports}
    snapshot.commit(out, committed, staged=[entry["path"] for entry in reports])
    snapshot.remove_unlisted(out, directories, committed)
    return committed


def build(
    cfg: BuildConfig, inputs: list[str], vocab, previous: dict[str, Any] | None, prints: dict[str, str],
    plan: refresh.Plan, version: int, summary: report.Summary, counts: DocCounts, started: float,
    timer: report.StageTimer,
) -> dict[str, Any]:
    """A build's version, its tables written: the ledger (every input's records, the unchanged files' as
    the previous ledger has them), report.json and the manifest, committed. Returns the report."""
    out = cfg.output
    written = [path for d in DATA_DIRS for path in write.version_files(out, d, version)]
    sources = dict(summary.sources)
    old_counts = {} if plan.previous_ledger is None else dict(
        zip(plan.previous_ledger[ledger.URI].to_pylist(), plan.previous_ledger[ledger.RECORDS].to_pylist())
    )
    sources.update({uri: int(old_counts.get(uri, 0)) for uri in plan.unchanged})
    unreadable = summary.unreadable
    written.append(ledger.write(out, version, ledger.complete(plan.rows, plan.previous_ledger, sources, unreadable)))
    files = snapshot.describe_files(out, written)
    if refresh.docs_files_pack_alone(cfg.tokenize):
        files = with_docs_counts(files, summary.docs_by_place, inputs)
    built = {
        "version": version,
        "config_fingerprint": cfg.fingerprint(),
        "stage_fingerprints": prints,
        "input_bytes": sum(row[ledger.SIZE] for row in plan.rows),  # the ledger's own stat of every input
        "inputs": len(inputs),
        "sources": dict(sorted(sources.items())),  # what the fates table must hold per file
        "fates": summary.fates,
        "unreadable_files": unreadable,
        "corpus": {**summary.docs, **shard_totals(files)},
        "tokenizer": {"spec": vocab.spec, "vocab_sha256": vocab.sha256, "vocab_size": vocab.size},
        "segment_model": cfg.segment.model,
        "refresh": {
            "mode": plan.mode,
            "reason": plan.reason,
            "noop": False,
            "from_version": None if previous is None else int(previous["version"]),
            "changed_stages": plan.changed_stages if previous is not None else [],
            "files": plan.diff.counts(),
            "records_read": sum(sources.get(uri, 0) for uri in plan.to_read),
            "files_reread": counts.reread,
            "promoted": counts.promoted,
            "docs": {"segmented": counts.segmented, "reused": counts.reused},
            "docs_files_linked": counts.linked,
        },
    }
    built.update(summary.profile)
    built["seconds"] = round(time.perf_counter() - started, 3)
    built["stages"] = report.throughput(timer, built["input_bytes"])
    built["duplicate_pairs"] = summary.pairs
    manifest = {**{key: built[key] for key in MANIFEST_KEYS}, "config": cfg.to_dict()}
    publish(out, manifest, built, files, previous, OUTPUT_DIRS)
    return built
