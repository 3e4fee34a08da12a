"""Read: one row per input record, bad records marked ``rejected`` instead of crashing the run.

Files are listed on the driver (a list of paths, not data) and read inside Ray tasks, one
file per task, streamed in batches so a large file never sits whole in memory. Record
numbers are 0-based line numbers for JSONL and text (blank lines are not records) and row
indexes for Parquet. A file-level problem (unreadable, truncated, wrong columns) becomes one
row with ``record = -1`` so that the fates table and the report say what was lost and why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import pyarrow as pa
import pyarrow.fs as pafs
import xxhash

from operators import storage
from operators.columns import DETAIL, DOC_ID, FATE, RAW, RECORD, REJECTED, SOURCE

FILE_RECORD = -1
TEXT_SUFFIXES = (".txt",)
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
PARQUET_SUFFIXES = (".parquet",)
COMPRESSION_SUFFIXES = (".gz", ".zst", ".bz2")

MALFORMED_JSON = "malformed_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_TEXT = "missing_text"
TEXT_NOT_STRING = "text_not_string"
INVALID_UTF8 = "invalid_utf8"
UNREADABLE_FILE = "unreadable_file"

RECORD_SCHEMA = pa.schema(
    [
        (SOURCE, pa.string()),
        (RECORD, pa.int64()),
        (DOC_ID, pa.string()),
        ("id", pa.string()),
        (RAW, pa.string()),
        (FATE, pa.string()),
        (DETAIL, pa.string()),
    ]
)


class InputError(ValueError):
    """Inputs that cannot be used at all: the build stops with this one-line message."""


@dataclass(frozen=True)
class ReadConfig:
    text_field: str = "text"
    id_field: str = "id"
    txt_mode: str = "line"  # "line": one document per non-blank line; "file": one per file
    batch_size: int = 4096

    def __post_init__(self) -> None:
        if self.txt_mode not in ("line", "file"):
            raise ValueError(f"txt_mode must be 'line' or 'file', not {self.txt_mode!r}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")


def doc_id_for(source: str, record: int, content: bytes) -> str:
    """Stable across runs: the same record (source, position, bytes) always gets the same id."""
    digest = xxhash.xxh3_128()
    digest.update(f"{source}\x00{record}\x00".encode())
    digest.update(content)
    return digest.hexdigest()


def file_format(path: str) -> str:
    """'jsonl', 'parquet' or 'txt', from the name with any compression suffix removed."""
    name = path.lower()
    for suffix in COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(TEXT_SUFFIXES):
        return "txt"
    raise InputError(f"unsupported input file type: {path} (expected .jsonl, .parquet or .txt, optionally .gz/.zst/.bz2)")


def list_inputs(patterns: tuple[str, ...] | list[str]) -> list[str]:
    """Expand paths, directories and globs to a sorted list of files; fail if any matches nothing."""
    files: set[str] = set()
    for pattern in patterns:
        fs, path = storage.resolve(pattern)
        scheme = pattern.split("://", 1)[0] + "://" if storage.is_uri(pattern) else ""
        matched = [scheme + p for p in _expand(fs, path)]
        if not matched:
            raise InputError(f"input matches no file: {pattern}")
        for match in matched:
            file_format(match)
        files.update(matched)
    return sorted(files)


def _expand(fs: pafs.FileSystem, path: str) -> list[str]:
    if not any(ch in path for ch in "*?["):
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            return [path]
        if info.type == pafs.FileType.Directory:
            return _files_below(fs, path, "*")
        return []
    base = path.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0].rsplit("/", 1)[0]
    return _files_below(fs, base, path)


def _files_below(fs: pafs.FileSystem, base: str, pattern: str) -> list[str]:
    if fs.get_file_info(base).type != pafs.FileType.Directory:
        return []
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    matches = _glob_regex(pattern if pattern != "*" else base.rstrip("/") + "/**").fullmatch
    return [
        info.path
        for info in infos
        if info.type == pafs.FileType.File and matches(info.path) and _is_data_file(info.path, pattern)
    ]


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Shell-style glob where ``*`` stays inside one folder and ``**`` crosses folders."""
    parts = re.split(r"(\*\*/?|\*|\?)", pattern)
    wildcard = {"**": ".*", "**/": "(?:.*/)?", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wildcard.get(part, re.escape(part)) for part in parts))


def _is_data_file(path: str, pattern: str) -> bool:
    """Inside a listed directory skip files we cannot read; an explicit glob keeps all it matches."""
    if pattern != "*":
        return True
    try:
        file_format(path)
    except InputError:
        return False
    return True


def _open(path: str) -> IO[bytes]:
    """A binary stream of the file's bytes, decompressed by pyarrow according to the suffix."""
    fs, inner = storage.resolve(path)
    return fs.open_input_stream(inner, compression="detect")


class RecordReader:
    """Core: turns one file into record rows. Pure Python, no Ray."""

    def __init__(self, cfg: ReadConfig):
        self.cfg = cfg

    def records(self, path: str) -> Iterator[dict[str, Any]]:
        """Every record of the file in order; a failure part-way ends with one file-level row."""
        kind = file_format(path)
        try:
            if kind == "parquet":
                yield from self._parquet(path)
            elif kind == "txt" and self.cfg.txt_mode == "file":
                yield from self._whole_file(path)
            else:
                yield from self._lines(path, kind)
        except Exception as error:  # noqa: BLE001 - any unreadable file is reported, never fatal
            yield _row(path, FILE_RECORD, b"", None, None, f"{UNREADABLE_FILE}: {type(error).__name__}: {error}")

    def _lines(self, path: str, kind: str) -> Iterator[dict[str, Any]]:
        with _open(path) as stream:
            for number, line in enumerate(_split_lines(stream)):
                content = line.rstrip(b"\r")
                if not content.strip():
                    continue
                yield self._parse(path, number, content, kind)

    def _parse(self, path: str, number: int, content: bytes, kind: str) -> dict[str, Any]:
        try:
            decoded = content.decode("utf-8")
        except UnicodeDecodeError:
            return _row(path, number, content, None, None, INVALID_UTF8)
        if kind == "txt":
            return _row(path, number, content, decoded, None, None)
        try:
            obj = json.loads(decoded)
        except (json.JSONDecodeError, RecursionError):
            return _row(path, number, content, None, None, MALFORMED_JSON)
        return self._from_object(path, number, content, obj)

    def _from_object(self, path: str, number: int, content: bytes, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, dict):
            return _row(path, number, content, None, None, NOT_AN_OBJECT)
        record_id = obj.get(self.cfg.id_field)
        record_id = None if record_id is None else str(record_id)
        if self.cfg.text_field not in obj:
            return _row(path, number, content, None, record_id, MISSING_TEXT)
        text = obj[self.cfg.text_field]
        if not isinstance(text, str):
            return _row(path, number, content, None, record_id, TEXT_NOT_STRING)
        return _row(path, number, content, text, record_id, None)

    def _whole_file(self, path: str) -> Iterator[dict[str, Any]]:
        with _open(path) as stream:
            content = stream.read()
        yield self._parse(path, 0, content, "txt")

    def _parquet(self, path: str) -> Iterator[dict[str, Any]]:
        import pyarrow.parquet as pq

        fs, inner = storage.resolve(path)
        parquet = pq.ParquetFile(fs.open_input_file(inner))
        names = parquet.schema_arrow.names
        if self.cfg.text_field not in names:
            raise InputError(f"no column {self.cfg.text_field!r} (columns: {', '.join(names)})")
        columns = [c for c in (self.cfg.text_field, self.cfg.id_field) if c in names]
        number = 0
        for batch in parquet.iter_batches(batch_size=self.cfg.batch_size, columns=columns):
            for obj in batch.to_pylist():
                content = json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str).encode()
                yield self._from_object(path, number, content, obj)
                number += 1


def _split_lines(stream: IO[bytes], chunk_size: int = 1 << 16) -> Iterator[bytes]:
    """Lines without their newline, read in chunks: the same code for every compression."""
    pending = b""
    while chunk := stream.read(chunk_size):
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        yield from lines
    if pending:
        yield pending


def _row(path: str, record: int, content: bytes, text: str | None, record_id: str | None, reason: str | None) -> dict[str, Any]:
    return {
        SOURCE: path,
        RECORD: record,
        DOC_ID: doc_id_for(path, record, content),
        "id": record_id,
        RAW: text,
        FATE: REJECTED if reason else None,
        DETAIL: reason,
    }


class FileReader:
    """Ray Data callable: a batch of file paths in, record batches out (a generator, so memory stays bounded)."""

    def __init__(self, cfg: ReadConfig):
        self.reader = RecordReader(cfg)
        self.batch_size = cfg.batch_size

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        rows: list[dict[str, Any]] = []
        for path in batch.column("path").to_pylist():
            for row in self.reader.records(path):
                rows.append(row)
                if len(rows) == self.batch_size:
                    yield pa.Table.from_pylist(rows, schema=RECORD_SCHEMA)
                    rows = []
        if rows:
            yield pa.Table.from_pylist(rows, schema=RECORD_SCHEMA)


def apply(files: list[str], cfg: ReadConfig):
    """One read task per file; files are spread over as many blocks as there are files."""
    import ray.data

    paths = ray.data.from_items([{"path": path} for path in files], override_num_blocks=max(1, len(files)))
    return paths.map_batches(FileReader, fn_constructor_kwargs={"cfg": cfg}, batch_size=1, batch_format="pyarrow")
