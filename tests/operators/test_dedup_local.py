"""The dedup graph in one task against the distributed shuffles: the same decisions, bit for bit.

Every corpus goes through ``dedup.apply`` twice, once under ``dedup.local_max_docs`` and once
with it at 0, and the duplicates, audit rows, index rows and fates rows must be equal row for row (order
aside: the writers sort). Settings that change which rules apply (the check off, a bucket larger than
``all_pairs_max``, exact off, MinHash off) and a refresh's index rows are each forced through both.
"""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pytest
import ray.data

from operators import dedup
from operators.columns import DETAIL, DOC_ID, EXACT_DUP, FATE, FILTERED, KEPT, NEAR_DUP
from operators.dedup.minhash import MinHashConfig
from operators.dedup import local
from operators.dedup.rules import (
    BUCKETS,
    CONTENT,
    INDEX_KEPT,
    NODE,
    SKETCH,
    DedupConfig,
    DedupKeyer,
    index_rows,
    index_schema,
    key_rows,
    signed,
)
from tests.operators.test_dedup import CORPUS, LIBRARY, SCIENCE, TOWN, by_doc_id, documents, edit

# five copies of one text, each two characters apart: one bucket of six in most bands
COPIES = [("d", i, edit(SCIENCE, [10 + 7 * i, 90 + 11 * i], "某")) for i in range(5)]
SETTINGS = {
    "defaults": DedupConfig(),
    "no check": DedupConfig(minhash=MinHashConfig(verify=False)),
    "star buckets": DedupConfig(minhash=MinHashConfig(all_pairs_max=2)),
    "near only": DedupConfig(exact=False),
    "exact only": DedupConfig(minhash=MinHashConfig(enabled=False)),
}


def both_paths(ds_rows: list[dict], cfg: DedupConfig, existing: pa.Table | None = None) -> list[tuple[list, list]]:
    """(duplicates, audit, index, fates, retracted) rows of each executor, sorted."""
    results = []
    for local_max_docs in (cfg.local_max_docs, 0):
        chosen = dataclasses.replace(cfg, local_max_docs=local_max_docs)
        new = ray.data.from_items(ds_rows) if ds_rows else None
        old = ray.data.from_arrow(existing) if existing is not None else None
        output = dedup.apply(new, chosen, old)
        parts = (output.duplicates, output.audit, output.index, output.fates, output.retracted)
        rows = (sorted((tuple(sorted(row.items())) for row in part.take_all()), key=repr) for part in parts)
        results.append(tuple(rows))
    return results


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_both_executors_decide_alike(ray_local, setting):
    local, distributed = both_paths(documents(CORPUS + COPIES), SETTINGS[setting])
    assert local == distributed
    assert local[0]  # something was found, so the comparison compared decisions
    kept = {dict(row)[DOC_ID] for row in local[2] if dict(row)[INDEX_KEPT]}
    assert kept == {dict(row)[DOC_ID] for row in local[2]} - {dict(row)[DOC_ID] for row in local[0]}


def test_a_bucket_over_all_pairs_max_is_a_star_in_both(ray_local):
    cfg = SETTINGS["star buckets"]
    (found, *_), _ = both_paths(documents(COPIES), cfg)
    kept = {dict(row)["detail"] for row in found}
    assert kept == {"d-0"} and len(found) == 4


def index_table(rows: list[tuple[str, int, str]], kept: set[str], cfg: DedupConfig) -> pa.Table:
    """Index rows, as a previous version's ``index/`` holds them, with the given documents kept."""
    batch = pa.Table.from_pylist(documents(rows))
    keyed = DedupKeyer(cfg)(batch)
    flags = pa.array([doc_id in kept for doc_id in batch[DOC_ID].to_pylist()])
    return index_rows(keyed.append_column(INDEX_KEPT, flags), index_schema(cfg))


def test_a_refresh_decides_alike_and_existing_keepers_stay(ray_local):
    """An indexed, kept copy ranks before every new document, even one with a smaller (source, record)."""
    cfg = DedupConfig()
    old = [("m", 0, TOWN), ("m", 1, TOWN), COPIES[3]]  # m-1 was an exact duplicate of m-0
    existing = index_table(old, kept={"m-0", "d-3"}, cfg=cfg)
    new = documents([("a", 0, TOWN), *COPIES[:2]])
    local, distributed = both_paths(new, cfg, existing)
    assert local == distributed
    found = {dict(row)[DOC_ID]: (dict(row)[FATE], dict(row)["detail"]) for row in local[0]}
    assert found == {"a-0": (EXACT_DUP, "m-0"), "m-1": (EXACT_DUP, "m-0"),
                     "d-0": (NEAR_DUP, "d-3"), "d-1": (NEAR_DUP, "d-3")}


def test_a_new_document_that_joins_two_kept_groups_retracts_the_later_keeper_in_both(ray_local):
    """Two kept documents, near a new one but not near each other: the new one links them, the first
    stays kept and the other is retracted (a refresh that only adds files cannot carry its docs then)."""
    cfg = DedupConfig()
    bridge = (TOWN + LIBRARY)[:260]
    x = edit(bridge, list(range(10, 110, 20)), "鑫")
    y = edit(bridge, list(range(150, 250, 20)), "淼")  # each near the bridge, not near each other
    old = [("a", 0, x), ("b", 0, y)]
    existing = index_table(old, kept={"a-0", "b-0"}, cfg=cfg)
    local, distributed = both_paths(documents([("c", 0, bridge)]), cfg, existing)
    assert local == distributed
    assert [(dict(row)[DOC_ID], dict(row)[FATE], dict(row)[DETAIL]) for row in local[4]] == [("b-0", NEAR_DUP, "a-0")]
    assert both_paths([], cfg, existing)[0][4] == []  # nothing new: nothing retracted


def test_the_local_path_is_taken_up_to_the_bound(ray_local):
    """At the bound the graph runs in one task (no shuffle: the duplicates come back as one block)."""
    rows = documents(CORPUS)
    at_bound = dedup.apply(ray.data.from_items(rows), DedupConfig(local_max_docs=len(rows)))
    above = dedup.apply(ray.data.from_items(rows), DedupConfig(local_max_docs=len(rows) - 1))
    assert at_bound.duplicates.num_blocks() == 1
    assert by_doc_id(at_bound.duplicates) == by_doc_id(above.duplicates)


def test_local_max_docs_must_not_be_negative():
    with pytest.raises(ValueError, match="local_max_docs"):
        DedupConfig(local_max_docs=-1)


def test_the_one_task_index_keeps_the_order_the_documents_were_signed_in(ray_local):
    """A build then attaches the kept flags to its records by position (``zip``), with no join or sort."""
    rows = documents(CORPUS + COPIES)
    output = dedup.apply(ray.data.from_items(rows, override_num_blocks=3), DedupConfig())
    assert output.in_order
    assert [row[DOC_ID] for row in output.index.take_all()] == [row[DOC_ID] for row in rows]
    assert [row[DOC_ID] for row in output.fates.take_all()] == [row[DOC_ID] for row in rows]
    assert not dedup.apply(ray.data.from_items(rows), DedupConfig(local_max_docs=0)).in_order


def test_records_with_a_fate_keep_it_and_stay_out_of_the_graph(ray_local):
    """A filtered copy of a kept text is no duplicate, and no document's keeper: its fates row is the one it came
    with, in its place among the documents' (so a build lays out every record's fate from dedup's output)."""
    rows = [{**row, FATE: None, DETAIL: None} for row in documents([("a", 0, TOWN), ("a", 1, TOWN), ("a", 2, TOWN)])]
    rows[0].update({FATE: FILTERED, DETAIL: "too_short"})  # the copy that would have been kept
    for local_max_docs in (1_000_000, 0):
        output = dedup.apply(ray.data.from_items(rows), DedupConfig(local_max_docs=local_max_docs))
        fates = sorted((row[DOC_ID], row[FATE], row[DETAIL]) for row in output.fates.take_all())
        assert fates == [("a-0", FILTERED, "too_short"), ("a-1", KEPT, None), ("a-2", EXACT_DUP, "a-1")]
        assert sorted(row[DOC_ID] for row in output.index.take_all()) == ["a-1", "a-2"]


@pytest.mark.parametrize("cuts", [[5], [1, 4, 9], list(range(1, 16))])
def test_the_one_task_graph_decides_alike_however_its_keys_are_cut_into_blocks(cuts, monkeypatch):
    """It reads the keys where each block left them (no combined copy, the records with a fate among them),
    and yields the index and fates rows a few rows at a time: blocks cut elsewhere, or sliced, give the same
    tables. Without the check, a document with no buckets (an empty fingerprint) that took another's would
    be its duplicate."""
    monkeypatch.setattr(local, "OUTPUT_ROWS", 4)
    cfg = DedupConfig(minhash=MinHashConfig(verify=False))
    rows = [{**row, FATE: None, DETAIL: None} for row in documents([*CORPUS, *COPIES, ("z", 0, "")])]
    rows[3].update({FATE: FILTERED, DETAIL: "too_short"})
    keyed = key_rows(signed(pa.Table.from_pylist(rows), DedupKeyer(cfg)), [NODE, CONTENT, BUCKETS, SKETCH])
    bounds = [0, *cuts, keyed.num_rows]

    def decided(*blocks: pa.Table) -> list[pa.Table]:
        """(duplicates, audit, retracted, index, fates), the index and fates rows gathered from their blocks."""
        tables = list(local.decide_blocks(cfg, *blocks))
        assert len(tables) == 3 + 2 * 5  # 19 rows, 4 at a time
        return [*tables[:3], pa.concat_tables(tables[3::2]), pa.concat_tables(tables[4::2])]

    whole = decided(keyed)
    cut = decided(*(keyed.slice(start, end - start) for start, end in zip(bounds, bounds[1:])))
    assert [table.to_pylist() for table in cut] == [table.to_pylist() for table in whole]
    duplicates, audit, _, index, fates = whole
    assert duplicates.num_rows and index[DOC_ID].to_pylist() == [row[DOC_ID] for row in rows if row[FATE] is None]
    assert fates[DOC_ID].to_pylist() == [row[DOC_ID] for row in rows]
    assert (fates[FATE][3].as_py(), fates[DETAIL][3].as_py()) == (FILTERED, "too_short")
    assert fates[FATE][-1].as_py() == KEPT and "z-0" not in audit[DOC_ID].to_pylist()  # in no cluster
