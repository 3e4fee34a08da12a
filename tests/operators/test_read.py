"""Read core: every record accounted for, bad records rejected with a reason, never a crash."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from operators import read
from operators.columns import DETAIL, DOC_ID, FATE, RAW, RECORD, REJECTED
from operators.read import (
    FILE_RECORD,
    InputError,
    ReadConfig,
    RecordReader,
    doc_id_for,
    file_format,
    list_inputs,
)

GOOD = {"id": "a", "text": "今天天气很好。"}


def records(path: Path, **cfg) -> list[dict]:
    return list(RecordReader(ReadConfig(**cfg)).records(str(path)))


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_jsonl_bad_records_are_rejected_with_reasons(tmp_path):
    path = write_lines(
        tmp_path / "a.jsonl",
        [
            json.dumps(GOOD, ensure_ascii=False).encode(),
            b"",
            b"{not json",
            b"[1, 2]",
            b'{"id": "b"}',
            b'{"text": 42}',
            b'{"text": null}',
            '{"text": "好"}'.encode("utf-8")[:-3] + b"\xff\xfe\"}",
            b"   ",
        ],
    )
    rows = records(path)
    assert [r[RECORD] for r in rows] == [0, 2, 3, 4, 5, 6, 7]
    assert rows[0][RAW] == GOOD["text"] and rows[0][FATE] is None and rows[0]["id"] == "a"
    assert [(r[FATE], r[DETAIL]) for r in rows[1:]] == [
        (REJECTED, "malformed_json"),
        (REJECTED, "not_an_object"),
        (REJECTED, "missing_text"),
        (REJECTED, "text_not_string"),
        (REJECTED, "text_not_string"),
        (REJECTED, "invalid_utf8"),
    ]
    assert len({r[DOC_ID] for r in rows}) == len(rows)


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst"])
def test_compressed_jsonl(tmp_path, suffix):
    body = "\n".join(json.dumps({"text": f"第{i}行文字"}, ensure_ascii=False) for i in range(5)).encode()
    data = gzip.compress(body) if suffix.endswith(".gz") else zstandard.ZstdCompressor().compress(body)
    path = tmp_path / f"a{suffix}"
    path.write_bytes(data)
    assert [r[RAW] for r in records(path)] == [f"第{i}行文字" for i in range(5)]


def test_truncated_gzip_keeps_records_before_the_cut(tmp_path):
    body = "\n".join(json.dumps({"text": f"第{i}行" * 50}, ensure_ascii=False) for i in range(2000)).encode()
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(gzip.compress(body)[:-2000])
    rows = records(path)
    assert rows[-1][RECORD] == FILE_RECORD and rows[-1][DETAIL].startswith("unreadable_file")
    kept = [r for r in rows if r[RECORD] != FILE_RECORD]
    assert len(kept) > 100 and all(r[FATE] is None for r in kept)


def test_txt_line_and_file_modes(tmp_path):
    path = write_lines(tmp_path / "a.txt", ["第一行。".encode(), b"", "第三行。".encode()])
    assert [(r[RECORD], r[RAW]) for r in records(path)] == [(0, "第一行。"), (2, "第三行。")]
    whole = records(path, txt_mode="file")
    assert [(r[RECORD], r[RAW]) for r in whole] == [(0, "第一行。\n\n第三行。\n")]


def test_parquet_rows_and_missing_column(tmp_path):
    pq.write_table(pa.table({"text": ["甲文", None, "丙文"], "id": ["1", "2", "3"]}), tmp_path / "a.parquet")
    rows = records(tmp_path / "a.parquet")
    assert [(r[RECORD], r[RAW], r[DETAIL]) for r in rows] == [(0, "甲文", None), (1, None, "text_not_string"), (2, "丙文", None)]
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "b.parquet")
    (row,) = records(tmp_path / "b.parquet")
    assert row[RECORD] == FILE_RECORD and "no column 'text'" in row[DETAIL]


def test_doc_id_is_stable_and_position_sensitive():
    assert doc_id_for("a.jsonl", 3, b"x") == doc_id_for("a.jsonl", 3, b"x")
    assert doc_id_for("a.jsonl", 3, b"x") != doc_id_for("a.jsonl", 4, b"x")
    assert doc_id_for("a.jsonl", 3, b"x") != doc_id_for("b.jsonl", 3, b"x")


def test_list_inputs_globs_directories_and_errors(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.jsonl", "b.txt", "sub/c.jsonl.gz", "notes.md"):
        (tmp_path / name).write_text("x")
    assert [Path(p).name for p in list_inputs([str(tmp_path / "*.jsonl")])] == ["a.jsonl"]
    assert [Path(p).name for p in list_inputs([str(tmp_path / "**/*.jsonl*")])] == ["a.jsonl", "c.jsonl.gz"]
    assert sorted(Path(p).name for p in list_inputs([str(tmp_path)])) == ["a.jsonl", "b.txt", "c.jsonl.gz"]
    with pytest.raises(InputError, match="matches no file"):
        list_inputs([str(tmp_path / "missing" / "*.jsonl")])
    with pytest.raises(InputError, match="unsupported input file type"):
        list_inputs([str(tmp_path / "notes.md")])


def test_file_format_ignores_compression_suffix():
    assert file_format("x.jsonl.zst") == "jsonl"
    assert file_format("x.TXT.gz") == "txt"
    assert file_format("s3://b/x.parquet") == "parquet"


def test_each_file_is_read_normalized_and_signed_in_a_task_of_its_own(ray_local, tmp_path):
    """Ray fuses read, normalize and sign into one task per bundle of input rows (file paths); a map that
    asked for batches of N rows would make that bundle N paths, one task for every file."""
    from operators import dedup, normalize
    from operators.dedup import DedupConfig
    from operators.normalize import NormalizeConfig

    files = [write_lines(tmp_path / f"part{i}.jsonl", [json.dumps({"text": f"第{i}篇：{'文字' * 20}{n}"}).encode()
                                                        for n in range(30)]) for i in range(3)]
    signed = dedup.sign(normalize.apply(read.apply([str(f) for f in files], ReadConfig()), NormalizeConfig()),
                        DedupConfig()).materialize()
    assert signed.count() == 90
    assert re.search(r"_read_file_batch[^:]*: 3 tasks executed", signed.stats())
