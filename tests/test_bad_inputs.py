"""The reader core on bad inputs, without Ray: each problem becomes a fate with a reason, never an exception.

The same files go through the real build in ``tests/test_reliability.py``; here each case is
checked where it is decided, in milliseconds.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pyarrow as pa
import pytest

from operators import read
from operators.columns import DETAIL, FATE, RAW, RECORD
from operators.read import FILE_RECORD, RECORD_SCHEMA, FileReader, ReadConfig, RecordReader, doc_id_for
from tests.bad_inputs import KEPT, UNREADABLE, write_bad_files


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, dict]:
    return write_bad_files(tmp_path_factory.mktemp("bad"))


def rows_of(path: Path, **cfg) -> dict[int, dict]:
    return {row[RECORD]: row for row in RecordReader(ReadConfig(**cfg)).records(str(path))}


def fate_of(row: dict) -> tuple[str, str | None]:
    return (row[FATE], row[DETAIL]) if row[FATE] else KEPT


def test_each_bad_file_reads_to_its_expected_fates(bad_files):
    for name, spec in bad_files.items():
        rows = rows_of(spec["path"])
        for record, (fate, detail) in spec["expect"].items():
            if fate in ("kept", "filtered"):  # filters are normalize's; here the record must just be read
                assert rows[record][FATE] is None and isinstance(rows[record][RAW], str), (name, record)
            elif detail == UNREADABLE:
                assert rows[record][FATE] == fate and rows[record][DETAIL].startswith(UNREADABLE), (name, rows[record])
            else:
                assert fate_of(rows[record]) == (fate, detail), (name, record)


def test_every_row_fits_the_record_schema(bad_files):
    """Arrow accepts every row (a lone surrogate would make the whole batch, and the build, fail)."""
    reader = FileReader(ReadConfig())
    paths = pa.table({"path": [str(spec["path"]) for spec in bad_files.values()]})
    tables = list(reader(paths))
    assert sum(t.num_rows for t in tables) == sum(len(rows_of(spec["path"])) for spec in bad_files.values())
    assert all(t.schema.equals(RECORD_SCHEMA) for t in tables)


def test_lone_surrogates_are_rejected_and_escaped_in_ids(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"text": "ok\\ud800"}\n{"text": "ok", "id": "a\\udfffb"}\n{"text": "\\ud83d\\ude00 pair"}\n')
    rows = rows_of(path)
    assert fate_of(rows[0]) == ("rejected", "lone_surrogate")
    assert rows[1][FATE] is None and rows[1]["id"] == "a\\udfffb"
    assert rows[2][RAW] == "\U0001f600 pair"


def test_a_utf8_bom_is_not_part_of_the_json_but_is_part_of_the_doc_id(tmp_path):
    path = tmp_path / "bom.jsonl"
    content = b'\xef\xbb\xbf{"text": "x"}'
    path.write_bytes(content + b"\n")
    (row,) = rows_of(path).values()
    assert row[RAW] == "x" and row["doc_id"] == doc_id_for(str(path), 0, content)


def test_content_in_another_format_is_one_file_level_row(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(gzip.compress(b'{"text": "x"}\n'))
    (tmp_path / "b.txt").write_bytes(b"PAR1 is how this text starts\n")
    (row,) = rows_of(tmp_path / "a.jsonl").values()
    assert row[RECORD] == FILE_RECORD and "content_mismatch" in row[DETAIL] and "gzip" in row[DETAIL]
    assert rows_of(tmp_path / "b.txt")[0][RAW] == "PAR1 is how this text starts"


def test_a_20mb_line_is_read_whole(tmp_path):
    text = "我们在北京大学学习。" * 670_000  # 20 MB of UTF-8
    path = tmp_path / "big.jsonl"
    path.write_bytes(b'{"text": "a"}\n' + json.dumps({"text": text}, ensure_ascii=False).encode() + b'\n{"text": "b"}')
    rows = rows_of(path)
    assert [rows[0][RAW], len(rows[1][RAW]), rows[2][RAW]] == ["a", len(text), "b"]


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 64])
def test_split_lines_at_any_chunk_size(chunk_size):
    data = b"first\n\nsecond line\nno newline at the end"
    assert list(read._split_lines(io.BytesIO(data), b"", chunk_size)) == data.split(b"\n")


def test_reader_batches_are_bounded_by_characters(tmp_path, monkeypatch):
    monkeypatch.setattr(read, "MAX_BATCH_CHARS", 1000)
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"".join(json.dumps({"text": "x" * 300}).encode() + b"\n" for _ in range(10)))
    tables = list(FileReader(ReadConfig())(pa.table({"path": [str(path)]})))
    assert [t.num_rows for t in tables] == [4, 4, 2]


def test_parquet_text_with_invalid_utf8_rejects_only_that_row(bad_files):
    rows = rows_of(bad_files["bad_utf8.parquet"]["path"])
    assert [fate_of(rows[i]) for i in range(3)] == [KEPT, ("rejected", "invalid_utf8"), ("rejected", "text_not_string")]


def test_json_numbers_python_refuses_do_not_lose_the_record(tmp_path):
    path = tmp_path / "n.jsonl"
    path.write_bytes(b'{"text": "x", "n": ' + b"9" * 10_000 + b'}\n{"text": "y"}\n')
    assert [rows_of(path)[i][RAW] for i in (0, 1)] == ["x", "y"]
