"""Snapshots: ``manifest.json`` names every file of the current version with its size and sha256.

A build writes all its files first, under names that carry its version, and commits last by
replacing ``manifest.json`` in one step (temp file + rename). A reader that opens the
manifest therefore sees one complete version, never a half-written one. Files of older
versions are removed only after the new manifest is in place.

Object stores (S3 and the like) have no rename: there the manifest is written with one direct
put, last, which readers also see whole (old object or new, never a mix). Neither a local disk
nor a store locks anything, so the rule is one writer per output: never run two builds on the
same output at the same time.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pyarrow.fs as pafs

from operators import storage

MANIFEST = "manifest.json"
FORMAT = 1


def read_manifest(output: str) -> dict[str, Any] | None:
    filesystem, inner = storage.resolve(storage.join(output, MANIFEST))
    if filesystem.get_file_info(inner).type != pafs.FileType.File:
        return None
    with filesystem.open_input_stream(inner) as stream:
        return json.loads(stream.read())


def next_version(output: str) -> int:
    manifest = read_manifest(output)
    return 1 if manifest is None else int(manifest["version"]) + 1


def describe_file(output: str, relative: str) -> dict[str, Any]:
    """Size and sha256 of one output file, streamed so that a large shard costs no memory."""
    filesystem, inner = storage.resolve(storage.join(output, relative))
    digest, size = hashlib.sha256(), 0
    with filesystem.open_input_stream(inner) as stream:
        while chunk := stream.read(1 << 22):
            digest.update(chunk)
            size += len(chunk)
    return {"path": relative, "size": size, "sha256": digest.hexdigest(), **table_counts(filesystem, inner)}


def table_counts(filesystem: pafs.FileSystem, inner: str) -> dict[str, int]:
    """Rows of a Parquet table; rows and tokens of an Arrow shard; nothing for other files."""
    if inner.endswith(".parquet"):
        import pyarrow.parquet as pq

        return {"rows": pq.ParquetFile(filesystem.open_input_file(inner)).metadata.num_rows}
    if inner.endswith(".arrow"):
        import pyarrow as pa
        import pyarrow.compute as pc

        with filesystem.open_input_stream(inner) as stream:
            table = pa.ipc.open_stream(stream).read_all()
        tokens = pc.sum(pc.list_value_length(table.column("input_ids"))).as_py() if table.num_rows else 0
        return {"rows": table.num_rows, "tokens": tokens}
    return {}


def describe_files(output: str, relatives: list[str]) -> list[dict[str, Any]]:
    """Checksums computed where Ray has room, one small row per file back on the driver."""
    import ray.data

    if not relatives:
        return []
    rows = ray.data.from_items([{"path": path} for path in relatives], override_num_blocks=min(len(relatives), 64))
    described = rows.map(lambda row: describe_file(output, row["path"])).take_all()
    order = {path: index for index, path in enumerate(relatives)}
    return sorted(described, key=lambda row: order[row["path"]])


def commit(output: str, manifest: dict[str, Any]) -> None:
    """Atomically make ``manifest`` the current snapshot (temp file + rename; one put on object stores)."""
    filesystem, inner = storage.resolve(storage.join(output, MANIFEST))
    body = json.dumps({"format": FORMAT, "committed_at": time.time(), **manifest}, indent=2, ensure_ascii=False)
    if not storage.supports_atomic_rename(filesystem):
        with filesystem.open_output_stream(inner) as stream:
            stream.write(body.encode())
        return
    temporary = f"{inner}.tmp-{manifest['version']}"
    with filesystem.open_output_stream(temporary) as stream:
        stream.write(body.encode())
    filesystem.move(temporary, inner)


def remove_unlisted(output: str, directories: tuple[str, ...], manifest: dict[str, Any]) -> None:
    """Delete files of older versions in the data folders once the new manifest is committed."""
    listed = {entry["path"] for entry in manifest["files"]}
    for directory in directories:
        filesystem, inner = storage.resolve(storage.join(output, directory))
        for info in filesystem.get_file_info(pafs.FileSelector(inner, allow_not_found=True)):
            if info.type == pafs.FileType.File and f"{directory}/{info.base_name}" not in listed:
                filesystem.delete_file(info.path)
