"""Reading the pipeline's own versioned tables back: rows in the order of the files."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests import snapshot
from operators import write
from operators.columns import DOCS_SCHEMA, FATES_SCHEMA


def test_read_in_order_keeps_the_files_order_whatever_their_sizes(ray_local, tmp_path):
    """Files of very different sizes: the order holds however a reader would bundle them."""
    (tmp_path / "t").mkdir()
    relatives, expected = [], []
    for index in range(60):
        rows = 5_000 if index % 7 == 3 else 1 + index % 4
        values = [f"{index:03d}-{row:05d}" for row in range(rows)]
        relative = f"t/part-v00001-{index:06d}.parquet"
        pq.write_table(pa.table({"value": values}), tmp_path / relative)
        relatives.append(relative)
        expected += values
    ds = write.read_in_order(str(tmp_path), relatives, pa.schema([("value", pa.string())]))
    blocks = ray_local.get(ds.materialize().to_arrow_refs())
    assert [value for block in blocks for value in block["value"].to_pylist()] == expected


def test_read_in_order_reads_the_files_then_the_blocks_it_is_given(ray_local, tmp_path):
    """A refresh's new documents after the previous docs files, in one ordered stream: blocks with more
    columns than the schema's are cut to them, and an empty block with no columns at all gives no row."""
    (tmp_path / "t").mkdir()
    relatives = []
    for index in range(5):
        relatives.append(f"t/part-v00001-{index:06d}.parquet")
        pq.write_table(pa.table({"value": [f"file-{index}-{row}" for row in range(index + 1)]}), tmp_path / relatives[-1])
    blocks = [pa.table({"value": [f"block-{index}-{row}" for row in range(3)], "extra": [index] * 3}) for index in range(4)]
    then = [ray_local.put(block) for block in blocks[:2]] + [ray_local.put(pa.table({}))] + [ray_local.put(blocks[2])]
    ds = write.read_in_order(str(tmp_path), relatives, pa.schema([("value", pa.string())]), then)
    files = [f"file-{index}-{row}" for index in range(5) for row in range(index + 1)]
    assert ds.take_all() == [{"value": value} for value in files + [f"block-{i}-{row}" for i in range(3) for row in range(3)]]


def test_read_in_order_keeps_only_the_given_sources_rows_of_the_files_and_every_row_of_the_blocks(ray_local, tmp_path):
    """A refresh whose changed file sorts last: the previous docs files' rows of the unchanged files, then
    the changed file's new documents (same source as rows left out of the files)."""
    (tmp_path / "t").mkdir()
    relatives = []
    for index, sources in enumerate([["a", "a"], ["a", "b"], ["b", "c"]]):
        relatives.append(f"t/part-v00001-{index:06d}.parquet")
        pq.write_table(pa.table({"source": sources, "record": [index * 2, index * 2 + 1]}), tmp_path / relatives[-1])
    schema = pa.schema([("source", pa.string()), ("record", pa.int64())])
    then = [ray_local.put(pa.table({"source": ["b", "b"], "record": [10, 11]}, schema=schema))]
    ds = write.read_in_order(str(tmp_path), relatives, schema, then, sources=["a", "c"])
    assert [(row["source"], row["record"]) for row in ds.take_all()] == [
        ("a", 0), ("a", 1), ("a", 2), ("c", 5), ("b", 10), ("b", 11)
    ]


def test_read_runs_streams_blocks_between_the_files_each_run_with_its_own_sources(ray_local, tmp_path):
    """A refresh whose changed file b sorts between unchanged a and c: a's rows of the previous docs files, b's new
    documents, then c's rows of the same files (a file that holds rows of a, b and c is read by both runs)."""
    (tmp_path / "t").mkdir()
    relatives = []
    for index, sources in enumerate([["a", "a"], ["a", "b"], ["b", "c"], ["c", "d"]]):
        relatives.append(f"t/part-v00001-{index:06d}.parquet")
        pq.write_table(pa.table({"source": sources, "record": [index * 2, index * 2 + 1]}), tmp_path / relatives[-1])
    schema = pa.schema([("source", pa.string()), ("record", pa.int64())])
    places = [("a", 0), ("a", 2), ("b", 4), ("c", 6)]
    assert write.files_holding(relatives, places, ["a"]) == relatives[:2]
    assert write.files_holding(relatives, places, ["c"]) == relatives[2:]
    new_b = [ray_local.put(pa.table({"source": ["b"], "record": [10]}, schema=schema)), ray_local.put(pa.table({}))]
    runs = [write.FilesRun(write.files_holding(relatives, places, ["a"]), ["a"]), new_b,
            write.FilesRun(write.files_holding(relatives, places, ["c", "d"]), ["c", "d"])]
    rows = write.read_runs(str(tmp_path), runs, schema).take_all()
    assert [(row["source"], row["record"]) for row in rows] == [("a", 0), ("a", 1), ("a", 2), ("b", 10), ("c", 5),
                                                                 ("c", 6), ("d", 7)]


def test_a_docs_files_name_gives_its_first_rows_place_and_a_tasks_shard_files_are_found_by_name():
    sources = [f"in/{index:02d}.jsonl" for index in range(13)][::-1]  # indexed in sorted order
    assert write.docs_file_places(["docs/part-v00002-000012-0000000042.parquet"], sources) == [("in/12.jsonl", 42)]
    shards = ["shards/part-v00002-000001.arrow", "shards/part-v00002-000001_0001.arrow",
              "shards/part-v00002-000011.arrow"]
    assert write.files_by_task(shards) == {1: shards[:2], 11: shards[2:]}
    assert write.VersionedNames(3, "arrow", first_task=5).get_filename_for_task("", 2) == "part-v00003-000007.arrow"


def test_read_in_order_of_no_files_is_empty_with_the_schema(ray_local, tmp_path):
    ds = write.read_in_order(str(tmp_path), [], FATES_SCHEMA)
    assert ds.count() == 0 and ds.schema().names == FATES_SCHEMA.names


def test_a_versioned_file_is_renamed_for_another_version_whatever_version_wrote_it():
    assert write.renamed_for_version("docs/part-v00001-000003.parquet", 7) == "docs/part-v00007-000003.parquet"
    assert write.renamed_for_version("shards/part-v00012-000000_0001.arrow", 13) == "shards/part-v00013-000000_0001.arrow"
    with pytest.raises(ValueError, match="not a versioned file"):
        write.renamed_for_version("report.json", 2)


def test_linking_a_file_onto_itself_is_refused_and_keeps_the_file(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "part-v00001-000000.parquet").write_bytes(b"rows")
    with pytest.raises(ValueError, match="onto itself"):
        snapshot.link(str(tmp_path), "docs/part-v00001-000000.parquet", "docs/part-v00001-000000.parquet")
    assert (tmp_path / "docs" / "part-v00001-000000.parquet").read_bytes() == b"rows"


@pytest.mark.parametrize("local_sort_max_rows", [write.WriteConfig().local_sort_max_rows, 0])
def test_fates_are_written_in_source_and_record_order_by_either_sort(ray_local, tmp_path, local_sort_max_rows):
    import random

    import ray.data

    rows = [{"source": f"s{s}", "record": r, "doc_id": f"{s}-{r}", "fate": "kept", "detail": None}
            for s in range(3) for r in range(40)]
    shuffled = random.Random(0).sample(rows, len(rows))
    ds = ray.data.from_arrow(pa.Table.from_pylist(shuffled, schema=FATES_SCHEMA), override_num_blocks=1).repartition(5)
    ds = ds.union(ray.data.from_arrow(pa.table({})))  # a filter or union can leave a block with no columns at all
    ordered = write.in_record_order(ds, write.WriteConfig(local_sort_max_rows=local_sort_max_rows))
    write.write_table(ordered, str(tmp_path), write.FATES_DIR, FATES_SCHEMA, 1)
    files = sorted((tmp_path / write.FATES_DIR).glob("*.parquet"))
    written = pa.concat_tables(pq.read_table(f) for f in files).to_pylist()
    assert written == sorted(rows, key=lambda row: (row["source"], row["record"]))


@pytest.mark.parametrize("name", ["local_sort_max_rows", "local_sort_max_docs", "local_cache_max_docs"])
def test_a_local_sort_bound_must_not_be_negative(name):
    with pytest.raises(ValueError, match=name):
        write.WriteConfig(**{name: -1})


@pytest.mark.parametrize("local_sort_max_docs", [write.WriteConfig().local_sort_max_docs, 0])
def test_docs_rows_come_in_source_and_record_order_by_either_sort(ray_local, local_sort_max_docs):
    """A refresh's docs rows arrive as a union of sorted parts, whose blocks Ray takes in turn."""
    import ray.data

    schema = pa.schema([*DOCS_SCHEMA, ("record", pa.int64())])
    rows = [{"doc_id": f"{s}-{r}", "source": f"s{s}", "text": "文本" * r, "words": ["文本"] * r, "record": r}
            for s in range(3) for r in range(30)]
    old = ray.data.from_arrow(pa.Table.from_pylist(rows[:60], schema=schema)).repartition(4)
    new = ray.data.from_arrow(pa.Table.from_pylist(rows[60:], schema=schema))
    ordered = write.docs_in_record_order(old.union(new), len(rows), schema, write.WriteConfig(local_sort_max_docs=local_sort_max_docs))
    assert ordered.take_all() == rows


def test_teed_fates_pass_on_unchanged_and_their_files_read_in_record_order(ray_local, tmp_path):
    """Pass 2 writes the fates as the records stream to segmentation, in input order, where a file that
    failed part-way has its file-level row (record -1) after its records. Files are named by their
    first row's place, one per source and block, the file-level row alone: read in name order they
    give the table in (source, record) order, as a refresh writes it."""
    import ray.data

    def row(source: str, record: int, fate: str = "kept", detail: str | None = None) -> dict:
        return {"source": source, "record": record, "doc_id": f"{source}-{record}", "fate": fate, "detail": detail, "text": "x"}

    rows = [row("s0", r) for r in range(12)] + [row("s0", -1, "rejected", "unreadable_file: truncated")]
    rows += [row("s1", r) for r in range(5)]
    blocks = [pa.Table.from_pylist(rows[:7]), pa.Table.from_pylist(rows[7:])]  # the second: s0's end, s1
    passed = write.tee_fates(ray.data.from_arrow(blocks), str(tmp_path), 3, ["s1", "s0"]).take_all()
    assert passed == rows  # unchanged, text and all: segmentation reads the kept ones next
    files = sorted((tmp_path / write.FATES_DIR).glob("*.parquet"))
    assert [f.name.removeprefix("part-v00003-") for f in files] == [
        "000000--000000001.parquet", "000000-0000000000.parquet", "000000-0000000007.parquet", "000001-0000000000.parquet"
    ]
    written = pa.concat_tables(pq.read_table(f) for f in files)
    assert written.schema == FATES_SCHEMA
    expected = sorted(rows, key=lambda r: (r["source"], r["record"]))
    assert written.to_pylist() == [{k: r[k] for k in FATES_SCHEMA.names} for r in expected]


def test_rows_cut_into_docs_files_are_written_one_file_each_after_a_map(ray_local, tmp_path):
    """A full build cuts its documents into the docs files' rows before segmenting them (a map in batches
    of 64) and writing them, in one fused task. The map hands its output on in blocks of at most
    ``target_max_block_size`` bytes (8 MiB in a build: ``cluster.TARGET_MAX_BLOCK_BYTES``; a 4x
    bench/e2e.py build wrote a file of 1,984 rows and one of 64), so the writer takes its rows in batches
    of a file: files of ``DOCS_FILE_ROWS`` rows across blocks and sources, named by their first row's place."""
    import ray.data

    rows = [{"doc_id": f"{s}-{r}", "source": f"s{s}", "text": "文本", "words": ["文本"], "record": r}
            for s in range(2) for r in range(2_600)]
    schema = pa.schema([*DOCS_SCHEMA, ("record", pa.int64())])
    blocks = [pa.Table.from_pylist(rows[i : i + 700], schema=schema) for i in range(0, len(rows), 700)]
    context = ray.data.DataContext.get_current()
    block_bytes, context.target_max_block_size = context.target_max_block_size, 64 << 10  # ~600 of these rows
    try:
        cut = write.in_docs_files(ray.data.from_arrow(blocks))
        segmented = cut.map_batches(lambda batch: batch, batch_size=64, batch_format="pyarrow")  # as segmentation
        passed = write.tee_docs(segmented, str(tmp_path), 1, DOCS_SCHEMA, ["s0", "s1"])
        assert passed.count() == len(rows)
    finally:
        context.target_max_block_size = block_bytes
    files = sorted((tmp_path / write.DOCS_DIR).glob("*.parquet"))
    assert [pq.read_metadata(f).num_rows for f in files] == [2_048, 2_048, 1_104]
    assert [f.name for f in files] == ["part-v00001-000000-0000000000.parquet", "part-v00001-000000-0000002048.parquet",
                                       "part-v00001-000001-0000001496.parquet"]
    assert pa.concat_tables(pq.read_table(f) for f in files).to_pylist() == [
        {k: r[k] for k in DOCS_SCHEMA.names} for r in rows]
