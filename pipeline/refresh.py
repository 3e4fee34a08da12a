"""Refresh planning and the segmentation cache: what a build on an existing output can reuse.

``plan`` compares this build with the committed version: the input ledger (new, changed,
removed, unchanged files; ``manifests.ledger``) and the stage fingerprints
(``manifests.fingerprints``). The build is

- ``noop`` when no input file and no stage fingerprint changed: nothing is read, nothing is
  committed, and the CLI prints "up to date";
- ``refresh`` when the read, normalize and dedup fingerprints are unchanged: only new and changed
  files are read; unchanged files keep their fates, and their documents take part in dedup through
  the persisted dedup index (no text read); changed and removed files' records leave;
- ``full`` otherwise (no previous version, a version without ledger or index, or a changed read,
  normalize or dedup setting): every input is read, normalized and deduplicated again.

Either way segmentation is cached by content: when the segment fingerprint is unchanged, the
previous docs table is the cache, keyed by the xxh3-128 of the normalized text, and LTP runs only
on texts it does not hold (``pipeline.segmented_docs``); the unchanged files' documents need no
lookup while they stay the ones kept (``Plan.carries_unchanged_docs``).
Tokenize and pack run from the final docs table, but for its first files when they are the previous
version's as they were: those are linked with the shard files packed from them (``docs_files_pack_alone``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from manifests import fingerprints, ledger
from operators import tokenize, write

NOOP, REFRESH, FULL = "noop", "refresh", "full"


@dataclass
class Plan:
    mode: str
    reason: str
    diff: ledger.Diff
    rows: list[dict[str, Any]]  # this build's ledger rows (no records/status yet)
    previous_ledger: pa.Table | None
    changed_stages: list[str] = field(default_factory=list)
    reuse_segmentation: bool = False  # the previous docs table may serve as the segmentation cache

    @property
    def to_read(self) -> list[str]:
        if self.mode == FULL:
            return sorted(row[ledger.URI] for row in self.rows)
        return self.diff.to_read

    @property
    def carries_everything(self) -> bool:
        """No input changed and only tokenize/write settings did: docs, fates and dedup carry over."""
        return (self.mode == REFRESH and not (self.diff.new or self.diff.changed or self.diff.removed)
                and self.reuse_segmentation)

    @property
    def carries_unchanged_docs(self) -> bool:
        """A refresh that adds, changes or removes files beside unchanged ones, with segmentation settings
        unchanged: the unchanged files' kept documents have their words in the previous docs table
        (``kept_docs.carried`` checks that they are still the ones kept)."""
        return (self.mode == REFRESH and bool(self.diff.unchanged) and self.reuse_segmentation
                and bool(self.diff.new or self.diff.changed or self.diff.removed))

    @property
    def unchanged(self) -> list[str]:
        return self.diff.unchanged if self.mode == REFRESH else []


def plan(previous: dict[str, Any] | None, previous_root: str, files: list[str], prints: dict[str, str],
         has_index: bool, connect: Callable[[], None] = lambda: None) -> Plan:
    """Decide what this build does (module doc). Stats every input; hashes only files whose size or
    mtime differ from the previous ledger's, in Ray tasks when they are many (``connect`` starts Ray)."""
    previous_ledger = ledger.read(previous_root, previous)
    rows, hashed = ledger.scan(files, previous_ledger, connect)
    diff = ledger.diff(previous_ledger, rows, hashed)
    changed = fingerprints.changed((previous or {}).get("stage_fingerprints"), prints)
    reuse = previous is not None and "segment" not in changed
    if previous is None:
        return Plan(FULL, "no previous version", diff, rows, None, changed, False)
    if previous_ledger is None or not has_index:
        return Plan(FULL, "the previous version has no input ledger or dedup index", diff, rows, previous_ledger,
                    changed, reuse)
    inputs_changed = [stage for stage in changed if stage in fingerprints.INPUT_STAGES]
    if inputs_changed:
        return Plan(FULL, f"changed settings: {', '.join(inputs_changed)}", diff, rows, previous_ledger, changed, reuse)
    if not (diff.new or diff.changed or diff.removed or changed):
        return Plan(NOOP, "no input file and no setting changed", diff, rows, previous_ledger, changed, reuse)
    return Plan(REFRESH, what_changed(diff, changed), diff, rows, previous_ledger, changed, reuse)


def docs_files_pack_alone(cfg: tokenize.TokenizeConfig) -> bool:
    """Each docs file is tokenized, counted and packed on its own, into the shard files of the write task of
    its rank (``pack.apply``): a tokenizer batch divides a docs file. A refresh may then link a docs file
    and its shard files unchanged (``kept_docs.carried``)."""
    return write.DOCS_FILE_ROWS % tokenize.batch_rows(cfg) == 0


def first_places(plan: Plan, docs_files: list[str]) -> list[tuple[str, int]]:
    """(source, record) of each previous docs file's first row: their names index the previous version's inputs."""
    return write.docs_file_places(docs_files, plan.previous_ledger[ledger.URI].to_pylist())


def what_changed(diff: ledger.Diff, changed_stages: list[str]) -> str:
    """``input files: 1 new, 2 removed; settings changed: tokenize``: the refresh's reason, as the log and
    the CLI's last line give it."""
    files = ", ".join(f"{len(uris)} {kind}" for kind, uris in (("new", diff.new), ("changed", diff.changed),
                                                                ("removed", diff.removed)) if uris)
    parts = [f"input files: {files}"] if files else []
    if changed_stages:
        parts.append(f"settings changed: {', '.join(changed_stages)}")
    return "; ".join(parts)


def conform(batch: pa.Table, schema: pa.Schema) -> pa.Table:
    """The batch's columns of ``schema``, in its order and types (so that unions line up)."""
    return batch.select(schema.names).cast(schema)


def listed(manifest: dict[str, Any] | None, directory: str) -> list[str]:
    """The files of ``directory`` that ``manifest`` (a previous version's) lists, relative to the output."""
    if not manifest:
        return []
    return [e["path"] for e in manifest.get("files", []) if e["path"].startswith(f"{directory}/")]


def read_listed(out: str, manifest: dict[str, Any], directory: str, schema: pa.Schema):
    """The Parquet table of ``directory`` as ``manifest`` lists it (``schema``: what no file gives), one read
    task and block per file (``write.read_in_order``): Ray's ``read_parquet`` spends over a second starting
    each call, which a refresh that reads three small tables paid three times."""
    return write.read_in_order(out, listed(manifest, directory), schema)
