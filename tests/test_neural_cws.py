"""The neural fast path (operators.segment.neural_cws) gives LTP's own words on every piece.

Random-weight tiny models on CPU, with a plain head and with a CRF head; text: the SIGHAN PKU test
lines when ../shared/data has them, the bundled sample always, documents of over 2,000 characters
cut into pieces as the stage cuts them, and odd text (spaces, full-width forms, emoji, control
characters, Latin words of several WordPiece tokens).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from operators.segment import LtpSegmenter, SegmentConfig, model_pieces, piece_tokens
from operators.segment.ltp_loading import SegmentModelError, load_ltp
from operators.segment.neural_cws import NeuralCws
from tests.conftest import SHARED_DATA
from tests.ltp_models import build_tiny_neural_model, sighan_lines
from tests.operators.test_segment import TEXTS

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sample"
LONG_CHARS = 2000
BATCH = 48


def texts() -> list[str]:
    """PKU lines (when present), the sample's records, long documents made of them, and odd text."""
    pku = SHARED_DATA / "cws" / "pku_test.utf8"
    lines = sighan_lines(pku) if pku.exists() else []
    sample = [text for path in sorted(SAMPLE.glob("*.jsonl")) for line in path.open(encoding="utf-8")
              if isinstance(text := _text(line), str)]
    running, long_docs = "", []
    for text in [*sample, *lines[:300]]:
        running += text
        if len(running) > LONG_CHARS:
            long_docs.append(running)
            running = ""
    return [*lines, *sample, *long_docs, *TEXTS, "Philammon's incomprehensibilities 和 antidisestablishment。"]


def _text(line: str) -> object:
    """The record's text; None for the sample's deliberately broken lines."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record.get("text") if isinstance(record, dict) else None


@pytest.fixture(scope="module")
def pieces(neural_model_dir) -> list[str]:
    tokenizer = load_ltp(str(neural_model_dir)).tokenizer
    return [piece for pieces in model_pieces(texts(), piece_tokens(tokenizer)) for piece in pieces if piece.tokens > 0]


@pytest.fixture(scope="module", params=["plain head", "crf head"])
def model_dir(request, neural_model_dir, tmp_path_factory) -> Path:
    if request.param == "plain head":
        return neural_model_dir
    return build_tiny_neural_model(tmp_path_factory.mktemp("ltp-neural-crf"), cws_crf=True)


def test_fast_words_are_ltps_words_on_every_piece(model_dir, pieces):
    """Pieces sorted by length into batches, as the stage batches them, and the words compared one by one."""
    ltp = load_ltp(str(model_dir))
    pieces = sorted(pieces, key=lambda piece: piece.tokens)
    batches = [pieces[i : i + BATCH] for i in range(0, len(pieces), BATCH)]
    expected = [words for batch in batches for words in ltp.pipeline([piece.text for piece in batch], tasks=["cws"]).cws]
    got = [words for batch in NeuralCws(ltp, "cpu").words(batches) for words in batch]
    assert len(got) == len(pieces)
    differing = [(piece.text, g, e) for piece, g, e in zip(pieces, got, expected) if g != e]
    assert not differing, differing[:3]
    assert len(pieces) > 300 and any(len(piece.text) > 200 for piece in pieces)


def test_the_stage_uses_the_fast_path_for_words_only(neural_model_dir, tmp_path):
    words_only = LtpSegmenter(SegmentConfig(model=str(neural_model_dir)))
    assert words_only._fast is not None
    ltp = load_ltp(str(neural_model_dir))
    sample = texts()[-60:]
    for text, words in zip(sample, words_only.segment(sample)):
        assert "".join(words) == text
        expected = [w for piece in model_pieces([text], piece_tokens(ltp.tokenizer))[0] for w in ltp.pipeline([piece.text], tasks=["cws"]).cws[0]]
        assert [w for w in words if not w.isspace()] == [part for w in expected for part in w.split()]

    user_words = tmp_path / "words.txt"
    user_words.write_text("天安门广场\n", encoding="utf-8")
    tagged_dir = build_tiny_neural_model(tmp_path / "tagger", tasks=("cws", "pos"))
    assert LtpSegmenter(SegmentConfig(model=str(neural_model_dir), user_words=str(user_words)))._fast is None
    assert LtpSegmenter(SegmentConfig(model=str(tagged_dir), tasks=("cws", "pos")))._fast is None


def test_half_precision_runs_the_fast_path_and_its_words_still_cover_the_text(neural_model_dir, legacy_model_dir):
    """bf16 may flip a near-tied tag (the bench counts how often), never the text: the words join to it."""
    half = LtpSegmenter(SegmentConfig(model=str(neural_model_dir), precision="bf16"))
    assert half._fast is not None and half._fast.precision == "bf16"
    sample = texts()[-40:]
    assert ["".join(words) for words in half.segment(sample)] == sample
    with pytest.raises(SegmentModelError, match="precision bf16 needs the neural fast path"):
        LtpSegmenter(SegmentConfig(model=str(legacy_model_dir), precision="bf16"))


@pytest.mark.parametrize("settings, message", [
    ({"precision": "fp8"}, "precision must be one of fp32, bf16, fp16"),
    ({"precision": "fp16", "tasks": ("cws", "pos")}, "words only"),
    ({"precision": "bf16", "model": "none"}, "an LTP model"),
])
def test_a_precision_the_fast_path_cannot_run_is_a_config_error(settings, message):
    with pytest.raises(ValueError, match=message):
        SegmentConfig(**settings)
