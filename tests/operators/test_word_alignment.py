"""Word alignment: LTP's words and tags mapped back onto the text, whitespace runs as words of their own."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from operators.segment.word_alignment import align, align_words, word_spans


def test_align_words_covers_whitespace_and_skipped_text():
    assert align_words("我爱 北京  天安门", ["我爱 ", "北京  ", "天安门"]) == ["我爱", " ", "北京", "  ", "天安门"]
    assert align_words("  a b", ["a b"]) == ["  ", "a", " ", "b"]
    assert align_words("\u200bab", ["a", "b"]) == ["\u200b", "a", "b"]
    assert align_words("abc", ["a", "?", "c"]) == ["a", "b", "c"]
    assert align_words("", []) == []


SPACED = st.text(alphabet="ab我 \t\u3000", max_size=16)


@st.composite
def text_and_words(draw) -> tuple[str, list[str]]:
    """LTP's words for a text: usually a cut of it (empty words included), sometimes words that skip or change text."""
    text = draw(SPACED)
    if draw(st.booleans()):
        cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=8)))
        return text, [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    return text, draw(st.lists(SPACED, max_size=5))


@settings(max_examples=300, deadline=None)
@given(text_and_words())
def test_align_words_cuts_at_word_ends_outside_whitespace_runs(case):
    """The rule, character by character: a cut where a matched word starts or ends, except strictly inside a
    whitespace run, and at both ends of every run; between cuts, the text."""
    text, words = case
    runs = [(m.start(), m.end()) for m in re.finditer(r"\s+", text)]
    ends = {0, len(text)} | {end for span in word_spans(text, words) if span for end in span}
    cuts = sorted({c for c in ends if not any(a < c < b for a, b in runs)} | {end for run in runs for end in run})
    assert align_words(text, words) == [text[a:b] for a, b in zip(cuts, cuts[1:])]


def test_align_carries_tags_over_to_whitespace_cuts():
    text = "小明去长城 玩。"
    tagged = align(text, ["小明", "去", "长城 玩", "。"], ["nh", "v", "ns", "wp"], ["S-Nh", "O", "S-Ns", "O"])
    assert tagged.words == ["小明", "去", "长城", " ", "玩", "。"]
    assert tagged.pos == ["nh", "v", "ns", None, "ns", "wp"]
    assert tagged.ner == ["B-Nh", "O", "B-Ns", "I-Ns", "I-Ns", "O"]
    spaced = align("北京 大学好", ["北京 ", "大学", "好"], ["ns", "n", "a"], ["B-Ni", "E-Ni", "O"])
    assert spaced == (["北京", " ", "大学", "好"], ["ns", None, "n", "a"], ["B-Ni", "I-Ni", "I-Ni", "O"])
    skipped = align("\u200b上海", ["上海"], ["ns"], ["S-Ns"])  # text LTP skipped: a word with no tag
    assert skipped == (["\u200b", "上海"], [None, "ns"], ["O", "B-Ns"])
    assert align("你好", ["你好"]) == (["你好"], None, None)
