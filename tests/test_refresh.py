"""Incremental refresh, snapshots and their readers (README "Refresh and snapshots").

One module-scoped sequence of small builds on one output, each step checked by several tests:

1. v1: a full build of a.jsonl, b.jsonl, c.jsonl (b holds an exact copy of a's first paragraph and
   a near copy of its second);
2. the same config again: nothing changed, so nothing is read, segmented or committed;
3. v2: a.jsonl changed (its first paragraph gone, so b's copy must take the kept place), c.jsonl
   removed, e.jsonl new: equal to a full build of the same inputs in a fresh folder (whose dedup
   graph and fates sort take the distributed paths, while the sequence's run in one task: both
   give the same tables);
4. v3: 0early.jsonl new, holding a copy of a kept document that sorts before it (the tie rule);
   (its first attempt dies just before the commit, and the second one succeeds);
5. v4: only tokenize.max_seq_len changed: re-tokenized, nothing read or segmented;
6. v5: only dedup.minhash.threshold changed: deduplicated again, already-segmented texts reused.

Then: pinned old versions through the loader, inspect and verify; gc; a second writer.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pyarrow as pa
import pytest
from transformers import BertTokenizerFast

from inspection import inspect_corpus
from inspection.verify import verify
from manifests import ledger, snapshot
from operators import read as read_op
from operators import segment as segment_op
from operators import write as write_op
from pipeline import cluster, kept_docs, segmented_docs
from pipeline.cli import main, refresh_line
from pipeline.config import load_config
from pipeline.driver import build_corpus
from tests.contracts import read_shards, read_table
from training.loader import ShardDataset, find_shards

P = [
    "城市的夜晚总是很安静，街道两旁的路灯一盏一盏地亮起来，人们下班以后回到家里。",
    (
        "春天来了，公园里的花都开了，孩子们在草地上奔跑，老人们坐在长椅上晒太阳聊天。"
        "湖边的柳树长出了嫩绿的新芽，几只小船在水面上慢慢划过，远处传来一阵阵欢笑声。"
    ),
    "图书馆每天早上八点开门，学生们排着队等待进入，找一个安静的位置开始一天的学习。",
    (
        "这家小店的面条做得非常好吃，每到中午就有很多附近的上班族来这里排队吃午饭。"
        "老板是一位和气的中年人，他总是笑着跟每一位客人打招呼，还记得许多熟客的口味。"
    ),
    "山上的空气十分清新，我们沿着小路慢慢往上走，一路上听到各种鸟儿的叫声。",
    "他每个周末都会去市场买新鲜的蔬菜和水果，回家以后给全家人做一顿丰盛的晚餐。",
    "火车在田野之间飞快地行驶，窗外的风景不断变化，远处的村庄和河流一闪而过。",
    "博物馆里展出了许多古代的文物，讲解员耐心地向参观者介绍每一件展品的历史。",
    "下雨的时候，街上的行人都撑起了雨伞，五颜六色的伞像花朵一样在路上开放。",
]
NEAR_P1 = P[1].replace("嫩绿", "浅绿")  # near copies: one word changed mid-text, Jaccard of 5-grams ~0.9
NEAR_P3 = P[3].replace("和气", "和善")


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    return path


def config_for(root: Path, name: str, out: Path, model: Path, vocab: Path, **sections) -> Path:
    data = {
        "inputs": [str(root / "in" / "*.jsonl")],
        "output": str(out),
        "segment": {"model": str(model)},
        "tokenize": {"tokenizer": str(vocab), "max_seq_len": 48, "batch_size": 4},
        "write": {"shard_rows": 8},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    path = root / f"{name}.yaml"
    path.write_text(json.dumps(data))
    return path


def tables(out: Path) -> dict:
    shards, _ = read_shards(out)
    return {"docs": read_table(out, "docs"), "fates": read_table(out, "fates"), "shards": shards}


class Spy:
    """Counts calls of the read and segment stages' wrappers, and of the driver's connection to Ray, in
    this (driver) process."""

    def __init__(self, monkeypatch):
        self.read, self.segment, self.ray = 0, 0, 0
        real_read, real_segment, real_connect = read_op.apply, segment_op.apply, cluster.connect_ray

        def connect_ray(num_cpus=None):
            self.ray += 1
            return real_connect(num_cpus)

        def read_apply(files, cfg):
            self.read += len(files)
            return real_read(files, cfg)

        def segment_apply(ds, cfg):
            self.segment += 1
            return real_segment(ds, cfg)

        monkeypatch.setattr(read_op, "apply", read_apply)
        monkeypatch.setattr(segment_op, "apply", segment_apply)
        monkeypatch.setattr(cluster, "connect_ray", connect_ray)


@pytest.fixture(scope="module")
def sequence(ray_local, tmp_path_factory, legacy_model_dir, vocab_path):
    root = tmp_path_factory.mktemp("refresh")
    (root / "in").mkdir()
    out = root / "out"
    model, vocab = legacy_model_dir, vocab_path
    a = write_jsonl(root / "in" / "a.jsonl", [P[0], P[1], "太短", P[3]])
    write_jsonl(root / "in" / "b.jsonl", [P[4], P[0], NEAR_P1])
    c = write_jsonl(root / "in" / "c.jsonl", [P[5], P[6]])
    base = config_for(root, "base", out, model, vocab)
    steps, seconds = {}, {}

    def build(name, config, spy=None):
        started = time.perf_counter()
        report = build_corpus(load_config(config))
        seconds[name] = round(time.perf_counter() - started, 1)
        steps[name] = {"report": report, "tables": tables(out), "manifest": snapshot.read_manifest(str(out)),
                       "read": spy.read if spy else None, "segment": spy.segment if spy else None,
                       "ray": spy.ray if spy else None}

    build("v1", base)
    with pytest.MonkeyPatch.context() as patch:
        spy = Spy(patch)
        build("noop", base, spy)

    write_jsonl(a, [P[1], "太短", P[3]])  # changed: its first paragraph (kept; b holds a copy) is gone
    c.unlink()  # removed
    write_jsonl(root / "in" / "e.jsonl", [P[7], NEAR_P3])  # new: a new document and a near copy of a kept one
    with pytest.MonkeyPatch.context() as patch:
        spy = Spy(patch)
        build("v2", base, spy)
    fresh = root / "fresh"
    started = time.perf_counter()
    distributed = {"dedup": {"local_max_docs": 0}, "write": {"local_sort_max_rows": 0}}
    build_corpus(load_config(config_for(root, "fresh", fresh, model, vocab, **distributed)))
    seconds["full rebuild of v2's inputs"] = round(time.perf_counter() - started, 1)
    steps["fresh"] = {"tables": tables(fresh), "out": fresh}
    default = root / "default"  # the same inputs, every setting as the refreshes have it
    build_corpus(load_config(config_for(root, "default", default, model, vocab)))
    steps["default"] = {"manifest": snapshot.read_manifest(str(default))}

    write_jsonl(root / "in" / "0early.jsonl", [P[4]])  # sorts before b.jsonl, whose P[4] is kept
    report_before = (out / "report.json").read_bytes()
    with pytest.MonkeyPatch.context() as patch:  # v3's first attempt dies before its commit

        def crash(*args, **kwargs):
            raise RuntimeError("killed before the commit")

        patch.setattr(snapshot, "commit", crash)
        with pytest.raises(RuntimeError, match="killed before the commit"):
            build_corpus(load_config(base))
    steps["crashed"] = {"manifest": snapshot.read_manifest(str(out)), "report": report_before,
                        "report_after": (out / "report.json").read_bytes(), "verify": verify(str(out)),
                        "left": sorted(p.name for p in (out / "docs").iterdir())}
    build("v3", base)
    with pytest.MonkeyPatch.context() as patch:
        spy = Spy(patch)
        build("v4", config_for(root, "v4", out, model, vocab, tokenize={"max_seq_len": 32}), spy)
    with pytest.MonkeyPatch.context() as patch:
        spy = Spy(patch)
        build("v5", config_for(root, "v5", out, model, vocab, tokenize={"max_seq_len": 32},
                               dedup={"minhash": {"threshold": 0.97}}), spy)
    print(f"\nrefresh sequence seconds: {seconds}")
    return {"root": root, "out": out, "steps": steps, "model": model, "vocab": vocab, "seconds": seconds,
            "tokenizer": BertTokenizerFast(vocab=str(vocab))}


def test_the_ledger_hashes_the_same_on_the_driver_and_in_ray_tasks(ray_local, tmp_path, monkeypatch):
    """A few local files are hashed on the driver (Ray is not even joined), more in a Ray Data execution:
    the same rows either way."""
    files = [str(write_jsonl(tmp_path / f"{name}.jsonl", [P[i]])) for i, name in enumerate("abc")]

    def refuse() -> None:
        pytest.fail("the driver hashes a few small local files without Ray")

    on_driver, hashed = ledger.scan(files, None, connect=refuse)
    monkeypatch.setattr(ledger, "LOCAL_DRIVER_BYTES", 0)
    in_tasks, _ = ledger.scan(files, None)
    assert hashed == 3 and in_tasks == on_driver and len({row[ledger.HASH] for row in on_driver}) == 3


def test_first_build_is_full_and_keeps_the_earliest_copy(sequence):
    steps = sequence["steps"]
    assert steps["v1"]["report"]["refresh"]["mode"] == "full"
    v1 = {(Path(r["source"]).name, r["record"]): r["fate"] for r in steps["v1"]["tables"]["fates"].to_pylist()}
    assert v1[("b.jsonl", 1)] == "exact_dup" and v1[("b.jsonl", 2)] == "near_dup" and v1[("a.jsonl", 2)] == "filtered"


def test_a_rerun_with_nothing_changed_reads_nothing_and_commits_nothing(sequence):
    noop, v1 = sequence["steps"]["noop"], sequence["steps"]["v1"]
    refresh = noop["report"]["refresh"]
    assert refresh["noop"] is True and refresh["files"]["hashed"] == 0 and refresh["records_read"] == 0
    assert noop["read"] == 0 and noop["segment"] == 0
    assert noop["ray"] == 0, "nothing to do is found before Ray starts"
    assert noop["manifest"]["version"] == 1 and noop["manifest"] == v1["manifest"]


def test_add_change_and_remove_equal_a_full_rebuild(sequence):
    v2, fresh = sequence["steps"]["v2"], sequence["steps"]["fresh"]
    refresh = v2["report"]["refresh"]
    assert refresh["mode"] == "refresh"
    assert {k: refresh["files"][k] for k in ("new", "changed", "removed", "unchanged")} == {
        "new": 1, "changed": 1, "removed": 1, "unchanged": 1}
    assert v2["read"] == 2 + 1  # a.jsonl and e.jsonl, then b.jsonl again for the promoted copy
    assert refresh["records_read"] == 3 + 2 and refresh["files_reread"] == 1 and refresh["promoted"] == 1
    assert refresh_line(refresh) == (
        "refresh: 1 new, 1 changed, 1 removed, 1 unchanged files; 5 records read; 1 docs segmented, 4 from the cache; "
        "1 duplicates kept in place of retracted documents (1 unchanged files read again)"
    )
    assert refresh["reason"] == "input files: 1 new, 1 changed, 1 removed"
    for directory in ("docs", "fates", "dedup", "index", "shards"):  # no pile of small files
        files = [[e for e in step["manifest"]["files"] if e["path"].startswith(f"{directory}/")]
                 for step in (v2, sequence["steps"]["default"])]
        assert 0 < len(files[0]) <= len(files[1]), (directory, files)
    for name in ("docs", "fates", "shards"):
        assert v2["tables"][name].equals(fresh["tables"][name]), name
    assert verify(str(fresh["out"])) == []


def test_a_retracted_keeper_gives_its_place_to_a_surviving_duplicate_with_words(sequence):
    v2 = sequence["steps"]["v2"]
    fates = {(Path(r["source"]).name, r["record"]): r for r in v2["tables"]["fates"].to_pylist()}
    promoted = fates[("b.jsonl", 1)]
    assert promoted["fate"] == "kept"
    docs = {r["doc_id"]: r for r in v2["tables"]["docs"].to_pylist()}
    assert "".join(docs[promoted["doc_id"]]["words"]) == P[0] and len(docs[promoted["doc_id"]]["words"]) > 1
    assert fates[("e.jsonl", 1)]["fate"] == "near_dup" and fates[("e.jsonl", 1)]["detail"] == fates[("a.jsonl", 2)]["doc_id"]
    # texts already segmented (P[0], P[1], P[3], P[4]) came from the cache; only e.jsonl's P[7] ran LTP
    assert v2["report"]["refresh"]["docs"] == {"segmented": 1, "reused": 4}
    assert v2["segment"] == 1 and v2["ray"] == 1


def test_a_new_copy_that_sorts_first_is_the_duplicate_of_the_kept_document(sequence):
    v3 = sequence["steps"]["v3"]
    fates = {(Path(r["source"]).name, r["record"]): r for r in v3["tables"]["fates"].to_pylist()}
    assert fates[("b.jsonl", 0)]["fate"] == "kept"
    assert fates[("0early.jsonl", 0)]["fate"] == "exact_dup"
    assert fates[("0early.jsonl", 0)]["detail"] == fates[("b.jsonl", 0)]["doc_id"]
    assert v3["report"]["refresh"]["docs"]["segmented"] == 0


def test_changing_max_seq_len_retokenizes_without_reading_or_segmenting(sequence):
    v3, v4 = sequence["steps"]["v3"], sequence["steps"]["v4"]
    refresh = v4["report"]["refresh"]
    assert refresh["mode"] == "refresh" and refresh["changed_stages"] == ["tokenize"]
    assert refresh["reason"] == "settings changed: tokenize"
    assert refresh["records_read"] == 0 and refresh["docs"]["segmented"] == 0 and v4["segment"] == 0 and v4["read"] == 0
    assert v4["tables"]["docs"].equals(v3["tables"]["docs"]) and v4["tables"]["fates"].equals(v3["tables"]["fates"])
    lengths = [len(ids) for ids in v4["tables"]["shards"].column("input_ids").to_pylist()]
    assert max(lengths) <= 32 < max(len(ids) for ids in v3["tables"]["shards"].column("input_ids").to_pylist())


def test_changing_the_dedup_threshold_does_not_segment_segmented_texts_again(sequence):
    v4, v5 = sequence["steps"]["v4"], sequence["steps"]["v5"]
    refresh = v5["report"]["refresh"]
    assert refresh["mode"] == "full" and "dedup" in refresh["reason"]
    before = set(v4["tables"]["docs"].column("text").to_pylist())
    after = set(v5["tables"]["docs"].column("text").to_pylist())
    assert after - before == {NEAR_P1, NEAR_P3}  # near copies are documents of their own at 0.97
    assert refresh["docs"] == {"segmented": 2, "reused": len(before)}


def test_every_version_verifies_and_old_versions_stay_readable(sequence, capsys):
    out = sequence["out"]
    assert verify(str(out)) == []
    assert snapshot.archived_versions(str(out)) == [1, 2, 3, 4]
    for version in (1, 2, 3, 4):
        assert verify(str(out), version=version) == [], version
    v1 = sequence["steps"]["v1"]["tables"]["shards"]
    dataset = ShardDataset(str(out), version=1)
    assert len(dataset) == v1.num_rows and dataset.shard_set.version == 1
    assert dataset[0]["input_ids"].tolist() == v1.column("input_ids")[0].as_py()
    assert all("/versions/v00001/shards/" in s.location for s in find_shards(str(out), version=1).shards)
    buffer = io.StringIO()
    assert inspect_corpus.run(str(out), n=1, colour="never", out=buffer, version=1) == 0
    assert "shards/part-v00001-" in buffer.getvalue()
    assert main(["inspect", str(out), "--version", "9"]) == 2
    assert "no version 9" in capsys.readouterr().err


def test_a_reader_pinned_to_a_version_that_gets_archived_finds_its_files(sequence):
    out = sequence["out"]
    current = snapshot.read_manifest(str(out))["version"]
    dataset = ShardDataset(str(out), version=current)
    shard = dataset.shard_set.shards[0]
    moved = Path(shard.location)
    archived = out / snapshot.version_dir(current) / "shards" / moved.name
    archived.parent.mkdir(parents=True, exist_ok=True)
    moved.rename(archived)  # what a later build does to this version's files
    try:
        assert len(dataset[0]["input_ids"]) > 0
    finally:
        archived.rename(moved)


def test_a_build_that_dies_before_its_commit_leaves_the_committed_version(sequence):
    crashed, v2, v3 = sequence["steps"]["crashed"], sequence["steps"]["v2"], sequence["steps"]["v3"]
    assert crashed["manifest"] == v2["manifest"] and crashed["report_after"] == crashed["report"]
    # the committed version checks out; verify names the dead build's files (the next build removes them)
    assert crashed["verify"] and all(
        ("part-v00003-" in line and "on disk but not in the manifest" in line) or line.endswith("of: unlisted")
        for line in crashed["verify"]
    ), crashed["verify"]
    assert any(name.startswith("part-v00003-") for name in crashed["left"]), "the dead build's files were there"
    assert v3["manifest"]["version"] == 3 and v3["report"]["refresh"]["files"]["new"] == 1


def test_gc_keeps_the_newest_archived_versions_and_verify_still_passes(sequence, capsys):
    out = sequence["out"]
    archived = snapshot.archived_versions(str(out))
    assert len(archived) >= 2
    assert main(["gc", str(out), "--keep", "1"]) == 0
    assert snapshot.archived_versions(str(out)) == archived[-1:]
    assert "removed" in capsys.readouterr().out
    assert verify(str(out)) == [] and verify(str(out), version=archived[-1]) == []
    assert main(["verify", str(out), "--version", str(archived[0])]) == 2  # nothing to check: not a problem found


def test_a_second_writer_is_refused_with_one_line(sequence, capsys):
    out = sequence["out"]
    lock = out / snapshot.LOCK
    lock.write_text(json.dumps({"host": "another-host", "pid": 1, "started": time.time()}))
    try:
        code = main(["build", str(sequence["root"] / "base.yaml")])
    finally:
        lock.unlink()
    err = capsys.readouterr().err.strip()
    assert code == 2 and "another build" in err and len(err.splitlines()) == 1


# ---- refreshes whose unchanged files keep their documents (pipeline.kept_docs.carried) --------------------

BRIDGED = P[1] + P[3] + P[5] + P[7] + P[8]  # ~260 characters: five one-character edits move its 5-grams' Jaccard ~0.19


def _edited(text: str, first: int, char: str) -> str:
    chars = list(text)
    for position in range(first, first + 100, 20):
        chars[position] = char
    return "".join(chars)


def _refresh_then_compare(root: Path, model: Path, vocab: Path, monkeypatch, old: dict[str, list[str]],
                          new: dict[str, list[str]], removed: tuple[str, ...] = (), every_build: dict | None = None,
                          **refresh_sections) -> tuple[dict, dict, int]:
    """Build ``old``, write ``new`` (added or changed files), delete ``removed`` and refresh (with
    ``refresh_sections`` settings); then a full build of all the files elsewhere (``every_build``: settings
    of all three). Returns the refresh's tables and report, the full build's tables (and report), and how
    often the general path's text join ran."""
    (root / "in").mkdir()
    for name, texts in old.items():
        write_jsonl(root / "in" / name, texts)
    out = root / "out"
    every_build = every_build or {}
    build_corpus(load_config(config_for(root, "base", out, model, vocab, **every_build)))
    for name, texts in new.items():
        write_jsonl(root / "in" / name, texts)
    for name in removed:
        (root / "in" / name).unlink()
    joins = []
    real_texts = kept_docs.texts
    monkeypatch.setattr(kept_docs, "texts", lambda *args: joins.append(1) or real_texts(*args))
    refreshed = build_corpus(load_config(config_for(root, "refresh", out, model, vocab,
                                                    **{**every_build, **refresh_sections})))
    full = root / "full"
    built = build_corpus(load_config(config_for(root, "full", full, model, vocab, **every_build)))
    return {"tables": tables(out), "report": refreshed}, {**tables(full), "report": built}, len(joins)


@pytest.mark.parametrize("local_sort_max_docs", [write_op.WriteConfig().local_sort_max_docs, 0])
def test_a_refresh_that_adds_a_file_carries_the_old_documents_without_a_join(
    ray_local, tmp_path, legacy_model_dir, vocab_path, monkeypatch, local_sort_max_docs
):
    """The old and new documents are put in order in one task; above ``local_sort_max_docs`` (0) the new ones are
    segmented first and each new file's documents stream in its place among the old docs files' rows."""
    monkeypatch.setattr(write_op, "DOCS_FILE_ROWS", 2)  # several docs files, read back in their order
    sorts = []
    real_sort = write_op.docs_in_record_order
    monkeypatch.setattr(write_op, "docs_in_record_order", lambda *args: sorts.append(1) or real_sort(*args))
    old = {"a.jsonl": [P[0], P[1], "太短"], "b.jsonl": [P[2], P[0], P[3], P[6], P[8]]}
    new = {"ab.jsonl": [P[7]], "z.jsonl": [P[4], NEAR_P3, P[5]]}  # one sorts between the old files, one after them
    refreshed, full, joins = _refresh_then_compare(tmp_path, legacy_model_dir, vocab_path, monkeypatch, old, new,
                                                  write={"local_sort_max_docs": local_sort_max_docs})
    assert joins == 0 and len(sorts) == (local_sort_max_docs > 0)
    assert refreshed["report"]["refresh"]["docs"] == {"segmented": 3, "reused": 6}
    assert len(list((tmp_path / "out" / "docs").glob("*.parquet"))) == 5
    for name in ("docs", "fates", "shards"):
        assert refreshed["tables"][name].equals(full[name]), name


@pytest.mark.parametrize("local_sort_max_docs", [write_op.WriteConfig().local_sort_max_docs, 0])
def test_added_files_that_sort_after_the_others_are_read_after_the_old_documents_without_a_sort(
    ray_local, tmp_path, legacy_model_dir, vocab_path, monkeypatch, local_sort_max_docs
):
    """Where the old and new documents would take Ray's sort (``local_sort_max_docs: 0``), new files
    that all sort after the old ones are segmented first and read after the old docs files instead;
    below the bound they are sorted in one task as before. Same tables as a full build either way."""
    monkeypatch.setattr(write_op, "DOCS_FILE_ROWS", 2)  # several docs files, read back in their order
    sorts = []
    real_sort = write_op.docs_in_record_order
    monkeypatch.setattr(write_op, "docs_in_record_order", lambda *args: sorts.append(1) or real_sort(*args))
    old = {"a.jsonl": [P[0], P[1], "太短"], "b.jsonl": [P[2], P[0], P[3], P[6], P[8]]}
    new = {"c.jsonl": [P[7], P[1]], "d.jsonl": [P[4], NEAR_P3, P[5]]}  # a duplicate and a near duplicate of old ones
    refreshed, full, joins = _refresh_then_compare(tmp_path, legacy_model_dir, vocab_path, monkeypatch, old, new,
                                                  write={"local_sort_max_docs": local_sort_max_docs})
    assert joins == 0 and len(sorts) == (local_sort_max_docs > 0)
    assert refreshed["report"]["refresh"]["docs"] == {"segmented": 3, "reused": 6}
    for name in ("docs", "fates", "shards"):
        assert refreshed["tables"][name].equals(full[name]), name


@pytest.mark.parametrize("local_cache_max_docs", [write_op.WriteConfig().local_cache_max_docs, 0])
@pytest.mark.parametrize("local_sort_max_docs", [write_op.WriteConfig().local_sort_max_docs, 0])
def test_changed_and_removed_files_whose_documents_kept_none_of_the_others_take_no_join(
    ray_local, tmp_path, legacy_model_dir, vocab_path, monkeypatch, local_sort_max_docs, local_cache_max_docs
):
    """b.jsonl gains a paragraph and c.jsonl leaves; b's copy of P[0] stays a duplicate of a's, so a.jsonl
    keeps its documents: they come from the previous docs table, b's from its records with their words
    from b's and c's previous docs (only the new paragraph runs LTP). b's documents look their words up
    in the cache read into one table, in their order; above ``local_cache_max_docs`` (0) they are joined
    with it and sorted. Below ``local_sort_max_docs`` they are then sorted with a's in one task; above
    it (0) b, which sorts after a, has its documents read after a's rows of the previous docs files
    (b's and c's old rows left out)."""
    monkeypatch.setattr(write_op, "DOCS_FILE_ROWS", 2)
    sorted_counts = []
    real_sort = write_op.docs_in_record_order
    monkeypatch.setattr(write_op, "docs_in_record_order",
                        lambda *args: sorted_counts.append(args[1]) or real_sort(*args))
    old = {"a.jsonl": [P[0], P[1], "太短"], "b.jsonl": [P[2], P[0], P[3], P[6]], "c.jsonl": [P[4], P[5]]}
    new = {"b.jsonl": [P[2], P[0], P[3], P[6], P[5], P[7]]}  # c's P[5] moves to b
    bounds = {"local_sort_max_docs": local_sort_max_docs, "local_cache_max_docs": local_cache_max_docs}
    refreshed, full, joins = _refresh_then_compare(tmp_path, legacy_model_dir, vocab_path, monkeypatch, old, new,
                                                   removed=("c.jsonl",), write=bounds)
    assert joins == 0
    # b's kept documents (5) when joined with the cache, then all of them with a's (2)
    assert sorted_counts == [5] * (local_cache_max_docs == 0) + [7] * (local_sort_max_docs > 0)
    assert refreshed["report"]["refresh"]["docs"] == {"segmented": 1, "reused": 6}
    for name in ("docs", "fates", "shards"):
        assert refreshed["tables"][name].equals(full[name]), name


def test_a_file_that_changes_between_unchanged_ones_streams_in_its_place_with_no_sort(
    ray_local, tmp_path, legacy_model_dir, vocab_path, monkeypatch
):
    """Above ``local_sort_max_docs`` (0), b.jsonl, which sorts between a and c, gains a paragraph: its documents
    (words from the cache but the new one's) come in its place between a's and c's rows of the previous docs
    files, b's old rows left out, with nothing sorted."""
    monkeypatch.setattr(write_op, "DOCS_FILE_ROWS", 2)  # docs files that hold rows of two files
    sorts = []
    real_sort = write_op.docs_in_record_order
    monkeypatch.setattr(write_op, "docs_in_record_order", lambda *args: sorts.append(1) or real_sort(*args))
    old = {"a.jsonl": [P[0], P[1], "太短"], "b.jsonl": [P[2], P[3], P[6]], "c.jsonl": [P[4], P[0], P[5]]}
    new = {"b.jsonl": [P[2], P[7], P[3], P[6]]}
    refreshed, full, joins = _refresh_then_compare(tmp_path, legacy_model_dir, vocab_path, monkeypatch, old, new,
                                                   write={"local_sort_max_docs": 0})
    assert joins == 0 and sorts == []
    assert refreshed["report"]["refresh"]["docs"] == {"segmented": 1, "reused": 7}
    for name in ("docs", "fates", "shards"):
        assert refreshed["tables"][name].equals(full[name]), name


@pytest.mark.parametrize("local_cache_max_docs", [write_op.WriteConfig().local_cache_max_docs, 0])
def test_a_duplicate_kept_in_place_of_a_keeper_that_left_takes_the_general_path(
    ray_local, tmp_path, legacy_model_dir, vocab_path, monkeypatch, local_cache_max_docs
):
    """a.jsonl's P[0] was the keeper of b's copy; a.jsonl changes, so b's copy is kept now, and its text is
    in no docs table: the general path reads b.jsonl again for it. The words of the texts the previous
    docs table holds come from it read into one table, or joined with it above ``local_cache_max_docs``."""
    cache_joins = []
    real_joined = segmented_docs._joined
    monkeypatch.setattr(segmented_docs, "_joined", lambda *args: cache_joins.append(1) or real_joined(*args))
    old, new = {"a.jsonl": [P[0], P[1]], "b.jsonl": [P[0], P[2]]}, {"a.jsonl": [P[3], P[1]]}
    refreshed, full, joins = _refresh_then_compare(tmp_path, legacy_model_dir, vocab_path, monkeypatch, old, new,
                                                   write={"local_cache_max_docs": local_cache_max_docs})
    assert joins == 1 and refreshed["report"]["refresh"]["promoted"] == 1
    assert len(cache_joins) == (local_cache_max_docs == 0)
    assert refreshed["report"]["refresh"]["docs"] == {"segmented": 1, "reused": 3}  # a's P[3]; P[0], P[1], P[2]
    for name in ("docs", "fates", "shards"):
        assert refreshed["tables"][name].equals(full[name]), name


@pytest.mark.parametrize("local_sort_max_docs", [write_op.WriteConfig().local_sort_max_docs, 0])
def test_an_added_file_that_joins_two_kept_documents_takes_the_general_path(
    ray_local, tmp_path, legacy_model_dir, vocab_path, monkeypatch, local_sort_max_docs
):
    x, y = _edited(BRIDGED, 10, "鑫"), _edited(BRIDGED, 150, "淼")  # each near BRIDGED, not near each other
    old, new = {"a.jsonl": [x, P[0]], "b.jsonl": [y]}, {"c.jsonl": [BRIDGED]}
    refreshed, full, joins = _refresh_then_compare(tmp_path, legacy_model_dir, vocab_path, monkeypatch, old, new,
                                                  write={"local_sort_max_docs": local_sort_max_docs})
    fates = {Path(r["source"]).name: r["fate"] for r in full["fates"].to_pylist() if r["record"] == 0}
    assert fates == {"a.jsonl": "kept", "b.jsonl": "near_dup", "c.jsonl": "near_dup"}  # b's kept document left
    assert joins == 1
    for name in ("docs", "fates", "shards"):
        assert refreshed["tables"][name].equals(full[name]), name


PAIRS = [P[i] + P[j] for i in range(len(P)) for j in range(i + 1, len(P))]  # 36 texts, no two near each other


def _docs_counts(out: Path) -> list:
    """Each docs file's documents' counters, from the manifest, in file order."""
    files = json.loads((out / "manifest.json").read_text())["files"]
    return [entry.get("doc_counts") for entry in files if entry["path"].startswith("docs/")]


@pytest.mark.parametrize("change", ["added", "changed"])
def test_docs_files_before_the_first_file_read_are_linked_with_their_shards(
    ray_local, tmp_path, legacy_model_dir, vocab_path, monkeypatch, change
):
    """Docs files of 8 documents, each tokenized (tokenize.batch_size 1: 8 a call) and packed alone: of the
    previous version's three (a: 10 documents, b: 10, c: 4), the two before c.jsonl's rows are linked with
    the shard files packed from them, when a file after them is added or c changes; the rest is written
    again. Tables, report figures and each docs file's counters equal a full build's."""
    monkeypatch.setattr(write_op, "DOCS_FILE_ROWS", 8)
    old = {"a.jsonl": PAIRS[:10], "b.jsonl": PAIRS[10:20], "c.jsonl": PAIRS[20:24]}
    new = {"d.jsonl": PAIRS[24:27]} if change == "added" else {"c.jsonl": [PAIRS[20], PAIRS[24], *PAIRS[21:24]]}
    every_build = {"tokenize": {"batch_size": 1}}
    refreshed, full, joins = _refresh_then_compare(tmp_path, legacy_model_dir, vocab_path, monkeypatch, old, new,
                                                   every_build=every_build)
    assert joins == 0 and refreshed["report"]["refresh"]["docs_files_linked"] == 2
    for name in ("docs", "fates", "shards"):
        assert refreshed["tables"][name].equals(full[name]), name
    for figure in ("corpus", "tokens_per_doc"):  # the documents' figures (a refresh's records are those it read)
        assert refreshed["report"][figure] == full["report"][figure], figure
    assert refreshed["report"]["lengths"]["after"] == full["report"]["lengths"]["after"]
    counts = _docs_counts(tmp_path / "full")
    assert _docs_counts(tmp_path / "out") == counts and len(counts) == 4 and None not in counts
    linked = sorted((tmp_path / "out" / "shards").glob("part-v00002-00000[01]*.arrow"))
    assert linked and all(path.stat().st_nlink > 1 for path in linked)  # the previous version's files, hard-linked
    tasks = [sorted((path.name[len("part-v00001-"):], pa.ipc.open_stream(path.read_bytes()).read_all().num_rows)
                    for path in (tmp_path / out / "shards").glob("*.arrow")) for out in ("out", "full")]
    assert tasks[0] == tasks[1]  # file by file: the shard writer numbers its tasks after the linked ones
    assert verify(str(tmp_path / "out")) == []
