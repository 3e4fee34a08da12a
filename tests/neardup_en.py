"""A seeded English near-duplicate test set, made the way ``tests/neardup.py`` makes the Chinese one.

Source: the prose paragraphs of Python's reference documentation (``pydoc_data.topics``, which ships
with every CPython, so no test skips for want of data). Clusters are an original and 1 to 4 copies,
each made by one edit or a mixture of two or three: word noise (words substituted, deleted or
inserted, letters swapped), a dropped sentence, a sentence added from another paragraph,
boilerplate lines (bylines, "share this", copyright), and spacing, punctuation and case changes.
Hard negatives share a long header made of donor sentences; singletons are untouched. Every random
choice comes from one ``random.Random(seed)``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

from tests.neardup import MAX_SENTENCE_SHARE, MIXTURE_SHARE, LabelledDoc, distinct

MIN_CHARS, MAX_CHARS = 200, 1500
NOISE_RATE = (0.01, 0.04)  # share of words changed by one noise edit
BOILERPLATE = (
    "Posted by the editorial team.",
    "Share this article:",
    "Copyright 2026 Example Media. All rights reserved.",
    "Advertisement",
    "Read more in our archive.",
    "Follow us for more updates.",
    "This page was last edited on 3 May 2026.",
    "Subscribe to our newsletter.",
)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def paragraphs() -> list[str]:
    """Prose paragraphs of the reference topics (no grammar rules, code or doctests), one line each."""
    from pydoc_data.topics import topics

    found = []
    for key in sorted(topics):
        for block in topics[key].split("\n\n"):
            block = block.strip()
            if block.startswith(" ") or "::=" in block or ">>>" in block:
                continue
            text = re.sub(r"\s*\n\s*", " ", block)
            if MIN_CHARS <= len(text) <= MAX_CHARS:
                found.append(text)
    return list(dict.fromkeys(found))


class Editor:
    """The edits; one ``random.Random`` drives them all."""

    def __init__(self, rng: random.Random, donors: Sequence[str]):
        self.rng, self.donors = rng, donors
        self.words = sorted({w for text in donors for w in text.split() if w.isalpha()})

    def noise(self, text: str) -> str:
        words = text.split(" ")
        for _ in range(max(1, round(self.rng.uniform(*NOISE_RATE) * len(words)))):
            position, action = self.rng.randrange(len(words)), self.rng.random()
            if action < 0.35:
                words[position] = self.rng.choice(self.words)
            elif action < 0.55 and len(words) > 1:
                del words[position]
            elif action < 0.75:
                words.insert(position, self.rng.choice(self.words))
            elif len(word := words[position]) > 3:  # a typo: two letters swapped
                i = self.rng.randrange(len(word) - 1)
                words[position] = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        return " ".join(words)

    def drop_sentence(self, text: str) -> str:
        sentences = SENTENCE_END.split(text)
        small = [i for i, s in enumerate(sentences) if len(s) <= MAX_SENTENCE_SHARE * len(text)]
        if len(sentences) < 3 or not small:
            return self.noise(text)
        del sentences[self.rng.choice(small)]
        return " ".join(sentences)

    def add_sentence(self, text: str) -> str:
        sentences = SENTENCE_END.split(text)
        donated = [s for s in SENTENCE_END.split(self.rng.choice(self.donors)) if len(s) <= MAX_SENTENCE_SHARE * len(text)]
        if not donated:
            return self.noise(text)
        sentences.insert(self.rng.randrange(len(sentences) + 1), self.rng.choice(donated))
        return " ".join(sentences)

    def boilerplate(self, text: str) -> str:
        lines = self.rng.sample(BOILERPLATE, self.rng.randint(1, 2))
        return "\n".join([lines[0], text, *lines[1:]]) if self.rng.random() < 0.5 else "\n".join([text, *lines])

    def spacing(self, text: str) -> str:
        choice = self.rng.randrange(4)
        if choice == 0:
            return re.sub(r"(?<=[.!?]) ", "  ", text)
        if choice == 1:
            return SENTENCE_END.sub("\n", text)
        if choice == 2:
            return re.sub(r"[,;:\"]", "", text)
        return text.lower()

    def edits(self) -> dict[str, Callable[[str], str]]:
        return {"noise": self.noise, "drop_sentence": self.drop_sentence, "add_sentence": self.add_sentence,
                "boilerplate": self.boilerplate, "spacing": self.spacing}

    def copy(self, text: str) -> tuple[str, str]:
        """(edited text, "+"-joined names of the edits): one edit, or a mixture of two or three."""
        edits = self.edits()
        count = 1 if self.rng.random() >= MIXTURE_SHARE else 3 if self.rng.random() < 0.25 else 2
        names = self.rng.sample(list(edits), count)
        for name in names:
            text = edits[name](text)
        return text, "+".join(names)

    def header(self, length: int) -> str:
        parts: list[str] = []
        while sum(map(len, parts)) < length:
            parts += SENTENCE_END.split(self.rng.choice(self.donors))
        return " ".join(parts)[:length]


def make_set(texts: Sequence[str], seed: int = 0, clusters: int = 150, singletons: int = 150,
             header_groups: int = 20) -> list[LabelledDoc]:
    """The labelled set, in a seeded random order."""
    rng = random.Random(seed)
    needed = clusters + singletons + 5 * header_groups
    pool = distinct(texts, rng, needed + round(0.2 * needed))
    if len(pool) < needed + 1:
        raise ValueError(f"need {needed + 1} distinct paragraphs, have {len(pool)}")
    editor = Editor(rng, pool[needed:])
    docs: list[LabelledDoc] = []
    for c, text in enumerate(pool[:clusters]):
        docs.append(LabelledDoc(f"c{c}-0", text, f"c{c}", "original"))
        for k in range(1, rng.randint(2, 5)):
            copy, kind = editor.copy(text)
            docs.append(LabelledDoc(f"c{c}-{k}", copy, f"c{c}", kind))
    for s, text in enumerate(pool[clusters : clusters + singletons]):
        docs.append(LabelledDoc(f"s{s}", text, f"s{s}", "singleton"))
    bodies = pool[clusters + singletons : needed]
    for g in range(header_groups):
        group = bodies[5 * g : 5 * g + rng.randint(3, 5)]
        body_chars = min(len(text) for text in group)
        header = editor.header(int(body_chars * rng.uniform(1.0, 2.5)))
        for k, text in enumerate(group):
            docs.append(LabelledDoc(f"h{g}-{k}", header + "\n" + text[:body_chars], f"h{g}-{k}", "header_negative"))
    rng.shuffle(docs)
    return docs
