"""Reliability of the real build: bad inputs, accounting, ``verify`` and memory.

One build on the session's local Ray (2 CPUs) reads every kind of bad file (``tests/bad_inputs.py``)
plus a 20 MB document and several 1 MB ones, while a watcher records the peak memory of every Ray
worker. The tests check that one output: fates per file, the report, ``verify`` on it and on
corrupted copies, and the workers' peak memory. (Determinism and faults: ``test_determinism.py``.)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from inspection.verify import CannotCheck, verify
from pipeline.cli import main as cli_main
from pipeline.config import load_config
from pipeline.driver import build_corpus
from tests import processes
from tests.bad_inputs import UNREADABLE, write_bad_files, write_large_files
from tests.contracts import expected_records, read_shards, read_table

pytestmark = pytest.mark.skipif(not processes.available(), reason="needs Linux /proc to watch Ray's workers")

BIG_CHARS = 6_700_000  # 20 MB of UTF-8: three bytes a character
MEDIUM_DOCS, MEDIUM_CHARS = 8, 340_000  # 1 MB each
WORKER_MEMORY_BOUND_MB = 2048  # the bound README "Limits" states for these documents


def build_config(root: Path, legacy_model_dir: Path, vocab_path: Path, output: Path) -> Path:
    config = root / f"{output.name}.yaml"
    config.write_text(
        json.dumps(
            {
                "inputs": [str(root / "in" / "bad" / "*"), str(root / "in" / "large")],
                "output": str(output),
                "segment": {"model": str(legacy_model_dir)},
                "tokenize": {"tokenizer": str(vocab_path), "max_seq_len": 64},
                "write": {"shard_rows": 50},
            }
        )
    )
    return config


@pytest.fixture(scope="module")
def built(ray_local, tmp_path_factory, legacy_model_dir, vocab_path):
    root = tmp_path_factory.mktemp("reliability")
    files = write_bad_files(root / "in" / "bad")
    files.update(write_large_files(root / "in" / "large", BIG_CHARS, MEDIUM_DOCS, MEDIUM_CHARS))
    out = root / "out"
    config = build_config(root, legacy_model_dir, vocab_path, out)
    watcher = processes.Watcher(os.getpid())
    watcher.start()
    started = time.perf_counter()
    try:
        report = build_corpus(load_config(config))
    finally:
        watcher.stop()
    print(f"\nreliability build: {time.perf_counter() - started:.0f} s, {watcher.cpu_total()} CPU s in Ray's processes; "
          f"peak MiB per Ray worker role: {watcher.ray_peaks()}")
    fates = read_table(out, "fates")
    return {"root": root, "files": files, "out": out, "config": config, "report": report, "fates": fates, "watcher": watcher}


def fates_by_file(built) -> dict[str, dict[int, tuple[str, str | None]]]:
    rows: dict[str, dict[int, tuple[str, str | None]]] = {}
    for row in built["fates"].to_pylist():
        rows.setdefault(row["source"], {})[row["record"]] = (row["fate"], row["detail"])
    return rows


def matches(got: tuple[str, str | None], want: tuple[str, str | None]) -> bool:
    """A file-level reason starts with ``unreadable_file``; every other reason is exact."""
    if want[1] == UNREADABLE:
        return got[0] == want[0] and (got[1] or "").startswith(UNREADABLE)
    return got == want


# -- bad inputs ----------------------------------------------------------------------------------


def test_every_bad_record_gets_its_fate_and_reason(built):
    by_file = fates_by_file(built)
    for name, spec in built["files"].items():
        got = by_file.get(str(spec["path"].resolve()), {})
        want = spec["expect"]
        truncated = -1 in want and len(want) > 1
        if truncated:  # records before the cut are kept; which later ones survive depends on the codec's buffering
            assert set(want) <= set(got), name
        else:
            assert set(got) == set(want), f"{name}: records {sorted(got)} != {sorted(want)}"
        for record, fate in want.items():
            assert matches(got[record], fate), f"{name} record {record}: {got[record]} != {fate}"


def test_truncated_files_keep_every_record_before_the_cut(built):
    by_file = fates_by_file(built)
    for name in ("cut.jsonl.gz", "cut.jsonl.zst"):
        got = by_file[str(built["files"][name]["path"].resolve())]
        records = sorted(r for r in got if r >= 0)
        assert records == list(range(len(records))) and len(records) >= 150, name
        assert all(got[r] == ("kept", None) for r in records), name


def test_unreadable_files_are_reported_and_the_build_goes_on(built):
    unreadable = {row["source"]: row["reason"] for row in built["report"]["unreadable_files"]}
    want = {str(spec["path"].resolve()) for spec in built["files"].values() if -1 in spec["expect"]}
    assert set(unreadable) == want
    assert all(reason.startswith(UNREADABLE) for reason in unreadable.values())
    assert "content_mismatch" in unreadable[str(built["files"]["gzip_named.jsonl"]["path"].resolve())]
    assert "no column 'text'" in unreadable[str(built["files"]["no_text.parquet"]["path"].resolve())]
    assert built["report"]["fates"]["kept"] > 0


def test_a_directory_matched_by_the_glob_is_not_read(built):
    sources = set(built["fates"].column("source").to_pylist())
    assert not any("dir.jsonl" in source for source in sources)
    assert str(built["files"]["empty.jsonl"]["path"].resolve()) in built["report"]["sources"]


# -- accounting ----------------------------------------------------------------------------------


def test_every_readable_file_has_one_fates_row_per_record(built):
    rows_per_source = Counter(built["fates"].column("source").to_pylist())
    for name, spec in built["files"].items():
        source = str(spec["path"].resolve())
        assert built["report"]["sources"][source] == rows_per_source.get(source, 0), name
        if -1 not in spec["expect"]:  # readable: its records, counted here from the raw bytes
            assert rows_per_source.get(source, 0) == len(expected_records(spec["path"])), name


def test_report_counts_equal_the_fates_table(built):
    fates = built["fates"]
    counts = Counter(fates.column("fate").to_pylist())
    for fate in ("kept", "exact_dup", "near_dup", "filtered", "rejected"):
        assert built["report"]["fates"][fate] == counts.get(fate, 0), fate
    assert built["report"]["fates"]["records"] == fates.num_rows
    reasons = Counter(f"{f}.{d.split(':', 1)[0]}" for f, d in zip(fates.column("fate").to_pylist(), fates.column("detail").to_pylist()) if f in ("filtered", "rejected"))
    assert {k: v for k, v in built["report"]["fates"].items() if "." in k} == dict(reasons)


# -- verify --------------------------------------------------------------------------------------


def test_verify_passes_on_the_build(built, capsys):
    assert verify(str(built["out"])) == []
    assert cli_main(["verify", str(built["out"])]) == 0
    assert "ok" in capsys.readouterr().out


def test_verify_works_in_passes_when_ids_exceed_its_budget(built):
    assert verify(str(built["out"]), max_ids=100) == []  # 16 passes by doc_id prefix


def flip_byte(out: Path) -> str:
    shard = sorted((out / "shards").glob("*.arrow"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    return f"shards/{shard.name}: size/sha256"


def delete_file(out: Path) -> str:
    fates = sorted((out / "fates").glob("*.parquet"))[0]
    fates.unlink()
    return f"fates/{fates.name}: listed in the manifest but missing"


def drop_docs_row(out: Path) -> str:
    """Remove one doc and make the manifest agree with the file, so only the identities can tell."""
    path = sorted((out / "docs").glob("*.parquet"))[0]
    table = pq.read_table(path)
    dropped = table.column("doc_id")[0].as_py()
    pq.write_table(table.slice(1), path)
    manifest = json.loads((out / "manifest.json").read_text())
    entry = next(e for e in manifest["files"] if e["path"] == f"docs/{path.name}")
    entry.update(size=path.stat().st_size, sha256=hashlib.sha256(path.read_bytes()).hexdigest(), rows=table.num_rows - 1)
    (out / "manifest.json").write_text(json.dumps(manifest))
    return f"kept doc {dropped} is not in docs"


def add_unlisted_file(out: Path) -> str:
    shutil.copy(sorted((out / "docs").glob("*.parquet"))[0], out / "docs" / "part-v09999-000000.parquet")
    return "docs/part-v09999-000000.parquet: on disk but not in the manifest"


@pytest.mark.parametrize("corrupt", [flip_byte, delete_file, drop_docs_row, add_unlisted_file])
def test_verify_finds_corruption(built, tmp_path, corrupt, capsys):
    out = tmp_path / "out"
    shutil.copytree(built["out"], out)
    expected = corrupt(out)
    problems = verify(str(out))
    assert any(expected in problem for problem in problems), problems
    assert cli_main(["verify", str(out)]) == 1
    assert expected in capsys.readouterr().out


def test_verify_cannot_check_without_a_manifest_or_a_version(built, tmp_path, capsys):
    """Exit 2 when there is nothing to check; exit 1 is for problems found in a corpus."""
    with pytest.raises(CannotCheck, match="no manifest.json"):
        verify(str(tmp_path))
    assert cli_main(["verify", str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    assert cli_main(["verify", str(built["out"]), "--version", "99"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.splitlines()) == 1


# -- memory --------------------------------------------------------------------------------------


def test_large_documents_pass_every_stage_within_bounded_memory(built):
    docs = read_table(built["out"], "docs")
    lengths = sorted(len(text) for text in docs.column("text").to_pylist())
    assert lengths[-1] == BIG_CHARS and lengths[-1 - MEDIUM_DOCS : -1] == [MEDIUM_CHARS] * MEDIUM_DOCS
    shards, _ = read_shards(built["out"])
    assert built["report"]["corpus"]["tokens"] > BIG_CHARS + MEDIUM_DOCS * MEDIUM_CHARS
    peaks = built["watcher"].ray_peaks()
    assert any("_segment_batch" in role for role in peaks) and any("_tokenize_batch" in role for role in peaks), peaks
    assert max(peaks.values()) < WORKER_MEMORY_BOUND_MB, peaks
