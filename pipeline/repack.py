"""``python -m pipeline pack OUTPUT [--set tokenize.KEY=VALUE ...] [--set write.KEY=VALUE ...]``.

Re-packs a built corpus from its docs table, without reading inputs or running LTP again:
the committed docs (text + words) are tokenized and packed under the corpus's config with the
overrides applied, written as a new version of ``shards/``, and the manifest is replaced in one
step (``manifests.snapshot.commit``); the previous version is archived under ``versions/`` first,
and its shards leave ``shards/`` after the commit.
Docs and fates are kept as they are. The report keeps what it says of the build, and its corpus
totals, tokens per document and shards describe the new shards; its ``packed`` entry (and the
manifest's) says which pack made them from which version.

Two-phase pretraining (128 then 512 tokens) from one segmentation: build with
``tokenize.max_seq_len=128``, train phase one, then
``python -m pipeline pack OUTPUT --set tokenize.max_seq_len=512`` and train phase two.

Only ``tokenize.*`` and ``write.*`` keys may change: anything else needs a full build.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from manifests import fingerprints, snapshot
from operators import tokenize, write
from operators.columns import docs_schema
from pipeline import cluster, commit, refresh, report
from pipeline.config import BuildConfig, ConfigError, build, set_dotted
from pipeline.passes import write_examples

log = logging.getLogger("pipeline")

PACK_SECTIONS = ("tokenize", "write")
REPORTS = (report.REPORT_JSON, report.REPORT_TEXT, report.REPORT_HTML)  # rewritten by a pack: its shards and tokens


class RepackError(ValueError):
    """Nothing to re-pack at OUTPUT; the message is the one line the CLI prints."""


def pack_config(manifest: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> BuildConfig:
    """The corpus's own config with ``tokenize.*`` / ``write.*`` overrides (values parsed as YAML)."""
    data = manifest.get("config")
    if not isinstance(data, dict):
        raise RepackError("manifest.json has no config to re-pack with")
    for override in overrides:
        key, sep, _ = override.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise ConfigError(f"--set takes section.key=value, got {override!r}")
        if parts[0] not in PACK_SECTIONS:
            raise ConfigError(f"pack changes only tokenize.* and write.* keys; {key.strip()} needs a full build")
        set_dotted(data, override)
    return build(BuildConfig, data, prefix="")


def repack_corpus(output: str, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Write a new shards version of the corpus at ``output``; return the committed manifest."""
    if snapshot.read_manifest(output) is None:
        raise RepackError(f"{output}: no manifest.json there; build the corpus first")
    holder = snapshot.acquire_lock(output)
    try:
        return _repack(output, overrides)
    finally:
        snapshot.release_lock(output, holder)


def _repack(output: str, overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    manifest = snapshot.read_manifest(output)
    if manifest is None:
        raise RepackError(f"{output}: no manifest.json there; build the corpus first")
    cfg = pack_config(manifest, overrides)
    docs_files = refresh.listed(manifest, write.DOCS_DIR)
    if not docs_files:
        raise RepackError(f"{output}: the manifest lists no docs files to re-pack")
    vocab = tokenize.vocab_info(cfg.tokenize.tokenizer)
    cluster.connect_ray()
    started = time.perf_counter()
    version = int(manifest["version"]) + 1
    log.info("re-packing %s version %d into version %d", output, manifest["version"], version)

    # the docs table's order: the build's packing
    tally = report.start_tally()
    docs = write.read_in_order(output, docs_files, docs_schema(cfg.segment.tasks))
    write_examples(docs, cfg, vocab, output, version, tally)
    counts = report.finish_tally(tally).totals
    shards = snapshot.describe_files(output, write.version_files(output, write.SHARDS_DIR, version))

    # the docs files' counters hold tokens of the shards replaced: a refresh may no longer link them (commit.DOC_COUNTS)
    kept = [{k: v for k, v in e.items() if k != commit.DOC_COUNTS} for e in manifest["files"]
            if not e["path"].startswith(f"{write.SHARDS_DIR}/") and e["path"] not in REPORTS]
    totals = commit.shard_totals(shards)
    committed = {k: v for k, v in manifest.items() if k not in ("format", "committed_at")}
    committed.update(
        version=version,
        config=cfg.to_dict(),
        config_fingerprint=cfg.fingerprint(),
        stage_fingerprints={
            **manifest.get("stage_fingerprints", {}),
            **{k: v for k, v in fingerprints.stage_fingerprints(cfg.to_dict(), vocab.sha256).items() if k in PACK_SECTIONS},
        },
        tokenizer={"spec": vocab.spec, "vocab_sha256": vocab.sha256, "vocab_size": vocab.size},
        corpus={**manifest.get("corpus", {}), **totals},
        packed={
            "from_version": int(manifest["version"]),
            "max_seq_len": cfg.tokenize.max_seq_len,
            "packing": cfg.tokenize.packing,
            "seconds": round(time.perf_counter() - started, 3),
        },
    )
    built = report.read_report(output)  # the build's report, its shards and token counts brought up to date
    built.update(version=version, corpus=committed["corpus"], tokenizer=committed["tokenizer"],
                 packed=committed["packed"], tokens_per_doc=report.histogram(counts, "tokens"))
    return commit.publish(output, committed, built, kept + shards, manifest, (write.SHARDS_DIR,))
