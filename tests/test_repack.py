"""``python -m pipeline pack``: new shards from the docs table, a new manifest version, nothing else touched."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from transformers import BertTokenizerFast

from inspection.verify import verify
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.driver import build_corpus
from pipeline.repack import repack_corpus
from tests.conftest import ASSETS, REPO
from tests.contracts import check_manifest, check_shards, read_shards, read_table
from training.loader import ShardDataset


@pytest.fixture(scope="module")
def corpus(sample_corpus, tmp_path_factory):
    """A copy of the session's sample build (``pack`` writes new versions into it)."""
    out = tmp_path_factory.mktemp("repack") / "out"
    shutil.copytree(sample_corpus["out"], out)
    return {"out": out, "tokenizer": BertTokenizerFast(vocab=str(ASSETS / "vocab.txt"))}


def metadata(out: Path) -> dict[str, str]:
    _, schema = read_shards(out)
    return {k.decode(): v.decode() for k, v in schema.metadata.items()}


def test_pack_writes_a_new_version_from_the_same_docs(corpus):
    out = corpus["out"]
    before = json.loads((out / "manifest.json").read_text())
    docs, fates = read_table(out, "docs"), read_table(out, "fates")
    overrides = ["tokenize.max_seq_len=128", "tokenize.packing=doc", "write.compression=zstd", "write.shard_rows=7"]
    manifest = repack_corpus(str(out), overrides)
    assert manifest["version"] == before["version"] + 1
    assert check_manifest(out)["version"] == manifest["version"]
    assert read_table(out, "docs").equals(docs) and read_table(out, "fates").equals(fates)
    assert all(p.name.startswith(f"part-v{manifest['version']:05d}-") for p in (out / "shards").iterdir())
    shards = check_shards(out, docs, corpus["tokenizer"], max_seq_len=128)  # every doc token, in file-name order
    shard_entries = [f for f in manifest["files"] if f["path"].startswith("shards/")]
    assert len(shard_entries) > 1 and all(f["rows"] <= 7 for f in shard_entries)  # write.shard_rows is a cap
    assert metadata(out)["packing"] == "doc" and metadata(out)["max_seq_len"] == "128"
    assert manifest["corpus"]["examples"] == shards.num_rows == len(ShardDataset(str(out)))
    assert manifest["corpus"]["docs"] == before["corpus"]["docs"]
    assert manifest["config"]["tokenize"]["max_seq_len"] == 128 and manifest["config"]["write"]["compression"] == "zstd"
    assert manifest["packed"]["from_version"] == before["version"]
    assert manifest["stage_fingerprints"]["segment"] == before["stage_fingerprints"]["segment"]
    assert manifest["stage_fingerprints"]["tokenize"] != before["stage_fingerprints"]["tokenize"]


def test_a_repacked_corpus_verifies_and_its_report_describes_the_new_shards(corpus):
    out = corpus["out"]
    build_report = json.loads((out / "report.json").read_text())
    manifest = repack_corpus(str(out), ["tokenize.max_seq_len=96"])
    report = json.loads((out / "report.json").read_text())
    assert report["corpus"] == manifest["corpus"] and report["packed"] == manifest["packed"]
    assert report["corpus"]["examples"] != build_report["corpus"]["examples"]
    assert report["fates"] == build_report["fates"] and report["stages"] == build_report["stages"]  # the build's
    assert report["tokens_per_doc"] == build_report["tokens_per_doc"]  # counted again: the same tokenizer
    text = (out / "report.txt").read_text()
    assert f"{manifest['corpus']['examples']:>14,}" in text and f"from version {manifest['packed']['from_version']}" in text
    page = (out / "report.html").read_text()
    assert f"part-v{manifest['version']:05d}-" in page and f"part-v{manifest['packed']['from_version']:05d}-" not in page
    assert verify(str(out)) == []
    committed = (out / "manifest.json").read_text()
    wrong = {**json.loads(committed), "corpus": {**manifest["corpus"], "examples": manifest["corpus"]["examples"] + 1}}
    (out / "manifest.json").write_text(json.dumps(wrong))
    assert any("manifest.json: corpus differ from report.json's" in problem for problem in verify(str(out)))
    (out / "manifest.json").write_text(committed)


def test_pack_none_adds_chinese_ref_through_the_cli(corpus, capsys):
    out = corpus["out"]
    assert main(["pack", str(out), "--set", "tokenize.packing=none", "--set", "tokenize.max_seq_len=64"]) == 0
    assert "wrote" in capsys.readouterr().out
    shards, _ = read_shards(out)
    docs = read_table(out, "docs")
    assert shards.column_names == ["input_ids", "word_start", "chinese_ref"]
    assert shards.num_rows == sum(1 for t in docs.column("text").to_pylist() if t)
    assert max(len(ids) for ids in shards.column("input_ids").to_pylist()) <= 64
    assert any(shards.column("chinese_ref").to_pylist())
    check_manifest(out)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["segment.model=LTP/small"], "segment.model needs a full build"),
        (["tokenize.packing=bogus"], "tokenize.packing"),
        (["tokenize.bogus=1"], "unknown config key: tokenize.bogus"),
    ],
)
def test_pack_refuses_what_it_cannot_do(corpus, overrides, message, capsys):
    before = (corpus["out"] / "manifest.json").read_text()
    assert main(["pack", str(corpus["out"]), *[a for o in overrides for a in ("--set", o)]]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert (corpus["out"] / "manifest.json").read_text() == before


def test_pack_without_a_corpus_fails_with_one_line(tmp_path, capsys):
    assert main(["pack", str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_a_build_after_pack_carries_the_docs_and_packs_them_as_before(sample_corpus, ray_local, tmp_path):
    """``pack`` leaves the docs files named for the build that wrote them. The next build that only
    re-tokenizes carries them to its own version whatever version their names carry (it once renamed
    by the manifest's version, linked each file onto itself, deleted it and packed nothing)."""
    out = tmp_path / "sample"
    shutil.copytree(sample_corpus["out"], out)
    docs = read_table(out, "docs")
    repack_corpus(str(out), ["tokenize.max_seq_len=96"])
    config = load_config(REPO / "examples" / "sample.yaml", [f"output={out}", "write.shard_rows=40"])
    report = build_corpus(config)
    assert report["refresh"]["records_read"] == 0 and report["refresh"]["docs"] == {"segmented": 0, "reused": docs.num_rows}
    assert read_table(out, "docs").equals(docs)
    assert read_shards(out)[0].equals(read_shards(sample_corpus["out"])[0])  # the sample build's own settings again
    assert verify(str(out)) == []
