"""Kept documents' texts to docs rows: their words from the segmentation cache where it holds their text,
else from the segment stage.

The cache is the previous docs table, keyed by the xxh3-128 of the normalized text. Up to
``write.local_cache_max_docs`` cached documents, one task reads them into one table (only the docs
files that may hold the sources asked for), and the texts look their words up in it as they stream to
the segment stage, which segments only the rest (``operators.segment.missing_words``): the rows keep
the texts' order, with no join and no sort. Above the bound, the texts are joined with the cache by
Ray Data and the rows sorted back into (source, record) order. Both give the same rows.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray
import ray.data
import xxhash
from ray.data.expressions import col

from operators import segment, storage, write
from operators.columns import DOC_ID, RECORD, SOURCE, TEXT, WORDS, docs_schema
from pipeline import cluster, refresh
from pipeline.config import BuildConfig

TEXT_HASH = "text_hash"


@dataclass(frozen=True)
class Cache:
    """Rows of the previous docs table that may give their words: those of ``sources`` (every source where
    None) in ``files`` (relative to the output), ``docs`` rows in all."""

    files: list[str]
    sources: list[str] | None
    docs: int


def previous_cache(previous: dict[str, Any]) -> Cache:
    """The whole previous docs table."""
    return Cache(refresh.listed(previous, write.DOCS_DIR), None, int(previous["corpus"]["docs"]))


def sources_cache(previous: dict[str, Any], places: list[tuple[str, int]], sources: list[str], docs: int) -> Cache:
    """The previous docs rows of ``sources`` (``docs`` of them), in the files that may hold them (``places``: the
    files' first rows' places)."""
    return Cache(write.files_holding(refresh.listed(previous, write.DOCS_DIR), places, sources), sorted(sources), docs)


def docs_rows(cfg: BuildConfig) -> pa.Schema:
    """A docs row as pass 2 takes it: the docs table's columns and the record (for the docs files' names)."""
    return pa.schema([*docs_schema(cfg.segment.tasks), (RECORD, pa.int64())])


def segment_docs(cfg: BuildConfig, texts):
    """``texts`` (``kept_docs.KEPT_TEXTS``, maybe with cached words) segmented into docs rows, lazily: pass 2
    runs the segmentation. Where the segmentation pool would hold every CPU of the cluster, ``texts`` are
    materialized first: the tasks that make them in pass 2 would wait forever for a CPU."""
    if cluster.cpus_beside_segmentation(cfg.segment) < 1:
        texts = texts.materialize()
    segmented = segment.apply(texts, cfg.segment)
    return segmented.map_batches(refresh.conform, fn_kwargs={"schema": docs_rows(cfg)}, batch_format="pyarrow")


def segmented(cfg: BuildConfig, texts, cache: Cache | None, unique: bool, ordered: bool) -> tuple[Any, int, int]:
    """The docs table's rows of ``texts`` (materialized, ``kept_docs.KEPT_TEXTS``), lazily and in (source,
    record) order (``ordered``: the texts are in it already), with words from ``cache`` where it holds the
    text, else segmented (``unique``: the cache holds each text once). Also returns (documents to segment,
    documents whose words come from the cache)."""
    count = texts.count()
    if not count:
        return ray.data.from_arrow(docs_rows(cfg).empty_table()), 0, 0
    if cache is not None and cache.docs > cfg.write.local_cache_max_docs:
        return _joined(cfg, texts, count, cache, unique)
    if cache is None or not cache.docs:
        docs, to_segment = segment_docs(cfg, texts), count
    else:
        docs, to_segment = _looked_up(cfg, texts, cache)
    if not ordered:
        docs = write.docs_in_record_order(docs, count, docs_rows(cfg), cfg.write)
    return docs, to_segment, count - to_segment


def _looked_up(cfg: BuildConfig, texts, cache: Cache) -> tuple[Any, int]:
    """``texts``' docs rows in their order, with the words of the cache read into one table (module doc), and how
    many texts it lacks."""
    filesystem, root = storage.resolve(cfg.output)
    tags = segment.docs_columns(cfg.segment)
    table = ray.remote(_cache_table).remote(filesystem, [storage.join(root, path) for path in cache.files],
                                            cache.sources, tags)
    misses = sum(ray.get([ray.remote(_missing).remote(table, block) for block in texts.to_arrow_refs()]))
    found = texts.map_batches(_with_cached_words, fn_kwargs={"cache": table, "tags": tags}, batch_format="pyarrow")
    if misses:
        return segment_docs(cfg, found), misses
    return found.map_batches(refresh.conform, fn_kwargs={"schema": docs_rows(cfg)}, batch_format="pyarrow"), 0


def _cache_table(filesystem: pafs.FileSystem, paths: list[str], sources: Sequence[str] | None,
                 tags: list[str]) -> pa.Table:
    """(text hash, words, tags) of the cached documents, read file by file: only the hash of a text is kept."""
    parts = []
    for path in paths:
        rows = pq.read_table(path, columns=[SOURCE, TEXT, WORDS, *tags], filesystem=filesystem)
        if sources is not None:
            rows = rows.filter(pc.is_in(rows[SOURCE], value_set=pa.array(sources, pa.string())))
        parts.append(with_text_hash(rows).select([TEXT_HASH, WORDS, *tags]))
    empty = pa.schema([(TEXT_HASH, pa.string()), *((name, pa.list_(pa.string())) for name in (WORDS, *tags))])
    return pa.concat_tables(parts) if parts else empty.empty_table()


def _first_rows(table: pa.Table) -> dict[str, int]:
    """Each text hash's row in the cache table (its first, where a text is there twice)."""
    rows: dict[str, int] = {}
    for row, key in enumerate(table[TEXT_HASH].to_pylist()):
        rows.setdefault(key, row)
    return rows


@functools.lru_cache(maxsize=1)
def _cache_rows(cache: ray.ObjectRef) -> tuple[pa.Table, dict[str, int]]:
    """The cache table and its rows by text hash, once per process: a task or actor looks up many batches. The
    process holds the table until it looks another one up or exits (a worker outlives the build's execution)."""
    table = ray.get(cache)
    return table, _first_rows(table)


def _cached_rows(rows: dict[str, int], texts: pa.Table) -> pa.Array:
    """Each text's row in the cache, null where it has none."""
    return pa.array([rows.get(key) for key in _text_hashes(texts)], pa.int64())


def _missing(cache: pa.Table, texts: pa.Table) -> int:
    """How many of ``texts`` the cache table holds no words for: the documents the segment stage will take."""
    return texts.num_rows - pc.count(_cached_rows(_first_rows(cache), texts)).as_py() if texts.num_rows else 0


def _with_cached_words(batch: pa.Table, cache: ray.ObjectRef, tags: list[str]) -> pa.Table:
    """``batch`` with the words (and tags) ``cache`` holds for its texts, null where it holds none."""
    table, rows = _cache_rows(cache)
    found = _cached_rows(rows, batch)
    for name in (WORDS, *tags):
        batch = batch.append_column(name, table[name].take(found))
    return batch


def _joined(cfg: BuildConfig, texts, count: int, cache: Cache, unique: bool) -> tuple[Any, int, int]:
    """``segmented`` above the bound: the ``count`` texts joined with the cache by Ray Data, then sorted."""
    full = docs_rows(cfg)
    tags = segment.docs_columns(cfg.segment)
    keyed = texts.map_batches(with_text_hash, batch_format="pyarrow")
    cached = write.read_in_order(cfg.output, cache.files, docs_schema(cfg.segment.tasks), sources=cache.sources)
    cached = cached.select_columns([TEXT, WORDS, *tags]).map_batches(with_text_hash, batch_format="pyarrow")
    cached = cached.select_columns([TEXT_HASH, WORDS, *tags])
    if not unique:
        cached = cached.groupby(TEXT_HASH).map_groups(first_per_hash, batch_format="pyarrow")
    joined = keyed.join(cached, "left_outer", max(1, texts.num_blocks()), on=(TEXT_HASH,)).materialize()
    hits = joined.filter(expr=~col(WORDS).is_null())
    misses = joined.filter(expr=col(WORDS).is_null()).select_columns([DOC_ID, SOURCE, RECORD, TEXT]).materialize()
    parts = [hits.map_batches(refresh.conform, fn_kwargs={"schema": full}, batch_format="pyarrow")]
    to_segment = misses.count()
    if to_segment:
        parts.append(segment_docs(cfg, misses))
    docs = write.docs_in_record_order(parts[0].union(*parts[1:]), count, full, cfg.write)
    return docs, to_segment, count - to_segment


def with_text_hash(batch: pa.Table) -> pa.Table:
    """Add ``text_hash``: xxh3-128 of the normalized text, the segmentation cache's key."""
    return batch.append_column(TEXT_HASH, pa.array(_text_hashes(batch), pa.string()))


def _text_hashes(batch: pa.Table) -> list[str]:
    return [xxhash.xxh3_128_hexdigest(text.encode("utf-8", "surrogatepass")) for text in batch[TEXT].to_pylist()]


def first_per_hash(group: pa.Table) -> pa.Table:
    """One cache row per text (a corpus built without exact dedup may hold a text twice)."""
    return group.slice(0, 1)
