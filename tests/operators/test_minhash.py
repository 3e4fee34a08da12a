"""MinHash core: datasketch equality, LSH parameters, shingling rules. Pure, no Ray."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pyarrow as pa
import pytest
from datasketch import MinHash
from datasketch.lsh import _optimal_param

from operators.dedup.minhash import (
    CHUNK,
    FALSE_NEGATIVE_WEIGHT,
    MinHashConfig,
    MinHashSigner,
    candidate_probability,
    estimated_jaccard,
    shingle_hash,
    shingle_hash_chunks,
    shingle_hash_groups,
    sketch_values,
    sketches,
)

PARAGRAPH = (
    "江南的小镇总是被河水环绕清晨的薄雾从石桥下缓缓升起早起的船夫撑着竹篙穿过狭窄的水巷"
    "沿河的老屋大多是白墙黑瓦木窗上雕着花鸟和山水屋檐下挂着一串串红灯笼"
)


def char_shingles(fingerprint: str, ngram: int) -> list[str]:
    """The documented rule, written out plainly: character n-grams, or the whole fingerprint when shorter."""
    if len(fingerprint) <= ngram:
        return [fingerprint] if fingerprint else []
    return [fingerprint[i : i + ngram] for i in range(len(fingerprint) - ngram + 1)]


def datasketch_signature(fingerprint: str, cfg: MinHashConfig) -> np.ndarray:
    minhash = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, hashfunc=shingle_hash)
    minhash.update_batch(char_shingles(fingerprint, cfg.ngram))
    return minhash.hashvalues


@pytest.mark.parametrize(
    "cfg",
    [MinHashConfig(), MinHashConfig(num_perm=64, seed=7), MinHashConfig(ngram=3, seed=42), MinHashConfig(ngram=1)],
)
@pytest.mark.parametrize("fingerprint", [PARAGRAPH, "hello世界2024", "你好", "a", "", "重复重复重复重复重复重复"])
def test_signature_equals_datasketch(cfg, fingerprint):
    signature = MinHashSigner(cfg).signature(fingerprint)
    assert signature.dtype == np.uint32
    assert np.array_equal(signature, datasketch_signature(fingerprint, cfg))


def test_batched_signatures_equal_one_by_one():
    """Short, empty, long (over a chunk) and ordinary fingerprints in one batch, cut into groups of few shingles."""
    rng = np.random.default_rng(1)
    long_text = "".join(chr(c) for c in rng.integers(0x4E00, 0x4E00 + 3000, size=CHUNK + 700))
    batch = [PARAGRAPH, "", "你好", long_text, "abcde", "a", PARAGRAPH[:40], long_text[:CHUNK + 4], "重复重复重复重复重复"]
    for cfg in (MinHashConfig(), MinHashConfig(ngram=3, num_perm=64, seed=9)):
        signer = MinHashSigner(cfg)
        one_by_one = np.stack([signer.signature(f) for f in batch])
        assert np.array_equal(signer.signatures(batch), one_by_one)
        assert np.array_equal(signer.signatures([]), np.empty((0, cfg.num_perm), np.uint32))


@pytest.mark.parametrize("chunk", [1, 7, 64, CHUNK])
def test_groups_hold_every_shingle_once(chunk):
    batch = [PARAGRAPH, "", "你好呀", PARAGRAPH[::-1] * 3, "abcdefgh"]
    seen: dict[int, list[int]] = {}
    for docs, hashes, starts in shingle_hash_groups(batch, 5, chunk):
        assert len(hashes) <= chunk and len(set(docs.tolist())) == len(docs)
        ends = np.append(starts[1:], len(hashes))
        for doc, start, end in zip(docs.tolist(), starts.tolist(), ends.tolist()):
            seen.setdefault(doc, []).extend(hashes[start:end].tolist())
    for doc, fingerprint in enumerate(batch):
        expected = [shingle_hash(fingerprint[i : i + 5]) for i in range(len(fingerprint) - 4)]
        assert seen.get(doc, []) == expected


def test_signature_equals_datasketch_across_chunks():
    rng = np.random.default_rng(0)
    long_text = "".join(chr(c) for c in rng.integers(0x4E00, 0x4E00 + 3000, size=9_000))
    cfg = MinHashConfig()
    assert np.array_equal(MinHashSigner(cfg).signature(long_text), datasketch_signature(long_text, cfg))


def test_chinese_is_shingled_by_characters():
    hashes = np.concatenate(list(shingle_hash_chunks(PARAGRAPH, 5)))
    assert len(hashes) == len(PARAGRAPH) - 4
    assert hashes.tolist() == [shingle_hash(PARAGRAPH[i : i + 5]) for i in range(len(PARAGRAPH) - 4)]


def test_chunks_do_not_change_the_hashes():
    whole = np.concatenate(list(shingle_hash_chunks(PARAGRAPH, 5)))
    chunked = list(shingle_hash_chunks(PARAGRAPH, 5, chunk=7))
    assert max(len(c) for c in chunked) == 7
    assert np.array_equal(np.concatenate(chunked), whole)


def test_short_fingerprint_is_one_shingle():
    assert [h.tolist() for h in shingle_hash_chunks("你好", 5)] == [[shingle_hash("你好")]]
    signer = MinHashSigner(MinHashConfig())
    same, other = signer.buckets(["你好", "你好"]).to_pylist(), signer.buckets(["您好"]).to_pylist()
    assert same[0] == same[1]
    assert not set(same[0]) & set(other[0])


def test_empty_fingerprint_has_no_buckets():
    cfg = MinHashConfig()
    signer = MinHashSigner(cfg)
    assert list(shingle_hash_chunks("", cfg.ngram)) == []
    assert np.array_equal(signer.signature(""), MinHash(num_perm=cfg.num_perm, seed=cfg.seed).hashvalues)
    assert signer.buckets(["", PARAGRAPH, ""]).to_pylist()[0::2] == [[], []]


@pytest.mark.parametrize("threshold,num_perm", [(0.8, 128), (0.5, 128), (0.9, 256), (0.7, 64)])
def test_bands_and_rows_are_datasketchs_recall_weighted_optimum(threshold, num_perm):
    cfg = MinHashConfig(threshold=threshold, num_perm=num_perm)
    assert cfg.band_rows == _optimal_param(threshold, num_perm, 1 - FALSE_NEGATIVE_WEIGHT, FALSE_NEGATIVE_WEIGHT)
    assert MinHashConfig(threshold=threshold, num_perm=num_perm, bands=4).band_rows == (4, num_perm // 4)


def test_default_bands_find_pairs_at_the_threshold_and_the_check_drops_strangers():
    """16 x 8 for 0.8 / 128: a pair at the threshold is proposed 95 % of the time; the check keeps it 98 %."""
    cfg = MinHashConfig()
    assert cfg.band_rows == (16, 8)
    assert candidate_probability(0.8, *cfg.band_rows) > 0.94
    assert candidate_probability(0.6, *cfg.band_rows) < 0.25
    assert cfg.verify_cut == pytest.approx(0.8 - 2 * (0.8 * 0.2 / 128) ** 0.5)


def test_sketches_keep_the_low_16_bits_and_estimate_jaccard():
    signer = MinHashSigner(MinHashConfig())
    edited = PARAGRAPH[:40] + "某" + PARAGRAPH[41:]
    signatures = signer.signatures([PARAGRAPH, edited, "图书馆的三楼是整座建筑里最安静的地方"])
    column = sketches(signatures)
    assert column.type == pa.binary(2 * 128) and len(column) == 3
    values = sketch_values(pa.chunked_array([column.slice(0, 1), column.slice(1)]))
    assert np.array_equal(values, (signatures & 0xFFFF).astype(np.uint16))
    same, far = estimated_jaccard(values[[0, 0]], values[[1, 2]])
    assert same == pytest.approx(estimated_jaccard(signatures[[0]], signatures[[1]])[0], abs=0.02)
    assert same > 0.8 and far < 0.1


def test_band_keys_follow_band_contents():
    cfg = MinHashConfig()
    signer = MinHashSigner(cfg)
    signature = signer.signature(PARAGRAPH)
    changed = signature.copy()
    changed[cfg.rows] += 1  # the first value of the second band
    keys = signer.band_keys(np.stack([signature, signature, changed]))
    assert keys.shape == (3, cfg.band_count) and keys.dtype == np.int64
    assert np.array_equal(keys[0], keys[1])
    assert (keys[0] != keys[2]).tolist() == [i == 1 for i in range(cfg.band_count)]
    assert len(set(keys[0].tolist())) == cfg.band_count  # the band index is part of the key


def test_near_duplicates_share_a_bucket_and_strangers_do_not():
    edited = PARAGRAPH[:40] + "某" + PARAGRAPH[41:]
    other = (
        "图书馆的三楼是整座建筑里最安静的地方高大的书架从地面一直延伸到天花板"
        "上面整齐地摆放着历史哲学和自然科学的书籍"
    )
    first, near, far = MinHashSigner(MinHashConfig()).buckets([PARAGRAPH, edited, other]).to_pylist()
    assert set(first) & set(near)
    assert not set(first) & set(far)


def test_a_multi_megabyte_document_needs_a_few_megabytes():
    text = PARAGRAPH * 40_000  # about 3.6 million characters
    signer = MinHashSigner(MinHashConfig())
    tracemalloc.start()
    signer.signature(text)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 * 2**20


def test_a_20_mb_fingerprint_through_the_batch_signer():
    """20 MB of UTF-8 (6.7 million characters) in a batch: scratch stays a few MB, the result is exact."""
    rng = np.random.default_rng(2)
    text = rng.integers(0x4E00, 0x9FA5, size=20_000_000 // 3).astype("<u4").tobytes().decode("utf-32-le")
    assert len(text.encode("utf-8")) >= 20_000_000 - 3
    signer = MinHashSigner(MinHashConfig())
    tracemalloc.start()
    signatures = signer.signatures([PARAGRAPH, text, PARAGRAPH])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 24 * 2**20  # the text itself (13 MB as a Python str) was allocated before
    assert np.array_equal(signatures[0], signatures[2]) and np.array_equal(signatures[0], signer.signature(PARAGRAPH))
    tail = text[-100_000:]
    assert (signatures[1] <= signer.signature(tail)).all()  # a minimum over a superset of shingles


@pytest.mark.parametrize("bad", [{"threshold": 0.0}, {"threshold": 1.0}, {"num_perm": 1}, {"ngram": 0}])
def test_config_rejects_impossible_values(bad):
    with pytest.raises(ValueError):
        MinHashConfig(**bad)
