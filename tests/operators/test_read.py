"""Read core: every record accounted for, bad records rejected with a reason, never a crash."""

from __future__ import annotations

import gzip
import itertools
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
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
    ranges,
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


def awkward_lines() -> list[bytes]:
    """Lines a range boundary must not disturb: a BOM, blank lines, a bad record, CRLF, a line longer than
    the ranges, and texts of many lengths."""
    lines = [json.dumps({"text": "今天" * (i % 37), "id": i}, ensure_ascii=False).encode() for i in range(120)]
    lines[0] = b"\xef\xbb\xbf" + lines[0]
    lines[5], lines[6], lines[7], lines[8] = b"", b"   ", b"{not json", b"\xff\xfe"
    lines[9] += b"\r"
    lines[20] = json.dumps({"text": "长" * 3000}, ensure_ascii=False).encode()
    return lines


def read_parts(parts: list[dict], cfg: ReadConfig) -> list[dict]:
    reader = RecordReader(cfg)
    return [row for part in parts for row in reader.part_records(part)]


def read_by_ranges(path: Path, cfg: ReadConfig) -> list[dict]:
    return read_parts(ranges(str(path), cfg), cfg)


@pytest.mark.parametrize("tail", [b"\n", b""])
@pytest.mark.parametrize("range_bytes", [1, 7, 333, 4096, 1 << 20])  # the file is ~12 KB
def test_a_file_read_in_ranges_gives_the_records_of_the_whole_file(tmp_path, tail, range_bytes):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"\n".join(awkward_lines()) + tail)
    cfg = ReadConfig(range_bytes=range_bytes)
    parts = ranges(str(path), cfg)
    assert read_by_ranges(path, cfg) == records(path)
    if range_bytes < path.stat().st_size:  # the ranges tile the file, each starting at a line's first byte
        assert len(parts) > 1 and parts[0]["start"] == 0 and parts[-1]["end"] == path.stat().st_size
        assert all(a["end"] == b["start"] for a, b in itertools.pairwise(parts))
        data = path.read_bytes()
        assert all(data[part["start"] - 1 : part["start"]] == b"\n" for part in parts[1:])
        assert all(data[: part["start"]].count(b"\n") == part["first_record"] for part in parts)
    else:
        assert parts == [{"path": str(path), "start": 0, "end": None, "first_record": 0}]


def test_files_that_are_not_plain_lines_are_read_whole(tmp_path):
    lines = awkward_lines()
    gz = tmp_path / "a.jsonl.gz"
    gz.write_bytes(gzip.compress(b"\n".join(lines)))
    disguised = tmp_path / "b.jsonl"  # gzip bytes under a .jsonl name: reported whole, as before
    disguised.write_bytes(gz.read_bytes())
    text = write_lines(tmp_path / "c.txt", [b"one", b"two"] * 50)
    cfg = ReadConfig(range_bytes=16)
    for path, config in ((gz, cfg), (disguised, cfg), (text, ReadConfig(txt_mode="file", range_bytes=16))):
        assert [p["end"] for p in ranges(str(path), config)] == [None]
        assert read_by_ranges(path, config) == list(RecordReader(config).records(str(path)))
    assert [r[RECORD] for r in read_by_ranges(disguised, cfg)] == [FILE_RECORD]
    assert len(ranges(str(text), ReadConfig(range_bytes=16))) > 1  # a text file of lines is split


@pytest.mark.parametrize("cut", ["at_a_range_start", "inside_a_range", "whole_file"])
def test_a_file_that_became_shorter_breaks_off_once(tmp_path, cut):
    """Cut (or removed) after its ranges were found: the records before the range that holds the new end,
    one file-level row naming that range's bytes, and nothing for the ranges past it."""
    path = write_lines(tmp_path / "a.jsonl", awkward_lines())
    parts = ranges(str(path), ReadConfig(range_bytes=500))
    assert len(parts) > 4
    broken = 0 if cut == "whole_file" else 2
    before = read_parts(parts[:broken], ReadConfig())
    if cut == "whole_file":
        path.unlink()
    else:
        end = parts[broken]["start"] + (0 if cut == "at_a_range_start" else 7)
        path.write_bytes(path.read_bytes()[:end])
    rows = read_parts(parts, ReadConfig())
    assert rows[:-1] == before and [r[RECORD] for r in rows[-1:]] == [FILE_RECORD]
    assert f"bytes {parts[broken]['start']}-{parts[broken]['end']}" in rows[-1][DETAIL]


def test_ranges_that_fail_in_a_whole_file_each_report_their_bytes(tmp_path, monkeypatch):
    """An I/O error while the file is still whole: each range reports its own bytes, under ids of their own."""
    path = write_lines(tmp_path / "a.jsonl", awkward_lines())
    parts = ranges(str(path), ReadConfig(range_bytes=500))[1:3]

    class Failing(pafs.LocalFileSystem):
        def open_input_file(self, path):
            raise OSError("device error")

    monkeypatch.setattr(read.storage, "resolve", lambda uri: (Failing(), uri))
    rows = read_parts(parts, ReadConfig())
    assert [r[RECORD] for r in rows] == [FILE_RECORD, FILE_RECORD]
    assert all(f"bytes {p['start']}-{p['end']}: OSError: device error" in r[DETAIL] for r, p in zip(rows, parts))
    assert len({r[DOC_ID] for r in rows}) == 2


def test_ranges_are_read_in_tasks_of_their_own_in_input_order(ray_local, tmp_path):
    files = [write_lines(tmp_path / f"part{i}.jsonl", awkward_lines()) for i in range(2)]
    paths = [str(f) for f in files]
    by_ranges = read.apply(paths, ReadConfig(range_bytes=2000)).materialize()
    whole = read.apply(paths, ReadConfig()).take_all()
    assert by_ranges.take_all() == whole == [r for path in paths for r in RecordReader(ReadConfig()).records(path)]
    tasks = sum(len(ranges(path, ReadConfig(range_bytes=2000))) for path in paths)
    assert tasks > 2 and re.search(rf"_read_file_batch[^:]*: {tasks} tasks executed", by_ranges.stats())
    with pytest.raises(ValueError, match="range_bytes"):
        ReadConfig(range_bytes=0)
