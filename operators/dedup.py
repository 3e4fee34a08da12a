"""Dedup: exact duplicates by content hash, then near-duplicates by MinHash, LSH and connected components.

``apply`` returns only the duplicates, one row each: ``source``, ``record``, ``doc_id``, ``fate``
(``exact_dup`` or ``near_dup``) and ``detail``, the doc_id of the document that was kept. The
keeper of a group is its document with the smallest ``(source, record)``; every document is
named by an order key that sorts that way (``order_keys``), so "keep the smallest key" is the
whole rule, and it does not depend on partitioning.

The flow; every step runs where the data is, and the driver holds only counts:

1. ``DedupKeyer`` (map): order key, xxh3-128 of the text, and the fingerprint's LSH buckets.
   Text leaves the flow here, so no shuffle below moves text. Exact duplicates get buckets
   too: one pass over the input instead of a second read or a text shuffle to sign survivors.
2. Exact: one hash shuffle by content hash; in each partition an Arrow group-by finds the
   smallest key per hash (``keep_first``). A hash's copies share a partition, as they would
   in a hash join, but only as two short strings and the bucket list, never as a Python group.
3. Near: each survivor's band rows ``(bucket, node)``, one hash shuffle by bucket, and in each
   partition every member of a bucket gets a star edge to the bucket's smallest member (never
   all pairs). Connected components over those edges label each node with its component's
   smallest node (``operators.components``): the keeper.
4. Exact duplicates whose keeper is itself a near duplicate point to that component's keeper,
   so ``detail`` always names a kept document.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from operators import components
from operators.columns import DOC_ID, EXACT_DUP, FATES_SCHEMA, FINGERPRINT, NEAR_DUP, RECORD, SOURCE, TEXT
from operators.minhash import MinHashConfig, MinHashSigner

if TYPE_CHECKING:
    from ray.data import Dataset

NODE, ROOT = components.NODE, components.ROOT  # a document's order key is its node in the near-duplicate graph
KEEPER, CONTENT, BUCKETS, BUCKET = "keeper", "content", "buckets", "bucket"

OUTPUT_SCHEMA = FATES_SCHEMA  # duplicates are fates rows

_SEP = "\x00"  # sorts before every other character, so a shorter source sorts first, as in a tuple
_RECORD_DIGITS = 19  # every non-negative int64


@dataclass(frozen=True)
class DedupConfig:
    exact: bool = True
    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    batch_size: int = 1024
    partition_rows: int = 500_000  # rows per shuffle partition; a few hundred bytes each

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.partition_rows < 1:
            raise ValueError("batch_size and partition_rows must be positive")


def order_keys(source: pa.Array, record: pa.Array, doc_id: pa.Array) -> pa.Array:
    """``source NUL record NUL doc_id``, record zero-padded: string order is (source, record) order.

    The doc_id rides along so that a key alone names the document (``split_order_keys``).
    """
    if pc.any(pc.match_substring(source, _SEP)).as_py():
        raise ValueError("a source name contains a NUL character")
    if len(record) and pc.min(record).as_py() < 0:
        raise ValueError("record numbers must not be negative")
    digits = pc.utf8_lpad(pc.cast(record, pa.string()), width=_RECORD_DIGITS, padding="0")
    return pc.binary_join_element_wise(
        pc.cast(source, pa.string()), digits, pc.cast(doc_id, pa.string()), _SEP
    )


def split_order_keys(keys: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """(source, record, doc_id) back from order keys."""
    parts = pc.split_pattern(keys, _SEP, max_splits=2)
    source, digits, doc_id = (pc.list_element(parts, i) for i in range(3))
    return source, pc.cast(digits, pa.int64()), doc_id


class DedupKeyer:
    """Core. Batch of documents to (node, content, buckets). Cheap to build; pickled to the tasks."""

    def __init__(self, cfg: DedupConfig):
        self.cfg = cfg
        self._signer = MinHashSigner(cfg.minhash) if cfg.minhash.enabled else None

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = batch[TEXT].to_pylist()
        content = [xxhash.xxh3_128_hexdigest(text.encode("utf-8", "surrogatepass")) for text in texts]
        if self._signer is None:
            buckets = pa.array([[]] * len(texts), pa.list_(pa.int64()))
        else:
            buckets = self._signer.buckets(batch[FINGERPRINT].to_pylist())
        node = order_keys(batch[SOURCE], batch[RECORD], batch[DOC_ID])
        return pa.table({NODE: node, CONTENT: pa.array(content, pa.string()), BUCKETS: buckets})


def keep_first(partition: pa.Table, key: str) -> pa.Table:
    """Add each row's keeper: the smallest node among the partition's rows with the same ``key``."""
    grouped = partition.group_by(key).aggregate([(NODE, "min")])
    index = pc.index_in(partition[key], value_set=grouped[key].combine_chunks())
    return partition.append_column(KEEPER, grouped[f"{NODE}_min"].take(index))


def duplicates(batch: pa.Table) -> pa.Table:
    """(node, keeper) of the rows that are not their own keeper."""
    return batch.filter(pc.not_equal(batch[NODE], batch[KEEPER])).select([NODE, KEEPER])


def survivors(batch: pa.Table) -> pa.Table:
    """(node, buckets) of the rows that are their own keeper."""
    return batch.filter(pc.equal(batch[NODE], batch[KEEPER])).select([NODE, BUCKETS])


def band_rows(batch: pa.Table) -> pa.Table:
    """(bucket, node): one row per document and band; documents without buckets have none."""
    buckets = batch[BUCKETS].combine_chunks()
    nodes = batch[NODE].combine_chunks().take(pc.list_parent_indices(buckets))
    return pa.table({BUCKET: pc.list_flatten(buckets), NODE: nodes})


def resolve_keepers(batch: pa.Table) -> pa.Table:
    """(node, keeper, root of keeper or null) to (node, keeper) with the keeper that is finally kept."""
    return pa.table({NODE: batch[NODE], KEEPER: pc.coalesce(batch[ROOT], batch[KEEPER])})


def duplicate_rows(batch: pa.Table, fate: str) -> pa.Table:
    """(node, keeper) to the output rows: the duplicate's own columns, ``fate``, and the keeper's doc_id."""
    source, record, doc_id = split_order_keys(batch[NODE])
    kept = split_order_keys(batch[KEEPER])[2]
    fates = pa.repeat(pa.scalar(fate, pa.string()), batch.num_rows)
    return pa.table([source, record, doc_id, fates, kept], names=OUTPUT_SCHEMA.names).cast(OUTPUT_SCHEMA)


def _partitions(rows: int, cfg: DedupConfig) -> int:
    return max(1, math.ceil(rows / cfg.partition_rows))


def _shuffled_keep_first(ds: Dataset, key: str, partitions: int) -> Dataset:
    return ds.repartition(partitions, keys=[key]).map_batches(
        keep_first, fn_kwargs={"key": key}, batch_format="pyarrow", batch_size=None
    )


def _map(ds: Dataset, fn: Callable[..., pa.Table], **kwargs) -> Dataset:
    return ds.map_batches(fn, fn_kwargs=kwargs, batch_format="pyarrow")


def _near_roots(docs: Dataset, partitions: int) -> Dataset:
    """(node, root) of every document that is not the smallest of its near-duplicate component."""
    edges = _map(_shuffled_keep_first(_map(docs, band_rows), BUCKET, partitions), duplicates)
    edges = edges.rename_columns({NODE: components.U, KEEPER: components.V})
    return components.connected_components(edges, partitions)


def apply(ds: Dataset, cfg: DedupConfig) -> Dataset:
    """Dataset of documents (doc_id, source, record, text, fingerprint) to a Dataset of their duplicates.

    Reads ``ds`` once; the caller should materialize it if it is read again (as for the anti-join).
    """
    import ray.data

    found = ray.data.from_arrow(OUTPUT_SCHEMA.empty_table())  # keeps the schema when nothing is found
    if not (cfg.exact or cfg.minhash.enabled):
        return found
    docs = ds.map_batches(DedupKeyer(cfg), batch_format="pyarrow", batch_size=cfg.batch_size).materialize()
    count = docs.count()
    exact = None
    if cfg.exact:
        docs = _shuffled_keep_first(docs, CONTENT, _partitions(count, cfg)).materialize()
        exact, docs = _map(docs, duplicates), _map(docs, survivors)
    if cfg.minhash.enabled:
        partitions = _partitions(count * cfg.minhash.bands, cfg)
        roots = _near_roots(docs, partitions)
        found = found.union(_map(roots.rename_columns({ROOT: KEEPER}), duplicate_rows, fate=NEAR_DUP))
        if exact is not None:
            exact = exact.join(roots.rename_columns({NODE: KEEPER}), "left_outer", partitions, on=(KEEPER,))
            exact = _map(exact, resolve_keepers)
    if exact is not None:
        found = found.union(_map(exact, duplicate_rows, fate=EXACT_DUP))
    return found
