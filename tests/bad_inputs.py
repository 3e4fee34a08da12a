"""Input files with every kind of problem the reader must survive, and large documents; written by tests.

Each builder writes its files and returns them with the fate (and reason) expected for each
record, so one build can hold them all and the tests assert per file.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from tests.vocab import COMMON_CJK

KEPT = ("kept", None)
UNREADABLE = "unreadable_file"


def rejected(reason: str) -> tuple[str, str]:
    return ("rejected", reason)


def filtered(reason: str) -> tuple[str, str]:
    return ("filtered", reason)


def line(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def random_text(chars: int, seed: int) -> str:
    """Text from the test vocab's characters with a comma or full stop every ~28 characters; no two seeds alike."""
    alphabet = np.array(list(COMMON_CJK + "，" * 15 + "。" * 10))
    picks = np.random.default_rng(seed).integers(len(alphabet), size=chars)
    return "".join(alphabet[picks].tolist())


def paragraph(seed: int) -> str:
    """A text long enough to keep and unlike every other seed's (so none is a near-duplicate)."""
    return random_text(60, seed)


def write_bad_files(folder: Path) -> dict[str, dict]:
    """Every bad input; returns {file name: {"path", "expect": {record: (fate, detail) or (fate, reason prefix)}}}.

    Files that cannot be read at all expect only record -1. ``expect`` of a truncated file lists
    the records before the cut that must be kept (others may be) and the -1 row.
    """
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict] = {}

    def add(name: str, data: bytes, expect: dict[int, tuple]) -> None:
        (folder / name).write_bytes(data)
        files[name] = {"path": folder / name, "expect": expect}

    nested = b"[" * 100_000 + b"]" * 100_000
    jsonl = [
        (line({"id": "good", "text": paragraph(1)}), KEPT),
        (b"{broken", rejected("malformed_json")),
        (b"[1, 2]", rejected("not_an_object")),
        (b'"just a string"', rejected("not_an_object")),
        (b"42", rejected("not_an_object")),
        (b"null", rejected("not_an_object")),
        (b'{"text": 42}', rejected("text_not_string")),
        (b'{"text": ["a", "list"]}', rejected("text_not_string")),
        (b'{"text": null}', rejected("text_not_string")),
        (b'{"text": {"nested": "object"}}', rejected("text_not_string")),
        (b'{"id": "no-text"}', rejected("missing_text")),
        (b'{"text": ""}', filtered("empty")),
        (b'{"text": "   \\t  \\u3000 "}', filtered("empty")),
        (b'{"text": "\\u0000\\u0007\\u001f\\u200b"}', filtered("empty")),
        ('{"text": "%s\x00\x07%s\\u0000"}' % (paragraph(2)[:20], paragraph(2)[20:]), KEPT),  # raw NUL/BEL in the string
        (b'{"text": "\xff\xfe\xfd invalid"}', rejected("invalid_utf8")),
        ('{"text": "%s\\ud800"}' % paragraph(3), rejected("lone_surrogate")),
        (b'{"text": "%s", "n": %s}' % (paragraph(4).encode(), b"7" * 5000), KEPT),  # an int Python refuses to parse
        (b"", None),  # blank: not a record
        ('{"text": "太短"}', filtered("too_short")),
        (nested, rejected("malformed_json")),
        ('{"text": "%s", "id": "\\udfff"}' % paragraph(5), KEPT),  # a lone surrogate in the id only
    ]
    body = b"\n".join(data if isinstance(data, bytes) else data.encode() for data, _ in jsonl) + b"\n"
    add("bad.jsonl", body, {i: fate for i, (_, fate) in enumerate(jsonl) if fate})

    txt = [
        (paragraph(6).encode(), KEPT),
        (b"\xc3\x28 not utf-8 \xa0\xa1", rejected("invalid_utf8")),
        (("\x00" + paragraph(7) + "\x01\x1b").encode(), KEPT),
        (b" \t ", None),
        (b"\x01\x02\x03", filtered("empty")),
    ]
    add("bad.txt", b"\n".join(data for data, _ in txt) + b"\n", {i: fate for i, (_, fate) in enumerate(txt) if fate})
    add("bom.jsonl", b"\xef\xbb\xbf" + line({"text": paragraph(8)}) + b"\n", {0: KEPT})

    def lines(seed: int) -> bytes:
        return b"\n".join(line({"text": random_text(120, seed + i)}) for i in range(400)) + b"\n"

    cut = {0: KEPT, 100: KEPT, -1: rejected(UNREADABLE)}  # records before the cut are kept
    add("cut.jsonl.gz", gzip.compress(lines(1000))[:-300], cut)
    add("cut.jsonl.zst", zstandard.ZstdCompressor().compress(lines(2000))[:-300], cut)

    def parquet(name: str, table: pa.Table, expect: dict[int, tuple]) -> None:
        pq.write_table(table, folder / name)
        files[name] = {"path": folder / name, "expect": expect}

    parquet("no_text.parquet", pa.table({"body": [paragraph(9)]}), {-1: rejected(UNREADABLE)})
    parquet("int_text.parquet", pa.table({"text": [1, 2]}), {0: rejected("text_not_string"), 1: rejected("text_not_string")})
    mixed = pa.array([paragraph(10).encode(), b"\xff\xfe", None], pa.binary()).view(pa.string())
    parquet("bad_utf8.parquet", pa.table({"text": mixed}), {0: KEPT, 1: rejected("invalid_utf8"), 2: rejected("text_not_string")})

    add("gzip_named.jsonl", gzip.compress(lines(3000)), {-1: rejected(UNREADABLE)})
    add("not_parquet.parquet", b"this is not parquet\n" * 10, {-1: rejected(UNREADABLE)})
    add("empty.jsonl", b"", {})
    add("empty.parquet", b"", {-1: rejected(UNREADABLE)})
    (folder / "dir.jsonl").mkdir(exist_ok=True)  # a directory the glob matches: not an input
    (folder / "dir.jsonl" / "inside.jsonl").write_bytes(line({"text": paragraph(11)}) + b"\n")
    return files


def write_large_files(folder: Path, big_chars: int, medium: int = 0, medium_chars: int = 0) -> dict[str, dict]:
    """One document of ``big_chars`` characters and ``medium`` documents of ``medium_chars``, all kept."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "big.jsonl").write_bytes(line({"text": random_text(big_chars, seed=1)}) + b"\n")
    files = {"big.jsonl": {"path": folder / "big.jsonl", "expect": {0: KEPT}}}
    if medium:
        lines = [line({"text": random_text(medium_chars, seed=100 + i)}) for i in range(medium)]
        (folder / "medium.jsonl").write_bytes(b"\n".join(lines) + b"\n")
        files["medium.jsonl"] = {"path": folder / "medium.jsonl", "expect": {i: KEPT for i in range(medium)}}
    return files
