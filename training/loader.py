"""PyTorch datasets over a corpus's Arrow shards.

``ShardDataset`` (map-style) memory-maps local shards: the index (rows per shard) is built once,
in the process that creates it, and each process that reads (DataLoader workers included) maps
the files itself on first use, so no open file travels by pickle. It works with any sampler;
for several processes use ``DistributedSampler(dataset, shuffle=True, seed=SEED)`` and call
``sampler.set_epoch(epoch)``: the order is then a function of (seed, epoch) only.

``ShardStream`` (iterable) reads shards front to back through a pyarrow filesystem, so it works
on object stores (``s3://bucket/corpus``; ``AWS_ENDPOINT_URL`` is honoured, see
``operators.storage.resolve``). Shards are dealt out to (rank, DataLoader worker) pairs after a
shuffle of the shard list seeded by (seed, epoch), and rows pass through a seeded shuffle buffer.

Both take a location that is a corpus (a folder with ``manifest.json``), its ``shards/`` folder,
or any folder of ``*.arrow`` shards. With a manifest, exactly the shards of the committed
version are read (files of an unfinished build are ignored, with a warning), and each shard's
size and row count are checked against it. ``version=K`` pins a version: the current one, or an
archived one under ``versions/v<K>/`` (``manifests.snapshot.resolve``). A reader that pinned the
current version keeps reading it after a newer build archives it: a shard missing from the top
level is looked up in that version's archive (``Shard.where``). Shards made with another vocabulary, truncated
shards and empty folders are ``ShardError``s that name the file or folder.

Each example is a dict of numpy arrays: ``input_ids`` (the shard's uint16/uint32), ``word_start``
(bool) and, for ``packing: none`` shards, ``chinese_ref`` (int32). The collators in
``training.collators`` turn lists of them into padded torch batches.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import torch.utils.data

from manifests import snapshot
from operators import storage
from operators.columns import INPUT_IDS, WORD_START
from operators.write import SHARDS_DIR

log = logging.getLogger("training.loader")

SHARD_SUFFIX = ".arrow"
REQUIRED_COLUMNS = (INPUT_IDS, WORD_START)
END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # Arrow IPC stream end marker (continuation + 0 length)

Example = dict[str, np.ndarray]


class ShardError(ValueError):
    """A shard or shard folder that cannot be trained on; the message names the file or folder."""


@dataclass(frozen=True)
class Shard:
    location: str  # local path or URI
    rows: int | None = None  # from the manifest, when there is one
    size: int | None = None
    archived: str | None = None  # where the file is once its version is archived (a current version's shard)

    def where(self) -> str:
        """The location to open now: ``location``, or the archived copy once the file has moved there."""
        if self.archived is None:
            return self.location
        filesystem, inner = storage.resolve(self.location)
        return self.location if filesystem.get_file_info(inner).type == pafs.FileType.File else self.archived


@dataclass(frozen=True)
class ShardSet:
    """The shards of one corpus version, and what their schema metadata says made them."""

    shards: tuple[Shard, ...]
    metadata: dict[str, str] = field(default_factory=dict)
    version: int | None = None
    columns: tuple[str, ...] = REQUIRED_COLUMNS

    @property
    def vocab_size(self) -> int:
        return int(self.metadata["vocab_size"])

    @property
    def max_seq_len(self) -> int:
        return int(self.metadata["max_seq_len"])

    @property
    def special_ids(self) -> dict[str, int]:
        """{token: id} of [PAD] [UNK] [CLS] [SEP] [MASK], from the metadata, else from the tokenizer."""
        if "special_ids" in self.metadata:
            return json.loads(self.metadata["special_ids"])
        from operators.tokenize import load_tokenizer, special_ids

        return dict(special_ids(load_tokenizer(self.metadata["tokenizer"])))


def find_shards(location: str, *, version: int | None = None, vocab_sha256: str | None = None) -> ShardSet:
    """The shards at ``location`` (corpus, its ``shards/`` folder, a folder of shards, or one shard),
    checked: same vocabulary everywhere (``vocab_sha256`` if given, else the manifest's or the
    first shard's), required columns, complete files."""
    filesystem, inner = storage.resolve(location)
    info = filesystem.get_file_info(inner)
    if info.type == pafs.FileType.NotFound:
        raise ShardError(f"{location}: no such file or folder")
    root = _corpus_root(location, filesystem, inner, info)
    manifest = snapshot.read_manifest(root) if root else None
    if manifest is not None:
        if version is not None and int(manifest["version"]) != version:
            try:
                folder, manifest = snapshot.resolve(root, version)
            except snapshot.VersionError:
                archived = snapshot.archived_versions(root)
                raise ShardError(
                    f"{root} holds version {manifest['version']}, not version {version} (archived: {archived or 'none'})"
                ) from None
            shards = _manifest_shards(folder, manifest, filesystem)
        else:
            shards = _manifest_shards(root, manifest, filesystem, archive=storage.join(root, snapshot.version_dir(manifest["version"])))
        vocab_sha256 = vocab_sha256 or manifest.get("tokenizer", {}).get("vocab_sha256")
    elif version is not None:
        raise ShardError(f"{location}: no manifest.json, so no version {version} to select")
    elif info.type == pafs.FileType.File:
        shards = [Shard(location, size=info.size)]
    else:
        selector = pafs.FileSelector(inner)
        names = sorted(i.base_name for i in filesystem.get_file_info(selector) if i.base_name.endswith(SHARD_SUFFIX))
        shards = [Shard(storage.join(location, name)) for name in names]
    if not shards:
        raise ShardError(f"{location}: no {SHARD_SUFFIX} shards there")
    metadata, columns = _check_shards(shards, vocab_sha256)
    return ShardSet(tuple(shards), metadata, int(manifest["version"]) if manifest else None, columns)


def _corpus_root(location: str, filesystem: pafs.FileSystem, inner: str, info: pafs.FileInfo) -> str | None:
    """The corpus folder whose manifest governs ``location``, if any."""
    if info.type == pafs.FileType.File:
        return location.rstrip("/").rsplit("/", 1)[0] if info.base_name == snapshot.MANIFEST else None
    if filesystem.get_file_info(f"{inner.rstrip('/')}/{snapshot.MANIFEST}").type == pafs.FileType.File:
        return location
    parent = location.rstrip("/").rsplit("/", 1)
    if len(parent) == 2 and parent[1] == SHARDS_DIR:
        parent_inner = inner.rstrip("/").rsplit("/", 1)[0]
        if filesystem.get_file_info(f"{parent_inner}/{snapshot.MANIFEST}").type == pafs.FileType.File:
            return parent[0]
    return None


def _manifest_shards(
    root: str, manifest: dict[str, Any], filesystem: pafs.FileSystem, archive: str | None = None
) -> list[Shard]:
    entries = [
        e for e in manifest["files"] if e["path"].startswith(f"{SHARDS_DIR}/") and e["path"].endswith(SHARD_SUFFIX)
    ]
    listed = {e["path"] for e in entries}
    _, shards_inner = storage.resolve(storage.join(root, SHARDS_DIR))
    on_disk = filesystem.get_file_info(pafs.FileSelector(shards_inner, allow_not_found=True))
    unlisted = sorted(
        i.base_name
        for i in on_disk
        if i.base_name.endswith(SHARD_SUFFIX) and f"{SHARDS_DIR}/{i.base_name}" not in listed
    )
    if unlisted:
        log.warning(
            "%s: ignoring %d shard(s) not in manifest.json (another version?): %s",
            root, len(unlisted), ", ".join(unlisted[:5]),
        )
    return [
        Shard(storage.join(root, e["path"]), rows=e.get("rows"), size=e.get("size"),
              archived=storage.join(archive, e["path"]) if archive else None)
        for e in entries
    ]


def _check_shards(shards: list[Shard], vocab_sha256: str | None) -> tuple[dict[str, str], tuple[str, ...]]:
    """Schema metadata of the first shard; every shard must agree on vocab and columns and be whole."""
    reference = None if vocab_sha256 is None else ("the corpus manifest or caller", vocab_sha256)
    metadata: dict[str, str] = {}
    columns: tuple[str, ...] = ()
    for shard in shards:
        schema, size = _read_schema(shard)
        if shard.size is not None and size != shard.size:
            raise ShardError(
                f"{shard.location}: {size} bytes on disk, manifest.json says {shard.size} (truncated or rewritten)"
            )
        found = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
        missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
        if missing:
            raise ShardError(f"{shard.location}: not a training shard (no {', '.join(missing)} column)")
        sha = found.get("vocab_sha256")
        if reference is None:
            reference = (shard.location, sha)
        elif sha != reference[1]:
            raise ShardError(
                f"{shard.location}: made with vocab sha256 {str(sha)[:16]}..., but {reference[0]} has "
                f"{str(reference[1])[:16]}...: a shard from another tokenizer is mixed in"
            )
        if not metadata:
            metadata, columns = found, tuple(schema.names)
        elif tuple(schema.names) != columns:
            raise ShardError(
                f"{shard.location}: columns {schema.names} differ from {shards[0].location}'s {list(columns)}"
            )
    return metadata, columns


def _read_schema(shard: Shard) -> tuple[pa.Schema, int]:
    """The shard's schema and size; fails on a file that does not end with the end-of-stream marker."""
    filesystem, inner = storage.resolve(shard.where())
    try:
        with filesystem.open_input_file(inner) as file:
            size = file.size()
            schema = pa.ipc.open_stream(file).schema
            file.seek(max(0, size - len(END_OF_STREAM)))
            tail = file.read()
    except (pa.ArrowInvalid, OSError) as err:
        raise ShardError(f"{shard.location}: not a readable Arrow IPC stream ({err})") from err
    if tail != END_OF_STREAM:
        raise ShardError(f"{shard.location}: truncated (the Arrow stream has no end-of-stream marker)")
    return schema, size


# --- rows out of record batches ------------------------------------------------------------------


class _BatchRows:
    """Per-row numpy views into one record batch: zero-copy for ids (memory-mapped), bits unpacked per row."""

    def __init__(self, batch: pa.RecordBatch):
        self.num_rows = batch.num_rows
        self.columns = []
        for name, column in zip(batch.schema.names, batch.columns):
            values = column.values
            offsets = column.offsets.to_numpy()
            if pa.types.is_boolean(values.type):
                bits = np.frombuffer(values.buffers()[1], dtype=np.uint8) if len(values) else np.zeros(0, np.uint8)
                self.columns.append((name, offsets, None, (bits, values.offset)))
            else:
                self.columns.append((name, offsets, values.to_numpy(), None))

    def row(self, r: int) -> Example:
        out = {}
        for name, offsets, values, bits in self.columns:
            a, b = int(offsets[r]), int(offsets[r + 1])
            if bits is None:
                out[name] = values[a:b]
            else:
                packed, offset = bits
                first, last = (a + offset) // 8, (b + offset + 7) // 8
                unpacked = np.unpackbits(packed[first:last], bitorder="little")
                start = (a + offset) - first * 8
                out[name] = unpacked[start : start + b - a].astype(bool)
        return out


def _reading_error(location: str, err: Exception) -> ShardError:
    return ShardError(f"{location}: truncated or corrupt Arrow stream ({err})")


# --- map-style -----------------------------------------------------------------------------------


class ShardDataset(torch.utils.data.Dataset):
    """Map-style dataset over memory-mapped local shards (see the module docstring)."""

    def __init__(
        self,
        location: str,
        *,
        version: int | None = None,
        vocab_sha256: str | None = None,
        max_open_shards: int = 64,
    ):
        if storage.is_uri(location):
            raise ShardError(f"{location}: ShardDataset memory-maps local files; use ShardStream for URIs")
        self.shard_set = find_shards(location, version=version, vocab_sha256=vocab_sha256)
        rows = [s.rows if s.rows is not None else self._count(s.location) for s in self.shard_set.shards]
        self._starts = np.cumsum([0, *rows])
        self.max_open_shards = max_open_shards
        self._open: OrderedDict[int, tuple[list[_BatchRows], np.ndarray]] = OrderedDict()

    @property
    def metadata(self) -> dict[str, str]:
        return self.shard_set.metadata

    @staticmethod
    def _count(path: str) -> int:
        try:
            with pa.memory_map(path) as source:
                return sum(batch.num_rows for batch in pa.ipc.open_stream(source))
        except pa.ArrowInvalid as err:
            raise _reading_error(path, err) from err

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index: int) -> Example:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} examples")
        shard = int(np.searchsorted(self._starts, index, side="right")) - 1
        batches, batch_starts = self._batches(shard)
        row = index - int(self._starts[shard])
        b = int(np.searchsorted(batch_starts, row, side="right")) - 1
        return batches[b].row(row - int(batch_starts[b]))

    def _batches(self, shard: int) -> tuple[list[_BatchRows], np.ndarray]:
        if shard in self._open:
            self._open.move_to_end(shard)
            return self._open[shard]
        path = self.shard_set.shards[shard].where()
        try:
            batches = [_BatchRows(batch) for batch in pa.ipc.open_stream(pa.memory_map(path))]
        except pa.ArrowInvalid as err:
            raise _reading_error(path, err) from err
        rows = sum(b.num_rows for b in batches)
        expected = int(self._starts[shard + 1] - self._starts[shard])
        if rows != expected:
            raise ShardError(f"{path}: {rows} rows, expected {expected} (truncated or rewritten)")
        entry = (batches, np.cumsum([0, *(b.num_rows for b in batches)]))
        self._open[shard] = entry
        while len(self._open) > self.max_open_shards:
            self._open.popitem(last=False)
        return entry

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()  # each process maps the files itself
        return state


# --- iterable (object stores) --------------------------------------------------------------------


class ShardStream(torch.utils.data.IterableDataset):
    """Iterable dataset that streams shards through a pyarrow filesystem (see the module docstring).

    ``rank``/``world_size`` default to ``torch.distributed``'s when it is initialized. Each
    (rank, worker) reads a disjoint subset of shards, so ranks may see different numbers of
    examples; keep at least ``world_size * num_workers`` shards, and prefer ShardDataset with a
    DistributedSampler where equal counts per rank matter.
    """

    def __init__(
        self,
        location: str,
        *,
        shuffle: bool = True,
        seed: int = 0,
        buffer_size: int = 8192,
        rank: int | None = None,
        world_size: int | None = None,
        version: int | None = None,
        vocab_sha256: str | None = None,
    ):
        self.shard_set = find_shards(location, version=version, vocab_sha256=vocab_sha256)
        self.shuffle, self.seed, self.buffer_size = shuffle, seed, buffer_size
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    @property
    def metadata(self) -> dict[str, str]:
        return self.shard_set.metadata

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _position(self) -> tuple[int, int]:
        """(this reader's index, number of readers) over ranks times DataLoader workers."""
        rank, world = self.rank, self.world_size
        if rank is None or world is None:
            import torch.distributed as dist

            initialized = dist.is_available() and dist.is_initialized()
            rank = rank if rank is not None else (dist.get_rank() if initialized else 0)
            world = world if world is not None else (dist.get_world_size() if initialized else 1)
        worker = torch.utils.data.get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker else (1, 0)
        return rank * workers + worker_id, world * workers

    def assigned_shards(self) -> list[Shard]:
        shards = list(self.shard_set.shards)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(shards))
            shards = [shards[i] for i in order]
        reader, readers = self._position()
        return shards[reader::readers]

    def __iter__(self) -> Iterator[Example]:
        reader, _ = self._position()
        rows = (row for shard in self.assigned_shards() for row in self._read(shard))
        if not self.shuffle:
            yield from rows
            return
        rng = np.random.default_rng([self.seed, self.epoch, reader])
        buffer: list[Example] = []
        for row in rows:
            if len(buffer) < self.buffer_size:
                buffer.append(row)
                continue
            i = int(rng.integers(len(buffer)))
            yield buffer[i]
            buffer[i] = row
        rng.shuffle(buffer)
        yield from buffer

    def _read(self, shard: Shard) -> Iterator[Example]:
        filesystem, inner = storage.resolve(shard.where())
        count = 0
        try:
            with filesystem.open_input_stream(inner) as stream:
                for batch in pa.ipc.open_stream(stream):
                    rows = _BatchRows(batch)
                    for r in range(rows.num_rows):
                        yield {name: array.copy() for name, array in rows.row(r).items()}
                    count += rows.num_rows
        except pa.ArrowInvalid as err:
            raise _reading_error(shard.location, err) from err
        if shard.rows is not None and count != shard.rows:
            raise ShardError(f"{shard.location}: {count} rows, manifest.json says {shard.rows} (truncated?)")


def shard_files(location: str, *, version: int | None = None) -> list[str]:
    """The checked shard paths/URIs of a corpus, e.g. for ``datasets.load_dataset("arrow", data_files=...)``."""
    return [shard.location for shard in find_shards(location, version=version).shards]
