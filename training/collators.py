"""Collators for whole-word-masking pretraining: numpy cores, torch batches out.

Each collator takes a list of examples (dicts with ``input_ids`` and ``word_start``, as
``training.loader`` yields them) and returns a padded batch of torch tensors: ``input_ids``,
``attention_mask`` (1 = real token) and ``labels`` (-100 where nothing is predicted). The
per-example work is a pure function of the example and a ``numpy.random.Generator``
(each collator's ``example``), which the tests call directly.

Words. A word is a ``word_start`` token and the tokens after it up to the next start: one LTP
word, never split, and the WordPiece pieces of one word stay together (the shards' ``word_start``,
see the README's "Output"). Special tokens ([CLS], [SEP], [PAD], [MASK], [UNK] when listed) are never
chosen; a word also ends at a special token, and a continuation at the very start of an example
(a word cut by packing) counts as a word of its own.

Budget. ``probability`` (15% in all three papers) is the expected share of maskable tokens that
are predicted: each example's budget is ``probability * n`` rounded at random (floor, plus one
with the fractional part's probability), so the rate is exact on average instead of rounded
per example as in Google's ``create_pretraining_data.py``. Words are taken in random order and
a word that would overshoot the budget is skipped (as Google's code does), so a budget is
met exactly unless only longer words are left.

Randomness. With ``seed=None`` each process draws from fresh OS entropy; with a seed, each
process (DataLoader worker) gets the stream of (seed, worker seed), where the worker seed is
torch's per-worker seed, so runs repeat given ``torch.manual_seed`` and workers differ.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

IGNORE = -100  # labels that the loss ignores (PyTorch / transformers convention)
SPECIAL_NAMES = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
NGRAM_PROBABILITIES = (0.4, 0.3, 0.2, 0.1)  # MacBERT and PERT: word-level 1- to 4-grams

SimilarWord = Callable[[np.ndarray], "np.ndarray | None"]


@dataclass(frozen=True)
class TokenIds:
    """The ids a collator needs. ``special`` are never chosen, nor drawn as random replacements."""

    pad: int
    mask: int
    vocab_size: int
    special: tuple[int, ...] = ()

    @classmethod
    def from_special_ids(cls, special_ids: dict[str, int], vocab_size: int) -> TokenIds:
        """From ``{token: id}`` as in a ShardSet's ``special_ids`` (shard metadata)."""
        missing = [t for t in ("[PAD]", "[MASK]") if t not in special_ids]
        if missing:
            raise ValueError(f"the vocabulary has no {' or '.join(missing)} token")
        special = tuple(sorted({special_ids[t] for t in SPECIAL_NAMES if t in special_ids}))
        return cls(pad=special_ids["[PAD]"], mask=special_ids["[MASK]"], vocab_size=vocab_size, special=special)

    @classmethod
    def from_shards(cls, shard_set: Any) -> TokenIds:
        """From a ``training.loader.ShardSet`` (or anything with ``special_ids`` and ``vocab_size``)."""
        return cls.from_special_ids(shard_set.special_ids, shard_set.vocab_size)

    def random_pool(self) -> np.ndarray:
        """Ids a random replacement is drawn from: the whole vocabulary less the specials."""
        pool = np.ones(self.vocab_size, dtype=bool)
        pool[list(self.special)] = False
        return np.flatnonzero(pool)


def words_of(input_ids: np.ndarray, word_start: np.ndarray, special: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first token, length) of each maskable word: specials excluded, words end at specials."""
    is_special = np.isin(input_ids, special)
    starts = np.asarray(word_start, dtype=bool) | is_special
    if len(starts):
        starts[0] = True
        starts[1:] |= is_special[:-1]  # a token right after a special begins a word
    firsts = np.flatnonzero(starts)
    lengths = np.diff(np.append(firsts, len(input_ids)))
    keep = ~is_special[firsts]
    return firsts[keep], lengths[keep]


def budget(maskable: int, probability: float, rng: np.random.Generator) -> int:
    """``probability * maskable`` rounded at random, so that its expectation is exact."""
    exact = probability * maskable
    return int(exact) + int(rng.random() < exact - int(exact))


def choose_words(lengths: np.ndarray, target: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of words, taken in random order, skipping any that would overshoot ``target`` tokens."""
    order = rng.permutation(len(lengths))
    fits = np.cumsum(lengths[order]) <= target
    prefix = int(np.argmin(fits)) if not fits.all() else len(order)  # the words taken before the first skip
    chosen, covered = order[:prefix].tolist(), int(lengths[order[:prefix]].sum())
    for w in order[prefix:].tolist():  # the same walk, from the first word that overshoots
        if covered >= target:
            break
        if covered + lengths[w] <= target:
            chosen.append(w)
            covered += int(lengths[w])
    return np.array(sorted(chosen), dtype=np.int64)


def choose_ngrams(
    lengths: np.ndarray, segments: np.ndarray, target: int, rng: np.random.Generator,
    probabilities: Sequence[float] = NGRAM_PROBABILITIES,
) -> list[np.ndarray]:
    """Spans of 1..len(probabilities) consecutive words (n drawn with ``probabilities``), in
    random order of their first word, never overlapping, never across a special token (``segments``
    numbers the runs between specials), and never overshooting ``target`` tokens: an n-gram that
    does not fit is shortened, then skipped. Returns each span's word indices."""
    taken = np.zeros(len(lengths), dtype=bool)
    spans, covered = [], 0
    order = rng.permutation(len(lengths)).tolist()
    drawn = rng.choice(np.arange(1, len(probabilities) + 1), size=len(order), p=probabilities).tolist()
    for w, n in zip(order, drawn):
        if covered >= target:
            break
        if taken[w]:
            continue
        while n:
            span = np.arange(w, w + n)
            if (
                span[-1] < len(lengths)
                and not taken[span].any()
                and (segments[span] == segments[w]).all()
                and covered + int(lengths[span].sum()) <= target
            ):
                taken[span] = True
                covered += int(lengths[span].sum())
                spans.append(span)
                break
            n -= 1
    return sorted(spans, key=lambda span: span[0])


def _segments(input_ids: np.ndarray, firsts: np.ndarray, special: np.ndarray) -> np.ndarray:
    """For each word, the number of special tokens before it: words of one run share a number."""
    before = np.cumsum(np.isin(input_ids, special))
    return before[firsts]


def _span_positions(firsts: np.ndarray, lengths: np.ndarray, words: np.ndarray) -> np.ndarray:
    spans = lengths[words]
    total = int(spans.sum())
    ends = np.cumsum(spans)
    return np.arange(total) + np.repeat(firsts[words] - (ends - spans), spans)


@dataclass
class _Collator:
    """Shared: ids, the per-process generator, padding, torch output."""

    ids: TokenIds
    probability: float = 0.15
    pad_to_multiple_of: int | None = None
    seed: int | None = None
    _rng: np.random.Generator | None = field(default=None, init=False, repr=False)
    _rng_pid: int | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.probability < 1:
            raise ValueError(f"probability must be in (0, 1), not {self.probability}")
        self._special = np.array(self.ids.special, dtype=np.int64)
        self._pool = self.ids.random_pool()

    @property
    def rng(self) -> np.random.Generator:
        if self._rng is None or self._rng_pid != os.getpid():
            self._rng_pid = os.getpid()
            if self.seed is None:
                self._rng = np.random.default_rng()
            else:
                import torch.utils.data

                worker = torch.utils.data.get_worker_info()
                self._rng = np.random.default_rng([self.seed, worker.seed if worker else 0])
        return self._rng

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_rng"] = state["_rng_pid"] = None
        return state

    def example(self, input_ids: np.ndarray, word_start: np.ndarray, rng: np.random.Generator):
        raise NotImplementedError

    def numpy_batch(self, examples: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Padded int64 arrays: input_ids, attention_mask, labels."""
        done = [
            self.example(np.asarray(e["input_ids"], np.int64), np.asarray(e["word_start"], bool), self.rng)
            for e in examples
        ]
        width = max((len(ids) for ids, _ in done), default=0)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = np.full((len(done), width), self.ids.pad, dtype=np.int64)
        labels = np.full((len(done), width), IGNORE, dtype=np.int64)
        attention = np.zeros((len(done), width), dtype=np.int64)
        for row, (ids, row_labels) in enumerate(done):
            input_ids[row, : len(ids)] = ids
            labels[row, : len(ids)] = row_labels
            attention[row, : len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}

    def __call__(self, examples: Sequence[dict[str, np.ndarray]]) -> dict[str, Any]:
        import torch

        return {name: torch.from_numpy(array) for name, array in self.numpy_batch(examples).items()}

    def _replace(self, ids: np.ndarray, positions: np.ndarray, rng: np.random.Generator,
                 mask_ratio: float, random_ratio: float) -> np.ndarray:
        """BERT's 80/10/10 on ``positions``, decided per token: [MASK], a random id, or unchanged."""
        out = ids.copy()
        draw = rng.random(len(positions))
        masked = positions[draw < mask_ratio]
        randomized = positions[(draw >= mask_ratio) & (draw < mask_ratio + random_ratio)]
        out[masked] = self.ids.mask
        out[randomized] = rng.choice(self._pool, size=len(randomized))
        return out


@dataclass
class WholeWordMaskCollator(_Collator):
    """BERT-wwm / RoBERTa-wwm-ext masking (Cui et al., 2019; 2021).

    Paper settings: 15% of tokens are predicted, chosen as whole words (every token of a chosen
    word is predicted); of the predicted tokens 80% become [MASK], 10% a random token, 10% stay
    (decided per token, as Google's BERT code does). Labels hold the original id at every
    predicted position.
    """

    mask_ratio: float = 0.8
    random_ratio: float = 0.1

    def example(self, input_ids: np.ndarray, word_start: np.ndarray, rng: np.random.Generator):
        """(masked input_ids, labels) of one example."""
        firsts, lengths = words_of(input_ids, word_start, self._special)
        words = choose_words(lengths, budget(int(lengths.sum()), self.probability, rng), rng)
        positions = _span_positions(firsts, lengths, words)
        labels = np.full(len(input_ids), IGNORE, dtype=np.int64)
        labels[positions] = input_ids[positions]
        return self._replace(input_ids, positions, rng, self.mask_ratio, self.random_ratio), labels


@dataclass
class MacBertCollator(_Collator):
    """MacBERT's "MLM as correction" masking (Cui et al., 2020, Findings of EMNLP).

    Paper settings: whole-word and N-gram masking, word-level 1- to 4-grams chosen with
    probabilities 40/30/20/10%, 15% of the input predicted (here: 15% of tokens, as for
    ``WholeWordMaskCollator``); of the chosen words 80% are replaced by a similar word, 10% by
    random tokens, 10% left unchanged (decided per word). ``similar_word(ids) -> ids | None``
    is the hook for the similar-word source (the paper uses word2vec similarity via the Synonyms
    toolkit): given a word's token ids it returns replacement ids of the same length, or None,
    in which case the word gets random tokens, as in the paper. Without a hook (``None``) the
    80% become [MASK] tokens: plain N-gram whole-word masking.
    """

    similar_word: SimilarWord | None = None
    similar_ratio: float = 0.8
    random_ratio: float = 0.1
    ngram_probabilities: tuple[float, ...] = NGRAM_PROBABILITIES

    def example(self, input_ids: np.ndarray, word_start: np.ndarray, rng: np.random.Generator):
        firsts, lengths = words_of(input_ids, word_start, self._special)
        segments = _segments(input_ids, firsts, self._special)
        target = budget(int(lengths.sum()), self.probability, rng)
        spans = choose_ngrams(lengths, segments, target, rng, self.ngram_probabilities)
        out = input_ids.copy()
        labels = np.full(len(input_ids), IGNORE, dtype=np.int64)
        for word in (int(w) for span in spans for w in span):
            where = slice(int(firsts[word]), int(firsts[word] + lengths[word]))
            labels[where] = input_ids[where]
            draw = rng.random()
            if draw < self.similar_ratio:
                if self.similar_word is None:
                    out[where] = self.ids.mask
                    continue
                similar = self.similar_word(input_ids[where].copy())
                if similar is not None and len(similar) == lengths[word]:
                    out[where] = similar
                    continue
                out[where] = rng.choice(self._pool, size=int(lengths[word]))
            elif draw < self.similar_ratio + self.random_ratio:
                out[where] = rng.choice(self._pool, size=int(lengths[word]))
        return out, labels


@dataclass
class PermutationCollator(_Collator):
    """PERT's permuted language model (PerLM; Cui et al., 2022, arXiv:2203.06906).

    Paper settings: candidates chosen by whole-word and N-gram selection (1- to 4-grams at
    40/30/20/10%), 15% of the input; of those 90% are shuffled among themselves and 10% kept in
    place as negative samples; no [MASK] token. The target at each chosen position i is the
    position j (in the permuted input) that now holds the token originally at i, so the model
    points back at where its token went; other positions are -100.

    ``unit="token"`` (the paper) shuffles the tokens of the chosen words among the chosen
    positions. ``unit="word"`` exchanges whole chosen words with chosen words of the same token
    count, so every word stays intact. ``window`` (tokens) limits how far a token moves: positions
    are permuted only within consecutive blocks of ``window`` tokens (None: within the run
    between special tokens, i.e. never across [SEP]). The keep/shuffle choice is made per word.
    """

    shuffle_ratio: float = 0.9
    window: int | None = None
    unit: str = "token"
    ngram_probabilities: tuple[float, ...] = NGRAM_PROBABILITIES

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.unit not in ("token", "word"):
            raise ValueError(f"unit must be 'token' or 'word', not {self.unit!r}")
        if self.window is not None and self.window < 2:
            raise ValueError(f"window must be at least 2 tokens, not {self.window}")

    def example(self, input_ids: np.ndarray, word_start: np.ndarray, rng: np.random.Generator):
        firsts, lengths = words_of(input_ids, word_start, self._special)
        segments = _segments(input_ids, firsts, self._special)
        target = budget(int(lengths.sum()), self.probability, rng)
        spans = choose_ngrams(lengths, segments, target, rng, self.ngram_probabilities)
        words = [int(w) for span in spans for w in span]
        labels = np.full(len(input_ids), IGNORE, dtype=np.int64)
        shuffled = [w for w in words if rng.random() < self.shuffle_ratio]
        kept = _span_positions(firsts, lengths, np.array(sorted(set(words) - set(shuffled)), dtype=np.int64))
        labels[kept] = kept
        source = np.arange(len(input_ids))  # output position -> input position its token comes from
        for group in self._groups(shuffled, firsts, lengths, segments):
            if self.unit == "token":
                slots = _span_positions(firsts, lengths, np.array(group, dtype=np.int64))
                source[slots] = slots[rng.permutation(len(slots))]
            else:
                order = rng.permutation(len(group))
                for w, v in zip(group, (group[i] for i in order)):
                    source[firsts[w] : firsts[w] + lengths[w]] = np.arange(firsts[v], firsts[v] + lengths[v])
        out = input_ids[source]
        moved = _span_positions(firsts, lengths, np.array(sorted(shuffled), dtype=np.int64))
        where_now = np.empty_like(source)
        where_now[source] = np.arange(len(source))  # input position -> where that token is now
        labels[moved] = where_now[moved]
        return out, labels

    def _groups(
        self, words: list[int], firsts: np.ndarray, lengths: np.ndarray, segments: np.ndarray
    ) -> list[list[int]]:
        """Words whose tokens may trade places: same segment, same window, and (unit=word) same length."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for w in sorted(words):
            key = (int(segments[w]), int(firsts[w]) // self.window if self.window else 0)
            if self.unit == "word":
                key += (int(lengths[w]),)
            groups.setdefault(key, []).append(w)
        return list(groups.values())
