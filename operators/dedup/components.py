"""Connected components over Ray Data: the large-star / small-star iteration, no global union-find;
and, for a graph that fits in one task, the same labelling in one pass (``smallest_in_component``).

Kiveris et al. 2014, "Connected Components in MapReduce and Beyond". Nodes are strings, ordered
as Arrow orders them (UTF-8 bytes, the same as code points), and each component is labelled by
its smallest node. Callers encode their ids so that the node to keep sorts first (the dedup
stage's order keys do), so the label is the keeper.

The graph is a table of edges ``(hi, lo)`` with ``hi > lo``: each undirected edge once, pointing
down. A node's parent is its smallest lower neighbour. One round rewrites every edge:

- large-star: edge ``(v, u)`` becomes ``(v, parent(u))``, or stays when ``u`` has no parent;
- small-star: node ``v`` keeps one edge, to its parent, and each other lower neighbour ``u``
  gets the edge ``(u, parent(v))``.

Both keep every component connected, and neither increases the edge count. When a round
changes nothing, every non-smallest node has exactly one edge, to its component's smallest
node: that is the answer, with no final pass. Rounds grow with the log of the component size.

Each step is one hash shuffle: ``repartition(keys=...)`` puts every edge the step needs for a
node into one block (Ray emits a keyed partition as a single block, as ``map_groups`` relies
on), and an Arrow group-by and hash lookup run over the whole block at once: no Python loop per
node or per group. Memory per task: one partition, about ``2 * edges / num_partitions`` rows
of two short strings and a flag, plus the edges of the most connected node, which share its
key. The driver holds one count per round.
"""

from __future__ import annotations

import itertools
import logging
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as label_components

if TYPE_CHECKING:
    from ray.data import Dataset

U, V = "u", "v"  # input: undirected edges, in any direction
NODE, ROOT = "node", "root"  # output: every node that is not its component's smallest, and that node

_HI, _LO, _CHANGED = "hi", "lo", "changed"
_KEY, _OTHER, _DOWN = "key", "other", "down"  # large-star input: each edge listed under both its ends

log = logging.getLogger(__name__)


def orient(batch: pa.Table) -> pa.Table:
    """(u, v) edges to (hi, lo) with hi > lo; self-loops dropped."""
    u, v = batch[U], batch[V]
    edges = pa.table({_HI: pc.max_element_wise(u, v), _LO: pc.min_element_wise(u, v)})
    return edges.filter(pc.not_equal(edges[_HI], edges[_LO]))


def _lookup(keys: pa.ChunkedArray, grouped: pa.Table, key: str, value: str) -> pa.ChunkedArray:
    """``value`` of the ``grouped`` row for each key; null where a key has no row."""
    return grouped[value].take(pc.index_in(keys, value_set=grouped[key].combine_chunks()))


def _distinct(hi: pa.Array, lo: pa.Array, changed: pa.Array) -> pa.Table:
    edges = pa.table({_HI: hi, _LO: lo, _CHANGED: changed})
    grouped = edges.group_by([_HI, _LO], use_threads=False).aggregate([(_CHANGED, "any")])
    return pa.table({_HI: grouped[_HI], _LO: grouped[_LO], _CHANGED: grouped[f"{_CHANGED}_any"]})


def by_both_ends(batch: pa.Table) -> pa.Table:
    """Each (hi, lo) edge twice: under hi, pointing down, and under lo, pointing up."""
    rows = batch.num_rows
    down = pa.table({_KEY: batch[_HI], _OTHER: batch[_LO], _DOWN: pa.repeat(True, rows)})
    up = pa.table({_KEY: batch[_LO], _OTHER: batch[_HI], _DOWN: pa.repeat(False, rows)})
    return pa.concat_tables([down, up])


def large_star(partition: pa.Table) -> pa.Table:
    """All edges of some nodes (from ``by_both_ends``) to their large-star rewrite, flagged when changed."""
    parents = partition.filter(partition[_DOWN]).group_by(_KEY, use_threads=False).aggregate([(_OTHER, "min")])
    up = partition.filter(pc.invert(partition[_DOWN]))
    parent = _lookup(up[_KEY], parents, _KEY, f"{_OTHER}_min")
    return _distinct(up[_OTHER], pc.coalesce(parent, up[_KEY]), pc.is_valid(parent))


def small_star(partition: pa.Table) -> pa.Table:
    """All (hi, lo, changed) edges of some hi nodes to their small-star rewrite; ``changed`` accumulates."""
    parents = partition.group_by(_HI, use_threads=False).aggregate([(_LO, "min"), (_CHANGED, "any")])
    kept = pa.table({_HI: parents[_HI], _LO: parents[f"{_LO}_min"], _CHANGED: parents[f"{_CHANGED}_any"]})
    parent = _lookup(partition[_HI], parents, _HI, f"{_LO}_min")
    other = pc.not_equal(partition[_LO], parent)
    moved, to = partition[_LO].filter(other), parent.filter(other)
    return pa.concat_tables([kept, _distinct(moved, to, pa.repeat(True, len(moved)))])


def count_changed(block: pa.Table) -> int:
    return int(pc.sum(block[_CHANGED]).as_py() or 0)


def _changed(graph: Dataset) -> int:
    """Changed edges of a materialized graph, counted where its blocks are: one integer per block comes back."""
    import ray

    count = ray.remote(count_changed)
    return sum(ray.get([count.remote(block) for block in graph.to_arrow_refs()]))


def connected_components(edges: Dataset, num_partitions: int) -> Dataset:
    """Dataset of (u, v) string edges to a Dataset of (node, root) for every non-smallest node.

    Nodes that are the smallest of their component, isolated ones included, do not appear.
    """
    graph = edges.map_batches(orient, batch_format="pyarrow")
    for round_ in itertools.count(1):
        graph = graph.map_batches(by_both_ends, batch_format="pyarrow").repartition(num_partitions, keys=[_KEY])
        graph = graph.map_batches(large_star, batch_format="pyarrow", batch_size=None)
        graph = graph.repartition(num_partitions, keys=[_HI])
        graph = graph.map_batches(small_star, batch_format="pyarrow", batch_size=None).materialize()
        changed = _changed(graph)
        log.info("connected components, round %d: %d edges changed", round_, changed)
        if not changed:
            break
    if not graph.count():  # no blocks, hence no schema, which joins downstream need
        import ray.data

        return ray.data.from_arrow(pa.table({NODE: pa.array([], pa.string()), ROOT: pa.array([], pa.string())}))
    return graph.rename_columns({_HI: NODE, _LO: ROOT}).select_columns([NODE, ROOT])


def smallest_in_component(u: np.ndarray, v: np.ndarray, nodes: int) -> np.ndarray:
    """Nodes ``0 .. nodes - 1`` and undirected edges ``(u, v)`` to each node's component's smallest node.

    The answer ``connected_components`` gives, for nodes numbered in their string order, in one
    pass over the edges (scipy's breadth-first labelling): no round trip per star step.
    """
    graph = coo_matrix((np.ones(len(u), dtype=bool), (u, v)), shape=(nodes, nodes))
    labels = label_components(graph, directed=False)[1]
    first = np.unique(labels, return_index=True)[1]  # nodes ascend, so a label's first node is its smallest
    return first[labels]
