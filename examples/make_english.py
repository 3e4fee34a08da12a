"""Write the English example, deterministically and offline: its input and its uncased vocabulary.

* ``examples/english/python_docs.jsonl``: prose paragraphs (200 to 1,500 characters, each once) of the Python reference documentation
  as CPython 3.11 ships it in ``pydoc_data.topics`` (PSF licence, like Python itself), one
  ``{"id", "text"}`` record a paragraph, plus records that are bad or duplicated on purpose: an
  exact copy, a near copy (a few words changed), a record too short to keep and a line that is not
  JSON. The file is committed: other Python versions ship other topics.
* ``examples/assets/vocab-en.txt``: a small uncased BERT WordPiece vocabulary laid out like
  bert-base-uncased (``[PAD]``, ``[unused1..99]``, ``[UNK]``, ``[CLS]``, ``[SEP]``, ``[MASK]``,
  then every character seen, alone and as a ``##`` piece, common English suffixes, and the words
  that occur at least ``MIN_COUNT`` times in the input). Rarer words fall back to pieces, so the
  shards have words of several tokens, which whole-word masking masks together.

Run from anywhere:

    python examples/make_english.py
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.neardup_en import paragraphs as english_paragraphs  # noqa: E402

INPUT = HERE / "english" / "python_docs.jsonl"
VOCAB = HERE / "assets" / "vocab-en.txt"

PARAGRAPHS = 160
MIN_COUNT = 4
SPECIALS = ["[PAD]", *(f"[unused{i}]" for i in range(1, 100)), "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SUFFIXES = ("s", "es", "ed", "ing", "ly", "er", "ers", "est", "ion", "ions", "tion", "able", "ment", "ness", "al", "ive")
_WORD = re.compile(r"[a-z]+|[0-9]+|[^\sa-z0-9]")


def paragraphs() -> list[str]:
    """The reference topics' prose paragraphs, as the English near-duplicate test set takes them."""
    return english_paragraphs()[:PARAGRAPHS]


def records(texts: list[str]) -> list[str]:
    lines = [json.dumps({"id": f"py-{i:03d}", "text": text}) for i, text in enumerate(texts)]
    near = texts[10].replace("the", "a", 2).replace(".", "!", 1)
    lines += [
        json.dumps({"id": "py-dup-exact", "text": texts[3]}),  # exact copy of py-003
        json.dumps({"id": "py-dup-near", "text": near}),  # near copy of py-010
        json.dumps({"id": "py-short", "text": "Too short to keep."}),  # filtered: too_short
        '{"id": "py-broken", "text": "this line is cut',  # rejected: not JSON
    ]
    return lines


def vocab(texts: list[str]) -> list[str]:
    """The vocabulary in id order, from the lowercased, accent-stripped text (as an uncased BERT sees it)."""
    plain = "".join(c for c in unicodedata.normalize("NFD", " ".join(texts).lower()) if unicodedata.category(c) != "Mn")
    chars = sorted({c for c in plain if not c.isspace()})
    counts = Counter(_WORD.findall(plain))
    words = sorted((w for w, n in counts.items() if n >= MIN_COUNT and len(w) > 1), key=lambda w: (-counts[w], w))
    tokens = [*SPECIALS, *chars, *(f"##{c}" for c in chars), *(f"##{s}" for s in SUFFIXES), *words]
    return list(dict.fromkeys(tokens))


def main() -> None:
    texts = paragraphs()
    INPUT.parent.mkdir(parents=True, exist_ok=True)
    INPUT.write_text("".join(f"{line}\n" for line in records(texts)), encoding="utf-8")
    VOCAB.write_text("".join(f"{token}\n" for token in vocab(texts)), encoding="utf-8")
    print(f"wrote {INPUT} ({len(texts)} paragraphs + 4 deliberate records) and {VOCAB} ({len(vocab(texts))} tokens)")


if __name__ == "__main__":
    main()
