"""A BERT tokenizer's tokens for mostly-CJK text, from a table per character that the tokenizer filled.

A fast BERT tokenizer spends about a microsecond a character in Rust, and each token's id and offsets
then become Python objects. Yet in BERT's normalizer and pre-tokenizer a CJK ideograph or a
punctuation mark is always a word of its own and whitespace always ends a word, so such a character's
token does not depend on its neighbours. ``CharTokens`` asks the tokenizer once about every
single-character entry of its vocabulary and every whitespace character, between two letters and
between two digits; a character that came out as a word of one token (or, whitespace, as nothing)
both times goes in a table indexed by code point. A batch's texts are then looked up with numpy, and
only the stretches between table characters that hold anything else (Latin words, numbers, control
characters, the characters of the tokenizer's added tokens) go to the tokenizer, in one call for the
batch. Nothing of the tokenizer's rules is copied here: the table holds its own answers, and the
tokens equal its output on every text (``tests/operators/test_char_tokens.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain, pairwise
from typing import Any, NamedTuple

import numpy as np

SEPARATOR = -1  # whitespace: no token, and no word goes across it
OTHER = -2  # anything else: the tokenizer decides, with the neighbours it has in the text
_CONTEXTS = ("a", "1")  # the neighbours a table character is asked about: a letter, a digit
RUN_CALL_CHARS = 1 << 16  # characters of runs per string the tokenizer takes
_WHITESPACE = [chr(c) for c in range(0x3001) if chr(c).isspace()]  # U+3000 is the last one


class TextTokens(NamedTuple):
    """A batch's tokens, its texts end to end: the first ``counts[0]`` belong to the first text, and so on."""

    ids: np.ndarray
    offsets: np.ndarray  # (tokens, 2): start and end character in the token's own text
    word_first: np.ndarray  # true where the token begins one of the pre-tokenizer's words
    counts: np.ndarray

    def per_text(self, values: np.ndarray) -> list[np.ndarray]:
        return split_by_counts(values, self.counts)


def split_by_counts(values: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    """``values`` of texts end to end, one array per text: the first ``counts[0]``, then the next ``counts[1]``..."""
    return np.split(values, np.cumsum(counts)[:-1]) if len(counts) else []


class CharTokens:
    """``encode(texts)`` equals the tokenizer's ``encode_batch(texts, add_special_tokens=False)``,
    without truncation or padding; text that spells an added token ("[SEP]") is plain text when
    ``split_special_tokens``."""

    def __init__(self, backend: Any, split_special_tokens: bool):
        from tokenizers import Tokenizer, normalizers, pre_tokenizers

        self._backend = Tokenizer.from_str(backend.to_str())  # settings of its own, whatever the caller's
        self._backend.no_truncation()
        self._backend.no_padding()
        self._backend.encode_special_tokens = split_special_tokens
        bert = isinstance(backend.normalizer, normalizers.BertNormalizer) and isinstance(
            backend.pre_tokenizer, pre_tokenizers.BertPreTokenizer)
        # the table's premise is BERT's rules: with other rules every character goes to the tokenizer
        self._table = self._char_table() if bert else np.full(1, OTHER, dtype=np.int64)
        ids = np.flatnonzero(self._table >= 0)
        self._separator = chr(int(ids[0])) if len(ids) else ""  # joins runs (see ``_runs``); none: a call a run

    def _char_table(self) -> np.ndarray:
        """Per code point: the token id of a character that is always a one-token word, SEPARATOR for
        whitespace that always splits into no token, else OTHER (the last entry stands for every code
        point above the table)."""
        in_added = set(chain.from_iterable(token.content for token in self._backend.get_added_tokens_decoder().values()))
        singles = (token for token in self._backend.get_vocab(with_added_tokens=False) if len(token) == 1)
        candidates = sorted({*singles, *_WHITESPACE} - in_added)
        probes = [f"{context}{char}{context}" for char in candidates for context in _CONTEXTS]
        encodings = iter(self._backend.encode_batch(probes, add_special_tokens=False))
        table = np.full(max(map(ord, candidates), default=0) + 2, OTHER, dtype=np.int64)
        for char in candidates:
            answers = {_probe_answer(next(encodings)) for _ in _CONTEXTS}
            if len(answers) == 1:
                table[ord(char)] = answers.pop()
        return table

    def encode(self, texts: Sequence[str]) -> TextTokens:
        """The texts' tokens (see the class doc), with their offsets in their own text."""
        lengths = np.fromiter(map(len, texts), np.int64, len(texts))
        text_ends = np.cumsum(lengths)
        joined = "".join(texts)
        points = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        kinds = self._table[np.minimum(points, len(self._table) - 1)]
        in_table = kinds >= 0
        # stretches of characters outside the table, within one text; those that hold an OTHER go to the tokenizer
        cut_before = np.ones(len(points) + 1, dtype=bool)  # before a text, a table character, and after them
        cut_before[1:-1] = in_table[1:] | in_table[:-1]
        cut_before[text_ends - lengths] = True
        stretch_starts = np.flatnonzero(cut_before[:-1] & ~in_table)
        stretch_ends = np.flatnonzero(cut_before[1:] & ~in_table) + 1
        stretch_of = np.cumsum(cut_before[:-1] & ~in_table) - 1
        holds_other = np.bincount(stretch_of[kinds == OTHER], minlength=len(stretch_starts)) > 0
        runs = self._runs(joined, stretch_starts[holds_other], stretch_ends[holds_other])

        chars = np.flatnonzero(in_table)
        at = np.concatenate([chars, runs.run_starts])  # each token at its character or the start of its run
        order = np.argsort(at, kind="stable")  # a run's tokens keep their order
        starts = np.concatenate([chars, runs.starts])[order]
        owner = np.searchsorted(text_ends, at[order], side="right")
        first_char = (text_ends - lengths)[owner]
        return TextTokens(
            ids=np.concatenate([kinds[chars], runs.ids])[order],
            offsets=np.stack([starts, np.concatenate([chars + 1, runs.ends])[order]], axis=1) - first_char[:, None],
            word_first=np.concatenate([np.ones(len(chars), dtype=bool), runs.word_first])[order],
            counts=np.bincount(owner, minlength=len(texts)),
        )

    def _runs(self, joined: str, run_starts: np.ndarray, run_ends: np.ndarray) -> _RunTokens:
        """The tokens of ``joined[start:end]`` for each run, with offsets in ``joined``. The runs go to the
        tokenizer joined by a table character (a word of its own, as the table characters around each
        run in the text are) in strings of about ``RUN_CALL_CHARS``: one Python object per token, not
        per run, and no call on a long string."""
        pieces = [joined[start:end] for start, end in zip(run_starts.tolist(), run_ends.tolist())]
        joint = len(self._separator)
        sizes = run_ends - run_starts + joint  # a run and the separator after it
        at = np.cumsum(sizes) - sizes  # where each run starts in the runs end to end
        call_of = at // RUN_CALL_CHARS if joint else np.arange(len(pieces))
        bounds = np.searchsorted(call_of, np.arange(int(call_of[-1]) + 2) if len(call_of) else [0]).tolist()
        calls = [self._separator.join(pieces[a:b]) for a, b in pairwise(bounds)]
        encodings = self._backend.encode_batch(calls, add_special_tokens=False)
        counts = np.fromiter((len(encoding.ids) for encoding in encodings), np.int64, len(encodings))
        total = int(counts.sum())
        ids = np.fromiter(chain.from_iterable(encoding.ids for encoding in encodings), np.int64, total)
        spans = np.fromiter(chain.from_iterable(chain.from_iterable(encoding.offsets for encoding in encodings)),
                            np.int64, 2 * total).reshape(-1, 2)
        # no special token is added, so every token has a word: a new one starts at each word index change
        words = np.fromiter(chain.from_iterable(encoding.word_ids for encoding in encodings), np.int64, total)
        word_first = np.ones(total, dtype=bool)
        word_first[1:] = words[1:] != words[:-1]
        word_first[(np.cumsum(counts) - counts)[counts > 0]] = True  # each call's words count from 0
        spans += np.repeat(at[bounds[:-1]], counts)[:, None]  # in the runs end to end
        run = np.searchsorted(at, spans[:, 0], side="right") - 1
        keep = spans[:, 0] != at[run] + sizes[run] - 1 if joint else np.ones(total, dtype=bool)  # separators out
        run = run[keep]
        shift = (run_starts - at)[run]
        return _RunTokens(ids[keep], spans[keep, 0] + shift, spans[keep, 1] + shift, word_first[keep], run_starts[run])


class _RunTokens(NamedTuple):
    ids: np.ndarray
    starts: np.ndarray  # characters in the texts end to end
    ends: np.ndarray
    word_first: np.ndarray
    run_starts: np.ndarray  # where each token's run starts


def _probe_answer(encoding: Any) -> int:
    """What one probe (context, character, context) says of its character: a one-token word's id,
    SEPARATOR, or OTHER."""
    if encoding.offsets == [(0, 1), (1, 2), (2, 3)] and encoding.word_ids == [0, 1, 2]:
        return encoding.ids[1]
    if encoding.offsets == [(0, 1), (2, 3)] and encoding.word_ids == [0, 1]:
        return SEPARATOR
    return OTHER
