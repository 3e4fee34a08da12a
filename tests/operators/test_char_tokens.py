"""``CharTokens`` against the tokenizer it reads: the same tokens on real text, a table that holds only
what never depends on its neighbours, and every character to the tokenizer under other rules.
(``tests/test_properties.py`` compares them on arbitrary Unicode.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
from tokenizers import Tokenizer, pre_tokenizers

from bench.shared_data import C3, CMRC, DRCD, PKU_TEST, SHARED_VOCAB
from operators.char_tokens import OTHER, SEPARATOR, CharTokens
from operators.tokenize import load_tokenizer

TRICKY = ["", "   ", "中文，。\u3000ab 12 [SEP] [MASK]中\u0301 ﬁİ\u200b\x00x", "Philammon's 1998年：", "a" * 300, "，，，。。"]


def reference(backend, split_special_tokens: bool) -> Tokenizer:
    copy = Tokenizer.from_str(backend.to_str())
    copy.encode_special_tokens = split_special_tokens
    return copy


def assert_same_tokens(tokens: CharTokens, tokenizer: Tokenizer, texts: list[str]) -> None:
    got = tokens.encode(texts)
    columns = (got.per_text(got.ids), got.per_text(got.offsets), got.per_text(got.word_first))
    for text, ids, offsets, first, want in zip(texts, *columns, tokenizer.encode_batch(texts, add_special_tokens=False),
                                               strict=True):
        words = want.word_ids
        assert ids.tolist() == want.ids, text
        assert [tuple(pair) for pair in offsets.tolist()] == want.offsets, text
        assert first.tolist() == [k == 0 or words[k] != words[k - 1] for k in range(len(words))], text


@pytest.fixture(scope="module")
def backend(vocab_path):
    return load_tokenizer(str(vocab_path)).backend_tokenizer


@pytest.mark.parametrize("split", [True, False])
def test_tricky_texts_give_the_tokenizers_tokens(backend, split):
    assert_same_tokens(CharTokens(backend, split_special_tokens=split), reference(backend, split), TRICKY)


def test_the_table_holds_cjk_and_punctuation_whitespace_separates_the_rest_goes_to_the_tokenizer(backend):
    table = CharTokens(backend, split_special_tokens=True)._table
    kind = {char: int(table[min(ord(char), len(table) - 1)]) for char in "中，。 \u3000a1é[]\x00"}
    assert kind["中"] == backend.token_to_id("中") and kind["，"] == backend.token_to_id("，")
    assert kind[" "] == kind["\u3000"] == SEPARATOR
    assert {kind[c] for c in "a1é\x00"} == {OTHER}
    assert kind["["] == kind["]"] == OTHER  # characters of an added token ([SEP]) go to the tokenizer with their neighbours


def test_other_rules_send_every_character_to_the_tokenizer(backend):
    """The table's premise is BERT's normalizer and pre-tokenizer: under any others it stays empty."""
    whitespace_split = Tokenizer.from_str(backend.to_str())
    whitespace_split.pre_tokenizer = pre_tokenizers.Whitespace()
    tokens = CharTokens(whitespace_split, split_special_tokens=True)
    assert not np.any(tokens._table >= 0)
    assert_same_tokens(tokens, reference(whitespace_split, True), TRICKY)


def test_real_chinese_corpora_give_the_tokenizers_tokens():
    """Simplified and traditional paragraphs and the SIGHAN test lines, with BERT-base-Chinese's vocab."""
    if not all(path.exists() for path in (CMRC, C3, DRCD, PKU_TEST, SHARED_VOCAB)):
        pytest.skip("../shared/data is not available")
    backend = load_tokenizer(str(SHARED_VOCAB)).backend_tokenizer
    texts = [json.loads(line)["text"] for path in (CMRC, C3, DRCD) for line in path.open(encoding="utf-8")]
    texts += PKU_TEST.read_text(encoding="utf-8").splitlines()
    tokens, tokenizer = CharTokens(backend, split_special_tokens=True), reference(backend, True)
    for i in range(0, len(texts), 2000):
        assert_same_tokens(tokens, tokenizer, texts[i : i + 2000])
