"""The dedup stage's rules, without Ray: the order keys that name documents, the keys each document is
signed with (content hash, LSH buckets, MinHash sketch), and the per-batch and per-partition steps
that both executors apply, ``operators.dedup``'s shuffles and ``operators.dedup.local``'s one task,
so that they decide alike. ``operators.dedup`` says how the steps fit together and why the check
and the bands are what they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from operators.columns import (
    CLUSTER,
    DEDUP_SCHEMA,
    DETAIL,
    DOC_ID,
    FATE,
    FATES_SCHEMA,
    FINGERPRINT,
    JACCARD,
    KEPT,
    RECORD,
    SOURCE,
    TEXT,
)
from operators.dedup import components
from operators.dedup.minhash import MinHashConfig, MinHashSigner, estimated_jaccard, sketch_values, sketches

NODE, ROOT = components.NODE, components.ROOT  # a document's order key is its node in the near-duplicate graph
KEEPER, CONTENT, BUCKETS, BUCKET, SKETCH = "keeper", "content", "buckets", "bucket", "sketch"
OUTPUT_SCHEMA = FATES_SCHEMA  # duplicates are fates rows
AUDIT_SCHEMA = DEDUP_SCHEMA  # written as dedup/*.parquet

_SEP = "\x00"  # sorts before every other character, so a shorter source sorts first, as in a tuple
# Refresh (``existing``): documents kept in the corpus rank before every other document of their
# group, by a one-character prefix below any character a source starts with (``order_keys`` checks).
RANK_KEPT = "\x01"
_RANK_PATTERN = "^\x01"
_RECORD_DIGITS = 19  # every non-negative int64
LOOKUP_KEY, PAIR_U, PAIR_V, LOOKUP_SIDE = "key", "u", "v", "side"  # sketch lookups: the node looked up, the pair, which end it is
# a keyed row's dedup decision, beside the fate it came with: a duplicate's fate and its keeper's doc_id (null: kept)
FOUND_FATE, FOUND_DETAIL = "found_fate", "found_detail"


@dataclass(frozen=True)
class DedupConfig:
    exact: bool = True
    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    batch_size: int = 1024  # documents per signature batch
    partition_rows: int = 65_536  # band rows (16 a document at the defaults) per shuffle partition
    min_partitions: int = 0  # fewest shuffle partitions; 0 = one per CPU of the Ray cluster
    # up to this many documents (new and indexed), the graph runs in one task (operators.dedup.local); 0 = never
    local_max_docs: int = 1_000_000

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.partition_rows < 1:
            raise ValueError("batch_size and partition_rows must be positive")
        if self.min_partitions < 0 or self.local_max_docs < 0:
            raise ValueError("min_partitions and local_max_docs must not be negative")


def order_keys(source: pa.Array, record: pa.Array, doc_id: pa.Array) -> pa.Array:
    """``source NUL record NUL doc_id``, record zero-padded: string order is (source, record) order.

    The doc_id rides along so that a key alone names the document (``split_order_keys``).
    """
    if pc.any(pc.match_substring(source, _SEP)).as_py():
        raise ValueError("a source name contains a NUL character")
    if pc.any(pc.match_substring_regex(source, _RANK_PATTERN)).as_py():
        raise ValueError("a source name starts with a \\x01 character")
    if len(record) and pc.min(record).as_py() < 0:
        raise ValueError("record numbers must not be negative")
    digits = pc.utf8_lpad(pc.cast(record, pa.string()), width=_RECORD_DIGITS, padding="0")
    return pc.binary_join_element_wise(
        pc.cast(source, pa.string()), digits, pc.cast(doc_id, pa.string()), _SEP
    )


def record_names(source: pa.Array, record: pa.Array, doc_id: pa.Array) -> pa.Array:
    """``source NUL record NUL doc_id``, the record unpadded: names a record that has no place in the graph
    (a file-level row's record is -1), for ``split_order_keys``."""
    return pc.binary_join_element_wise(pc.cast(source, pa.string()), pc.cast(record, pa.string()), pc.cast(doc_id, pa.string()), _SEP)


def split_order_keys(keys: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """(source, record, doc_id) back from order keys (ranked ones included, see ``ranked``)."""
    keys = pc.replace_substring_regex(keys, _RANK_PATTERN, "")
    parts = pc.split_pattern(keys, _SEP, max_splits=2)
    source, digits, doc_id = (pc.list_element(parts, i) for i in range(3))
    return source, pc.cast(digits, pa.int64()), doc_id


class DedupKeyer:
    """Core. Batch of documents to (node, content, buckets, sketch). Cheap to build; pickled to the tasks."""

    def __init__(self, cfg: DedupConfig):
        self.cfg = cfg
        self._signer = MinHashSigner(cfg.minhash) if cfg.minhash.enabled else None

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = batch[TEXT].to_pylist()
        content = [xxhash.xxh3_128_hexdigest(text.encode("utf-8", "surrogatepass")) for text in texts]
        columns = {NODE: order_keys(batch[SOURCE], batch[RECORD], batch[DOC_ID]), CONTENT: pa.array(content, pa.string())}
        if self._signer is None:
            columns[BUCKETS] = pa.array([[]] * len(texts), pa.list_(pa.int64()))
        else:
            fingerprints = batch[FINGERPRINT].to_pylist()
            signatures = self._signer.signatures(fingerprints)
            columns[BUCKETS] = self._signer.buckets_of(fingerprints, signatures)
            columns[SKETCH] = sketches(signatures)
        return pa.table(columns)


def signed(batch: pa.Table, keyer: DedupKeyer) -> pa.Table:
    """Rows with their keys appended. A row that already has a fate (filtered, rejected) gets its node
    (its name, so that its fate is laid out with the others') and null keys."""
    if FATE not in batch.column_names:
        keys = keyer(batch)
    else:
        pending = pc.is_null(batch[FATE])
        position = pc.subtract(pc.cumulative_sum(pc.cast(pending, pa.int64())), 1)
        keys = keyer(batch.filter(pending)).take(pc.if_else(pending, position, pa.scalar(None, pa.int64())))
        keys = keys.set_column(0, NODE, pc.coalesce(keys[NODE], record_names(batch[SOURCE], batch[RECORD], batch[DOC_ID])))
    for name in keys.column_names:
        batch = batch.append_column(name, keys[name])
    return batch


def key_rows(batch: pa.Table, names: list[str]) -> pa.Table:
    """Every signed row's keys and the fate it came with, null where it has none (``documents_of``)."""
    return with_fate_columns(batch.select(names), batch)


def with_fate_columns(keys: pa.Table, rows: pa.Table) -> pa.Table:
    """``keys`` with the fate and detail of ``rows`` (the same rows), null where ``rows`` has no such column."""
    for name in (FATE, DETAIL):
        values = rows[name] if name in rows.column_names else pa.nulls(rows.num_rows)
        keys = keys.append_column(name, values.cast(pa.string()))
    return keys


def documents_of(keyed: pa.Table) -> pa.Table:
    """The keyed rows that are documents of the graph: not the records filtered or rejected before dedup.
    A block with no such record is kept as it is (a filter would copy it)."""
    blocks = [block if block[FATE].null_count == block.num_rows else block.filter(pc.is_null(block[FATE]))
              for block in keyed.to_batches()]
    return pa.Table.from_batches(blocks, keyed.schema)


def keep_first(partition: pa.Table, key: str) -> pa.Table:
    """Add each row's keeper: the smallest node among the partition's rows with the same ``key``: the
    first of its run once sorted by (key, node), where an Arrow group-by held four times the memory."""
    order = pc.sort_indices(partition, [(key, "ascending"), (NODE, "ascending")]).to_numpy()
    keys = partition[key].take(order)
    change = pc.not_equal(keys[1:], keys[:-1]).fill_null(True)  # a row without a key is its own keeper
    starts = np.flatnonzero(np.r_[True, change.to_numpy(zero_copy_only=False)])
    keeper = np.empty_like(order)
    keeper[order] = order[np.repeat(starts, np.diff(np.r_[starts, len(order)]))]
    return partition.append_column(KEEPER, partition[NODE].take(keeper))


def bucket_pairs(partition: pa.Table, all_pairs_max: int) -> pa.Table:
    """All band rows (bucket, node) of some buckets to candidate pairs (node, keeper), node after keeper.

    "After" is by (source, record) whatever the refresh's rank (``ranked``), so a pair is oriented
    as a full build orients it, the same in every band that proposes it; only the component's
    keeper follows the refresh's tie rule. Which pairs: ``pair_positions``.
    """
    nodes = pc.dictionary_encode(partition[NODE].combine_chunks())  # a document's rows share one rank
    plain = pc.replace_substring_regex(nodes.dictionary, _RANK_PATTERN, "")
    rank = pc.rank(plain, "ascending").to_numpy()[nodes.indices.to_numpy(zero_copy_only=False)]
    buckets = partition[BUCKET].to_numpy()
    order = np.argsort(rank, kind="stable")
    order = order[np.argsort(buckets[order], kind="stable")]  # by bucket, then rank
    later, earlier = pair_positions(buckets[order], all_pairs_max)
    nodes = nodes.dictionary.take(nodes.indices.take(order))
    return pa.table({NODE: nodes.take(later), KEEPER: nodes.take(earlier)})


def plain_order(nodes: pa.Array) -> pa.Array:
    """Indices that sort order keys by (source, record), whatever their refresh rank (``ranked``)."""
    return pc.sort_indices(pc.replace_substring_regex(nodes, _RANK_PATTERN, ""))


def pair_positions(bucket: np.ndarray, all_pairs_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Band rows sorted by bucket (a bucket's rows in (source, record) order) to the candidate pairs,
    as (later, earlier) row positions.

    A bucket of up to ``all_pairs_max`` documents gives all its pairs; a larger one a star from each
    member to its first (n - 1 pairs, never n^2 / 2). Vectorized: one numpy comparison per distance
    in a bucket, no loop per row.
    """
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]]) if len(bucket) else np.empty(0, np.int64)
    sizes = np.diff(np.r_[starts, len(bucket)])
    size, first = np.repeat(sizes, sizes), np.repeat(starts, sizes)
    position = np.arange(len(bucket))
    star = (size > all_pairs_max) & (position != first)
    later, earlier = [position[star]], [first[star]]
    small = position[(size >= 2) & (size <= all_pairs_max)]
    for distance in range(1, int(sizes[sizes <= all_pairs_max].max(initial=1))):
        small = small[small + distance < len(bucket)]
        same = bucket[small + distance] == bucket[small]
        later.append(small[same] + distance)
        earlier.append(small[same])
        small = small[same]  # a row with no partner at this distance has none further on
    return np.concatenate(later), np.concatenate(earlier)


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


# --- sketch lookups: the Jaccard estimate of pairs of nodes, where the sketches are -------------


def _lookup_schema(sketch: pa.DataType) -> pa.Schema:
    return pa.schema([(LOOKUP_KEY, pa.string()), (PAIR_U, pa.string()), (PAIR_V, pa.string()), (FATE, pa.string()), (SKETCH, sketch)])


def lookup_requests(pairs: pa.Table, sketch: pa.DataType) -> pa.Table:
    """(u, v, fate) pairs to two requests each, keyed by the node whose sketch they need."""
    fate = pairs[FATE] if FATE in pairs.column_names else pa.nulls(pairs.num_rows, pa.string())
    ends = [pa.table([pairs[end], pairs[PAIR_U], pairs[PAIR_V], fate], names=[LOOKUP_KEY, PAIR_U, PAIR_V, FATE]) for end in (PAIR_U, PAIR_V)]
    requests = pa.concat_tables(ends)
    return requests.append_column(SKETCH, pa.nulls(requests.num_rows, sketch)).cast(_lookup_schema(sketch))


def lookup_table(batch: pa.Table) -> pa.Table:
    """(node, sketch) rows as lookup rows: keyed by the node, no pair."""
    rows = batch.num_rows
    nulls = pa.nulls(rows, pa.string())
    table = pa.table([batch[NODE], nulls, nulls, nulls, batch[SKETCH]], names=[LOOKUP_KEY, PAIR_U, PAIR_V, FATE, SKETCH])
    return table.cast(_lookup_schema(batch.schema.field(SKETCH).type))


def attach_sketches(partition: pa.Table) -> pa.Table:
    """All lookup rows and requests of some keys to (u, v, fate, side, sketch): each distinct request, answered.

    ``side`` is true for the request of the pair's ``u`` end. Requests repeat when LSH proposed a
    pair in several bands; they are answered once.
    """
    is_table = pc.is_null(partition[PAIR_U])
    table = partition.filter(is_table)
    requests = partition.filter(pc.invert(is_table)).select([LOOKUP_KEY, PAIR_U, PAIR_V, FATE])
    requests = requests.group_by([LOOKUP_KEY, PAIR_U, PAIR_V, FATE], use_threads=False).aggregate([])
    sketch = table[SKETCH].take(pc.index_in(requests[LOOKUP_KEY], value_set=table[LOOKUP_KEY].combine_chunks()))
    side = pc.equal(requests[LOOKUP_KEY], requests[PAIR_U])
    return pa.table([requests[PAIR_U], requests[PAIR_V], requests[FATE], side, sketch], names=[PAIR_U, PAIR_V, FATE, LOOKUP_SIDE, SKETCH])


def pair_jaccard(partition: pa.Table) -> pa.Table:
    """Both answered requests of some pairs to (u, v, fate, jaccard): the share of equal sketch values."""
    ordered = partition.sort_by([(PAIR_U, "ascending"), (PAIR_V, "ascending"), (LOOKUP_SIDE, "ascending")])
    if ordered.num_rows % 2:
        raise ValueError("a pair's sketch lookup lost one of its ends")
    v_end, u_end = ordered.take(np.arange(0, ordered.num_rows, 2)), ordered.take(np.arange(1, ordered.num_rows, 2))
    if not (pc.all(u_end[LOOKUP_SIDE]).as_py() in (True, None) and pc.all(pc.equal(u_end[PAIR_V], v_end[PAIR_V])).as_py() in (True, None)):
        raise ValueError("sketch lookup rows do not pair up")
    jaccard = estimated_jaccard(sketch_values(u_end[SKETCH]), sketch_values(v_end[SKETCH]))
    return pa.table([u_end[PAIR_U], u_end[PAIR_V], u_end[FATE], pa.array(jaccard, pa.float64())], names=[PAIR_U, PAIR_V, FATE, JACCARD])


def at_least(batch: pa.Table, cut: float) -> pa.Table:
    """The pairs whose estimated Jaccard reaches ``cut``, as (node, keeper) edges."""
    kept = batch.filter(pc.greater_equal(batch[JACCARD], cut))
    return pa.table({NODE: kept[PAIR_U], KEEPER: kept[PAIR_V]})


# --- duplicates and the audit table -------------------------------------------------------------


def resolve_keepers(batch: pa.Table) -> pa.Table:
    """(node, keeper, root of keeper or null) to (node, keeper) with the keeper that is finally kept."""
    return pa.table({NODE: batch[NODE], KEEPER: pc.coalesce(batch[ROOT], batch[KEEPER])})


def with_fate(batch: pa.Table, fate: str) -> pa.Table:
    """(node, keeper) to (node, keeper, fate)."""
    return batch.select([NODE, KEEPER]).append_column(FATE, pa.repeat(pa.scalar(fate, pa.string()), batch.num_rows))


def previously_kept(batch: pa.Table) -> pa.Table:
    """(node, keeper, fate) rows of the duplicates that the previous version kept (``ranked``): a new
    document joined their group with another that ranks first, so a refresh retracts them."""
    return batch.filter(pc.starts_with(batch[NODE], RANK_KEPT))


def duplicate_rows(batch: pa.Table) -> pa.Table:
    """(node, keeper, fate) to the output rows: the duplicate's own columns, its fate, and the keeper's doc_id."""
    source, record, doc_id = split_order_keys(batch[NODE])
    kept = split_order_keys(batch[KEEPER])[2]
    return pa.table([source, record, doc_id, batch[FATE], kept], names=OUTPUT_SCHEMA.names).cast(OUTPUT_SCHEMA)


def cluster_ids(kept_doc_ids: pa.Array) -> pa.Array:
    """A cluster's id: xxh3-64 of its kept doc_id, as int64 (stable across runs, like the doc_id)."""
    ids = np.array([xxhash.xxh3_64_intdigest(d.encode()) for d in kept_doc_ids.to_pylist()], dtype=np.uint64)
    return pa.array(ids.view(np.int64))


def audit_rows(partition: pa.Table) -> pa.Table:
    """All (node, keeper, fate, jaccard) duplicates of some keepers to audit rows, one per member and one per keeper."""
    scored = JACCARD in partition.column_names
    sizes = partition.group_by(KEEPER, use_threads=False).aggregate([(NODE, "count")])
    kept = pa.table(
        {
            NODE: sizes[KEEPER],
            KEEPER: sizes[KEEPER],
            FATE: pa.repeat(pa.scalar(KEPT, pa.string()), sizes.num_rows),
            JACCARD: pa.repeat(pa.scalar(1.0 if scored else None, pa.float64()), sizes.num_rows),
        }
    )
    members = partition.select([NODE, KEEPER, FATE])
    members = members.append_column(JACCARD, partition[JACCARD] if scored else pa.nulls(partition.num_rows, pa.float64()))
    rows = pa.concat_tables([kept, members.cast(kept.schema)])
    size = pc.add(sizes[f"{NODE}_count"], 1).take(pc.index_in(rows[KEEPER], value_set=sizes[KEEPER].combine_chunks()))
    source, record, doc_id = split_order_keys(rows[NODE])
    kept_doc_id = split_order_keys(rows[KEEPER])[2]
    table = pa.table(
        [cluster_ids(kept_doc_id), size, kept_doc_id, doc_id, source, record, rows[FATE], rows[JACCARD]],
        names=AUDIT_SCHEMA.names,
    )
    order = pc.sort_indices(table, [(CLUSTER, "ascending"), (SOURCE, "ascending"), (RECORD, "ascending")])
    return table.take(order).cast(AUDIT_SCHEMA)


# --- the dedup index: what a refresh dedups new documents against ------------------------------

INDEX_KEPT = "kept"


def index_schema(cfg: DedupConfig) -> pa.Schema:
    """One row per document that reached dedup: its identity, whether it was kept, and its keys."""
    fields = [(DOC_ID, pa.string()), (SOURCE, pa.string()), (RECORD, pa.int64()), (INDEX_KEPT, pa.bool_()),
              (CONTENT, pa.string()), (BUCKETS, pa.list_(pa.int64()))]
    if cfg.minhash.enabled:
        fields.append((SKETCH, pa.binary(2 * cfg.minhash.num_perm)))
    return pa.schema(fields)


def index_rows(batch: pa.Table, schema: pa.Schema) -> pa.Table:
    """Keyed rows (node, content, buckets[, sketch], kept) to index rows."""
    source, record, doc_id = split_order_keys(batch[NODE])
    columns = {DOC_ID: doc_id, SOURCE: source, RECORD: record, INDEX_KEPT: batch[INDEX_KEPT]}
    columns.update({name: batch[name] for name in (CONTENT, BUCKETS, SKETCH) if name in schema.names})
    return pa.table(columns).cast(schema)


def flag_kept(batch: pa.Table) -> pa.Table:
    """Keyed rows with their decisions (``with_decisions``) to keyed rows with ``kept``."""
    return batch.append_column(INDEX_KEPT, pc.is_null(batch[FOUND_FATE]))


def with_decisions(batch: pa.Table, duplicates: pa.Table) -> pa.Table:
    """Keyed rows with their decision among ``duplicates`` (fates rows, a hash lookup by doc_id): the
    distributed executor gets the same columns from a join."""
    position = pc.index_in(split_order_keys(batch[NODE])[2], value_set=duplicates[DOC_ID].combine_chunks())
    found = duplicates.select([FATE, DETAIL]).combine_chunks()
    return batch.append_column(FOUND_FATE, found[FATE].take(position)).append_column(FOUND_DETAIL, found[DETAIL].take(position))


def fate_rows(batch: pa.Table) -> pa.Table:
    """Keyed rows with their decisions to fates rows: the fate a row came with, else its dedup
    decision (a duplicate and its keeper), else kept."""
    source, record, doc_id = split_order_keys(batch[NODE])
    fate = pc.coalesce(batch[FATE], batch[FOUND_FATE], pa.scalar(KEPT, pa.string()))
    detail = pc.if_else(pc.is_valid(batch[FATE]), batch[DETAIL], batch[FOUND_DETAIL])
    return pa.table([source, record, doc_id, fate, detail], names=FATES_SCHEMA.names).cast(FATES_SCHEMA)


def identities(batch: pa.Table) -> pa.Table:
    """Keyed rows with their (doc_id, source, record) added."""
    source, record, doc_id = split_order_keys(batch[NODE])
    return batch.append_column(DOC_ID, doc_id).append_column(SOURCE, source).append_column(RECORD, record)


def ranked(batch: pa.Table) -> pa.Table:
    """Index rows back to keyed rows. A kept document's node gets the ``RANK_KEPT`` prefix, so it
    is its group's keeper whatever new document arrives (the refresh's tie rule); the others keep
    their (source, record) rank, as in a full build."""
    node = order_keys(batch[SOURCE], batch[RECORD], batch[DOC_ID])
    node = pc.if_else(batch[INDEX_KEPT], pc.binary_join_element_wise(RANK_KEPT, node, ""), node)
    columns = {NODE: node, CONTENT: batch[CONTENT], BUCKETS: batch[BUCKETS]}
    if SKETCH in batch.column_names:
        columns[SKETCH] = batch[SKETCH]
    return with_fate_columns(pa.table(columns), batch)
