"""Shard size per million tokens (per compression) and loader throughput with the collators.

    python bench/loader.py --shards OUT [--examples 20000] [--batch-size 32] [--workers 0 2]

For each shard compression (none, lz4, zstd) the corpus's shards are re-encoded in a temporary
folder (same rows, same record batches as ``operators/write.py`` writes) and their MB per
million tokens printed. Then examples/s through DataLoader + collator: ShardDataset
(memory-mapped, shuffled) for each worker count and collator, and ShardStream. One JSON line each.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from operators.write import SHARD_BATCH_ROWS  # noqa: E402
from training.collators import MacBertCollator, PermutationCollator, TokenIds, WholeWordMaskCollator  # noqa: E402
from training.loader import ShardDataset, ShardStream, find_shards  # noqa: E402

COLLATORS = {"wwm": WholeWordMaskCollator, "macbert": MacBertCollator, "pert": PermutationCollator}


def reencode(files: list[str], folder: Path, compression: str | None) -> tuple[int, int]:
    """(bytes, tokens) of the shards re-written with ``compression``."""
    size = tokens = 0
    for i, path in enumerate(files):
        table = pa.ipc.open_stream(pa.memory_map(path)).read_all()
        tokens += pc.sum(pc.list_value_length(table.column("input_ids"))).as_py() or 0
        out = folder / f"{compression or 'none'}-{i:06d}.arrow"
        options = pa.ipc.IpcWriteOptions(compression=compression)
        with pa.OSFile(str(out), "wb") as sink, pa.ipc.new_stream(sink, table.schema, options=options) as writer:
            writer.write_table(table, max_chunksize=SHARD_BATCH_ROWS)
        size += out.stat().st_size
    return size, tokens


def throughput(dataset, collator, batch_size: int, workers: int, examples: int, shuffle: bool) -> float:
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=collator, num_workers=workers,
        persistent_workers=workers > 0,
    )
    seen, started = 0, None
    while seen < examples:
        for batch in loader:
            if started is None:  # the first batch pays for worker start-up
                started = time.perf_counter()
                continue
            seen += len(batch["input_ids"])
            if seen >= examples:
                break
    return seen / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", required=True, help="corpus folder, its shards/ folder, or a folder of shards")
    parser.add_argument("--examples", type=int, default=20000, help="examples to time per configuration")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()

    shard_set = find_shards(args.shards)
    files = [s.location for s in shard_set.shards]
    with tempfile.TemporaryDirectory() as scratch:
        for compression in (None, "lz4", "zstd"):
            size, tokens = reencode(files, Path(scratch), compression)
            print(json.dumps({
                "shards": compression or "none", "mb": round(size / 1e6, 3), "tokens": tokens,
                "mb_per_million_tokens": round(size / tokens, 3) if tokens else None,
            }), flush=True)

    torch.manual_seed(0)
    dataset = ShardDataset(args.shards)
    ids = TokenIds.from_shards(shard_set)
    common = {"examples": len(dataset), "max_seq_len": shard_set.max_seq_len, "batch_size": args.batch_size}
    for name, collator_type in COLLATORS.items():
        for workers in args.workers if name == "wwm" else args.workers[:1]:
            rate = throughput(dataset, collator_type(ids, seed=0), args.batch_size, workers, args.examples, True)
            print(json.dumps({"loader": "ShardDataset", "collator": name, "workers": workers,
                              "examples_per_s": round(rate, 1), **common}), flush=True)
    stream = ShardStream(args.shards, seed=0, buffer_size=4096)
    rate = throughput(stream, WholeWordMaskCollator(ids, seed=0), args.batch_size, 0, args.examples, False)
    print(json.dumps({"loader": "ShardStream", "collator": "wwm", "workers": 0, "examples_per_s": round(rate, 1),
                      **common}), flush=True)


if __name__ == "__main__":
    main()
