"""End to end: the real pipeline on a local Ray instance, checked against every output contract."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from transformers import BertTokenizerFast

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.driver import build_corpus
from tests.conftest import REPO
from tests.contracts import check_corpus, read_shards, read_table

SAMPLE = REPO / "examples" / "sample"
PARAGRAPH = (
    "城市的夜晚总是很安静，街道两旁的路灯一盏一盏地亮起来。"
    "人们下班以后回到家里，和家人一起吃饭、聊天，然后早早休息，准备迎接新的一天。"
)


def bad_inputs(folder: Path) -> list[Path]:
    """A file of deliberate problems, a truncated gzip, and a near/exact duplicate pair."""
    folder.mkdir()
    bad = folder / "bad.jsonl"
    bad.write_bytes(
        b"\n".join(
            [
                json.dumps({"id": "p", "text": PARAGRAPH}, ensure_ascii=False).encode(),
                json.dumps({"id": "exact", "text": PARAGRAPH}, ensure_ascii=False).encode(),
                json.dumps({"id": "near", "text": PARAGRAPH.replace("早早", "很早")}, ensure_ascii=False).encode(),
                b"{broken",
                b'{"text": ["a", "list"]}',
                '{"text": "太短"}'.encode(),
                b'{"text": "\xff\xfe"}',
            ]
        )
        + b"\n"
    )
    body = "\n".join(json.dumps({"text": f"第{i}段：{PARAGRAPH}{i}"}, ensure_ascii=False) for i in range(400))
    truncated = folder / "cut.jsonl.gz"
    truncated.write_bytes(gzip.compress(body.encode())[:-300])
    return [bad, truncated]


def sample_inputs() -> list[Path]:
    return sorted(p for p in SAMPLE.iterdir() if p.suffix in (".jsonl", ".txt"))


@pytest.fixture(scope="module")
def built(ray_local, tmp_path_factory, legacy_model_dir, vocab_path):
    root = tmp_path_factory.mktemp("build")
    inputs = sample_inputs() + bad_inputs(root / "bad")
    config = root / "build.yaml"
    config.write_text(
        json.dumps(
            {
                "inputs": [str(p) for p in inputs],
                "output": str(root / "out"),
                "segment": {"model": str(legacy_model_dir)},
                "tokenize": {"tokenizer": str(vocab_path), "max_seq_len": 64},
                "write": {"shard_rows": 20},
            }
        )
    )
    cfg = load_config(config)
    report = build_corpus(cfg)
    tokenizer = BertTokenizerFast(vocab=str(vocab_path))
    return {"cfg": cfg, "inputs": inputs, "out": root / "out", "report": report, "tokenizer": tokenizer}


def test_every_contract_holds(built):
    parts = check_corpus(built["out"], built["inputs"], built["tokenizer"], max_seq_len=64)
    assert parts["docs"].num_rows > 20
    assert parts["shards"].num_rows > 1
    assert parts["report"]["corpus"]["docs"] == parts["docs"].num_rows


def fates_of(out: Path, source: Path) -> dict[int, tuple[str, str]]:
    fates = read_table(out, "fates").to_pylist()
    return {r["record"]: (r["fate"], r["detail"]) for r in fates if r["source"] == str(source.resolve())}


def test_deliberate_problems_get_their_fates(built):
    bad, truncated = built["inputs"][-2:]
    fates = fates_of(built["out"], bad)
    keeper_id = read_table(built["out"], "fates").to_pylist()
    keeper = next(r["doc_id"] for r in keeper_id if r["source"] == str(bad.resolve()) and r["record"] == 0)
    assert fates[0] == ("kept", None)
    assert fates[1] == ("exact_dup", keeper)
    assert fates[2] == ("near_dup", keeper)
    assert fates[3] == ("rejected", "malformed_json")
    assert fates[4] == ("rejected", "text_not_string")
    assert fates[5] == ("filtered", "too_short")
    assert fates[6] == ("rejected", "invalid_utf8")
    cut = fates_of(built["out"], truncated)
    assert cut[-1][0] == "rejected" and cut[-1][1].startswith("unreadable_file")
    assert len(cut) > 100
    assert built["report"]["unreadable_files"][0]["source"] == str(truncated.resolve())


def test_the_report_counts_what_the_tables_hold(built):
    """The report's counters, one pass over each table, against the tables counted here in plain Python."""
    report, fates = built["report"], read_table(built["out"], "fates").to_pylist()
    per_keeper = Counter(r["detail"] for r in fates if r["fate"] in ("exact_dup", "near_dup"))
    sizes = sorted(Counter(n + 1 for n in per_keeper.values()).items())
    assert report["dedup_clusters"]["sizes"] == [list(pair) for pair in sizes] and sizes
    assert report["fates"]["records"] == len(fates) == sum(report["sources"].values())
    assert report["fates"]["kept"] == report["corpus"]["docs"] == report["lengths"]["after"]["total"]
    assert report["tokens_per_doc"]["total"] == report["corpus"]["docs"]
    docs = read_table(built["out"], "docs").to_pylist()
    assert report["corpus"]["chars"] == sum(len(d["text"]) for d in docs) == report["lengths"]["after"]["sum"]
    assert report["corpus"]["words"] == sum(len(d["words"]) for d in docs)
    for source, n in report["sources"].items():
        assert n == sum(r["source"] == source for r in fates), source


def test_shards_load_with_datasets(built):
    datasets = pytest.importorskip("datasets")
    files = sorted(str(p) for p in (built["out"] / "shards").glob("*.arrow"))
    loaded = datasets.load_dataset("arrow", data_files=files, split="train")
    shards, _ = read_shards(built["out"])
    assert loaded.num_rows == shards.num_rows
    assert loaded[0]["input_ids"] == shards.column("input_ids")[0].as_py()
    assert loaded.features["word_start"].feature.dtype == "bool"


def test_rebuild_with_nothing_changed_is_a_no_op(built):
    out = built["out"]
    before = {p: p.stat().st_mtime_ns for d in ("docs", "fates", "shards") for p in (out / d).iterdir()}
    manifest = (out / "manifest.json").read_bytes()
    report = build_corpus(built["cfg"])
    assert report["refresh"]["noop"] and report["version"] == built["report"]["version"] == 1
    assert (out / "manifest.json").read_bytes() == manifest
    assert before == {p: p.stat().st_mtime_ns for d in ("docs", "fates", "shards") for p in (out / d).iterdir()}
    assert not (out / "versions").exists()


def test_bundled_example_builds_with_the_readme_command(sample_corpus):
    tokenizer = BertTokenizerFast(vocab=str(REPO / "examples" / "assets" / "vocab.txt"))
    parts = check_corpus(sample_corpus["out"], sample_inputs(), tokenizer, max_seq_len=128)
    counts = parts["report"]["fates"]
    assert counts["kept"] > 0 and counts["exact_dup"] >= 3 and counts["near_dup"] >= 3 and counts["rejected"] >= 3
    assert parts["shards"].num_rows > 40 and parts["report"]["corpus"]["shards"] > 1  # write.shard_rows=40
    assert "records" in sample_corpus["stdout"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["bogus.key=1"], "unknown config key: bogus"),
        (["inputs=[/nonexistent/*.jsonl]"], "input matches no file"),
        (["segment.model=/nonexistent/model"], "/nonexistent/model"),
        (["segment.model=LTP/nonexistent-model"], "segment.model"),
        (["tokenize.tokenizer=/nonexistent/vocab.txt"], "/nonexistent/vocab.txt"),
    ],
)
def test_cli_fails_with_one_line(overrides, message, capsys):
    code = main(["build", str(REPO / "examples" / "sample.yaml"), *[a for o in overrides for a in ("--set", o)]])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1, err


def test_the_process_exits_with_the_cli_status_and_one_line(tmp_path):
    """``python -m pipeline`` ends with ``os._exit`` (``pipeline/__main__.py``): the status must still be the CLI's."""
    missing = tmp_path / "missing.yaml"
    done = subprocess.run([sys.executable, "-m", "pipeline", "build", str(missing)], cwd=REPO, capture_output=True, check=False,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert str(missing) in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_records_zipped_with_another_documents_fates_stop_the_build():
    """A fresh build pairs its records with their fates rows by position: a pair that is not one
    record would keep the wrong texts, so it must fail, not filter."""
    import pyarrow as pa

    from operators.columns import DETAIL, DOC_ID, FATE, RECORD, SOURCE, TEXT
    from pipeline.kept_docs import FLAGGED_DOC_ID, paired

    records = {DOC_ID: ["a", "b", "c"], SOURCE: ["s"] * 3, RECORD: [0, 1, 2], TEXT: ["x", "y", "z"]}
    fates = {FATE: ["kept", "exact_dup", "kept"], DETAIL: [None, "a", None]}
    aligned = pa.table({**records, FLAGGED_DOC_ID: ["a", "b", "c"], **fates})
    assert paired(aligned, "records and their fates").to_pydict() == {**records, **fates}
    shifted = pa.table({**records, FLAGGED_DOC_ID: ["b", "c", "a"], **fates})
    with pytest.raises(RuntimeError, match="same \\(source, record\\) order"):
        paired(shifted, "records and their fates")


@pytest.mark.parametrize("local_sort_max_rows", [2_000_000, 0])
def test_unordered_fates_are_put_back_in_the_order_the_records_were_read(ray_local, local_sort_max_rows):
    """Above ``dedup.local_max_docs`` the fates come back in no order and are sorted back before the zip,
    where a file that failed part-way has its file-level row (record -1) after its records: every record
    must still meet its own fates row, by either sort."""
    import random

    import pyarrow as pa
    import ray.data

    from operators.columns import DETAIL, DOC_ID, FATE, FATES_SCHEMA, RECORD, SOURCE, TEXT
    from operators.write import WriteConfig
    from pipeline.config import BuildConfig
    from pipeline.kept_docs import kept_of, with_fates

    places = [("a", r) for r in range(30)] + [("a", -1), ("b", 0), ("b", 1)]  # in the order they were read
    records = [{DOC_ID: f"{s}{r}", SOURCE: s, RECORD: r, TEXT: f"text {s}{r}"} for s, r in places]
    fates = [{SOURCE: s, RECORD: r, DOC_ID: f"{s}{r}", FATE: "rejected" if r < 0 else ("kept" if r % 3 else "exact_dup"),
              DETAIL: None} for s, r in places]
    shuffled = pa.Table.from_pylist(random.Random(1).sample(fates, len(fates)), schema=FATES_SCHEMA)
    cfg = BuildConfig(inputs=("a", "b"), output="unused", write=WriteConfig(local_sort_max_rows=local_sort_max_rows))
    decided = with_fates(ray.data.from_items(records, override_num_blocks=3), ray.data.from_arrow(shuffled).repartition(4),
                         False, cfg)
    got = decided.take_all()
    assert [(row[DOC_ID], row[FATE]) for row in got] == [(row[DOC_ID], row[FATE]) for row in fates]
    assert [row[DOC_ID] for row in kept_of(decided).take_all()] == [row[DOC_ID] for row in fates if row[FATE] == "kept"]


def test_docs_files_hold_2048_documents_across_input_files(ray_local, tmp_path, legacy_model_dir, vocab_path):
    """Pass 2 cuts the kept documents into the docs files' rows, then segments, writes and tokenizes each file
    in one task (Ray fuses them): files of 2,048 documents whatever blocks the reader made, the last one
    across two input files."""
    from operators import write

    rng = random.Random(7)
    for name, lines in (("a.txt", 4_500), ("b.txt", 100)):  # distinct texts: every record is kept
        texts = ["".join(chr(rng.randrange(0x4E00, 0x9FA5)) for _ in range(60)) for _ in range(lines)]
        (tmp_path / name).write_text("\n".join(texts) + "\n", encoding="utf-8")
    config = tmp_path / "build.yaml"
    config.write_text(json.dumps({
        "inputs": [str(tmp_path / "*.txt")], "output": str(tmp_path / "out"), "read": {"batch_size": 700},
        "segment": {"model": str(legacy_model_dir)}, "tokenize": {"tokenizer": str(vocab_path), "max_seq_len": 64},
    }))
    build_corpus(load_config(config))
    files = sorted((tmp_path / "out" / write.DOCS_DIR).glob("*.parquet"))
    names = ["000000-0000000000.parquet", "000000-0000002048.parquet", "000000-0000004096.parquet"]
    assert [f.name.removeprefix("part-v00001-") for f in files] == names
    assert [pq.read_metadata(f).num_rows for f in files] == [2_048, 2_048, 504]
