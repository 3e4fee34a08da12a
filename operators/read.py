"""Read: one row per input record, bad records marked ``rejected`` instead of crashing the run.

Files are listed on the driver (a list of paths, not data) and read inside Ray tasks: an
uncompressed JSONL or text file in line-aligned byte ranges of about ``range_bytes``, a task
each, each range read whole (a first, cheap task per file finds the ranges and the record number
each starts at, so that one large file does not leave every other CPU idle); any other file in
one task, streamed in batches so that it never sits whole in memory. Record
numbers are 0-based line numbers for JSONL and text (blank lines are not records) and row
indexes for Parquet. A file-level problem (unreadable, truncated, wrong columns, or bytes of
another format than the name says) becomes one row with ``record = -1`` so that the fates
table and the report say what was lost and why; records read before it stay. (A file read in ranges
gets such a row for each range that fails while the file is still as long as it was when its ranges
were found: an I/O error in the middle of a file.)

A record is rejected, with its reason, when its line is not UTF-8 (``invalid_utf8``), not JSON
(``malformed_json``), not a JSON object (``not_an_object``), lacks the text field
(``missing_text``), or its text is not a string (``text_not_string``) or holds a lone surrogate
escape (``lone_surrogate``; Arrow, like UTF-8, cannot hold one). JSON strings may hold raw
control characters, and a leading UTF-8 BOM is skipped: normalize cleans the text. Empty or
blank texts are read, and normalize filters them.
"""

from __future__ import annotations

import codecs
import functools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import pyarrow as pa
import pyarrow.fs as pafs
import xxhash

from operators import storage
from operators.columns import DETAIL, DOC_ID, FATE, RAW, RECORD, REJECTED, SOURCE

FILE_RECORD = -1
MAX_BATCH_CHARS = 1 << 24  # text per output batch: many large records never make one huge batch
LINE_CHUNK = 1 << 16  # bytes read at a time from a JSONL or text file
SCAN_CHUNK = 1 << 22  # bytes read at a time when finding a file's ranges (few requests on object stores)
TEXT_SUFFIXES = (".txt",)
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
PARQUET_SUFFIXES = (".parquet",)
COMPRESSION_SUFFIXES = (".gz", ".zst", ".bz2")

MALFORMED_JSON = "malformed_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_TEXT = "missing_text"
TEXT_NOT_STRING = "text_not_string"
INVALID_UTF8 = "invalid_utf8"
LONE_SURROGATE = "lone_surrogate"  # a JSON escape like \ud800 alone: valid JSON, but not Unicode text
UNREADABLE_FILE = "unreadable_file"
CONTENT_MISMATCH = "content_mismatch"  # inside the unreadable_file detail: the bytes are not what the name says

# Leading bytes of formats that are never JSON Lines or text: a file named .jsonl/.txt holding
# them is reported whole instead of as thousands of lines of garbage.
MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd", b"BZh": "bzip2", b"PAR1": "parquet"}
UTF8_BOM = b"\xef\xbb\xbf"

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
    range_bytes: int = 4 << 20  # an uncompressed JSONL or text file is read in ranges of about this size

    def __post_init__(self) -> None:
        if self.txt_mode not in ("line", "file"):
            raise ValueError(f"txt_mode must be 'line' or 'file', not {self.txt_mode!r}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.range_bytes < 1:
            raise ValueError("range_bytes must be at least 1")


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
            elif not _by_lines(kind, self.cfg):
                yield from self._whole_file(path)
            else:
                yield from self._lines(path, kind)
        except Exception as error:  # noqa: BLE001 - any unreadable file is reported, never fatal
            yield _row(path, FILE_RECORD, b"", None, None, f"{UNREADABLE_FILE}: {type(error).__name__}: {error}")

    def part_records(self, part: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The records of one row of ``ranges``, or of a bare ``{"path": ...}``: a range, or the whole file."""
        if part.get("end") is None:
            return self.records(part["path"])
        return self.range_records(part["path"], part["start"], part["end"], part["first_record"])

    def range_records(self, path: str, start: int, end: int, first_record: int) -> Iterator[dict[str, Any]]:
        """The records of the lines in bytes ``start:end`` of an uncompressed line file (``ranges``), numbered
        from ``first_record``; a failure ends with one file-level row for the range.

        A file that became shorter after ``ranges`` (or went away) broke off: the range that holds its new
        end reports it and the ranges past that end give no row, so the file has, like a file that breaks off
        in a whole-file read, its records before the break and one file-level row."""
        kind = file_format(path)
        try:
            fs, inner = storage.resolve(path)
            with fs.open_input_file(inner) as file:
                data = file.read_at(end - start, start)
            if len(data) != end - start:
                raise OSError(f"read {len(data)} of {end - start} bytes: the file changed while it was read")
            lines = data.split(b"\n")
            if data.endswith(b"\n"):
                lines.pop()
            yield from self._line_records(path, lines, first_record, kind)
        except Exception as error:  # noqa: BLE001 - as in records(): reported, never fatal
            if _ends_before(path, start):
                return
            detail = f"{UNREADABLE_FILE}: bytes {start}-{end}: {type(error).__name__}: {error}"
            yield _row(path, FILE_RECORD, f"{start}".encode(), None, None, detail)

    def _lines(self, path: str, kind: str) -> Iterator[dict[str, Any]]:
        with _open(path) as stream:
            head = stream.read(LINE_CHUNK)
            check_content(head, kind)
            yield from self._line_records(path, _split_lines(stream, head), 0, kind)

    def _line_records(self, path: str, lines: Iterable[bytes], first_record: int, kind: str) -> Iterator[dict[str, Any]]:
        """A record per non-blank line, numbered from ``first_record`` (blank lines keep their numbers)."""
        for number, line in enumerate(lines, first_record):
            content = line.rstrip(b"\r")
            if content.strip():
                yield self._parse(path, number, content, kind)

    def _parse(self, path: str, number: int, content: bytes, kind: str) -> dict[str, Any]:
        """One record from its bytes. The doc_id hashes ``content`` as read, a leading BOM included."""
        try:
            decoded = (content.removeprefix(UTF8_BOM) if number == 0 else content).decode("utf-8")
        except UnicodeDecodeError:
            return _row(path, number, content, None, None, INVALID_UTF8)
        if kind == "txt":
            return _row(path, number, content, decoded, None, None)
        try:  # strict=False: raw control characters inside strings are text, and normalize cleans them
            obj = json.loads(decoded, strict=False, parse_int=_parse_int)
        except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
            return _row(path, number, content, None, None, MALFORMED_JSON)
        row = self._from_object(path, number, content, obj)
        if "\\u" in decoded and not _is_unicode(row[RAW]):  # only a JSON escape makes a lone surrogate
            return _row(path, number, content, None, row["id"], LONE_SURROGATE)
        return row

    def _from_object(self, path: str, number: int, content: bytes, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, dict):
            return _row(path, number, content, None, None, NOT_AN_OBJECT)
        record_id = obj.get(self.cfg.id_field)
        record_id = None if record_id is None else _as_text(record_id)
        if self.cfg.text_field not in obj:
            return _row(path, number, content, None, record_id, MISSING_TEXT)
        text = obj[self.cfg.text_field]
        if isinstance(text, _Undecodable):
            return _row(path, number, content, None, record_id, INVALID_UTF8)
        if not isinstance(text, str):
            return _row(path, number, content, None, record_id, TEXT_NOT_STRING)
        return _row(path, number, content, text, record_id, None)

    def _whole_file(self, path: str) -> Iterator[dict[str, Any]]:
        with _open(path) as stream:
            content = stream.read()
        check_content(content[:LINE_CHUNK], "txt")
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
            fields = batch.schema.names
            for values in zip(*(_column_values(batch.column(name)) for name in fields)):
                obj = dict(zip(fields, values))
                content = json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str).encode()
                yield self._from_object(path, number, content, obj)
                number += 1


def _ends_before(path: str, position: int) -> bool:
    """Whether the file now ends before byte ``position`` (a file that is gone ends at 0)."""
    try:
        fs, inner = storage.resolve(path)
        info = fs.get_file_info(inner)
    except Exception:  # noqa: BLE001 - cannot tell: the range reports its own failure
        return False
    size = info.size if info.type == pafs.FileType.File else 0
    return size is not None and size < position


def _by_lines(kind: str, cfg: ReadConfig) -> bool:
    """JSONL, and text in line mode, hold a record per line; Parquet and text in file mode do not."""
    return kind == "jsonl" or (kind == "txt" and cfg.txt_mode == "line")


def check_content(head: bytes, kind: str) -> None:
    """Raise when the first (decompressed) bytes of a JSONL or text file are another format.

    A file counts as gzip, zstd, bzip2 or Parquet only when it starts with that format's magic
    bytes and those first bytes are not UTF-8, so a text that happens to begin with "PAR1" reads.
    """
    found = next((name for magic, name in MAGIC.items() if head.startswith(magic)), None)
    if found is None:
        return
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        raise InputError(f"{CONTENT_MISMATCH}: the file holds {found} data, but its name says {kind}") from None


class _Undecodable(bytes):
    """A value of a Parquet string column that is not UTF-8."""


def _column_values(array: pa.Array) -> list[Any]:
    """Python values of one column; invalid UTF-8 in a string column becomes ``_Undecodable``, not an error."""
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        return array.to_pylist()
    try:
        array.validate(full=True)
    except pa.ArrowInvalid:
        binary = array.view(pa.large_binary() if pa.types.is_large_string(array.type) else pa.binary())
        return [None if raw is None else _decoded(raw) for raw in binary.to_pylist()]
    return array.to_pylist()


def _decoded(raw: bytes) -> str | _Undecodable:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return _Undecodable(raw)


def _parse_int(digits: str) -> int | float:
    """JSON integers too long for Python's int() (over 4300 digits) become floats instead of failing the record."""
    return int(digits) if len(digits) <= 4000 else float(digits)


def _is_unicode(text: str | None) -> bool:
    """False for a str holding a lone surrogate, which no Unicode encoding (nor Arrow) accepts."""
    if text is None:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _as_text(value: Any) -> str:
    """A record's own id as text Arrow accepts (a lone surrogate is written as its escape)."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def _split_lines(stream: IO[bytes], head: bytes = b"", chunk_size: int = LINE_CHUNK) -> Iterator[bytes]:
    """Lines without their newline, read in chunks: the same code for every compression.

    A line longer than a chunk is gathered as a list of pieces and joined once, so a 20 MB line
    costs its own size, not a copy per chunk.
    """
    pieces: list[bytes] = []
    chunk = head or stream.read(chunk_size)
    while chunk:
        lines = chunk.split(b"\n")
        if len(lines) > 1:
            yield b"".join([*pieces, lines[0]])
            yield from lines[1:-1]
            pieces = []
        pieces.append(lines[-1])
        chunk = stream.read(chunk_size)
    if last := b"".join(pieces):
        yield last


def ranges(path: str, cfg: ReadConfig) -> list[dict[str, Any]]:
    """How a file is read: line-aligned byte ranges of an uncompressed JSONL or text file (line mode), about
    ``cfg.range_bytes`` each, with the record number of each range's first line (the newlines before it);
    for any other file, a small one, or one that cannot be read or is not what its name says, one row for
    the whole file (``end`` null), which ``RecordReader.records`` reads and reports as before."""
    whole = [{"path": path, "start": 0, "end": None, "first_record": 0}]
    kind = file_format(path)
    if not _by_lines(kind, cfg) or path.lower().endswith(COMPRESSION_SUFFIXES):
        return whole
    found, start, first_record = [], 0, 0  # ranges so far; the next range's start and first record number
    position, newlines = 0, 0  # bytes read, and newlines in them
    target = cfg.range_bytes
    try:
        fs, inner = storage.resolve(path)
        with fs.open_input_stream(inner, compression=None) as stream:
            while chunk := stream.read(SCAN_CHUNK):
                if position == 0:
                    check_content(chunk, kind)
                at = max(0, target - 1 - position)
                while (cut := chunk.find(b"\n", at)) >= 0:  # the first line end at or after the target
                    found.append((start, position + cut + 1, first_record))
                    start, first_record = position + cut + 1, newlines + chunk.count(b"\n", 0, cut + 1)
                    target = start + cfg.range_bytes
                    at = max(cut + 1, target - 1 - position)
                newlines += chunk.count(b"\n")
                position += len(chunk)
    except Exception:  # noqa: BLE001 - the whole-file read reports it, as for any file
        return whole
    if position > start:
        found.append((start, position, first_record))
    if len(found) < 2:
        return whole
    return [{"path": path, "start": a, "end": b, "first_record": n} for a, b, n in found]


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
    """Ray Data callable: a batch of file paths or of ranges (``ranges``) in, record batches out.

    A generator, so memory stays bounded: a batch is yielded at ``batch_size`` records or at
    ``MAX_BATCH_CHARS`` characters of text, whichever comes first.
    """

    def __init__(self, cfg: ReadConfig):
        self.reader = RecordReader(cfg)
        self.batch_size = cfg.batch_size

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        rows: list[dict[str, Any]] = []
        chars = 0
        for part in batch.to_pylist():
            for row in self.reader.part_records(part):
                rows.append(row)
                chars += len(row[RAW] or "")
                if len(rows) == self.batch_size or chars >= MAX_BATCH_CHARS:
                    yield pa.Table.from_pylist(rows, schema=RECORD_SCHEMA)
                    rows, chars = [], 0
        if rows:
            yield pa.Table.from_pylist(rows, schema=RECORD_SCHEMA)


def apply(files: list[str], cfg: ReadConfig):
    """One read task per range of a file (``ranges``): a task per file finds them, and each range becomes
    a block of its own (a strict repartition, which Ray does not fuse into the map after it), so the read,
    normalize and sign maps fused after it run a task per range."""
    import ray.data

    paths = ray.data.from_items([{"path": path} for path in files], override_num_blocks=max(1, len(files)))
    parts = paths.map_batches(_ranges_batch, fn_kwargs={"cfg": cfg}, batch_size=1, batch_format="pyarrow")
    parts = parts.repartition(target_num_rows_per_block=1, strict=True)
    return parts.map_batches(_read_file_batch, fn_kwargs={"cfg": cfg}, batch_size=1, batch_format="pyarrow")


RANGE_SCHEMA = pa.schema([("path", pa.string()), ("start", pa.int64()), ("end", pa.int64()), ("first_record", pa.int64())])


def _ranges_batch(batch: pa.Table, cfg: ReadConfig) -> pa.Table:
    return pa.Table.from_pylist([r for path in batch.column("path").to_pylist() for r in ranges(path, cfg)],
                                schema=RANGE_SCHEMA)


@functools.lru_cache(maxsize=4)
def _reader_for(cfg: ReadConfig) -> FileReader:
    """One reader per Ray worker process and config. Plain tasks rather than an actor pool: the
    normalize and signing maps fuse into the same task, and no process is started for the reader."""
    return FileReader(cfg)


def _read_file_batch(batch: pa.Table, cfg: ReadConfig) -> Iterator[pa.Table]:
    yield from _reader_for(cfg)(batch)
