"""Dedup: exact duplicates by content hash, then near-duplicates by MinHash, LSH, a check, and connected components.

``apply`` returns two datasets (``DedupOutput``):

- ``duplicates``: one fates row per duplicate: ``source``, ``record``, ``doc_id``, ``fate``
  (``exact_dup`` or ``near_dup``) and ``detail``, the doc_id of the document that was kept;
- ``audit``: one row per member of every duplicate cluster, its kept document included
  (``AUDIT_SCHEMA``): ``cluster`` (an id, xxh3-64 of the kept doc_id), ``size``,
  ``kept_doc_id``, ``doc_id``, ``source``, ``record``, ``fate`` (``kept``, ``exact_dup``,
  ``near_dup``) and ``jaccard``: the member's estimated Jaccard with the kept document, from
  their MinHash sketches (1.0 for the kept row; null when MinHash is off).

The keeper of a group is its document with the smallest ``(source, record)``; every document is
named by an order key that sorts that way (``order_keys``), so "keep the smallest key" is the
whole rule, and it does not depend on partitioning.

The flow; every step runs where the data is, and the driver holds only counts:

1. ``sign``, a map that the driver runs in the same execution as read and normalize
   (``DedupKeyer``, ``batch_size`` documents at a time): order key, xxh3-128 of the text, the
   fingerprint's LSH buckets and its MinHash sketch, appended to each document's row. ``keys``
   takes those columns alone: text leaves the flow here, so nothing below moves text.
2. Exact: one hash shuffle by content hash of (node, content, buckets); in each partition an
   Arrow group-by finds the smallest key per hash (``keep_first``). A hash's copies share a
   partition, as they would in a hash join, but only as two short strings and the bucket list,
   never as a Python group; sketches stay out of this shuffle.
3. Near: each survivor's band rows ``(bucket, node)``, one hash shuffle by bucket, and in each
   partition the candidate pairs of every bucket (``bucket_pairs``): all its pairs, as an
   all-pairs LSH script would check them, while it has at most ``minhash.all_pairs_max``
   members; a star from each member to the bucket's smallest above that (n - 1 pairs, so a
   giant bucket stays linear). Without the check a star links what all pairs would.
4. The check (``minhash.verify``): each candidate pair ``(u, v)`` is looked up in the sketch
   table (one shuffle of requests and sketches by node, one by ``u`` to pair the two sketches)
   and kept when its estimated Jaccard reaches ``minhash.verify_cut`` (threshold - 2 sigma).
5. Connected components over the edges label each node with its component's smallest node
   (``operators.components``): the keeper.
6. Exact duplicates whose keeper is itself a near duplicate point to that component's keeper,
   so ``detail`` always names a kept document.
7. Audit: every duplicate's Jaccard with its keeper, by the same sketch lookup, whose second
   shuffle is by keeper: there each cluster's pairs are scored, counted and given their kept row.
8. Index: every document's identity and keys, and whether it was kept (a join of the keys with
   the duplicates), for the next refresh.

Steps 2-8 are the distributed executor. Up to ``local_max_docs`` documents, the same rules run in
one task on the whole key table instead (``operators.dedup_local``), with no shuffle.

Every shuffle uses ``max(ceil(rows / partition_rows), CPUs)`` partitions (``partition_count``;
``min_partitions`` sets the floor explicitly), with its rows counted in band rows (an int64
bucket and an order key): a document in the exact shuffle weighs 4, a sketch lookup 6, an edge 2
(``*_ROW_WEIGHT``), and the lookups and edges are counted when they exist, since they grow
faster than the documents. So ``partition_rows`` bounds every partition's bytes alike. The CPU
floor waits for 20,000 rows per partition, since below that a partition's fixed cost (a shuffle
aggregator) outweighs the work it would share. The default 65,536 is a few MB a partition,
already reached by a corpus of a few thousand documents, so a task's memory stays flat as the
corpus grows (``bench/dedup.py`` memory: 185 / 193 / 200 MB peak worker at 1x / 4x / 16x of
8,232 documents, against 186 / 257 / 382 MB with 500,000, for ~1.5x the stage time at 16x); a
corpus of hundreds of millions of documents on large nodes wants a larger value.

Why the check is on, and the bands favour recall. Pairwise precision / recall of the clusters
on seeded sets from ``tests/neardup.py`` (about 1,500 documents each from CMRC2018, C3 and DRCD:
300 clusters of an original and 1-4 edited copies, 300 singletons, 40 groups of header-sharing
hard negatives at Jaccard 0.3-0.56), one-process model of these rules
(``tests.neardup.clusters_in_memory``):

=========================================  ===========  ===========  ===========
bands x rows, check                        seed 0       seed 1       seed 2
=========================================  ===========  ===========  ===========
datasketch ``MinHashLSH(0.8)``, all pairs  1.00 / 0.90  1.00 / 0.89  1.00 / 0.87
9 x 13 (datasketch's optimum), none        1.00 / 0.89  0.999/ 0.88  1.00 / 0.86
16 x 8, none                               0.996/ 0.995 0.989/ 0.996 0.993/ 0.988
16 x 8, exact 5-gram Jaccard >= 0.8        1.00 / 0.966 1.00 / 0.967 1.00 / 0.958
16 x 8, estimate >= 0.8                    1.00 / 0.968 1.00 / 0.947 1.00 / 0.956
16 x 8, estimate >= 0.729 (the default)    1.00 / 0.994 1.00 / 0.996 1.00 / 0.984
=========================================  ===========  ===========  ===========

Through the real path (``tests/test_dedup_quality.py``: Normalizer, then ``apply`` on Ray),
seed 0 gives 1.00 / 0.994 with ``opencc: t2s`` and with ``none``: the fingerprint is built
from one t2s conversion either way. Many copies (the mixtures) sit between Jaccard 0.7 and 0.85,
where datasketch's 9 x 13 bands find a pair less than half the time; 16 x 8 find them, and
also propose header-sharing strangers (Jaccard 0.4-0.56) often enough to cost precision, which
the check takes back. Cutting the estimate at the threshold itself would reject about half of
the true pairs that lie at it (the estimate's noise is 0.035), hence the 2-sigma cut; an exact
check would need the fingerprints (the text) shuffled to the pairs and is no better here.

What the check costs: one shuffle of (node, sketch) rows, 256 bytes of sketch a document, and
two small shuffles of candidate edges; ``bench/dedup.py`` prints the stage time with and
without it (``"bench": "check"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from operators import components
from operators.columns import (
    CLUSTER,
    DEDUP_SCHEMA,
    DOC_ID,
    EXACT_DUP,
    FATE,
    FATES_SCHEMA,
    FINGERPRINT,
    JACCARD,
    KEPT,
    NEAR_DUP,
    RECORD,
    SOURCE,
    TEXT,
)
from operators.minhash import MinHashConfig, MinHashSigner, estimated_jaccard, sketch_values, sketches

if TYPE_CHECKING:
    from ray.data import Dataset

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
_KEY, _U, _V, _SIDE = "key", "u", "v", "side"  # sketch lookups: the node looked up, the pair, which end it is
MIN_PARTITION_ROWS = 20_000  # the CPU floor on partitions applies from this many rows per partition
# What a row of each shuffle weighs in band rows (an int64 bucket and one ~55-byte order key), so that
# ``partition_rows`` bounds every partition's bytes alike: a document in the exact shuffle (order key,
# content hash, 16 buckets), a sketch lookup (two or three order keys and a 256-byte sketch), an edge.
DOC_ROW_WEIGHT, LOOKUP_ROW_WEIGHT, EDGE_ROW_WEIGHT = 4, 6, 2


@dataclass(frozen=True)
class DedupConfig:
    exact: bool = True
    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    batch_size: int = 1024  # documents per signature batch
    partition_rows: int = 65_536  # band rows (16 a document at the defaults) per shuffle partition
    min_partitions: int = 0  # fewest shuffle partitions; 0 = one per CPU of the Ray cluster
    # up to this many documents (new and indexed), the graph runs in one task (operators.dedup_local); 0 = never
    local_max_docs: int = 1_000_000

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.partition_rows < 1:
            raise ValueError("batch_size and partition_rows must be positive")
        if self.min_partitions < 0 or self.local_max_docs < 0:
            raise ValueError("min_partitions and local_max_docs must not be negative")


@dataclass(frozen=True)
class DedupOutput:
    duplicates: Dataset  # fates rows (OUTPUT_SCHEMA)
    audit: Dataset  # AUDIT_SCHEMA rows
    index: Dataset  # index rows (index_schema): every document's identity, whether it was kept, its keys
    # whether ``index`` lists the documents in the order they were signed (the one-task path keeps it; the
    # distributed join does not, and sorting there would cost the shuffle only some callers need)
    index_in_order: bool = False


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
    """Rows with their keys appended; a row that already has a fate (filtered, rejected) gets null keys."""
    if FATE not in batch.column_names:
        keys = keyer(batch)
    else:
        pending = pc.is_null(batch[FATE])
        position = pc.subtract(pc.cumulative_sum(pc.cast(pending, pa.int64())), 1)
        keys = keyer(batch.filter(pending)).take(pc.if_else(pending, position, pa.scalar(None, pa.int64())))
    for name in keys.column_names:
        batch = batch.append_column(name, keys[name])
    return batch


def key_rows(batch: pa.Table, names: list[str]) -> pa.Table:
    """The keys of the signed rows of a batch (rows with a fate have none)."""
    return batch.filter(pc.is_valid(batch[NODE])).select(names)


def keep_first(partition: pa.Table, key: str) -> pa.Table:
    """Add each row's keeper: the smallest node among the partition's rows with the same ``key``."""
    grouped = partition.group_by(key, use_threads=False).aggregate([(NODE, "min")])
    index = pc.index_in(partition[key], value_set=grouped[key].combine_chunks())
    return partition.append_column(KEEPER, grouped[f"{NODE}_min"].take(index))


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
    return pa.schema([(_KEY, pa.string()), (_U, pa.string()), (_V, pa.string()), (FATE, pa.string()), (SKETCH, sketch)])


def lookup_requests(pairs: pa.Table, sketch: pa.DataType) -> pa.Table:
    """(u, v, fate) pairs to two requests each, keyed by the node whose sketch they need."""
    fate = pairs[FATE] if FATE in pairs.column_names else pa.nulls(pairs.num_rows, pa.string())
    ends = [pa.table([pairs[end], pairs[_U], pairs[_V], fate], names=[_KEY, _U, _V, FATE]) for end in (_U, _V)]
    requests = pa.concat_tables(ends)
    return requests.append_column(SKETCH, pa.nulls(requests.num_rows, sketch)).cast(_lookup_schema(sketch))


def lookup_table(batch: pa.Table) -> pa.Table:
    """(node, sketch) rows as lookup rows: keyed by the node, no pair."""
    rows = batch.num_rows
    nulls = pa.nulls(rows, pa.string())
    table = pa.table([batch[NODE], nulls, nulls, nulls, batch[SKETCH]], names=[_KEY, _U, _V, FATE, SKETCH])
    return table.cast(_lookup_schema(batch.schema.field(SKETCH).type))


def attach_sketches(partition: pa.Table) -> pa.Table:
    """All lookup rows and requests of some keys to (u, v, fate, side, sketch): each distinct request, answered.

    ``side`` is true for the request of the pair's ``u`` end. Requests repeat when LSH proposed a
    pair in several bands; they are answered once.
    """
    is_table = pc.is_null(partition[_U])
    table = partition.filter(is_table)
    requests = partition.filter(pc.invert(is_table)).select([_KEY, _U, _V, FATE])
    requests = requests.group_by([_KEY, _U, _V, FATE], use_threads=False).aggregate([])
    sketch = table[SKETCH].take(pc.index_in(requests[_KEY], value_set=table[_KEY].combine_chunks()))
    side = pc.equal(requests[_KEY], requests[_U])
    return pa.table([requests[_U], requests[_V], requests[FATE], side, sketch], names=[_U, _V, FATE, _SIDE, SKETCH])


def pair_jaccard(partition: pa.Table) -> pa.Table:
    """Both answered requests of some pairs to (u, v, fate, jaccard): the share of equal sketch values."""
    ordered = partition.sort_by([(_U, "ascending"), (_V, "ascending"), (_SIDE, "ascending")])
    if ordered.num_rows % 2:
        raise ValueError("a pair's sketch lookup lost one of its ends")
    v_end, u_end = ordered.take(np.arange(0, ordered.num_rows, 2)), ordered.take(np.arange(1, ordered.num_rows, 2))
    if not (pc.all(u_end[_SIDE]).as_py() in (True, None) and pc.all(pc.equal(u_end[_V], v_end[_V])).as_py() in (True, None)):
        raise ValueError("sketch lookup rows do not pair up")
    jaccard = estimated_jaccard(sketch_values(u_end[SKETCH]), sketch_values(v_end[SKETCH]))
    return pa.table([u_end[_U], u_end[_V], u_end[FATE], pa.array(jaccard, pa.float64())], names=[_U, _V, FATE, JACCARD])


def at_least(batch: pa.Table, cut: float) -> pa.Table:
    """The pairs whose estimated Jaccard reaches ``cut``, as (node, keeper) edges."""
    kept = batch.filter(pc.greater_equal(batch[JACCARD], cut))
    return pa.table({NODE: kept[_U], KEEPER: kept[_V]})


# --- duplicates and the audit table -------------------------------------------------------------


def resolve_keepers(batch: pa.Table) -> pa.Table:
    """(node, keeper, root of keeper or null) to (node, keeper) with the keeper that is finally kept."""
    return pa.table({NODE: batch[NODE], KEEPER: pc.coalesce(batch[ROOT], batch[KEEPER])})


def with_fate(batch: pa.Table, fate: str) -> pa.Table:
    """(node, keeper) to (node, keeper, fate)."""
    return batch.select([NODE, KEEPER]).append_column(FATE, pa.repeat(pa.scalar(fate, pa.string()), batch.num_rows))


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
    """Keyed rows, left-joined with the duplicates' fates (or without them: none), to keyed rows with ``kept``."""
    kept = pc.is_null(batch[FATE]) if FATE in batch.column_names else pa.repeat(pa.scalar(True), batch.num_rows)
    names = [n for n in batch.column_names if n != FATE]
    return batch.select(names).append_column(INDEX_KEPT, kept)


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
    return pa.table(columns)


# --- the Ray wrapper ---------------------------------------------------------------------------


def partition_count(rows: int, cfg: DedupConfig, cpus: int) -> int:
    """Shuffle partitions for ``rows`` rows: enough to bound each one (``partition_rows``), and at least
    one per CPU (or ``min_partitions``) once there are ``MIN_PARTITION_ROWS`` rows for each: below that a
    partition's fixed cost (a shuffle aggregator, a task) outweighs what a second core would save."""
    floor = cfg.min_partitions or min(cpus, math.ceil(rows / MIN_PARTITION_ROWS))
    return max(1, floor, math.ceil(rows / cfg.partition_rows))


def _partitions(rows: int, cfg: DedupConfig) -> int:
    """``partition_count`` on the Ray cluster this runs on."""
    import ray

    return partition_count(rows, cfg, int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 1)


def _shuffled_keep_first(ds: Dataset, key: str, partitions: int) -> Dataset:
    return _whole(ds.repartition(partitions, keys=[key]), keep_first, key=key)


def _map(ds: Dataset, fn: Callable[..., pa.Table], **kwargs) -> Dataset:
    return ds.map_batches(fn, fn_kwargs=kwargs, batch_format="pyarrow")


def _whole(ds: Dataset, fn: Callable[..., pa.Table], **kwargs) -> Dataset:
    """``fn`` once per block: after a keyed repartition, once per partition."""
    return ds.map_batches(fn, fn_kwargs=kwargs, batch_format="pyarrow", batch_size=None)


def _answered(pairs: Dataset, sketched: Dataset, sketch: pa.DataType, partitions: int, by: str) -> Dataset:
    """(u, v[, fate]) pairs to both ends' answered requests, repartitioned by ``by`` (u or v): ready to pair up."""
    requests = _map(pairs, lookup_requests, sketch=sketch)
    answered = _whole(requests.union(_map(sketched, lookup_table)).repartition(partitions, keys=[_KEY]), attach_sketches)
    return answered.repartition(partitions, keys=[by])


def scored_audit_rows(partition: pa.Table) -> pa.Table:
    """Both answered ends of every (member, keeper) pair of some keepers to their audit rows."""
    scored = pair_jaccard(partition)
    return audit_rows(pa.table({NODE: scored[_U], KEEPER: scored[_V], FATE: scored[FATE], JACCARD: scored[JACCARD]}))


def _lookup_partitions(pairs: int, documents: int, cfg: DedupConfig) -> int:
    """Partitions for the sketch lookups of ``pairs`` pairs: two requests a pair and one row a document,
    each about ``LOOKUP_ROW_WEIGHT`` band rows. Sized by the pairs, not the documents, since pairs grow
    faster (a cluster of n gives up to n (n - 1) / 2 candidates)."""
    return _partitions((2 * pairs + documents) * LOOKUP_ROW_WEIGHT, cfg)


def _near_roots(docs: Dataset, sketched: Dataset, sketch: pa.DataType, cfg: DedupConfig, documents: int) -> Dataset:
    """(node, root) of every document that is not the smallest of its near-duplicate component."""
    # without the check, a star per bucket links what all its pairs would
    all_pairs_max = cfg.minhash.all_pairs_max if cfg.minhash.verify else 1
    bands = _map(docs, band_rows).repartition(_partitions(documents * cfg.minhash.band_count, cfg), keys=[BUCKET])
    edges = _whole(bands, bucket_pairs, all_pairs_max=all_pairs_max).materialize()
    if cfg.minhash.verify and (candidates := edges.count()):
        pairs = edges.rename_columns({NODE: _U, KEEPER: _V})
        lookups = _lookup_partitions(candidates, sketched.count(), cfg)
        checked = _whole(_answered(pairs, sketched, sketch, lookups, by=_U), pair_jaccard)
        edges = _map(checked, at_least, cut=cfg.minhash.verify_cut).materialize()
    edges = edges.rename_columns({NODE: components.U, KEEPER: components.V})
    by_both_ends = 2 * edges.count()  # each step lists an edge under both its ends
    return components.connected_components(edges, _partitions(by_both_ends * EDGE_ROW_WEIGHT, cfg))


def _empty(schema: pa.Schema) -> Dataset:
    import ray.data

    return ray.data.from_arrow(schema.empty_table())  # keeps the schema when nothing is found


def _decided_in_one_task(keyed: Dataset, cfg: DedupConfig) -> DedupOutput:
    """The whole graph in one Ray task over the keyed blocks (``operators.dedup_local``): the driver
    passes block references and gets three back (duplicates, audit, index), never the keys."""
    import ray
    import ray.data

    from operators.dedup_local import decide_blocks  # it builds on this module's rules

    outputs = ray.remote(num_returns=3)(decide_blocks).remote(cfg, *keyed.to_arrow_refs())
    return DedupOutput(*(ray.data.from_arrow_refs([table]) for table in outputs), index_in_order=True)


def _index(keyed: Dataset, duplicates: Dataset | None, cfg: DedupConfig) -> Dataset:
    """Index rows of the keyed documents, each kept unless it is among the ``duplicates``; materialized."""
    flagged = keyed.map_batches(identities, batch_format="pyarrow")
    if duplicates is not None and duplicates.count():  # Ray's join fails on a right side that is all empty
        found = duplicates.select_columns([DOC_ID, FATE])
        flagged = flagged.join(found, "left_outer", max(1, keyed.num_blocks()), on=(DOC_ID,))
    flagged = flagged.map_batches(flag_kept, batch_format="pyarrow")
    return _map(flagged, index_rows, schema=index_schema(cfg)).materialize()


def apply(ds: Dataset | None, cfg: DedupConfig, existing: Dataset | None = None) -> DedupOutput:
    """Dataset of documents (doc_id, source, record, text, fingerprint) to its duplicates, the audit table
    and the index.

    ``existing``: index rows (``index_schema``) of documents already in the corpus (a refresh).
    They join the graph with nodes that rank before every new document (``ranked``), so a new
    document never takes the kept place of an existing one, and an existing duplicate whose
    keeper left is kept again when it ranks first in its group. ``duplicates`` and ``audit`` then
    cover old and new documents alike, as a full build would, and ``index`` holds every
    document's keys and whether it was kept (the next refresh's ``existing``).

    Reads ``ds`` once. ``duplicates`` and ``index`` come back materialized (the caller reads them
    for the fates and the kept documents); ``audit`` may be lazy, computed when it is written.
    """
    return graph(keys(sign(ds, cfg) if ds is not None else None, cfg, existing), cfg)


def sign(ds: Dataset, cfg: DedupConfig) -> Dataset:
    """Documents (doc_id, source, record, text, fingerprint[, fate]) with their keys (node, content,
    buckets[, sketch]) appended, null where a row already has a fate: a map, so it runs in the same
    execution as what produced the documents. One task per input block (the reader's batches and Ray
    Data's block size bound them, so a large file is signed on every CPU)."""
    return ds.map_batches(signed, fn_kwargs={"keyer": DedupKeyer(cfg)}, batch_format="pyarrow", batch_size=cfg.batch_size)


def keys(signed_rows: Dataset | None, cfg: DedupConfig, existing: Dataset | None = None) -> Dataset:
    """Every document's keys, of the signed rows (``sign``) and of the ``existing`` ones (ranked),
    materialized: all the graph reads."""
    names = [NODE, CONTENT, BUCKETS, *([SKETCH] if cfg.minhash.enabled else [])]
    parts = []
    if signed_rows is not None:
        parts.append(signed_rows.map_batches(key_rows, fn_kwargs={"names": names}, batch_format="pyarrow"))
    if existing is not None:
        parts.append(existing.map_batches(ranked, batch_format="pyarrow"))
    if not parts:
        raise ValueError("dedup needs new documents, existing ones, or both")
    return (parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]).materialize()


def graph(keyed: Dataset, cfg: DedupConfig) -> DedupOutput:
    """The materialized ``keys`` to the duplicates and the audit table: in one task up to
    ``local_max_docs`` documents (``operators.dedup_local``), by shuffles above."""
    count = keyed.count()
    if not (count and (cfg.exact or cfg.minhash.enabled)):
        return DedupOutput(_empty(OUTPUT_SCHEMA), _empty(AUDIT_SCHEMA), _index(keyed, None, cfg))
    if count <= cfg.local_max_docs:
        return _decided_in_one_task(keyed, cfg)
    docs = keyed.select_columns([NODE, CONTENT, BUCKETS])
    sketched = sketch = None
    if cfg.minhash.enabled:
        sketched = keyed.select_columns([NODE, SKETCH])
        sketch = pa.binary(2 * cfg.minhash.num_perm)  # minhash.sketches: 16 bits per permutation
    found: list[Dataset] = []
    exact = None
    if cfg.exact:
        docs = _shuffled_keep_first(docs, CONTENT, _partitions(count * DOC_ROW_WEIGHT, cfg)).materialize()
        exact, docs = _map(docs, duplicates).materialize(), _map(docs, survivors)
    if cfg.minhash.enabled:
        roots = _near_roots(docs, sketched, sketch, cfg, count)
        found.append(_map(roots.rename_columns({ROOT: KEEPER}), with_fate, fate=NEAR_DUP))
        if exact is not None:
            joined = _partitions((exact.count() + roots.count()) * EDGE_ROW_WEIGHT, cfg)
            exact = exact.join(roots.rename_columns({NODE: KEEPER}), "left_outer", joined, on=(KEEPER,))
            exact = _map(exact, resolve_keepers)
    if exact is not None:
        found.append(_map(exact, with_fate, fate=EXACT_DUP))
    marked = (found[0].union(*found[1:]) if len(found) > 1 else found[0]).materialize()
    if not marked.count():
        return DedupOutput(_empty(OUTPUT_SCHEMA), _empty(AUDIT_SCHEMA), _index(keyed, None, cfg))
    if sketched is None:
        members = _partitions(marked.count() * EDGE_ROW_WEIGHT, cfg)
        audit = _whole(marked.repartition(members, keys=[KEEPER]), audit_rows)
    else:  # the pairs meet where their keeper's cluster is gathered: one shuffle fewer than pairing up by member
        pairs = marked.rename_columns({NODE: _U, KEEPER: _V})
        lookups = _lookup_partitions(marked.count(), sketched.count(), cfg)
        audit = _whole(_answered(pairs, sketched, sketch, lookups, by=_V), scored_audit_rows)
    found = _map(marked, duplicate_rows).materialize()
    return DedupOutput(found, audit, _index(keyed, found, cfg))
