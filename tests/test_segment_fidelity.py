"""Fidelity on the SIGHAN 2005 PKU test set (../shared/data/cws; skipped without it).

For every document the segment stage's words are LTP's own output on the same text (legacy: the whole
text; neural: each piece), also on long documents the neural model would truncate, and segmentation
F1 against the gold file through the Ray pipeline equals the F1 of calling ``ltp.pipeline`` directly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from operators.columns import DOC_ID, TEXT, WORDS
from operators.segment import MAX_PIECE_TOKENS, LtpSegmenter, SegmentConfig, apply, model_pieces, piece_tokens
from operators.segment.ltp_loading import load_ltp
from tests.conftest import shared_file
from tests.ltp_models import sighan_lines

TRAIN_LINES = 1000  # the legacy model learns from the first gold lines; F1 is measured on the rest
LONG_CHARS = 2000


@pytest.fixture(scope="module")
def pku_lines() -> list[str]:
    return sighan_lines(shared_file("cws/pku_test.utf8"))


@pytest.fixture(scope="module")
def gold_words() -> list[list[str]]:
    return [line.split() for line in sighan_lines(shared_file("cws/pku_test_gold.utf8"))]


@pytest.fixture(scope="module")
def long_docs(pku_lines) -> list[str]:
    """Consecutive lines joined into documents over 2,000 characters, and one with no sentence end at all."""
    docs, current = [], ""
    for line in pku_lines[:400]:
        current += line
        if len(current) > LONG_CHARS:
            docs.append(current)
            current = ""
    run_on = "".join(ch for ch in "".join(pku_lines[400:460]) if ch not in "。！？；…，、：")
    return [*docs, run_on[: 3 * LONG_CHARS]]


@pytest.fixture(scope="module")
def pku_model(tmp_path_factory, gold_words) -> Path:
    from tests.ltp_models import train_legacy_cws_model

    directory = tmp_path_factory.mktemp("ltp-legacy-pku")
    training = directory / "train.txt"
    training.write_text("\n".join(" ".join(words) for words in gold_words[:TRAIN_LINES]) + "\n", encoding="utf-8")
    return train_legacy_cws_model(directory / "model", training)


def non_space(words: list[str]) -> list[str]:
    return [part for word in words for part in word.split()]


def f1(predicted: list[list[str]], gold: list[list[str]]) -> float:
    """Word-level F1: a word counts when its character span matches a gold word's."""

    def spans(words: list[str]) -> set[tuple[int, int]]:
        ends, total = set(), 0
        for word in words:
            ends.add((total, total + len(word)))
            total += len(word)
        return ends

    correct = sum(len(spans(p) & spans(g)) for p, g in zip(predicted, gold))
    precision = correct / sum(map(len, predicted))
    recall = correct / sum(map(len, gold))
    return 2 * precision * recall / (precision + recall)


def test_legacy_words_are_ltp_on_the_whole_text(pku_model, pku_lines, long_docs):
    segmenter = LtpSegmenter(SegmentConfig(model=str(pku_model)))
    ltp = load_ltp(str(pku_model))
    texts = [*pku_lines, *long_docs]
    expected = ltp.pipeline(texts, tasks=["cws"], parallelism=False).cws
    for text, words, direct in zip(texts, segmenter.segment(texts), expected):
        assert "".join(words) == text
        assert [word for word in words if not word.isspace()] == non_space(direct)
    assert all(len(doc) > LONG_CHARS for doc in long_docs) and len(long_docs) > 5


def test_neural_words_are_ltp_on_each_piece(neural_model_dir, pku_lines, long_docs):
    segmenter = LtpSegmenter(SegmentConfig(model=str(neural_model_dir)))
    ltp = load_ltp(str(neural_model_dir))
    texts = [*pku_lines[::8], *long_docs]
    for text, words in zip(texts, segmenter.segment(texts)):
        assert "".join(words) == text
        [pieces] = model_pieces([text], piece_tokens(ltp.tokenizer))
        assert all(piece.tokens <= MAX_PIECE_TOKENS for piece in pieces)
        expected = [word for piece in pieces for word in non_space(ltp.pipeline([piece.text], tasks=["cws"]).cws[0])]
        assert [word for word in words if not word.isspace()] == expected
    for doc in long_docs:  # what the stage avoids: LTP on a whole long document glues all after 510 tokens into one "word"
        assert len(ltp.tokenizer(doc, add_special_tokens=False).input_ids) > 512
        assert max(map(len, ltp.pipeline([doc], tasks=["cws"]).cws[0])) > 100


def test_f1_through_the_ray_pipeline_equals_direct_ltp(ray_local, pku_model, pku_lines, gold_words):
    lines, gold = pku_lines[TRAIN_LINES:], gold_words[TRAIN_LINES:]
    ds = ray_local.data.from_items([{DOC_ID: f"{i:05d}", TEXT: line} for i, line in enumerate(lines)])
    rows = apply(ds, SegmentConfig(model=str(pku_model), batch_size=128)).take_all()
    through_ray = [list(row[WORDS]) for row in sorted(rows, key=lambda row: row[DOC_ID])]
    direct = [non_space(words) for words in load_ltp(str(pku_model)).pipeline(lines, tasks=["cws"]).cws]
    assert through_ray == direct
    assert f1(through_ray, gold) == f1(direct, gold) > 0.8  # trained on 1,000 PKU lines: a real segmenter
