"""LTP's words (and tags) mapped back onto the text, so that ``"".join(words) == text`` always.

Whitespace never sits inside a word: each maximal whitespace run is a word of its own, and
characters LTP leaves out (e.g. zero-width marks the BERT tokenizer drops) become words of their
own too. ``pos`` is LTP's tag of the model word the word comes from (null for whitespace runs and
text LTP skipped); ``ner`` is BIO over the words (``B-Ns``, ``I-Ns``, ``O``), rebuilt from LTP's
entity spans so that it stays valid where a model word was cut at whitespace.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from itertools import accumulate
from typing import NamedTuple, Sequence

OUTSIDE = "O"

_WHITESPACE = re.compile(r"\s+")


class Tagged(NamedTuple):
    """One text's words (joined, they are the text) and, when asked for, one tag per word."""

    words: list[str]
    pos: list[str | None] | None = None
    ner: list[str] | None = None


def align_words(text: str, words: Sequence[str]) -> list[str]:
    """Map LTP's words onto `text` so they join to it exactly.

    Each word is matched at or after the previous one and its ends become cuts; text LTP skipped
    becomes words of its own. Each whitespace run is then one word (LTP glues spaces to a neighbour
    or drops them): its ends become cuts, and the cuts inside it go.
    """
    if "".join(words) == text:  # the usual case: every character kept, in order
        words = [word for word in words if word] if "" in words else list(words)
        if not _WHITESPACE.search(text):
            return words
        cuts = [0, *accumulate(map(len, words))]
    else:
        cuts = sorted({0, len(text), *(end for span in word_spans(text, words) if span for end in span)})
    for run in reversed(list(_WHITESPACE.finditer(text))):  # from the end, so earlier positions stay put
        start, end = run.span()
        cuts[bisect_left(cuts, start) : bisect_right(cuts, end)] = [start, end]
    return [text[start:end] for start, end in zip(cuts, cuts[1:])]


def word_spans(text: str, words: Sequence[str]) -> list[tuple[int, int] | None]:
    """(start, end) of each of LTP's words in `text`, matched in order; None for a word not found (or empty)."""
    if "".join(words) == text:
        ends = list(accumulate(len(word) for word in words))
        return [(end - len(word), end) if word else None for word, end in zip(words, ends)]
    spans: list[tuple[int, int] | None] = []
    cursor = 0
    for word in words:
        start = text.find(word, cursor) if word else -1
        spans.append((start, start + len(word)) if start >= 0 else None)
        cursor = start + len(word) if start >= 0 else cursor
    return spans


def align_tags(
    text: str,
    words: Sequence[str],
    aligned: Sequence[str],
    pos: Sequence[str] | None = None,
    ner: Sequence[str] | None = None,
) -> tuple[list[str | None] | None, list[str] | None]:
    """Carry LTP's per-model-word tags over to the aligned words (see the module docstring)."""
    spans = word_spans(text, words)
    found = [(span, k) for k, span in enumerate(spans) if span]
    starts = [span[0] for span, _ in found]
    positions = [0, *accumulate(len(word) for word in aligned)]
    pos_out: list[str | None] | None = None
    if pos is not None:
        pos_out = []
        for word, start in zip(aligned, positions):
            at = bisect_right(starts, start) - 1
            inside = at >= 0 and start < found[at][0][1] and not word.isspace()
            pos_out.append(pos[found[at][1]] if inside else None)
    ner_out: list[str] | None = None
    if ner is not None:
        ner_out = [OUTSIDE] * len(aligned)
        for label, first, last in _entities(ner):
            covered = [span for span in spans[first : last + 1] if span]
            if not covered:
                continue
            begin, end = covered[0][0], covered[-1][1]
            while begin < end and text[begin].isspace():
                begin += 1
            while end > begin and text[end - 1].isspace():
                end -= 1
            first_word, end_word = bisect_left(positions, begin), min(bisect_left(positions, end), len(aligned))
            for i in range(first_word, end_word):
                ner_out[i] = f"{'B' if i == first_word else 'I'}-{label}"
    return pos_out, ner_out


def align(text: str, words: Sequence[str], pos: Sequence[str] | None = None, ner: Sequence[str] | None = None) -> Tagged:
    """`align_words`, plus the tags when LTP gave them."""
    aligned = align_words(text, words)
    if pos is None and ner is None:
        return Tagged(aligned)
    return Tagged(aligned, *align_tags(text, words, aligned, pos, ner))


def _entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    from ltp_extension.algorithms import get_entities  # LTP's own decoder of BIO/BIES tags

    return get_entities(list(tags))
