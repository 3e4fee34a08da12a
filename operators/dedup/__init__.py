"""Dedup: exact duplicates by content hash, then near-duplicates by MinHash, LSH, a check, and connected components.

``apply`` returns five datasets (``DedupOutput``):

- ``fates``: one fates row per keyed row (``fate_rows``): the documents kept or duplicated, and the
  records that came with a fate (filtered, rejected), in the order they were signed when the graph
  ran in one task (``in_order``);
- ``duplicates``: one fates row per duplicate: ``source``, ``record``, ``doc_id``, ``fate``
  (``exact_dup`` or ``near_dup``) and ``detail``, the doc_id of the document that was kept;
- ``retracted``: the duplicates that a refresh's existing documents held as kept (``ranked``): a
  new document joined their group with another that ranks first;
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
2. Exact: one hash shuffle by content hash of (node, content, buckets); in each partition a
   sort by (hash, key) finds the smallest key per hash (``keep_first``). A hash's copies share a
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
   (``operators.dedup.components``): the keeper.
6. Exact duplicates whose keeper is itself a near duplicate point to that component's keeper,
   so ``detail`` always names a kept document.
7. Audit: every duplicate's Jaccard with its keeper, by the same sketch lookup, whose second
   shuffle is by keeper: there each cluster's pairs are scored, counted and given their kept row.
8. Index and fates: every document's identity and keys, and whether it was kept (a join of the
   keys with the duplicates), for the next refresh; and a fates row for every keyed row, the
   records filtered or rejected before dedup included (they carry their fate and a node, but no
   keys, and stay out of the graph), so that a build lays its fates out from them alone.

Steps 2-8 are the distributed executor. Up to ``local_max_docs`` documents, the same rules run in
one task on the whole key table instead (``operators.dedup.local``), with no shuffle.

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
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from operators.batching import in_slices
from operators.columns import DETAIL, DOC_ID, EXACT_DUP, FATE, JACCARD, NEAR_DUP
from operators.dedup import components, local
from operators.dedup.rules import (
    AUDIT_SCHEMA,
    BUCKET,
    BUCKETS,
    CONTENT,
    FOUND_DETAIL,
    FOUND_FATE,
    KEEPER,
    LOOKUP_KEY,
    NODE,
    OUTPUT_SCHEMA,
    PAIR_U,
    PAIR_V,
    ROOT,
    SKETCH,
    DedupConfig,
    DedupKeyer,
    at_least,
    attach_sketches,
    audit_rows,
    band_rows,
    bucket_pairs,
    documents_of,
    duplicate_rows,
    duplicates,
    fate_rows,
    flag_kept,
    identities,
    index_rows,
    index_schema,
    keep_first,
    key_rows,
    lookup_requests,
    lookup_table,
    pair_jaccard,
    previously_kept,
    ranked,
    resolve_keepers,
    signed,
    survivors,
    with_decisions,
    with_fate,
)

if TYPE_CHECKING:
    from ray.data import Dataset

MIN_PARTITION_ROWS = 20_000  # the CPU floor on partitions applies from this many rows per partition
# What a row of each shuffle weighs in band rows (an int64 bucket and one ~55-byte order key), so that
# ``partition_rows`` bounds every partition's bytes alike: a document in the exact shuffle (order key,
# content hash, 16 buckets), a sketch lookup (two or three order keys and a 256-byte sketch), an edge.
DOC_ROW_WEIGHT, LOOKUP_ROW_WEIGHT, EDGE_ROW_WEIGHT = 4, 6, 2


@dataclass(frozen=True)
class DedupOutput:
    duplicates: Dataset  # fates rows (OUTPUT_SCHEMA)
    audit: Dataset  # AUDIT_SCHEMA rows
    index: Dataset  # index rows (index_schema): every document's identity, whether it was kept, its keys
    fates: Dataset  # fates rows of every keyed row: documents kept or duplicates, records with the fate they came with
    retracted: Dataset  # fates rows of the duplicates that the previous version kept (a refresh's existing documents)
    # whether ``index`` and ``fates`` list their rows in the order they were signed (the one-task path keeps
    # it; the distributed join does not, and sorting there would cost the shuffle only some callers need)
    in_order: bool = False


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
    answered = _whole(requests.union(_map(sketched, lookup_table)).repartition(partitions, keys=[LOOKUP_KEY]), attach_sketches)
    return answered.repartition(partitions, keys=[by])


def scored_audit_rows(partition: pa.Table) -> pa.Table:
    """Both answered ends of every (member, keeper) pair of some keepers to their audit rows."""
    scored = pair_jaccard(partition)
    return audit_rows(pa.table({NODE: scored[PAIR_U], KEEPER: scored[PAIR_V], FATE: scored[FATE], JACCARD: scored[JACCARD]}))


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
        pairs = edges.rename_columns({NODE: PAIR_U, KEEPER: PAIR_V})
        lookups = _lookup_partitions(candidates, sketched.count(), cfg)
        checked = _whole(_answered(pairs, sketched, sketch, lookups, by=PAIR_U), pair_jaccard)
        edges = _map(checked, at_least, cut=cfg.minhash.verify_cut).materialize()
    edges = edges.rename_columns({NODE: components.U, KEEPER: components.V})
    by_both_ends = 2 * edges.count()  # each step lists an edge under both its ends
    return components.connected_components(edges, _partitions(by_both_ends * EDGE_ROW_WEIGHT, cfg))


def _empty(schema: pa.Schema) -> Dataset:
    import ray.data

    return ray.data.from_arrow(schema.empty_table())  # keeps the schema when nothing is found


def _decided_in_one_task(keyed: Dataset, cfg: DedupConfig) -> DedupOutput:
    """The whole graph in one Ray task over the keyed blocks (``operators.dedup.local``): the driver
    passes block references and gets references to tables back (``DedupOutput``'s), never the keys. A
    generator task, so that the index and fates rows are stored block by block as the task makes them."""
    import ray
    import ray.data

    refs = list(ray.remote(num_returns="streaming")(local.decide_blocks).remote(cfg, *keyed.to_arrow_refs()))
    duplicates, audit, retracted, index, fates = refs[:1], refs[1:2], refs[2:3], refs[3::2], refs[4::2]
    return DedupOutput(*(ray.data.from_arrow_refs(part) for part in (duplicates, audit, index, fates, retracted)),
                       in_order=True)


def _decided(keyed: Dataset, duplicates: Dataset, audit: Dataset, retracted: Dataset, cfg: DedupConfig) -> DedupOutput:
    """The output, with the index and fates rows of the keyed rows, each document kept unless it is among
    the ``duplicates`` (a join by doc_id); the index materialized."""
    decided = keyed.map_batches(identities, batch_format="pyarrow")
    if duplicates.count():  # Ray's join fails on a right side that is all empty
        found = duplicates.select_columns([DOC_ID, FATE, DETAIL]).rename_columns({FATE: FOUND_FATE, DETAIL: FOUND_DETAIL})
        decided = decided.join(found, "left_outer", max(1, keyed.num_blocks()), on=(DOC_ID,))
    else:
        decided = _map(decided, with_decisions, duplicates=OUTPUT_SCHEMA.empty_table())
    decided = decided.materialize()
    documents = _map(_map(decided, documents_of), flag_kept)
    index = _map(documents, index_rows, schema=index_schema(cfg)).materialize()
    return DedupOutput(duplicates, audit, index, _map(decided, fate_rows), retracted)


def apply(ds: Dataset | None, cfg: DedupConfig, existing: Dataset | None = None) -> DedupOutput:
    """Dataset of documents (doc_id, source, record, text, fingerprint) to its duplicates, the audit table
    and the index.

    ``existing``: index rows (``index_schema``) of documents already in the corpus (a refresh).
    They join the graph with nodes that rank before every new document (``ranked``), so a new
    document never takes the kept place of an existing one, and an existing duplicate whose
    keeper left is kept again when it ranks first in its group. ``duplicates`` and ``audit`` then
    cover old and new documents alike, as a full build would, and ``index`` holds every
    document's keys and whether it was kept (the next refresh's ``existing``).

    Reads ``ds`` once. ``duplicates`` and ``index`` come back materialized (the caller counts them
    and reads the kept documents); ``audit`` and ``fates`` may be lazy, computed when they are read.
    """
    return graph(keys(sign(ds, cfg) if ds is not None else None, cfg, existing), cfg)


def sign(ds: Dataset, cfg: DedupConfig) -> Dataset:
    """Documents (doc_id, source, record, text, fingerprint[, fate]) with their keys (node, content,
    buckets[, sketch]) appended, null where a row already has a fate: a map, so it runs in the same
    execution (and task) as what produced the documents. Whole blocks in, ``batch_size`` documents at a
    time inside (``operators.batching``)."""
    return ds.map_batches(_signed_block, fn_kwargs={"keyer": DedupKeyer(cfg), "rows": cfg.batch_size},
                          batch_format="pyarrow", batch_size=None)


def _signed_block(batch: pa.Table, keyer: DedupKeyer, rows: int) -> pa.Table:
    return in_slices(batch, signed, rows, keyer=keyer)


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
    ``local_max_docs`` documents (``operators.dedup.local``), by shuffles above."""
    count = keyed.count()  # the records with a fate are few: counted as documents, in the bound too
    if not (count and (cfg.exact or cfg.minhash.enabled)):
        return _decided(keyed, _empty(OUTPUT_SCHEMA), _empty(AUDIT_SCHEMA), _empty(OUTPUT_SCHEMA), cfg)
    if count <= cfg.local_max_docs:
        return _decided_in_one_task(keyed, cfg)
    documents = _map(keyed, documents_of)
    docs = documents.select_columns([NODE, CONTENT, BUCKETS])
    sketched = sketch = None
    if cfg.minhash.enabled:
        sketched = documents.select_columns([NODE, SKETCH])
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
        return _decided(keyed, _empty(OUTPUT_SCHEMA), _empty(AUDIT_SCHEMA), _empty(OUTPUT_SCHEMA), cfg)
    if sketched is None:
        members = _partitions(marked.count() * EDGE_ROW_WEIGHT, cfg)
        audit = _whole(marked.repartition(members, keys=[KEEPER]), audit_rows)
    else:  # the pairs meet where their keeper's cluster is gathered: one shuffle fewer than pairing up by member
        pairs = marked.rename_columns({NODE: PAIR_U, KEEPER: PAIR_V})
        lookups = _lookup_partitions(marked.count(), sketched.count(), cfg)
        audit = _whole(_answered(pairs, sketched, sketch, lookups, by=PAIR_V), scored_audit_rows)
    retracted = _map(_map(marked, previously_kept), duplicate_rows)
    return _decided(keyed, _map(marked, duplicate_rows).materialize(), audit, retracted, cfg)
