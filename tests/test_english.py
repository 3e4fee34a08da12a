"""English without LTP (``segment.model: none``): BERT's own words, whole-word flags and masking.

The build runs through the CLI, as a user runs it, and its shards are checked against an
independent computation: the fast tokenizer's own ``word_ids`` for each document."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.segment import SegmentConfig
from operators.segment.bert_words import bert_words
from operators.tokenize import load_tokenizer
from tests.conftest import REPO
from tests.contracts import read_shards, read_table
from training.collators import IGNORE, TokenIds, WholeWordMaskCollator

DOCS = [
    "The tokenizers split every word into pieces, and whole word masking keeps them together.",
    "A tokenizer's output: token ids (integers) and word starts; nothing else is needed.",
    "Hello world!  Data   about   bert, 2024 -- the cafe said hello.",
    "Mixed text 中文 and English tokenizers work, too.",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=40), min_size=1, max_size=5))
def test_bert_words_cover_the_text_and_no_word_holds_a_boundary(texts):
    for text, words in zip(texts, bert_words(texts)):
        assert "".join(words) == text and all(words)


def test_words_are_berts_units_with_the_whitespace_between_them():
    assert bert_words(["Hello, world!  tokenizers 中文"]) == [
        ["Hello", ",", " ", "world", "!", "  ", "tokenizers", " ", "中", "文"]
    ]


def test_none_takes_words_only():
    with pytest.raises(ValueError, match="model none"):
        SegmentConfig(model="none", tasks=("cws", "pos"))


def build(root: Path, docs: list[str], model: str, vocab: Path) -> dict:
    """``docs`` built through the CLI, one example per document (``packing: none``)."""
    (root / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs), encoding="utf-8")
    config = {
        "inputs": [str(root / "in.jsonl")], "output": str(root / "out"), "normalize": {"opencc": "none"},
        "segment": {"model": model},
        "tokenize": {"tokenizer": str(vocab), "max_seq_len": 128, "packing": "none"},
    }
    (root / "config.yaml").write_text(json.dumps(config))
    command = [sys.executable, "-m", "pipeline", "build", str(root / "config.yaml"), "--verbose"]  # execution plans
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"out": root / "out", "log": result.stdout + result.stderr, "vocab": vocab}


@pytest.fixture(scope="module")
def english(tmp_path_factory, vocab_path) -> dict:
    return build(tmp_path_factory.mktemp("english"), DOCS, "none", vocab_path)


def test_an_english_word_in_a_chinese_sentence_is_one_whole_word_through_ltp(tmp_path, legacy_model_dir, vocab_path):
    texts = ["我们在北京大学学习中文的时候，使用tokenizers处理文本。", "今天天气很好，我们一起去北京天安门看看新年的样子。"]
    built = build(tmp_path, texts, str(legacy_model_dir), vocab_path)
    tokenizer = load_tokenizer(str(vocab_path))
    wanted = tokenizer.convert_tokens_to_ids(tokenizer.tokenize("tokenizers"))
    assert len(wanted) >= 3
    example = read_shards(built["out"])[0].slice(0, 1).to_pylist()[0]
    ids, starts = example["input_ids"], example["word_start"]
    at = next(i for i in range(len(ids)) if ids[i : i + len(wanted)] == wanted)
    assert starts[at : at + len(wanted) + 1] == [True] + [False] * (len(wanted) - 1) + [True]  # then 处理 starts


def test_an_english_build_starts_no_segmentation_actor(english):
    plans = [line for line in english["log"].splitlines() if "Execution plan" in line]
    assert any("with_bert_words" in plan for plan in plans), plans
    assert not any("SegmenterActor" in plan for plan in plans), plans


def test_word_start_is_the_fast_tokenizers_own_word_starts(english):
    """Every token of every document: word_start is true exactly where the fast tokenizer's word_ids
    begin a new word (its pre-tokenizer is BERT's basic split)."""
    tokenizer = load_tokenizer(str(english["vocab"]))
    shards, _ = read_shards(english["out"])
    docs = read_table(english["out"], "docs")
    texts = docs["text"].to_pylist()  # normalized: runs of spaces are one space
    assert len(texts) == len(DOCS) == shards.num_rows
    for text, ids, starts in zip(texts, shards["input_ids"].to_pylist(), shards["word_start"].to_pylist()):
        encoding = tokenizer(text, add_special_tokens=False)
        word_ids = encoding.word_ids()
        expected = [i == 0 or word_ids[i] != word_ids[i - 1] for i in range(len(word_ids))]
        assert ids[1:-1] == encoding["input_ids"] and starts[1:-1] == expected, text


def test_the_collator_masks_every_piece_of_an_english_word_together(english):
    tokenizer = load_tokenizer(str(english["vocab"]))
    pieces = tokenizer.tokenize("tokenizers")
    assert len(pieces) >= 3, pieces  # token ##izer ##s
    shards, schema = read_shards(english["out"])
    special_ids = json.loads(schema.metadata[b"special_ids"])
    ids = TokenIds.from_special_ids(special_ids, len(tokenizer.vocab))
    example = shards.slice(0, 1).to_pylist()[0]
    input_ids, starts = np.array(example["input_ids"]), np.array(example["word_start"])
    wanted = tokenizer.convert_tokens_to_ids(pieces)
    at = next(i for i in range(len(input_ids)) if list(input_ids[i : i + len(wanted)]) == wanted)
    word = slice(at, at + len(wanted))
    assert starts[word].tolist() == [True] + [False] * (len(wanted) - 1)
    collator = WholeWordMaskCollator(ids, probability=0.5)
    chosen = 0
    for seed in range(200):
        _, labels = collator.example(input_ids, starts, np.random.default_rng(seed))
        predicted = labels[word] != IGNORE
        assert predicted.all() or not predicted.any(), seed
        chosen += bool(predicted.all())
    assert 0 < chosen < 200


def test_the_english_example_builds_with_its_deliberate_records_accounted_for(tmp_path):
    """README's English example, through the CLI: the duplicates and bad records made on purpose."""
    out = tmp_path / "english"
    command = [sys.executable, "-m", "pipeline", "build", "examples/english.yaml", "--set", f"output={out}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    fates = read_table(out, "fates").to_pylist()
    ids = {row["record"]: row["doc_id"] for row in fates}
    by_record = {row["record"]: row for row in fates}
    assert by_record[160]["fate"] == "exact_dup" and by_record[160]["detail"] == ids[3]
    assert by_record[161]["fate"] == "near_dup" and by_record[161]["detail"] == ids[10]
    assert (by_record[162]["fate"], by_record[163]["fate"]) == ("filtered", "rejected")
    assert subprocess.run([sys.executable, "-m", "pipeline", "verify", str(out)], cwd=REPO).returncode == 0

