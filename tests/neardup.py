"""A seeded Chinese near-duplicate test set made from real paragraphs, and pairwise cluster scores.

``make_set`` takes real paragraphs (CMRC2018 and C3 simplified, DRCD traditional) and builds:

- clusters: an original and 1 to 4 copies of it, each copy made by one edit or a mixture of
  two or three: character noise (substitutions, insertions, deletions), a dropped sentence, a
  sentence added from another paragraph, boilerplate lines (source, editor, "follow us"),
  spacing and punctuation changes (spaces, line breaks, ASCII or missing punctuation), and a
  copy in the other script (OpenCC s2t / s2tw for simplified originals, t2s / tw2s for
  traditional ones);
- hard negatives: groups of different paragraphs that share only a long header (as long as
  the body or longer), so that their Jaccard similarity is high for strangers (about 0.3-0.6);
- singletons: untouched paragraphs.

Originals are chosen so that no two of them are near-duplicates already (C3 re-uses passages
across exam papers): a paragraph whose character 5-gram Jaccard with an already chosen one
reaches ``MAX_BACKGROUND_JACCARD`` is skipped. Every random choice comes from one
``random.Random(seed)``, so a seed always gives the same set.

Edits are sized to the paragraph (a dropped or added sentence is at most ``MAX_SENTENCE_SHARE``
of it; noise is 0.3 % to 1.5 % of the characters), which keeps most copies above a Jaccard of
0.8 to their original, with a tail below it: a copy counts as a duplicate by construction,
whatever its Jaccard, so recall is measured against what was made, not against what MinHash
can see.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

SIMPLIFIED = ("zh-simplified/cmrc2018_wiki.jsonl", "zh-simplified/c3_mixed.jsonl")
TRADITIONAL = ("zh-traditional/drcd_paragraphs.jsonl",)

MIN_CHARS, MAX_CHARS = 100, 1200
MAX_SENTENCE_SHARE = 0.12  # a dropped or added sentence is at most this share of the paragraph
MAX_BACKGROUND_JACCARD = 0.3  # originals are pairwise below this (character 5-grams)
NOISE_RATE = (0.003, 0.015)  # share of characters substituted, deleted or inserted by one noise edit
MIXTURE_SHARE = 0.35  # share of copies made by two (or, for a quarter of them, three) edits

BOILERPLATE = (
    "本文来源：新华网",
    "责任编辑：王晓明",
    "（完）",
    "点击上方蓝字关注我们",
    "版权声明：本文为原创，转载请注明出处。",
    "来源：人民日报客户端",
    "更多精彩内容，请关注本站微信公众号。",
    "【编者按】",
    "原标题：",
    "图片来源于网络，如有侵权请联系删除。",
)
NOISE_CHARS = "的一是了不在有人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理府研质"
SENTENCE_END = re.compile(r"(?<=[。！？!?；;])")
ASCII_PUNCT = str.maketrans({"，": ",", "。": ".", "：": ":", "；": ";", "！": "!", "？": "?", "（": "(", "）": ")"})


@dataclass(frozen=True)
class LabelledDoc:
    doc_id: str
    text: str
    cluster: str  # docs made from the same original share it; every other doc has its own
    kind: str  # original, singleton, header_negative, or the "+"-joined edits of a copy


def load_paragraphs(files: Iterable[Path], min_chars: int = MIN_CHARS, max_chars: int = MAX_CHARS) -> list[str]:
    texts = []
    for path in files:
        with open(path, encoding="utf-8") as lines:
            texts += [row["text"] for row in map(json.loads, lines) if min_chars <= len(row["text"]) <= max_chars]
    return texts


def shingles(text: str, ngram: int = 5) -> set[str]:
    """Character n-grams of the text without whitespace (as the shared data's Jaccard figures are computed)."""
    text = "".join(text.split())
    return {text[i : i + ngram] for i in range(max(1, len(text) - ngram + 1))} if text else set()


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def distinct(texts: Sequence[str], rng: random.Random, count: int, limit: float = MAX_BACKGROUND_JACCARD) -> list[str]:
    """Up to ``count`` shuffled texts, skipping each whose 5-gram Jaccard with an earlier one reaches ``limit``.

    Candidates are the earlier texts that share a sampled 5-gram: two texts at Jaccard 0.3
    share about half of their shingles, so 16 samples miss such a pair with odds of 2**-16.
    """
    order = list(texts)
    rng.shuffle(order)
    index: dict[str, list[int]] = {}
    chosen: list[tuple[str, set[str]]] = []
    for text in order:
        if len(chosen) == count:
            break
        grams = shingles(text)
        sample = rng.sample(sorted(grams), min(16, len(grams)))
        candidates = {j for g in sample for j in index.get(g, ())}
        if any(jaccard(grams, chosen[j][1]) >= limit for j in candidates):
            continue
        for g in grams:
            index.setdefault(g, []).append(len(chosen))
        chosen.append((text, grams))
    return [text for text, _ in chosen]


class Editor:
    """The edits; one ``random.Random`` drives them all. OpenCC converters are built on first use."""

    def __init__(self, rng: random.Random, donors: Sequence[str]):
        self.rng, self.donors, self._cc = rng, donors, {}

    def opencc(self, config: str, text: str) -> str:
        if config not in self._cc:
            import opencc

            self._cc[config] = opencc.OpenCC(config)
        return self._cc[config].convert(text)

    def noise(self, text: str, traditional: bool) -> str:
        rate, chars = self.rng.uniform(NOISE_RATE[0], NOISE_RATE[1]), list(text)
        for _ in range(max(1, round(rate * len(text)))):
            position, action = self.rng.randrange(len(chars)), self.rng.random()
            if action < 0.5:
                chars[position] = self.rng.choice(NOISE_CHARS)
            elif action < 0.75:
                del chars[position]
            else:
                chars.insert(position, self.rng.choice(NOISE_CHARS))
        return "".join(chars)

    def drop_sentence(self, text: str, traditional: bool) -> str:
        sentences = [s for s in SENTENCE_END.split(text) if s]
        small = [i for i, s in enumerate(sentences) if len(s) <= MAX_SENTENCE_SHARE * len(text)]
        if len(sentences) < 3 or not small:
            return self.noise(text, traditional)
        drop = self.rng.choice(small)
        return "".join(s for i, s in enumerate(sentences) if i != drop)

    def add_sentence(self, text: str, traditional: bool) -> str:
        limit = MAX_SENTENCE_SHARE * len(text)
        for _ in range(20):
            donor = [s for s in SENTENCE_END.split(self.rng.choice(self.donors)) if 5 <= len(s) <= limit]
            if donor:
                break
        else:
            return self.noise(text, traditional)
        added = self.rng.choice(donor)
        if traditional:
            added = self.opencc("s2t", added)
        sentences = [s for s in SENTENCE_END.split(text) if s]
        at = self.rng.randrange(len(sentences) + 1)
        return "".join(sentences[:at] + [added] + sentences[at:])

    def boilerplate(self, text: str, traditional: bool) -> str:
        lines = self.rng.sample(BOILERPLATE, self.rng.randint(1, 2))
        lines = [line for line in lines if len(line) <= 0.08 * len(text)] or [min(BOILERPLATE, key=len)]
        if traditional:
            lines = [self.opencc("s2t", line) for line in lines]
        head = [line for line in lines if self.rng.random() < 0.5]
        tail = [line for line in lines if line not in head]
        return "\n".join(head + [text] + tail)

    def spacing(self, text: str, traditional: bool) -> str:
        if self.rng.random() < 0.5:
            text = text.translate(ASCII_PUNCT)
        out = []
        for ch in text:
            roll = self.rng.random()
            if ch in "，,。.、" and roll < 0.15:
                continue  # punctuation dropped
            out.append(ch)
            if roll > 0.97:
                out.append(self.rng.choice((" ", "  ", "\u3000", "\n")))
        return "".join(out)

    def script(self, text: str, traditional: bool) -> str:
        return self.opencc(self.rng.choice(("t2s", "tw2s") if traditional else ("s2t", "s2tw")), text)

    def edits(self) -> dict[str, Callable[[str, bool], str]]:
        return {
            "noise": self.noise,
            "drop_sentence": self.drop_sentence,
            "add_sentence": self.add_sentence,
            "boilerplate": self.boilerplate,
            "spacing": self.spacing,
            "script": self.script,
        }

    def copy(self, text: str, traditional: bool) -> tuple[str, str]:
        """(edited text, "+"-joined names of the edits): one edit, or a mixture of two or three."""
        edits = self.edits()
        count = 1 if self.rng.random() >= MIXTURE_SHARE else 3 if self.rng.random() < 0.25 else 2
        names = self.rng.sample(list(edits), count)
        for name in names:
            text = edits[name](text, traditional)
        return text, "+".join(names)

    def header(self, length: int) -> str:
        """A header of about ``length`` characters, made of whole sentences of donor paragraphs."""
        parts: list[str] = []
        while sum(map(len, parts)) < length:
            parts += [s for s in SENTENCE_END.split(self.rng.choice(self.donors)) if s]
        text = "".join(parts)
        return text[:length]


def make_set(
    simplified: Sequence[str],
    traditional: Sequence[str],
    seed: int = 0,
    clusters: int = 300,
    singletons: int = 300,
    header_groups: int = 40,
) -> list[LabelledDoc]:
    """The labelled set, in a seeded random order (see the module doc)."""
    rng = random.Random(seed)
    needed = clusters + singletons + 5 * header_groups
    share = len(traditional) / (len(simplified) + len(traditional))
    donors = round(0.2 * needed)  # paragraphs that only lend sentences and headers
    wanted = round((needed + donors) * share)
    pool = [(text, True) for text in distinct(traditional, rng, wanted)]
    pool += [(text, False) for text in distinct(simplified, rng, needed + donors - len(pool))]
    rng.shuffle(pool)
    if len(pool) < needed:
        raise ValueError(f"need {needed} distinct paragraphs, have {len(pool)}")
    editor = Editor(rng, [text for text, trad in pool[needed:] if not trad] or list(simplified))
    docs: list[LabelledDoc] = []
    for c, (text, trad) in enumerate(pool[:clusters]):
        docs.append(LabelledDoc(f"c{c}-0", text, f"c{c}", "original"))
        for k in range(1, rng.randint(2, 5)):
            copy, kind = editor.copy(text, trad)
            docs.append(LabelledDoc(f"c{c}-{k}", copy, f"c{c}", kind))
    for s, (text, _) in enumerate(pool[clusters : clusters + singletons]):
        docs.append(LabelledDoc(f"s{s}", text, f"s{s}", "singleton"))
    bodies = pool[clusters + singletons : needed]
    for g in range(header_groups):
        group = bodies[5 * g : 5 * g + rng.randint(3, 5)]
        body_chars = min(len(text) for text, _ in group)
        header = editor.header(int(body_chars * rng.uniform(1.0, 2.5)))
        for k, (text, trad) in enumerate(group):
            head = editor.opencc("s2t", header) if trad else header
            docs.append(LabelledDoc(f"h{g}-{k}", head + "\n" + text[:body_chars], f"h{g}-{k}", "header_negative"))
    rng.shuffle(docs)
    return docs


@dataclass(frozen=True)
class PairScores:
    precision: float
    recall: float
    true_pairs: int
    found_pairs: int
    correct_pairs: int

    def as_dict(self) -> dict[str, float]:
        return {"precision": round(self.precision, 4), "recall": round(self.recall, 4), "true_pairs": self.true_pairs,
                "found_pairs": self.found_pairs, "correct_pairs": self.correct_pairs}


def _pairs(labels: dict[str, str]) -> set[tuple[str, str]]:
    groups: dict[str, list[str]] = {}
    for doc, label in labels.items():
        groups.setdefault(label, []).append(doc)
    return {pair for members in groups.values() for pair in combinations(sorted(members), 2)}


def pair_scores(truth: dict[str, str], predicted: dict[str, str]) -> PairScores:
    """Pairwise precision and recall of a clustering: doc -> cluster label, for every doc in ``truth``."""
    true_pairs = _pairs(truth)
    found_pairs = _pairs({doc: predicted.get(doc, doc) for doc in truth})
    correct = len(true_pairs & found_pairs)
    return PairScores(
        precision=correct / len(found_pairs) if found_pairs else 1.0,
        recall=correct / len(true_pairs) if true_pairs else 1.0,
        true_pairs=len(true_pairs),
        found_pairs=len(found_pairs),
        correct_pairs=correct,
    )


def clusters_from_duplicates(doc_ids: Iterable[str], duplicates: dict[str, str]) -> dict[str, str]:
    """doc -> the doc_id it was kept as (its own id when it is not a duplicate)."""
    return {doc: duplicates.get(doc, doc) for doc in doc_ids}


def clusters_in_memory(fingerprints: dict[str, str], cfg, check: str | None = "estimate") -> dict[str, str]:
    """A one-process model of the near-duplicate step, for sweeps and small fixtures: doc -> smallest doc of its cluster.

    The same rules as ``operators.dedup`` (LSH buckets from ``MinHashSigner``; with a check, every
    pair of a bucket of up to ``cfg.all_pairs_max`` members, else a star from every member to the
    bucket's smallest; the check; connected components), on a dict instead of Ray. ``check``:
    ``"estimate"`` (signature share >= ``cfg.verify_cut``), ``"exact"`` (5-gram Jaccard of the
    fingerprints >= ``cfg.threshold``) or None.
    """
    from operators.dedup.minhash import MinHashSigner, estimated_jaccard

    docs = sorted(fingerprints)
    signer = MinHashSigner(cfg)
    signatures = signer.signatures([fingerprints[d] for d in docs])
    keys = signer.band_keys(signatures)
    members: dict[int, list[int]] = {}
    for i, d in enumerate(docs):
        if fingerprints[d]:
            for key in keys[i].tolist():
                members.setdefault(key, []).append(i)
    all_pairs_max = cfg.all_pairs_max if check else 1
    edges = set()
    for bucket in members.values():
        if len(bucket) <= all_pairs_max:
            edges |= {(i, j) for n, j in enumerate(bucket) for i in bucket[n + 1 :]}
        else:
            edges |= {(i, bucket[0]) for i in bucket[1:]}
    if check == "estimate":
        edges = {(i, j) for i, j in edges if estimated_jaccard(signatures[[i]], signatures[[j]])[0] >= cfg.verify_cut}
    elif check == "exact":
        grams = {}
        edges = {
            (i, j)
            for i, j in edges
            if jaccard(
                grams.setdefault(i, shingles(fingerprints[docs[i]], cfg.ngram)),
                grams.setdefault(j, shingles(fingerprints[docs[j]], cfg.ngram)),
            )
            >= cfg.threshold
        }
    parent = list(range(len(docs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in edges:
        a, b = find(i), find(j)
        parent[max(a, b)] = min(a, b)
    return {d: docs[find(i)] for i, d in enumerate(docs)}
