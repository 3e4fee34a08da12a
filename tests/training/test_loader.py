"""Loader: memory-mapped map-style dataset and streaming iterable over shards, their errors, DataLoader use."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from manifests import snapshot
from operators.pack import shard_schema
from training.collators import TokenIds, WholeWordMaskCollator
from training.loader import ShardDataset, ShardError, ShardStream, find_shards, shard_files

SPECIALS = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}


def random_rows(rng: np.random.Generator, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        length = int(rng.integers(3, 40))
        ids = np.concatenate([[2], rng.integers(5, 500, length - 2), [3]]).astype(np.uint16)
        starts = rng.random(length) < 0.6
        starts[[0, -1]] = True
        rows.append({"input_ids": ids, "word_start": starts})
    return rows


def write_shard(path: Path, rows: list[dict], vocab_sha256: str = "a" * 64, compression: str | None = None,
                batch_rows: int = 7) -> None:
    schema = shard_schema("vocab.txt", vocab_sha256, 500, "ltp", 64)
    schema = schema.with_metadata({**schema.metadata, b"special_ids": json.dumps(SPECIALS).encode()})
    table = pa.Table.from_pylist(rows, schema=schema)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(
        sink, schema, options=pa.ipc.IpcWriteOptions(compression=compression)
    ) as writer:
        writer.write_table(table, max_chunksize=batch_rows)


def make_corpus(root: Path, shards: int = 3, rows: int = 40, seed: int = 0, compression: str | None = None,
                manifest: bool = True) -> list[dict]:
    rng = np.random.default_rng(seed)
    (root / "shards").mkdir(parents=True)
    everything = []
    for i in range(shards):
        part = random_rows(rng, rows + i)
        write_shard(root / "shards" / f"part-v00001-{i:06d}.arrow", part, compression=compression)
        everything += part
    if manifest:
        files = [snapshot.describe_file(str(root), f"shards/part-v00001-{i:06d}.arrow") for i in range(shards)]
        snapshot.commit(str(root), {"version": 1, "files": files, "tokenizer": {"vocab_sha256": "a" * 64}})
    return everything


def same(row: dict, expected: dict) -> bool:
    return row["input_ids"].tolist() == expected["input_ids"].tolist() and row["word_start"].tolist() == expected[
        "word_start"
    ].tolist()


@pytest.mark.parametrize("compression", [None, "lz4", "zstd"])
def test_map_style_reads_every_row_in_order(tmp_path, compression):
    rows = make_corpus(tmp_path / "c", compression=compression)
    for location in (tmp_path / "c", tmp_path / "c" / "shards"):
        dataset = ShardDataset(str(location))
        assert len(dataset) == len(rows) == 123
        assert all(same(dataset[i], rows[i]) for i in range(len(rows)))
        assert same(dataset[-1], rows[-1]) and dataset[5]["word_start"].dtype == bool
        assert dataset.shard_set.version == 1 and dataset.metadata["max_seq_len"] == "64"
    with pytest.raises(IndexError):
        dataset[len(rows)]


def test_folder_without_manifest_and_single_file(tmp_path):
    rows = make_corpus(tmp_path / "c", manifest=False)
    assert len(ShardDataset(str(tmp_path / "c" / "shards"))) == len(rows)
    one = ShardDataset(str(tmp_path / "c" / "shards" / "part-v00001-000000.arrow"))
    assert len(one) == 40 and same(one[0], rows[0])


def test_pickles_without_open_files_and_works_in_workers(tmp_path):
    rows = make_corpus(tmp_path / "c")
    dataset = ShardDataset(str(tmp_path / "c"))
    dataset[0]
    assert dataset._open and not pickle.loads(pickle.dumps(dataset))._open
    seen = []
    for rank in (0, 1):
        sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=7)
        sampler.set_epoch(3)
        order = list(sampler)
        loader = DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=2)
        got = [row["input_ids"].tolist() for row in loader]
        assert got == [rows[i]["input_ids"].tolist() for i in order]
        seen += order
    assert sorted(set(seen)) == list(range(len(rows)))


def test_data_loader_with_collator(tmp_path):
    make_corpus(tmp_path / "c")
    dataset = ShardDataset(str(tmp_path / "c"))
    collator = WholeWordMaskCollator(TokenIds.from_shards(dataset.shard_set), seed=1)
    torch.manual_seed(0)
    batches = list(DataLoader(dataset, batch_size=16, shuffle=True, collate_fn=collator, num_workers=2))
    assert sum(len(b["input_ids"]) for b in batches) == len(dataset)
    assert all(b["input_ids"].dtype == torch.int64 and b["labels"].shape == b["input_ids"].shape for b in batches)


def test_stream_covers_every_row_once_across_ranks_and_workers(tmp_path):
    rows = make_corpus(tmp_path / "c", shards=5)
    want = sorted(r["input_ids"].tolist() for r in rows)
    got = []
    for rank in (0, 1):
        stream = ShardStream(str(tmp_path / "c"), seed=1, buffer_size=16, rank=rank, world_size=2)
        got += [row["input_ids"].tolist() for row in DataLoader(stream, batch_size=None, num_workers=2)]
    assert sorted(got) == want


def test_stream_shuffle_is_seeded(tmp_path):
    make_corpus(tmp_path / "c", shards=4)
    uri = (tmp_path / "c").resolve().as_uri()  # file:// goes through pyarrow's filesystem-from-URI path
    def order(seed, epoch):
        stream = ShardStream(uri, seed=seed, buffer_size=10)
        stream.set_epoch(epoch)
        return [row["input_ids"].tolist() for row in stream]
    assert order(1, 0) == order(1, 0)
    assert order(1, 0) != order(1, 1) and order(1, 0) != order(2, 0)
    assert sorted(order(1, 0)) == sorted(order(2, 5))
    plain = [row["input_ids"].tolist() for row in ShardStream(uri, shuffle=False)]
    assert plain == [row["input_ids"].tolist() for row in ShardDataset(str(tmp_path / "c"))]


def test_shard_from_another_tokenizer_is_named(tmp_path):
    make_corpus(tmp_path / "c", manifest=False)
    stranger = tmp_path / "c" / "shards" / "zz-other.arrow"
    write_shard(stranger, random_rows(np.random.default_rng(1), 3), vocab_sha256="b" * 64)
    with pytest.raises(ShardError, match="zz-other.arrow.*another tokenizer"):
        ShardDataset(str(tmp_path / "c" / "shards"))
    with pytest.raises(ShardError, match="part-v00001-000000.arrow.*another tokenizer"):
        find_shards(str(tmp_path / "c" / "shards"), vocab_sha256="b" * 64)


def test_manifest_ignores_unlisted_shards_but_checks_its_own(tmp_path, caplog):
    make_corpus(tmp_path / "c")
    unfinished = tmp_path / "c" / "shards" / "part-v00002-000000.arrow"
    write_shard(unfinished, random_rows(np.random.default_rng(1), 3), "b" * 64)
    assert len(ShardDataset(str(tmp_path / "c"))) == 123
    assert "part-v00002-000000.arrow" in caplog.text
    with pytest.raises(ShardError, match="version 1, not version 2"):
        find_shards(str(tmp_path / "c"), version=2)


@pytest.mark.parametrize("manifest", [True, False])
def test_truncated_shard_is_named(tmp_path, manifest):
    make_corpus(tmp_path / "c", manifest=manifest)
    location = str(tmp_path / "c" if manifest else tmp_path / "c" / "shards")
    victim = tmp_path / "c" / "shards" / "part-v00001-000001.arrow"
    data = victim.read_bytes()
    for cut in (len(data) - 8, len(data) // 2, 3):
        victim.write_bytes(data[:cut])
        with pytest.raises(ShardError, match="part-v00001-000001.arrow"):
            ShardDataset(location)
        with pytest.raises(ShardError, match="part-v00001-000001.arrow"):
            ShardStream(location)


def test_empty_or_missing_folder_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ShardError, match="empty: no .arrow shards"):
        ShardDataset(str(tmp_path / "empty"))
    with pytest.raises(ShardError, match="no such file or folder"):
        ShardStream(str(tmp_path / "missing"))
    (tmp_path / "c").mkdir()
    snapshot.commit(str(tmp_path / "c"), {"version": 1, "files": []})
    with pytest.raises(ShardError, match="no .arrow shards"):
        ShardDataset(str(tmp_path / "c"))


def test_compressed_shards_load_with_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = make_corpus(tmp_path / "c", compression="zstd")
    loaded = datasets.load_dataset("arrow", data_files=shard_files(str(tmp_path / "c")), split="train",
                                   cache_dir=str(tmp_path / "cache"))
    assert loaded.num_rows == len(rows) and loaded[7]["input_ids"] == rows[7]["input_ids"].tolist()
