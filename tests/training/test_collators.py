"""Collators: whole words stay whole, rates hold over many batches, PERT labels point back, torch batches."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.collators import (
    IGNORE,
    MacBertCollator,
    PermutationCollator,
    TokenIds,
    WholeWordMaskCollator,
    words_of,
)

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
IDS = TokenIds(pad=PAD, mask=MASK, vocab_size=5000, special=(PAD, UNK, CLS, SEP, MASK))
SPECIAL = np.array(IDS.special)


@st.composite
def examples(draw, max_words: int = 60):
    """[CLS] words [SEP] words [SEP]: word lengths 1-5, ids never special, maybe a cut word first."""
    ids, starts = [CLS], [True]
    for _ in range(draw(st.integers(1, 3))):
        for _ in range(draw(st.integers(0, max_words))):
            length = draw(st.integers(1, 5))
            ids += draw(st.lists(st.integers(5, 4999), min_size=length, max_size=length))
            starts += [True] + [False] * (length - 1)
        ids.append(SEP)
        starts.append(True)
    if draw(st.booleans()) and len(ids) > 3 and ids[1] != SEP:
        starts[1] = False  # a continuation right after [CLS]: the rest of a word cut by packing
    return np.array(ids, dtype=np.int64), np.array(starts, dtype=bool)


def word_spans(ids: np.ndarray, starts: np.ndarray) -> list[range]:
    """Words, spelled out independently: a maskable token starts one if word_start, if it follows a
    special token, or if it is first; it continues the previous one otherwise."""
    special = np.isin(ids, SPECIAL)
    spans: list[list[int]] = []
    for i in range(len(ids)):
        if special[i]:
            continue
        if starts[i] or i == 0 or special[i - 1] or not spans:
            spans.append([i])
        else:
            spans[-1].append(i)
    return [range(s[0], s[-1] + 1) for s in spans]


def check_whole_words(ids, starts, out, labels):
    predicted = labels != IGNORE
    assert not predicted[np.isin(ids, SPECIAL)].any(), "a special token was chosen"
    assert (out[np.isin(ids, SPECIAL)] == ids[np.isin(ids, SPECIAL)]).all()
    for span in word_spans(ids, starts):
        assert predicted[span].all() or not predicted[span].any(), f"word {list(span)} partly chosen"


@settings(max_examples=300, deadline=None)
@given(example=examples(), seed=st.integers(0, 2**32 - 1), probability=st.sampled_from([0.15, 0.3, 0.6]))
def test_whole_word_masking_masks_whole_words(example, seed, probability):
    ids, starts = example
    out, labels = WholeWordMaskCollator(IDS, probability=probability).example(ids, starts, np.random.default_rng(seed))
    check_whole_words(ids, starts, out, labels)
    predicted = labels != IGNORE
    assert (labels[predicted] == ids[predicted]).all()
    assert (out[~predicted] == ids[~predicted]).all()  # nothing changes outside the chosen words
    changed = out[predicted] != ids[predicted]
    assert not np.isin(out[predicted][changed], [PAD, UNK, CLS, SEP]).any()


@settings(max_examples=300, deadline=None)
@given(example=examples(), seed=st.integers(0, 2**32 - 1))
def test_macbert_masks_whole_words_in_ngrams(example, seed):
    ids, starts = example
    out, labels = MacBertCollator(IDS).example(ids, starts, np.random.default_rng(seed))
    check_whole_words(ids, starts, out, labels)
    predicted = labels != IGNORE
    assert (out[~predicted] == ids[~predicted]).all()


@settings(max_examples=300, deadline=None)
@given(example=examples(), seed=st.integers(0, 2**32 - 1), unit=st.sampled_from(["token", "word"]),
       window=st.sampled_from([None, 4, 16]))
def test_permutation_labels_point_to_where_each_token_went(example, seed, unit, window):
    ids, starts = example
    core = PermutationCollator(IDS, probability=0.3, unit=unit, window=window)
    out, labels = core.example(ids, starts, np.random.default_rng(seed))
    check_whole_words(ids, starts, out, labels)
    chosen = np.flatnonzero(labels != IGNORE)
    assert sorted(out.tolist()) == sorted(ids.tolist())
    assert (out[labels == IGNORE] == ids[labels == IGNORE]).all()  # only chosen positions change
    assert (out[labels[chosen]] == ids[chosen]).all()  # each label points at the token that was there
    assert sorted(labels[chosen].tolist()) == chosen.tolist()  # a permutation of the chosen positions
    separators = np.cumsum(np.isin(ids, SPECIAL))
    assert (separators[labels[chosen]] == separators[chosen]).all()  # never across [SEP]
    if window:
        assert (np.abs(labels[chosen] - chosen) < window + 5).all()
    if unit == "word":
        for span in word_spans(ids, starts):
            targets = labels[span]
            if targets[0] != IGNORE:  # the word moved as one piece, in order
                assert (np.diff(targets) == 1).all()


def draw_batch(rng: np.random.Generator, n: int, length: int = 128) -> list[dict]:
    batch = []
    for _ in range(n):
        lengths = rng.choice([1, 2, 3, 4], size=length, p=[0.35, 0.45, 0.12, 0.08])
        starts = np.concatenate([[True, *([False] * (k - 1))] for k in lengths])[: length - 2]
        body = rng.integers(5, 5000, size=len(starts))
        ids = np.concatenate([[CLS], body, [SEP]])
        batch.append({"input_ids": ids, "word_start": np.concatenate([[True], starts, [True]])})
    return batch


@pytest.mark.parametrize("collator", [WholeWordMaskCollator(IDS, seed=3), MacBertCollator(IDS, seed=3)])
def test_rates_hold_over_many_batches(collator):
    rng = np.random.default_rng(0)
    predicted = masked = randomized = kept = maskable = 0
    for _ in range(40):
        batch = draw_batch(rng, 64)
        out = collator.numpy_batch(batch)
        original = np.stack([b["input_ids"] for b in batch])
        chosen = out["labels"] != IGNORE
        maskable += sum(len(b["input_ids"]) - 2 for b in batch)
        predicted += chosen.sum()
        masked += (out["input_ids"][chosen] == MASK).sum()
        kept += (out["input_ids"][chosen] == original[chosen]).sum()
        randomized += ((out["input_ids"][chosen] != MASK) & (out["input_ids"][chosen] != original[chosen])).sum()
    assert abs(predicted / maskable - 0.15) < 0.005
    if isinstance(collator, WholeWordMaskCollator):  # per token
        assert abs(masked / predicted - 0.8) < 0.02
        assert abs(randomized / predicted - 0.1) < 0.015 and abs(kept / predicted - 0.1) < 0.015
    else:  # per word: noisier, same expectations
        assert abs(masked / predicted - 0.8) < 0.04
        assert abs(randomized / predicted - 0.1) < 0.03 and abs(kept / predicted - 0.1) < 0.03


def test_permutation_rates_and_ngram_sizes():
    rng = np.random.default_rng(1)
    core = PermutationCollator(IDS, seed=3)
    chosen = maskable = moved = 0
    for _ in range(20):
        batch = draw_batch(rng, 64)
        out = core.numpy_batch(batch)
        labels = out["labels"]
        positions = np.arange(labels.shape[1])
        chosen += (labels != IGNORE).sum()
        moved += ((labels != IGNORE) & (labels != positions)).sum()
        maskable += sum(len(b["input_ids"]) - 2 for b in batch)
    assert abs(chosen / maskable - 0.15) < 0.005
    assert 0.7 < moved / chosen <= 0.9  # 90% of words shuffled, less those a permutation leaves in place


def test_ngram_sizes_follow_the_paper():
    from training.collators import choose_ngrams

    rng = np.random.default_rng(2)
    sizes = np.zeros(5)
    lengths = np.ones(2000, dtype=np.int64)
    for _ in range(60):  # a small budget, so that few n-grams are shortened by running into taken words
        for span in choose_ngrams(lengths, np.zeros(2000, dtype=np.int64), 100, rng):
            sizes[len(span)] += 1
    share = sizes[1:] / sizes.sum()
    assert np.allclose(share, [0.4, 0.3, 0.2, 0.1], atol=0.03), share


def test_macbert_similar_word_hook():
    ids = np.array([CLS, 10, 11, 12, 13, 14, 15, SEP])
    starts = np.array([1, 1, 0, 1, 0, 1, 0, 1], dtype=bool)
    calls = []

    def similar(word: np.ndarray) -> np.ndarray:
        calls.append(word.tolist())
        return word + 1000

    core = MacBertCollator(IDS, probability=0.9, similar_word=similar, similar_ratio=1.0, random_ratio=0.0)
    out, labels = core.example(ids, starts, np.random.default_rng(0))
    chosen = labels != IGNORE
    assert calls and chosen.any()
    assert (out[chosen] == ids[chosen] + 1000).all()
    # a hook without a same-length answer: random tokens, never [MASK]
    fallback = MacBertCollator(IDS, probability=0.9, similar_word=lambda w: None, similar_ratio=1.0, random_ratio=0.0)
    out, labels = fallback.example(ids, starts, np.random.default_rng(0))
    assert not (out == MASK).any() and (labels != IGNORE).any()


def test_batches_are_padded_torch_tensors_and_seeded():
    torch = pytest.importorskip("torch")
    batch = [
        {"input_ids": np.array([CLS, 10, 11, SEP], dtype=np.uint16), "word_start": np.array([1, 1, 0, 1], dtype=bool)},
        {"input_ids": np.array([CLS, 10, SEP], dtype=np.uint16), "word_start": np.array([1, 1, 1], dtype=bool)},
    ]
    out = WholeWordMaskCollator(IDS, seed=5, pad_to_multiple_of=8)(batch)
    assert set(out) == {"input_ids", "attention_mask", "labels"}
    assert all(t.dtype == torch.int64 and t.shape == (2, 8) for t in out.values())
    assert out["attention_mask"].tolist() == [[1] * 4 + [0] * 4, [1] * 3 + [0] * 5]
    assert (out["input_ids"][1, 3:] == PAD).all() and (out["labels"][:, 4:] == IGNORE).all()
    again = WholeWordMaskCollator(IDS, seed=5, pad_to_multiple_of=8)(batch)
    assert all(torch.equal(out[k], again[k]) for k in out)
    revived = pickle.loads(pickle.dumps(WholeWordMaskCollator(IDS, seed=5)))
    assert revived._rng is None


def test_words_of_ends_words_at_specials():
    ids = np.array([CLS, 10, 11, SEP, 12, 13, SEP])
    starts = np.array([1, 1, 0, 1, 0, 0, 1], dtype=bool)
    firsts, lengths = words_of(ids, starts, SPECIAL)
    assert firsts.tolist() == [1, 4] and lengths.tolist() == [2, 2]


def test_token_ids_from_special_ids():
    ids = TokenIds.from_special_ids({"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}, 21128)
    assert ids.pad == 0 and ids.mask == 103 and ids.special == (0, 100, 101, 102, 103)
    assert 103 not in ids.random_pool() and len(ids.random_pool()) == 21123
    with pytest.raises(ValueError, match="MASK"):
        TokenIds.from_special_ids({"[PAD]": 0}, 10)
