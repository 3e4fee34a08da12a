"""Connected components: the large-star / small-star steps, and the one-pass labelling, against a
reference union-find.

The pure tests run the same per-partition steps that Ray runs, on Arrow tables split by a hash
of the shuffle key, so partitioning is exercised without Ray. Two tests run the Ray version.
"""

from __future__ import annotations

import random
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import ray.data

from operators.dedup.components import (
    NODE,
    ROOT,
    U,
    V,
    by_both_ends,
    connected_components,
    large_star,
    orient,
    small_star,
    smallest_in_component,
)

EDGE_SCHEMA = pa.schema([(U, pa.string()), (V, pa.string())])


def union_find(edges: list[tuple[str, str]]) -> dict[str, str]:
    """node -> smallest node of its component, for every node that is not that smallest node."""
    parent = {node: node for edge in edges for node in edge}

    def find(node: str) -> str:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for a, b in edges:
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    return {node: find(node) for node in parent if find(node) != node}


def partitions(table: pa.Table, key: str, count: int) -> list[pa.Table]:
    """What a keyed hash shuffle does: every row with the same key in the same partition."""
    ids = pa.array([zlib.crc32(value.encode()) % count for value in table[key].to_pylist()], pa.int64())
    return [table.filter(pc.equal(ids, i)) for i in range(count)]


def components_in_memory(edges: list[tuple[str, str]], count: int) -> tuple[dict[str, str], int]:
    """The Ray loop, on Arrow tables: (node -> root, rounds)."""
    graph = orient(pa.table({U: [a for a, _ in edges], V: [b for _, b in edges]}, schema=EDGE_SCHEMA))
    for rounds in range(1, 100):
        graph = pa.concat_tables([large_star(p) for p in partitions(by_both_ends(graph), "key", count)])
        graph = pa.concat_tables([small_star(p) for p in partitions(graph, "hi", count)])
        if not pc.any(graph["changed"]).as_py():
            assert len(set(graph["hi"].to_pylist())) == graph.num_rows  # one edge per non-root node
            return dict(zip(graph["hi"].to_pylist(), graph["lo"].to_pylist())), rounds
    raise AssertionError("did not converge")


CHAIN = [(f"c{i:03d}", f"c{i + 1:03d}") for i in range(40)]
STAR = [("s", f"s{i}") for i in range(10)] + [(f"t{i}", "t") for i in range(10)]
SHAPES = {
    "chain": CHAIN,
    "reversed chain": [(b, a) for a, b in reversed(CHAIN)],
    "zigzag": [(f"z{i:02d}", f"z{(i * 7) % 30:02d}") for i in range(30)],
    "stars": STAR,
    "several components": [("a", "b"), ("x", "y"), ("y", "z"), ("m", "n"), ("n", "m"), ("q", "a")],
    "self-loops and duplicates": [("solo", "solo"), ("a", "b"), ("b", "a"), ("a", "b"), ("b", "c")],
    "cycle": [(f"r{i}", f"r{(i + 1) % 12}") for i in range(12)],
}


@pytest.mark.parametrize("count", [1, 3])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_shapes_match_union_find(shape, count):
    assert components_in_memory(SHAPES[shape], count)[0] == union_find(SHAPES[shape])


def test_random_graphs_match_union_find():
    rng = random.Random(0)
    for _ in range(150):
        nodes = [f"n{rng.randrange(10**6):07d}" for _ in range(rng.randint(1, 50))]
        edges = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(rng.randint(1, 70))]
        assert components_in_memory(edges, rng.choice([1, 2, 5]))[0] == union_find(edges)


def components_in_one_pass(edges: list[tuple[str, str]]) -> dict[str, str]:
    """``smallest_in_component`` over the nodes numbered in their string order, as the dedup stage numbers them."""
    nodes = sorted({node for edge in edges for node in edge})
    ids = {node: i for i, node in enumerate(nodes)}
    u, v = (np.array([ids[edge[end]] for edge in edges], dtype=np.int64) for end in (0, 1))
    root = smallest_in_component(u, v, len(nodes))
    return {node: nodes[root[i]] for i, node in enumerate(nodes) if root[i] != i}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_one_pass_matches_union_find(shape):
    assert components_in_one_pass(SHAPES[shape]) == union_find(SHAPES[shape])


def test_one_pass_matches_union_find_on_random_graphs():
    rng = random.Random(2)
    for _ in range(150):
        nodes = [f"n{rng.randrange(10**6):07d}" for _ in range(rng.randint(1, 50))]
        edges = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(rng.randint(1, 70))]
        assert components_in_one_pass(edges) == union_find(edges)


def test_one_pass_without_edges_labels_every_node_its_own():
    assert smallest_in_component(np.empty(0, np.int64), np.empty(0, np.int64), 3).tolist() == [0, 1, 2]


def test_a_long_chain_needs_few_rounds():
    chain = [(f"c{i:04d}", f"c{i + 1:04d}") for i in range(500)]
    random.Random(1).shuffle(chain)
    labels, rounds = components_in_memory(chain, 4)
    assert set(labels.values()) == {"c0000"} and len(labels) == 500
    assert rounds <= 12


def test_ray_matches_union_find(ray_local):
    shapes = ("stars", "several components", "self-loops and duplicates")
    edges = CHAIN[:8] + [edge for shape in shapes for edge in SHAPES[shape]]
    ds = ray.data.from_arrow(pa.table({U: [a for a, _ in edges], V: [b for _, b in edges]}, schema=EDGE_SCHEMA))
    rows = connected_components(ds, num_partitions=2).take_all()
    labels = {row[NODE]: row[ROOT] for row in rows}
    assert len(rows) == len(labels)  # each node once
    assert labels == union_find(edges)
    assert "solo" not in labels and "a" not in labels  # singletons and roots never appear


def test_ray_without_edges_keeps_the_schema(ray_local):
    ds = ray.data.from_arrow(pa.table({U: ["a"], V: ["a"]}, schema=EDGE_SCHEMA))
    roots = connected_components(ds, num_partitions=1)
    assert roots.count() == 0 and roots.schema().names == [NODE, ROOT]
