"""The input ledger: one row per input file of a version, so the next build knows what changed.

``ledger/part-v<version>-000000.parquet`` (listed in the manifest) holds, per input file: ``uri``,
``size``, ``mtime_ns`` (on object stores the object's LastModified: pyarrow exposes no ETag),
``xxh3_128`` of its bytes, ``records`` (rows it has in the fates table, a file-level row
included) and ``status`` (``ok``, or ``unreadable`` with the ``reason``).

Fast path: a file whose (uri, size, mtime) equal the previous ledger's keeps that row's hash and
is not opened. Other files are hashed in Ray tasks (one per file), except a handful of them
(``DRIVER_FILES`` files, ``DRIVER_BYTES`` in all, ``LOCAL_DRIVER_BYTES`` when they are all on a
local disk), which the driver hashes itself rather than start a Ray Data execution for them. From a
local disk (the page cache) the driver hashed bench/e2e.py's 16x input, 125 MB, in 0.08 s, where
the execution took 1.8 s; from an object store it reads at network speed. A file whose hash is
unchanged (touched, copied back) counts as unchanged; only the hash decides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from operators import storage

LEDGER_DIR = "ledger"
DRIVER_FILES, DRIVER_BYTES = 8, 64 << 20  # at most this many files and bytes to hash are hashed on the driver
LOCAL_DRIVER_BYTES = 1 << 30  # the bytes bound when every file to hash is on a local disk (about 0.5 s)
OK, UNREADABLE = "ok", "unreadable"
URI, SIZE, MTIME, HASH, RECORDS, STATUS, REASON = "uri", "size", "mtime_ns", "xxh3_128", "records", "status", "reason"
SCHEMA = pa.schema(
    [
        (URI, pa.string()),
        (SIZE, pa.int64()),
        (MTIME, pa.int64()),
        (HASH, pa.string()),
        (RECORDS, pa.int64()),
        (STATUS, pa.string()),
        (REASON, pa.string()),
    ]
)


@dataclass
class Diff:
    """Input files by what happened to them since the previous version (sorted lists of URIs)."""

    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    hashed: int = 0  # files whose bytes were hashed in this build (the others took the fast path)

    @property
    def to_read(self) -> list[str]:
        return sorted(self.new + self.changed)

    def counts(self) -> dict[str, int]:
        return {"new": len(self.new), "changed": len(self.changed), "removed": len(self.removed),
                "unchanged": len(self.unchanged), "hashed": self.hashed}


def hash_file(uri: str) -> str:
    """xxh3-128 of the file's bytes as stored (compressed files are hashed compressed), streamed."""
    filesystem, inner = storage.resolve(uri)
    digest = xxhash.xxh3_128()
    with filesystem.open_input_stream(inner, compression=None) as stream:  # the bytes as stored, never decompressed
        while chunk := stream.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def stat(files: list[str]) -> list[dict[str, Any]]:
    """(uri, size, mtime_ns) of each file: metadata only, no byte is read."""
    rows = []
    for uri in files:
        filesystem, inner = storage.resolve(uri)
        info = filesystem.get_file_info(inner)
        rows.append({URI: uri, SIZE: int(info.size or 0), MTIME: int(info.mtime_ns or 0)})
    return rows


def _hashed(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, HASH: hash_file(row[URI])}


def scan(
    files: list[str], previous: pa.Table | None, connect: Callable[[], None] = lambda: None
) -> tuple[list[dict[str, Any]], int]:
    """Ledger rows (without records/status) for ``files``, and how many were hashed. ``connect`` joins
    or starts Ray, called only when there are enough bytes to hash to spread them over Ray tasks."""
    known = {}
    if previous is not None:
        known = {row[URI]: row for row in previous.to_pylist()}
    rows, to_hash = [], []
    for row in stat(files):
        old = known.get(row[URI])
        if old is not None and (old[SIZE], old[MTIME]) == (row[SIZE], row[MTIME]) and old[HASH]:
            rows.append({**row, HASH: old[HASH]})
        else:
            to_hash.append(row)
    on_local_disk = not any(storage.is_uri(row[URI]) for row in to_hash)
    driver_bytes = LOCAL_DRIVER_BYTES if on_local_disk else DRIVER_BYTES
    if len(to_hash) <= DRIVER_FILES and sum(row[SIZE] for row in to_hash) <= driver_bytes:
        rows += [_hashed(row) for row in to_hash]  # a few files: cheaper than starting an execution
    elif to_hash:
        import ray.data

        connect()
        blocks = min(len(to_hash), 64)
        rows += ray.data.from_items(to_hash, override_num_blocks=blocks).map(_hashed).take_all()
    rows.sort(key=lambda row: row[URI])
    return rows, len(to_hash)


def diff(previous: pa.Table | None, current: list[dict[str, Any]], hashed: int = 0) -> Diff:
    known = {} if previous is None else dict(zip(previous[URI].to_pylist(), previous[HASH].to_pylist()))
    result = Diff(hashed=hashed)
    for row in current:
        if row[URI] not in known:
            result.new.append(row[URI])
        elif known[row[URI]] != row[HASH]:
            result.changed.append(row[URI])
        else:
            result.unchanged.append(row[URI])
    seen = {row[URI] for row in current}
    result.removed = sorted(uri for uri in known if uri not in seen)
    return result


def complete(
    rows: list[dict[str, Any]], previous: pa.Table | None, records: dict[str, int], unreadable: list[dict[str, str]]
) -> pa.Table:
    """The ledger of this version: ``rows`` with their record counts (this build's, else the
    previous ledger's for files not read again) and status."""
    old = {} if previous is None else {row[URI]: row for row in previous.to_pylist()}
    reasons = {row["source"]: row["reason"] for row in unreadable}
    table = []
    for row in rows:
        uri = row[URI]
        count = records.get(uri, old.get(uri, {}).get(RECORDS, 0))
        reason = reasons.get(uri)
        table.append({**row, RECORDS: int(count), STATUS: UNREADABLE if reason else OK, REASON: reason})
    return pa.Table.from_pylist(table, schema=SCHEMA)


def path(version: int) -> str:
    return f"{LEDGER_DIR}/part-v{version:05d}-000000.parquet"  # named like the other tables' files


def write(output: str, version: int, table: pa.Table) -> str:
    relative = path(version)
    filesystem, inner = storage.resolve(storage.join(output, relative))
    filesystem.create_dir(inner.rsplit("/", 1)[0], recursive=True)
    with filesystem.open_output_stream(inner) as stream:
        pq.write_table(table, stream)
    return relative


def read(root: str, manifest: dict[str, Any] | None) -> pa.Table | None:
    """The ledger a manifest lists (paths relative to ``root``), or None (no manifest, or one
    written before ledgers existed)."""
    if not manifest:
        return None
    paths = [e["path"] for e in manifest.get("files", []) if e["path"].startswith(f"{LEDGER_DIR}/")]
    if not paths:
        return None
    filesystem, inner = storage.resolve(storage.join(root, paths[0]))
    with filesystem.open_input_file(inner) as stream:
        return pq.read_table(stream).cast(SCHEMA)
