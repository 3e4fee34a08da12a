"""``python -m pipeline inspect``: examples with whole words marked, and one document's fate.

Runs on the sample build that tests/test_report_html.py makes (built once per session)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from inspection import inspect_corpus
from inspection.inspect_corpus import Style, run, whole_words
from pipeline.cli import main
from tests.conftest import ASSETS, REPO
from tests.contracts import read_shards, read_table

ANSI = re.compile(r"\033\[[0-9;]*m")


@pytest.fixture(scope="module")
def out(sample_corpus) -> Path:
    return sample_corpus["out"]


def inspect(out: Path, **kwargs) -> tuple[int, str]:
    buffer = io.StringIO()
    code = run(str(out), out=buffer, **kwargs)
    return code, buffer.getvalue()


def first_of(out: Path, fate: str) -> dict:
    return next(row for row in read_table(out, "fates").to_pylist() if row["fate"] == fate)


def test_examples_are_printed_with_their_whole_words_in_brackets(out):
    code, text = inspect(out, n=3, colour="never")
    assert code == 0 and not ANSI.search(text)
    shards, _ = read_shards(out)
    vocab = (ASSETS / "vocab.txt").read_text(encoding="utf-8").split("\n")
    blocks = re.findall(r"^shards/\S+ #(\d+) · (\d+) tokens · (\d+) whole words.*\n(.*)$", text, re.MULTILINE)
    assert [int(b[0]) for b in blocks] == [0, 1, 2]
    for (_, tokens, words, line), ids, starts in zip(
        blocks, shards.column("input_ids").to_pylist(), shards.column("word_start").to_pylist()
    ):
        pieces = [vocab[i] for i in ids]
        specials = sum(p in ("[CLS]", "[SEP]") for p in pieces)
        assert int(tokens) == len(ids)
        assert int(words) == sum(s for s, p in zip(starts, pieces) if p not in ("[CLS]", "[SEP]"))
        units = line.split(" ")
        assert len(units) == int(words) + specials  # one unit per whole word or special token
        plain = [u if u in ("[CLS]", "[SEP]") else u.strip("[]").removeprefix("…") for u in units]
        assert "".join(plain) == "".join(p.removeprefix("##") for p in pieces)
        groups: list[list[bool]] = []  # word_start of the tokens of each whole word
        for piece, start in zip(pieces, starts):
            if piece in ("[CLS]", "[SEP]"):
                groups.append([])
            elif start or not groups or not groups[-1]:
                groups.append([start])
            else:
                groups[-1].append(start)
        bracketed = sum(len(g) > 1 or (bool(g) and not g[0]) for g in groups)
        assert sum(u.startswith("[") and u not in ("[CLS]", "[SEP]") for u in units) == bracketed


def test_colour_only_when_asked_or_on_a_terminal(out):
    assert ANSI.search(inspect(out, n=1, colour="always")[1])
    assert not ANSI.search(inspect(out, n=1, colour="auto")[1])  # a StringIO is no terminal


def test_examples_are_streamed_not_read_whole(out, monkeypatch):
    pulled = []
    original = inspect_corpus.iter_shard_batches

    def counting(output):
        for item in original(output):
            pulled.append(item[0])
            yield item

    monkeypatch.setattr(inspect_corpus, "iter_shard_batches", counting)
    code, text = inspect(out, n=2, colour="never")
    assert code == 0 and text.count("\nshards/") == 2
    assert len(pulled) == 1  # the first batch held enough examples: nothing else was read
    assert read_shards(out)[0].num_rows > 2


def test_a_kept_document_shows_its_words(out):
    kept = first_of(out, "kept")
    doc = next(row for row in read_table(out, "docs").to_pylist() if row["doc_id"] == kept["doc_id"])
    code, text = inspect(out, doc=kept["doc_id"][:10], colour="never")
    assert code == 0
    assert f"doc_id {kept['doc_id']}" in text and "fate   kept" in text
    words_line = text.strip().splitlines()[-1]
    assert [w.strip("[]") for w in words_line.split(" ")] == doc["words"]


def test_a_duplicate_shows_the_document_kept_in_its_place_and_the_differences(out):
    duplicate = first_of(out, "near_dup")
    code, text = inspect(out, doc=duplicate["doc_id"], colour="never")
    assert code == 0
    assert f"fate   near_dup of {duplicate['detail']}" in text
    assert f"kept in its place: {duplicate['detail']}" in text
    assert "differences" in text and re.search(r"\[-.+?-\]|\{\+.+?\+\}", text)


def test_filtered_and_rejected_records_show_their_reason(out):
    filtered, rejected = first_of(out, "filtered"), first_of(out, "rejected")
    assert f"fate   filtered: {filtered['detail']}" in inspect(out, doc=filtered["doc_id"])[1]
    assert f"fate   rejected: {rejected['detail']}" in inspect(out, doc=rejected["doc_id"])[1]


def test_cli_inspect_and_its_one_line_errors(out, capsys, tmp_path):
    assert main(["inspect", str(out), "--n", "1", "--color", "never"]) == 0
    assert "[CLS]" in capsys.readouterr().out
    assert main(["inspect", str(out), "--doc", "0000000000000000"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no record with doc_id" in err and len(err.splitlines()) == 1
    assert main(["inspect", str(tmp_path)]) == 2
    assert "manifest.json" in capsys.readouterr().err


def test_a_record_is_found_by_its_file_and_row_in_any_checkout(out, capsys):
    """``FILE:RECORD`` names the same record whatever the doc_ids are (they hash the input's path)."""
    row = first_of(out, "near_dup")
    relative = os.path.relpath(row["source"])
    assert inspect(out, doc=f"{relative}:{row['record']}") == inspect(out, doc=row["doc_id"])
    assert main(["inspect", str(out), "--doc", f"{relative}:99999"]) == 2
    assert "no record 99999 of" in capsys.readouterr().err
    assert main(["inspect", str(out), "--doc", "no/such/file.jsonl:0"]) == 2
    assert "no/such/file.jsonl" in capsys.readouterr().err


def test_a_short_prefix_is_told_how_long_a_prefix_must_be(out, capsys):
    doc_id = first_of(out, "kept")["doc_id"]
    assert main(["inspect", str(out), "--doc", doc_id[:inspect_corpus.MIN_PREFIX - 1]]) == 2
    assert f"a prefix needs at least {inspect_corpus.MIN_PREFIX} characters" in capsys.readouterr().err
    assert main(["inspect", str(out), "--doc", doc_id[:inspect_corpus.MIN_PREFIX]]) == 0


@pytest.mark.parametrize("command", [["inspect", "--n", "50", "--color", "never"], ["inspect", "--doc"], ["verify"]])
def test_a_reader_that_closes_the_pipe_early_stops_the_command_quietly(out, command):
    """``... | head -1``: no traceback, the status a Unix tool stopped by the closed pipe reports."""
    if command == ["inspect", "--doc"]:
        command = [*command, first_of(out, "kept")["doc_id"]]
    argv = [sys.executable, "-m", "pipeline", command[0], str(out), *command[1:]]
    with subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        process.stdout.close()  # the reader is gone before the first line
        stderr = process.stderr.read().decode()
        status = process.wait(timeout=300)
    assert stderr == "" and status == 141, (status, stderr)


# ---- no Ray below ---------------------------------------------------------------------------


def test_whole_words_group_tokens_by_word_start():
    vocab = ["[PAD]", "[CLS]", "[SEP]", "城", "市", "的", "play", "##ing", "new", "york"]
    ids = [1, 4, 5, 3, 4, 6, 7, 8, 9, 2]
    starts = [True, False, True, True, False, True, False, True, False, True]
    units = whole_words(ids, starts, vocab)
    assert units == [
        ("special", "[CLS]", 1),
        ("cut", "市", 1),  # an example that starts inside a word
        ("word", "的", 1),
        ("word", "城市", 2),
        ("word", "playing", 2),
        ("word", "new york", 2),
        ("special", "[SEP]", 1),
    ]
    assert Style().words(units) == "[CLS] […市] 的 [城市] [playing] [new york] [SEP]"
    painted = Style(colour=True).words(units)
    assert ANSI.sub("", painted) == "[CLS]…市的城市playingnew york[SEP]"
