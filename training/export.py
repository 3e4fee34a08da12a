"""Exports of a corpus's shards to other training-data formats.

MosaicML Streaming (MDS): ``python -m training.export mds CORPUS DEST [--compression zstd]``
writes ``DEST/index.json`` and ``shard.*.mds`` with columns ``input_ids`` (``ndarray:uint16`` or
``uint32``), ``word_start`` (``ndarray:uint8``, 0/1: MDS has no bool arrays) and, for
``packing: none`` shards, ``chinese_ref`` (``ndarray:int32``), plus ``DEST/wwm_metadata.json``
with the shards' schema metadata (tokenizer, vocab sha256, special ids, ...), which MDS has no
place for. Read it back with
``streaming.StreamingDataset(local=DEST)``. It needs the ``mosaicml-streaming`` package, which
is not a dependency of this project: mosaicml-streaming 0.13 pins ``transformers<5`` and
``numpy<2.2``, which conflict with this project's ``transformers>=5``. Install it in a separate
environment to export, or with ``pip install --no-deps mosaicml-streaming`` plus its small
runtime dependencies where you accept the mismatch.

Hugging Face datasets needs no export: ``datasets.load_dataset("arrow",
data_files=training.loader.shard_files(CORPUS))`` reads the shards as they are.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from training.loader import ShardStream, find_shards

MDS_METADATA = "wwm_metadata.json"


def mds_columns(columns: tuple[str, ...], vocab_size: int) -> dict[str, str]:
    """MDS column encodings for the shard columns."""
    ids = "ndarray:uint16" if vocab_size <= 1 << 16 else "ndarray:uint32"
    encodings = {"input_ids": ids, "word_start": "ndarray:uint8", "chinese_ref": "ndarray:int32"}
    return {name: encodings[name] for name in columns if name in encodings}


def export_mds(
    location: str, dest: str, *, compression: str | None = None, size_limit: int | str = "64mb"
) -> dict[str, Any]:
    """Write every example of the corpus (in shard order) to an MDS dataset at ``dest``."""
    try:
        from streaming import MDSWriter
    except ImportError as err:
        raise RuntimeError(
            "MDS export needs the mosaicml-streaming package (pip install mosaicml-streaming; "
            f"see training/export.py for its version conflicts): {err}"
        ) from err
    shard_set = find_shards(location)
    columns = mds_columns(shard_set.columns, shard_set.vocab_size)
    rows = 0
    with MDSWriter(out=dest, columns=columns, compression=compression, size_limit=size_limit) as writer:
        for example in ShardStream(location, shuffle=False, rank=0, world_size=1):
            writer.write({name: _mds_value(name, example[name]) for name in columns})
            rows += 1
    Path(dest, MDS_METADATA).write_text(json.dumps(shard_set.metadata, indent=2, ensure_ascii=False), encoding="utf-8")
    return {"rows": rows, "columns": columns, "dest": dest}


def _mds_value(name: str, value: np.ndarray) -> np.ndarray:
    return value.view(np.uint8) if name == "word_start" else value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__.split("\n")[0])
    formats = parser.add_subparsers(dest="format", required=True)
    mds = formats.add_parser("mds", help="MosaicML Streaming MDS")
    mds.add_argument("corpus", help="corpus folder, its shards/ folder, or a folder of shards")
    mds.add_argument("dest", help="output folder for index.json and shard.*.mds")
    mds.add_argument("--compression", default=None, help="MDS compression, e.g. zstd (default: none)")
    mds.add_argument("--size-limit", default="64mb", help="bytes per MDS shard (default 64mb)")
    args = parser.parse_args(argv)
    try:
        result = export_mds(args.corpus, args.dest, compression=args.compression, size_limit=args.size_limit)
    except (RuntimeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {result['rows']} examples to {result['dest']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
