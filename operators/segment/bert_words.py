"""Whole words without a segmenter (``segment.model: none``): BERT's own word units, for English and
other space-delimited text.

A word is what BERT's basic tokenizer splits on: whitespace, each punctuation mark and each CJK
character are boundaries (whitespace runs and control characters stay in the text, as words of their
own or inside a word, so ``"".join(words) == text``). The split is the `tokenizers` library's own
``BertNormalizer`` + ``BertPreTokenizer``, the ones a fast BERT tokenizer runs before WordPiece, so
every WordPiece token of a word lies inside it and its first token starts it: ``phil ##am ##mon``
is one word, masked together.
"""

from __future__ import annotations

import functools

import pyarrow as pa

from operators.segment.missing_words import with_words
from operators.segment.word_alignment import Tagged


@functools.lru_cache(maxsize=1)
def _splitter():
    """A tokenizer whose model maps every pre-token to one token: its offsets are BERT's words."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    splitter = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    # accents and case change no boundary: they are left alone, so offsets map one to one
    splitter.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=False,
                                                     lowercase=False)
    splitter.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return splitter


def bert_words(texts: list[str]) -> list[list[str]]:
    """Each text cut at the start and end of every BERT word: the words, and between them the
    whitespace (or removed control characters) that separated them."""
    words = []
    for text, encoding in zip(texts, _splitter().encode_batch(texts, add_special_tokens=False)):
        cuts = sorted({0, len(text), *(offset for pair in encoding.offsets for offset in pair)})
        words.append([text[start:end] for start, end in zip(cuts, cuts[1:])])
    return words


def with_bert_words(batch: pa.Table) -> pa.Table:
    """Ray Data batch function: adds ``words`` where a row lacks them (``missing_words``; null where the text
    is null); no row disappears."""
    return with_words(batch, (), lambda texts: [Tagged(words) for words in bert_words(texts)])
