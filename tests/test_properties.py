"""Properties of normalize -> segment -> tokenize over arbitrary Unicode, on the Ray-free cores.

For any input text: no exception escapes, the words join to the normalized text with no empty
word, the tokens are the tokenizer's own over the whole text, and ``word_start`` follows the
contract rule, recomputed here from the words and the tokenizer's offsets.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unittest import mock

from tokenizers import Tokenizer

from operators import segment
from operators.char_tokens import CharTokens
from operators.normalize import NormalizeConfig, Normalizer
from operators.segment import LtpSegmenter, SegmentConfig
from operators.tokenize import TokenizeConfig, WholeWordTokenizer, encode_bounded, load_tokenizer
from tests.vocab import CJK_PUNCTUATION, COMMON_CJK

# Any code point (surrogates and unassigned ones included), plus a heavy share of what real
# Chinese text is made of, so that segmentation has words to find.
CHARACTERS = st.one_of(
    st.characters(codec=None, exclude_categories=()),
    st.characters(codec=None, categories=["Cs", "Cf", "Cc", "Mn", "Zl", "Zp"]),  # surrogates, format, controls
    st.sampled_from(COMMON_CJK + CJK_PUNCTUATION + " \n\t\r\u3000\u200b"),
    st.sampled_from("abcXYZ019 ##[SEP][MASK]éñ\u0301İß"),
)
TEXTS = st.text(CHARACTERS, max_size=300)
PROFILE = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def cores(legacy_model_dir, vocab_path):
    return (
        Normalizer(NormalizeConfig(min_chars=1)),
        LtpSegmenter(SegmentConfig(model=str(legacy_model_dir))),
        WholeWordTokenizer(TokenizeConfig(tokenizer=str(vocab_path))),
        load_tokenizer(str(vocab_path)),
    )


@pytest.fixture(scope="module", params=[True, False], ids=["specials split", "specials matched"])
def char_tokens(request, vocab_path) -> tuple[CharTokens, Tokenizer]:
    """``CharTokens`` and the tokenizer it must equal, both with ``split_special_tokens`` as the param says."""
    backend = load_tokenizer(str(vocab_path)).backend_tokenizer
    reference = Tokenizer.from_str(backend.to_str())
    reference.encode_special_tokens = request.param
    return CharTokens(backend, split_special_tokens=request.param), reference


def expected_word_start(tokenizer, text: str, words: list[str]) -> tuple[list[int], list[bool]]:
    """The contract rule, recomputed: not a ## continuation, and the token starts where a word starts."""
    starts, position = set(), 0
    for word in words:
        starts.add(position)
        position += len(word)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, split_special_tokens=True)
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    flags = [not token.startswith("##") and begin in starts for token, (begin, _) in zip(tokens, encoded["offset_mapping"])]
    return encoded["input_ids"], flags


@PROFILE
@given(raw=TEXTS)
def test_normalize_segment_tokenize_hold_for_any_text(cores, raw):
    normalizer, segmenter, tokenizer_core, tokenizer = cores
    text, _fingerprint, _reason = normalizer.normalize(raw)
    (words,) = segmenter.segment([text])
    assert "".join(words) == text
    assert all(words), "an empty word"
    ((ids, word_start),) = tokenizer_core.encode([text], [words])
    want_ids, want_starts = expected_word_start(tokenizer, text, words)
    assert ids.tolist() == want_ids
    assert word_start.tolist() == want_starts


@PROFILE
@given(raw=TEXTS, max_chars=st.integers(1, 30))
def test_long_texts_segmented_in_pieces_still_cover_the_text(cores, raw, max_chars):
    """The legacy model takes long texts in pieces (bounded memory); words still join to the text,
    and a whitespace run stays one word."""
    normalizer, segmenter = cores[0], cores[1]
    text = normalizer.normalize(raw)[0]
    with mock.patch.object(segment, "LEGACY_PIECE_CHARS", max_chars):
        (words,) = segmenter.segment([text])
    assert "".join(words) == text and all(words)
    assert not any(a[-1].isspace() and b[0].isspace() for a, b in zip(words, words[1:]))


UNICODE_TEXTS = TEXTS.map(lambda text: "".join(ch for ch in text if not 0xD800 <= ord(ch) <= 0xDFFF))  # str the tokenizer takes


@PROFILE
@given(texts=st.lists(UNICODE_TEXTS, max_size=6))
def test_char_tokens_are_the_tokenizers_own(char_tokens, texts):
    """Table characters looked up, the runs between them tokenized apart: the tokenizer's own ids, offsets and
    word starts, whatever the text."""
    ours, reference = char_tokens
    got = ours.encode(texts)
    columns = (got.per_text(got.ids), got.per_text(got.offsets), got.per_text(got.word_first))
    for ids, offsets, word_first, want in zip(*columns, reference.encode_batch(texts, add_special_tokens=False),
                                              strict=True):
        assert ids.tolist() == want.ids
        assert [tuple(pair) for pair in offsets.tolist()] == want.offsets
        assert word_first.tolist() == [k == 0 or want.word_ids[k] != want.word_ids[k - 1] for k in range(len(want.ids))]


@PROFILE
@given(raw=UNICODE_TEXTS, max_chars=st.integers(1, 40))
def test_tokenizing_in_pieces_equals_one_call(cores, raw, max_chars):
    """Long texts are tokenized in pieces (bounded memory); any cut must give the whole text's tokens."""
    tokenizer, tokens = cores[3], cores[2]._tokens
    ids, offsets, counts = encode_bounded(tokens, [raw, raw], max_chars)
    whole = tokenizer(raw, add_special_tokens=False, return_offsets_mapping=True, split_special_tokens=True)
    assert counts.tolist() == [len(whole["input_ids"])] * 2
    ids, offsets = ids[: counts[0]], offsets[counts[0] :]  # the first text's ids, the second's offsets
    assert ids.tolist() == whole["input_ids"]
    assert [tuple(pair) for pair in offsets.tolist()] == [tuple(pair) for pair in whole["offset_mapping"]]
