"""Checks of DESIGN.md contract 4 on a built output, written independently of the pipeline's code.

Used by the end-to-end tests and by the build of ../shared data. Each check recomputes what
it expects from the inputs or the docs table instead of trusting the pipeline's own counters.
"""

from __future__ import annotations

import glob
import hashlib
import json
import zlib
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard
from transformers import BertTokenizerFast

FATES = {"kept", "exact_dup", "near_dup", "filtered", "rejected"}
STRUCTURAL = {"[CLS]", "[SEP]", "[PAD]", "[MASK]"}
FILE_RECORD = -1  # the fates row of a file-level problem


def _decompressed(path: Path) -> bytes:
    """The bytes a reader can get out of the file, up to any truncation."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        return zlib.decompressobj(wbits=31).decompress(data)
    if path.suffix == ".zst":
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


def expected_records(path: Path) -> list[int]:
    """Record numbers of a raw file, counted independently: non-blank lines, or Parquet rows."""
    if path.suffix == ".parquet":
        return list(range(pq.read_metadata(path).num_rows))
    return [i for i, line in enumerate(_decompressed(path).split(b"\n")) if line.strip()]


def read_table(out: Path, folder: str) -> pa.Table:
    files = sorted(glob.glob(str(out / folder / "*.parquet")))
    assert files, f"no {folder}/*.parquet"
    return pa.concat_tables(pq.read_table(f) for f in files)


def read_shards(out: Path) -> tuple[pa.Table, pa.Schema]:
    files = sorted(glob.glob(str(out / "shards" / "*.arrow")))
    assert files, "no shards/*.arrow"
    tables = [pa.ipc.open_stream(pa.memory_map(f)).read_all() for f in files]
    return pa.concat_tables(tables), tables[0].schema


def check_manifest(out: Path) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    canonical = json.dumps(manifest["config"], sort_keys=True, ensure_ascii=False).encode()
    assert manifest["config_fingerprint"] == hashlib.sha256(canonical).hexdigest(), "config fingerprint"
    for entry in manifest["files"]:
        data = (out / entry["path"]).read_bytes()
        assert len(data) == entry["size"], entry["path"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["path"]
    listed = {e["path"] for e in manifest["files"]}
    for folder in ("docs", "fates", "shards"):
        on_disk = {f"{folder}/{p.name}" for p in (out / folder).iterdir()}
        assert on_disk == {p for p in listed if p.startswith(folder + "/")}, folder
    return manifest


def check_fates(out: Path, inputs: list[Path]) -> pa.Table:
    """Every input record exactly once; a file that broke off has every record before the break plus one -1 row."""
    fates = read_table(out, "fates")
    assert fates.column_names[:5] == ["source", "record", "doc_id", "fate", "detail"]
    rows = list(zip(fates.column("source").to_pylist(), fates.column("record").to_pylist()))
    assert len(rows) == len(set(rows)), "a record appears twice in fates"
    by_source: dict[str, set[int]] = {}
    for source, record in rows:
        by_source.setdefault(source, set()).add(record)
    for path in inputs:
        got, want = by_source.pop(str(path.resolve())), expected_records(path)
        if FILE_RECORD in got:
            got.discard(FILE_RECORD)
            want = [r for r in want if r <= max(got, default=-1)]
        assert got == set(want), f"fates do not cover exactly the records of {path}"
    assert not by_source, f"fates name sources that are not inputs: {sorted(by_source)}"
    assert set(fates.column("fate").to_pylist()) <= FATES
    return fates


def check_docs(out: Path, fates: pa.Table) -> pa.Table:
    docs = read_table(out, "docs")
    assert docs.column_names[:4] == ["doc_id", "source", "text", "words"]
    words = docs.schema.field("words").type
    assert pa.types.is_list(words) and pa.types.is_string(words.value_type), words
    for text, words in zip(docs.column("text").to_pylist(), docs.column("words").to_pylist()):
        assert "".join(words) == text
        assert all(words), "empty word"
    kept = {d for d, f in zip(fates.column("doc_id").to_pylist(), fates.column("fate").to_pylist()) if f == "kept"}
    doc_ids = docs.column("doc_id").to_pylist()
    assert len(doc_ids) == len(set(doc_ids)) and set(doc_ids) == kept
    for fate, detail in zip(fates.column("fate").to_pylist(), fates.column("detail").to_pylist()):
        if fate in ("exact_dup", "near_dup"):
            assert detail in kept, "a duplicate points at a document that was not kept"
        elif fate in ("filtered", "rejected"):
            assert detail, "a filtered/rejected record without a reason"
    return docs


def expected_tokens(docs: pa.Table, tokenizer: BertTokenizerFast) -> tuple[list[int], list[bool]]:
    """Every document's tokens and word starts, recomputed from text and words, in docs order."""
    ids, starts = [], []
    for text, words in zip(docs.column("text").to_pylist(), docs.column("words").to_pylist()):
        word_starts, position = set(), 0
        for word in words:
            word_starts.add(position)
            position += len(word)
        # a text that spells [SEP] or [MASK] is text: the pipeline never turns it into a special token
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, split_special_tokens=True)
        tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
        ids.extend(encoded["input_ids"])
        starts.extend(
            not token.startswith("##") and begin in word_starts for token, (begin, _) in zip(tokens, encoded["offset_mapping"])
        )
    return ids, starts


def check_shards(out: Path, docs: pa.Table, tokenizer: BertTokenizerFast, max_seq_len: int) -> pa.Table:
    shards, schema = read_shards(out)
    assert schema.field("input_ids").type == pa.list_(pa.uint16())
    assert schema.field("word_start").type == pa.list_(pa.bool_())
    metadata = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    assert {"tokenizer", "vocab_sha256", "segment_model", "max_seq_len"} <= set(metadata), metadata
    assert int(metadata["max_seq_len"]) == max_seq_len
    special = {tokenizer.convert_tokens_to_ids(t) for t in STRUCTURAL}
    flat_ids, flat_starts = [], []
    for ids, starts in zip(shards.column("input_ids").to_pylist(), shards.column("word_start").to_pylist()):
        assert len(ids) == len(starts) <= max_seq_len
        assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
        for token, start in zip(ids, starts):
            if token in special:
                assert start
            else:
                flat_ids.append(token)
                flat_starts.append(start)
    want_ids, want_starts = expected_tokens(docs, tokenizer)
    assert flat_ids == want_ids, "packing lost, added or reordered tokens"
    assert flat_starts == want_starts, "word_start breaks the rule"
    return shards


def check_report(out: Path, fates: pa.Table) -> dict:
    report = json.loads((out / "report.json").read_text())
    counts = Counter(fates.column("fate").to_pylist())
    for fate in FATES:
        assert report["fates"][fate] == counts.get(fate, 0), fate
    assert report["fates"]["records"] == fates.num_rows
    assert "segment+tokenize+pack" in report["stages"], report["stages"]  # every build that writes shards
    for stage, row in report["stages"].items():
        assert row["seconds"] >= 0 and row["mb_per_s"] >= 0, stage
    return report


def check_corpus(out: Path, inputs: list[Path], tokenizer: BertTokenizerFast, max_seq_len: int) -> dict:
    """Every contract of DESIGN.md section 4; returns the parts for further checks."""
    manifest = check_manifest(out)
    fates = check_fates(out, inputs)
    docs = check_docs(out, fates)
    shards = check_shards(out, docs, tokenizer, max_seq_len)
    report = check_report(out, fates)
    return {"manifest": manifest, "fates": fates, "docs": docs, "shards": shards, "report": report}
