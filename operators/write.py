"""Write: docs and fates as Parquet, training examples as Arrow IPC shards.

File names carry the snapshot version and the write task's index
(``part-v00001-000003.arrow``), so one build's files are known without a listing of what
others wrote, and the same inputs always give the same names. Shards use the Arrow IPC
stream format, which both ``pyarrow.ipc.open_stream`` and
``datasets.load_dataset("arrow", ...)`` read.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from ray.data.block import BlockAccessor
from ray.data.datasource import FilenameProvider
from ray.data.datasource.file_datasink import BlockBasedFileDatasink

from operators import storage
from operators.columns import DEDUP_SCHEMA, FATES_SCHEMA, RECORD, SOURCE

DOCS_DIR = "docs"
FATES_DIR = "fates"
SHARDS_DIR = "shards"
DEDUP_DIR = "dedup"  # the dedup audit table
SHARD_COMPRESSIONS = ("none", "lz4", "zstd")
DOCS_FILE_ROWS = 2048  # documents per docs file (the last one fewer); tokenizing starts when the first file is full
SHARD_BATCH_ROWS = 1024  # rows per IPC record batch: the unit a reader of compressed shards decompresses
INPUT_PLACE = "input_place"  # a fates row's place in the order its records were read (``in_input_order``)
_LAST_PLACE = (1 << 63) - 1
_PATH, _SOURCES = "path", "sources"  # a read_runs listing's columns: a file, and the sources of its rows to keep
_LISTING = pa.schema([(_PATH, pa.string()), (_SOURCES, pa.list_(pa.string()))])


@dataclass(frozen=True)
class WriteConfig:
    shard_rows: int = 100_000  # training examples per shard file, at most (the last shard of a task may hold fewer)
    compression: str = "none"  # Arrow IPC body compression of shards: none | lz4 | zstd (readers decompress)
    # fates tables of up to this many rows (~100 bytes each) are sorted in one task; larger ones by Ray Data's sort
    local_sort_max_rows: int = 2_000_000
    # a refresh's docs rows (text and words, ~3 KB each), up to this many, are ordered in one task; more by segmenting
    # the documents read first and streaming them in their place among the old ones (kept_docs.carried), or on the
    # general path by Ray Data's sort
    local_sort_max_docs: int = 20_000
    # a segmentation cache of up to this many documents (their words, ~1.2 KB each) is read into one table that
    # every task looking texts up holds; a larger one is joined with the texts by Ray Data (pipeline.segmented_docs)
    local_cache_max_docs: int = 100_000

    def __post_init__(self) -> None:
        if self.shard_rows < 1:
            raise ValueError("shard_rows must be at least 1")
        for name in ("local_sort_max_rows", "local_sort_max_docs", "local_cache_max_docs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.compression not in SHARD_COMPRESSIONS:
            raise ValueError(f"compression must be one of {', '.join(SHARD_COMPRESSIONS)}, not {self.compression!r}")


_VERSIONED_NAME = re.compile(r"part-v\d{5}-")
_TASK = re.compile(r"part-v\d{5}-(\d{6})[._]")


def version_prefix(version: int) -> str:
    return f"part-v{version:05d}-"


def renamed_for_version(path: str, version: int) -> str:
    """``path``, a versioned file (``dir/part-v<n>-...``), under ``version``'s name, whatever version wrote
    it: a corpus's files need not share one version (``pack`` writes new shards beside the build's docs)."""
    directory, _, name = path.rpartition("/")
    if not _VERSIONED_NAME.match(name):
        raise ValueError(f"{path} is not a versioned file (part-v<version>-...)")
    return f"{directory}/{_VERSIONED_NAME.sub(version_prefix(version), name, count=1)}"


class VersionedNames(FilenameProvider):
    """``part-v<version>-<task>.<ext>``: deterministic for a given version and task index (counted from
    ``first_task``: a refresh that links the first shard files of the previous version writes the rest)."""

    def __init__(self, version: int, extension: str, first_task: int = 0):
        super().__init__(file_format=extension)
        self.version = version
        self.first_task = first_task

    def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
        return f"{version_prefix(self.version)}{self.first_task + task_index:06d}.{self.file_format}"


def files_by_task(relatives: Sequence[str]) -> dict[int, list[str]]:
    """Versioned files (``VersionedNames``, and ``VersionedSink.write_block``'s parts) by the write task that
    wrote them."""
    tasks: dict[int, list[str]] = {}
    for path in relatives:
        tasks.setdefault(int(_TASK.match(path.rpartition("/")[2]).group(1)), []).append(path)
    return tasks


class VersionedSink(BlockBasedFileDatasink):
    """Parquet or Arrow IPC stream files with a fixed schema (types and metadata) cast onto every block."""

    def __init__(
        self,
        path: str,
        schema: pa.Schema,
        version: int,
        file_format: str,
        rows_per_file: int | None = None,
        compression: str | None = None,
        first_task: int = 0,
    ):
        filesystem, inner = storage.resolve(path)
        super().__init__(
            inner,
            filesystem=filesystem,
            min_rows_per_file=rows_per_file,
            filename_provider=VersionedNames(version, file_format, first_task),
            file_format=file_format,
        )
        self.schema = schema
        self.compression = compression
        self.rows_per_file = rows_per_file

    def write_block(self, block: BlockAccessor, block_index: int, ctx) -> None:
        """At most ``rows_per_file`` rows a file: Ray only bundles blocks up to at least that many, so a
        bigger block is split into ``part-v00001-000003.arrow``, ``part-v00001-000003_0001.arrow``, ...
        (names that sort in write order)."""
        rows = self.rows_per_file
        if not rows or block.num_rows() <= rows:
            super().write_block(block, block_index, ctx)
            return
        table = block.to_arrow()
        first = self.filename_provider.get_filename_for_task("", ctx.task_idx)
        stem, extension = first.rsplit(".", 1)
        for part, start in enumerate(range(0, table.num_rows, rows)):
            name = first if part == 0 else f"{stem}_{part:04d}.{extension}"
            with self.open_output_stream(f"{self.path.rstrip('/')}/{name}") as file:
                self.write_block_to_file(BlockAccessor.for_block(table.slice(start, rows)), file)

    def write_block_to_file(self, block: BlockAccessor, file: pa.NativeFile) -> None:
        table = block.to_arrow().select(self.schema.names).cast(self.schema)
        if self.file_format == "parquet":
            pq.write_table(table, file)
            return
        options = pa.ipc.IpcWriteOptions(compression=None if self.compression in (None, "none") else self.compression)
        with pa.ipc.new_stream(file, self.schema, options=options) as writer:
            writer.write_table(table, max_chunksize=SHARD_BATCH_ROWS)


def in_docs_files(ds, names: list[str] | None = None):
    """``ds``, rows in the docs table's (source, record) order, cut into the rows of its files: blocks of
    ``DOCS_FILE_ROWS`` rows (the last fewer), whatever blocks a sort or a union made, so that a refresh
    writes the files a full build of the same inputs would (``tee_docs``). Only the ``names`` columns
    when given: that map also keeps a refresh's sort and the cut apart (right after a sort, Ray Data
    runs the cut inside each sort partition's task, which cuts every partition into files of its own).
    A full build cuts its documents before they are segmented: Ray then runs the segmentation, the
    docs writer and the tokenizer of a file in one task (they fuse; an operator after a cut does not
    fuse with the cut)."""
    if names is not None:
        ds = ds.map_batches(_select, fn_kwargs={"names": names}, batch_format="pyarrow")
    return ds.repartition(target_num_rows_per_block=DOCS_FILE_ROWS, strict=True)


def tee_docs(ds, output: str, version: int, schema: pa.Schema, sources: list[str]):
    """``ds``, the docs rows cut into the table's files (``in_docs_files``), with each file also written
    as it passes, so the execution that tokenizes and packs the documents writes them too (nothing is
    materialized between segmentation and the shards). ``sources`` is every input file.

    A file is named by its first row's place in the table's order (``part-v00001-000012-0000000042.parquet``:
    the 13th input file, its record 42), so the names sort in the table's order, and a retried task
    rewrites its own file. It takes its rows in batches of a file: a map fused before it hands its
    output on in blocks of at most ``target_max_block_size`` bytes, which may cut a file's rows."""
    return _tee_placed(ds, output, DOCS_DIR, schema, version, sources, _write_docs_block, DOCS_FILE_ROWS)


def tee_fates(ds, output: str, version: int, sources: list[str]):
    """``ds``, every record in input order with its fate, passed on unchanged (text and all) and its fates
    rows written to the fates table as they pass, so a build's second pass writes the fates while it
    segments the kept documents. Each block's rows go to files named by their first row's place as the
    docs files are (``tee_docs``), one per source, sorted, and a file-level row (record -1: a file
    that failed part-way, after its records) in a file of its own: the names sort in (source, record)
    order, the order in which a refresh writes the table."""
    return _tee_placed(ds, output, FATES_DIR, FATES_SCHEMA, version, sources, _write_fates_block)


def _tee_placed(ds, output: str, directory: str, schema: pa.Schema, version: int, sources: list[str], writer,
                batch_rows: int | None = None):
    filesystem, root = storage.resolve(storage.join(output, directory))
    filesystem.create_dir(root, recursive=True)
    return ds.map_batches(
        writer,
        fn_kwargs={"filesystem": filesystem, "root": root, "schema": schema, "version": version,
                   "sources": sorted(sources)},
        batch_format="pyarrow",
        batch_size=batch_rows,
        udf_modifying_row_count=False,
    )


def _select(batch: pa.Table, names: list[str]) -> pa.Table:
    return batch.select(names)


def _write_docs_block(block: pa.Table, **where) -> pa.Table:
    if block.num_rows:
        _write_placed(block, **where)
    return block


def _write_fates_block(block: pa.Table, **where) -> pa.Table:
    if block.num_rows:
        ordered = block.select(FATES_SCHEMA.names).sort_by([(SOURCE, "ascending"), (RECORD, "ascending")])
        source = ordered[SOURCE].to_numpy(zero_copy_only=False)
        file_level = ordered[RECORD].to_numpy() < 0
        cuts = np.flatnonzero((source[1:] != source[:-1]) | (file_level[1:] != file_level[:-1])) + 1
        for start, end in zip([0, *cuts], [*cuts, ordered.num_rows]):
            _write_placed(ordered.slice(start, end - start), **where)
    return block


def docs_file_places(relatives: Sequence[str], sources: Sequence[str]) -> list[tuple[str, int]]:
    """(source, record) of each docs file's first row, from its name (``_write_placed``), which indexes the
    source among ``sources`` (every input file of the build that wrote the file) in sorted order."""
    ordered = sorted(sources)
    places = []
    for relative in relatives:
        source, record = relative.rpartition("/")[2].removesuffix(".parquet").split("-")[2:]
        places.append((ordered[int(source)], int(record)))
    return places


def _write_placed(
    rows: pa.Table, filesystem: pafs.FileSystem, root: str, schema: pa.Schema, version: int, sources: list[str]
) -> None:
    """``rows`` as one file named by its first row's place: the index of its source among ``sources``, its record."""
    place = bisect.bisect_left(sources, rows[SOURCE][0].as_py()), rows[RECORD][0].as_py()
    name = f"{version_prefix(version)}{place[0]:06d}-{place[1]:010d}.parquet"
    pq.write_table(rows.select(schema.names).cast(schema), f"{root}/{name}", filesystem=filesystem)


def in_record_order(ds, cfg: WriteConfig, schema: pa.Schema = FATES_SCHEMA, keys: tuple[str, ...] = (SOURCE, RECORD)):
    """Short rows of ``schema`` (fates rows by default) in (source, record) order (or by other ``keys``),
    materialized: sorted in one task when they are few enough (``cfg.local_sort_max_rows``; a shuffle's
    start-up costs seconds, sorting a million short rows well under one), else by Ray Data's
    distributed sort. Both give the same rows in the same order."""
    ds = ds.materialize()
    if ds.count() <= cfg.local_sort_max_rows:
        return _sorted_in_one_task(ds, schema, list(keys))
    return ds.sort(list(keys))


def in_input_order(fates, cfg: WriteConfig):
    """Fates rows in the order their records were read (``in_record_order``), lazily: by (source, record),
    except that a file-level row (record -1, which a reader emits after the records of a file that
    failed part-way) comes last in its source."""
    placed = fates.map_batches(_with_input_place, batch_format="pyarrow")
    schema = pa.schema([*FATES_SCHEMA, (INPUT_PLACE, pa.int64())])
    return in_record_order(placed, cfg, schema, (SOURCE, INPUT_PLACE)).drop_columns([INPUT_PLACE])


def _with_input_place(batch: pa.Table) -> pa.Table:
    record = batch[RECORD]
    return batch.append_column(INPUT_PLACE, pc.if_else(pc.less(record, 0), pa.scalar(_LAST_PLACE, pa.int64()), record))


def docs_in_record_order(docs, count: int, schema: pa.Schema, cfg: WriteConfig):
    """``count`` docs rows of ``schema`` in (source, record) order, lazily: the execution that reads them sorts
    them. Up to ``cfg.local_sort_max_docs`` rows are gathered into one task and sorted there, more by Ray
    Data's distributed sort, whose sample, map and reduce tasks took 3.5 s for a refresh's 2,020 docs
    rows (bench/refresh.py). Both give the same rows in the same order."""
    if count > cfg.local_sort_max_docs:
        return docs.sort([SOURCE, RECORD])
    return docs.repartition(1).map_batches(_sorted_batch, fn_args=(schema, [SOURCE, RECORD]), batch_format="pyarrow",
                                           batch_size=None)


def _sorted_batch(batch: pa.Table, schema: pa.Schema, keys: list[str]) -> pa.Table:
    return _sort_blocks(schema, keys, batch)


def _sorted_in_one_task(ds, schema: pa.Schema, keys: list[str]):
    """A materialized dataset of ``schema`` rows sorted by ``keys`` in one task over its blocks; the driver
    passes references."""
    import ray
    import ray.data

    return ray.data.from_arrow_refs([ray.remote(_sort_blocks).remote(schema, keys, *ds.to_arrow_refs())])


def _sort_blocks(schema: pa.Schema, keys: list[str], *blocks: pa.Table) -> pa.Table:
    """Blocks with rows, cast to ``schema`` (an empty block may have no columns at all), as one sorted table."""
    tables = [block.select(schema.names).cast(schema) for block in blocks if block.num_rows]
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    return table.sort_by([(key, "ascending") for key in keys])


def write_dedup(ds, output: str, version: int) -> None:
    """The dedup audit table (``operators.dedup``); no file when nothing was duplicated."""
    ds.write_datasink(VersionedSink(storage.join(output, DEDUP_DIR), DEDUP_SCHEMA, version, "parquet"))


def write_table(ds, output: str, directory: str, schema: pa.Schema, version: int) -> None:
    """Any other versioned Parquet table of the output (the dedup index)."""
    ds.write_datasink(VersionedSink(storage.join(output, directory), schema, version, "parquet"))


def write_shards(ds, output: str, schema: pa.Schema, version: int, cfg: WriteConfig, first_task: int = 0) -> None:
    ds.write_datasink(VersionedSink(storage.join(output, SHARDS_DIR), schema, version, "arrow", cfg.shard_rows,
                                   cfg.compression, first_task))


def read_in_order(output: str, relatives: list[str], schema: pa.Schema, then: Sequence[Any] = (),
                  sources: Sequence[str] | None = None):
    """The Parquet files ``relatives`` (inside ``output``) as one Ray dataset, rows in the files' order:
    one read task and one block per file; then the rows of the blocks ``then`` (references to a
    materialized dataset's blocks with ``schema``'s columns, and maybe more), in their order.

    Ray's ``read_parquet`` does not keep the order of its files, even with ``preserve_order``:
    it bundles them into read tasks by size (Ray 2.60 moved a run of 863 documents in the 130
    docs files of bench/e2e.py's 16x build). Packing follows the order of the docs table, so the
    tokenizer reads it with this. A union would not put ``then`` after the files: with
    ``preserve_order`` it takes its inputs' blocks in turn. ``schema``: what an empty list of files gives.
    ``sources``: where given, only the files' rows of these sources (``then``'s rows are all kept).
    """
    return read_runs(output, [FilesRun(relatives, sources), list(then)], schema)


@dataclass(frozen=True)
class FilesRun:
    """Parquet files inside an output, read in order: only their rows of ``sources`` where given."""

    files: list[str]
    sources: Sequence[str] | None = None


def read_runs(output: str, runs: Sequence[FilesRun | list[Any]], schema: pa.Schema):
    """The rows of each run in turn, as one Ray dataset (``read_in_order``): a ``FilesRun``, one read task and
    block per file, or references to blocks with ``schema``'s columns (and maybe more). A refresh streams the
    unchanged files' previous docs rows and the new documents of the files between them this way, in
    (source, record) order with no sort (``pipeline.kept_docs.carried``)."""
    import ray
    import ray.data

    filesystem, root = storage.resolve(output)  # once: on an object store each resolve builds a filesystem
    blocks = []
    for run in runs:
        if isinstance(run, FilesRun):
            sources = None if run.sources is None else list(run.sources)
            blocks += [ray.put(pa.table({_PATH: [storage.join(root, relative)], _SOURCES: [sources]},
                                        schema=_LISTING)) for relative in run.files]
        else:
            blocks += run
    if not blocks:
        return ray.data.from_arrow(schema.empty_table())
    return ray.data.from_arrow_refs(blocks).map_batches(
        _read_files, fn_kwargs={"filesystem": filesystem, "schema": schema}, batch_format="pyarrow", batch_size=None,
    )


def _read_files(batch: pa.Table, filesystem: pafs.FileSystem, schema: pa.Schema) -> pa.Table:
    """A listing block's file read (its rows of the listed sources only, where given), or a block of rows
    (``read_runs``' blocks) with ``schema``'s columns."""
    if _PATH in batch.column_names:
        tables = []
        for path, sources in zip(batch[_PATH].to_pylist(), batch[_SOURCES].to_pylist()):
            rows = pq.read_table(path, filesystem=filesystem)
            if sources is not None:
                rows = rows.filter(pc.is_in(rows[SOURCE], value_set=pa.array(sources, pa.string())))
            tables.append(rows)
        return pa.concat_tables(tables)
    return batch.select(schema.names) if batch.num_rows else schema.empty_table()  # an empty block may have no columns


def files_holding(files: Sequence[str], places: Sequence[tuple[str, int]], sources: Sequence[str]) -> list[str]:
    """The docs ``files`` (in order; ``places``: their first rows' places) whose rows may belong to ``sources``:
    those whose span, from their first row to the next file's, reaches one of them."""
    lasts = [*(source for source, _ in places[1:]), None]
    return [path for path, (first, _), last in zip(files, places, lasts)
            if any(first <= source and (last is None or source <= last) for source in sources)]


def version_files(output: str, directory: str, version: int) -> list[str]:
    """This version's files in one output folder, in write order (relative to ``output``)."""
    filesystem, inner = storage.resolve(storage.join(output, directory))
    selector = pafs.FileSelector(inner, allow_not_found=True)
    prefix = version_prefix(version)
    names = sorted(info.base_name for info in filesystem.get_file_info(selector) if info.base_name.startswith(prefix))
    return [f"{directory}/{name}" for name in names]
