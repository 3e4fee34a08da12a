"""The dedup graph in one task, for key tables that fit in memory. Ray-free.

``operators.dedup`` runs the graph as shuffles, so that no task holds more than a partition. When
the documents that reach dedup are few enough (``dedup.local_max_docs``), shuffling their keys
costs far more than the work: about a dozen Ray Data executions, each with its shuffle's start-up,
for a few hundred kilobytes. Then ``dedup.graph`` sends every keyed block to one task that runs
``decide``: the same rules, on the whole key table at once, as a query engine picks a broadcast
join over a shuffle when one side fits.

Same rules, same decisions, bit for bit (the tests force corpora through both executors):

- a keyed row's id is its position in order-key order, so "the smallest id" is "the smallest
  order key", the keeper rule of both paths (a record with a fate has an id too, but no keys: it
  is its own keeper, and nobody's candidate);
- exact groups by ``dedup.keep_first``; candidate pairs by ``dedup.pair_positions``, on band rows
  in (source, record) order within a bucket, as ``dedup.bucket_pairs`` orders them;
- the check by ``minhash.estimated_jaccard`` against ``verify_cut``, as ``dedup.at_least`` cuts;
- components by ``components.smallest_in_component`` (one array pass, no star rounds: the
  labelling of a component by its smallest node does not depend on how it is found);
- duplicates, audit rows, index rows and fates rows by ``dedup.duplicate_rows``, ``dedup.audit_rows``,
  ``dedup.index_rows`` and ``dedup.fate_rows``, the decisions attached by doc_id (``with_decisions``)
  where the distributed executor joins them.

Memory: the key table is read where its blocks lie (Ray's object store): the buckets and sketches
chunk by chunk, never combined into a copy, the records with a fate among them rather than filtered
out (a filter copies even the rows it keeps). Beside it: the nodes in order and scratch (one band's
rows and pairs at a time, ``CHECK_CHUNK`` pairs scored at a time). The index and fates rows are
yielded ``OUTPUT_ROWS`` keyed rows at a time, and Ray stores each block as it comes, so they are
never all in the task at once. Measured figures in the README's "Deduplication".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.columns import EXACT_DUP, FATE, JACCARD, NEAR_DUP
from operators.dedup import components
from operators.dedup.minhash import estimated_jaccard, sketch_values
from operators.dedup.rules import (
    AUDIT_SCHEMA,
    BUCKETS,
    CONTENT,
    KEEPER,
    NODE,
    OUTPUT_SCHEMA,
    SKETCH,
    DedupConfig,
    audit_rows,
    documents_of,
    duplicate_rows,
    fate_rows,
    flag_kept,
    index_rows,
    index_schema,
    keep_first,
    pair_positions,
    plain_order,
    previously_kept,
    with_decisions,
)

CHECK_CHUNK = 8_192  # pairs scored at once: two (pairs, num_perm) uint16 arrays, 4 MiB at 128 permutations
OUTPUT_ROWS = 16_384  # keyed rows whose index and fates rows are yielded together


def decide_blocks(cfg: DedupConfig, *blocks: pa.Table) -> Iterator[pa.Table]:
    """``decide`` over the keyed blocks of a dataset, as a Ray generator task gets them (an empty block may
    have no columns at all: it is left out; the caller sends at least one row)."""
    yield from decide(pa.concat_tables([block for block in blocks if block.num_rows]), cfg)


def decide(keyed: pa.Table, cfg: DedupConfig) -> Iterator[pa.Table]:
    """Keyed rows (node, content, buckets[, sketch], fate, detail) to the duplicates as fates rows, the audit
    rows and the duplicates the previous version kept; then, ``OUTPUT_ROWS`` keyed rows at a time, in their
    order, their index rows and their fates rows, alternately. Yielded one by one: a Ray generator task
    stores each as it comes, so the task never holds every index and fates row at once."""
    none = OUTPUT_SCHEMA.empty_table(), AUDIT_SCHEMA.empty_table(), OUTPUT_SCHEMA.empty_table()
    duplicates, audit, retracted = _duplicates(keyed, cfg) if keyed[FATE].null_count else none
    for table in (duplicates, audit, retracted):  # not ``yield from``: Ray sends values to the generator
        yield table
    schema = index_schema(cfg)
    for start in range(0, keyed.num_rows, OUTPUT_ROWS):
        rows = keyed.slice(start, OUTPUT_ROWS)
        yield index_rows(flag_kept(with_decisions(documents_of(rows), duplicates)), schema)
        yield fate_rows(with_decisions(rows, duplicates))


def _duplicates(keyed: pa.Table, cfg: DedupConfig) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Keyed rows to the documents' duplicates (fates rows), audit rows and the duplicates the previous
    version kept. A record with a fate has no keys: it is its own keeper and nobody's candidate, so the
    graph reads it in place with the documents rather than filtering it out (a copy)."""
    row = pc.sort_indices(keyed[NODE]).to_numpy()  # a row's id is its rank: row[id] is where it is
    nodes = keyed[NODE].take(row).combine_chunks()
    ids = np.arange(len(nodes))
    exact_keeper = ids
    if cfg.exact:
        exact_keeper = _ids(keep_first(keyed.select([NODE, CONTENT]), CONTENT)[KEEPER].take(row), nodes)
    survivor = exact_keeper == ids
    sketches = None  # rows of keyed, in place; a record with a fate has none (null), and is never scored
    if cfg.minhash.enabled:
        sketches = _chunk_views(keyed[SKETCH], lambda chunk: sketch_values(chunk, nulls=True))
    root = ids
    if cfg.minhash.enabled:
        u, v = _candidates(keyed[BUCKETS], row, nodes, np.flatnonzero(survivor), cfg)
        if cfg.minhash.verify:
            checked = _jaccard(sketches, row[u], row[v]) >= cfg.minhash.verify_cut
            u, v = u[checked], v[checked]
        root = components.smallest_in_component(u, v, len(nodes))
    duplicate = np.flatnonzero(~survivor | (root != ids))
    keeper = root[exact_keeper[duplicate]]  # an exact copy's keeper may itself be a near duplicate
    fate = np.where(survivor[duplicate], NEAR_DUP, EXACT_DUP)
    marked = pa.table({NODE: nodes.take(duplicate), KEEPER: nodes.take(keeper), FATE: pa.array(fate, pa.string())})
    if not marked.num_rows:
        return OUTPUT_SCHEMA.empty_table(), AUDIT_SCHEMA.empty_table(), OUTPUT_SCHEMA.empty_table()
    if sketches is not None:
        marked = marked.append_column(JACCARD, pa.array(_jaccard(sketches, row[duplicate], row[keeper]), pa.float64()))
    return duplicate_rows(marked), audit_rows(marked), duplicate_rows(previously_kept(marked))


def _ids(keys: pa.ChunkedArray | pa.Array, nodes: pa.Array) -> np.ndarray:
    """Positions of order keys among the sorted ``nodes``."""
    return pc.index_in(keys, value_set=nodes).to_numpy(zero_copy_only=False)


def _candidates(
    buckets: pa.ChunkedArray, row: np.ndarray, nodes: pa.Array, survivors: np.ndarray, cfg: DedupConfig
) -> tuple[np.ndarray, np.ndarray]:
    """The distinct candidate pairs (later, earlier) of the survivors' buckets, as ids.

    One band at a time: a band's buckets never meet another band's (the band is in the key), and a
    pair that several bands propose is kept once, so the scratch is one band's, not all of them.
    """
    docs = survivors[plain_order(nodes.take(survivors)).to_numpy()]  # in (source, record) order
    bands = cfg.minhash.band_count
    lengths = pc.list_value_length(buckets).fill_null(0).to_numpy(zero_copy_only=False)
    if np.any((lengths != 0) & (lengths != bands)):
        raise ValueError(f"a document has buckets, but not one in each of the {bands} bands")
    docs = docs[lengths[row[docs]] > 0]
    per_band = _chunk_views(buckets, lambda chunk: pc.list_flatten(chunk).to_numpy().reshape(-1, bands))
    at = (np.cumsum(lengths > 0) - 1)[row[docs]]  # where each of docs is among the rows that have buckets
    all_pairs_max = cfg.minhash.all_pairs_max if cfg.minhash.verify else 1  # without the check, stars link the same
    documents, pairs = len(nodes), []
    for column in range(bands):
        band = np.concatenate([view[:, column] for view in per_band.views])[at]
        by_bucket = np.argsort(band, kind="stable")  # owners stay in (source, record) order within a bucket
        later, earlier = pair_positions(band[by_bucket], all_pairs_max)
        owner = docs[by_bucket]
        pairs.append(np.unique(owner[later] * documents + owner[earlier]))
    pairs = np.unique(np.concatenate(pairs)) if pairs else np.empty(0, np.int64)
    return pairs // documents, pairs % documents


class _ChunkViews(NamedTuple):
    """A column's chunks as numpy arrays of rows, read where they lie (combining them would copy them)."""

    views: list[np.ndarray]
    starts: np.ndarray  # the first row of each view, and the total after the last

    def rows(self, positions: np.ndarray) -> np.ndarray:
        """The rows at ``positions`` (counted across the views), as one array."""
        positions = positions.astype(np.int64, copy=False)
        chunk = np.searchsorted(self.starts, positions, side="right") - 1
        taken = np.empty((len(positions), *self.views[0].shape[1:]), self.views[0].dtype)
        for index in np.unique(chunk):
            at = chunk == index
            taken[at] = self.views[index][positions[at] - self.starts[index]]
        return taken


def _chunk_views(column: pa.ChunkedArray, view: Callable[[pa.Array], np.ndarray]) -> _ChunkViews:
    """``view`` of each non-empty chunk of ``column``."""
    views = [view(chunk) for chunk in column.chunks if len(chunk)]
    return _ChunkViews(views, np.cumsum([0, *(len(rows) for rows in views)]))


def _jaccard(sketches: _ChunkViews, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Estimated Jaccard of each pair of rows of ``sketches``, ``CHECK_CHUNK`` pairs at a time."""
    scores = np.empty(len(u), dtype=np.float64)
    for start in range(0, len(u), CHECK_CHUNK):
        end = start + CHECK_CHUNK
        scores[start:end] = estimated_jaccard(sketches.rows(u[start:end]), sketches.rows(v[start:end]))
    return scores
