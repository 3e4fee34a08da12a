"""MinHash signatures, LSH band buckets and signature sketches for near-duplicate detection. Ray-free.

Chinese has no spaces, so a document's fingerprint is shingled by characters: every window of
``ngram`` consecutive characters is one shingle. Nothing runs in Python per shingle, and little
per document: ``MinHashSigner.signatures`` cuts a batch of fingerprints into groups of about
``CHUNK`` shingles (whole short documents together, long ones in pieces), encodes each group's
text once as UTF-32 into numpy code points, hashes all its windows at once (``ngram`` vector
steps), permutes them in one ``(num_perm, CHUNK)`` array and takes every document's minimum with
one ``minimum.reduceat``. A multi-MB document therefore needs a few MB (one group at a time).

Signatures use datasketch's own permutations and pre-mix (scheme ``affine32``): for the same
seed, a signature equals ``datasketch.MinHash(num_perm, seed=seed, hashfunc=shingle_hash)``
updated with the same shingles. ``_fmix`` and ``_optimal_param`` are datasketch internals: the
pinned datasketch version and the equality tests hold them in place.

Candidates and the check. LSH only proposes pairs; the dedup stage then checks each proposed
pair with its estimated Jaccard (``verify``), so the bands are chosen for recall: by
datasketch's optimizer with false negatives weighted ``FALSE_NEGATIVE_WEIGHT`` (a missed pair
is lost for good, a false candidate is dropped by the check). For threshold 0.8 and 128
permutations that is 16 bands of 8 rows, which proposes a pair at Jaccard 0.8 with
probability 0.95 and at 0.9 with 0.9999 (datasketch's unweighted 9 x 13: 0.40 and 0.93), but
also a pair at 0.6 with 0.24. The check keeps a pair when the share of equal sketch values is
at least ``verify_cut`` = threshold - 2 sigma, sigma the estimate's standard deviation at the
threshold (sqrt(t (1 - t) / num_perm) = 0.035): a pair exactly at the threshold passes with
probability 0.98, a pair at 0.6 with 0.001. Figures on the seeded near-duplicate set
(tests/neardup.py) are in ``operators/dedup/__init__.py``.

Sketches. The check needs both signatures of a pair where the pair is formed, so signatures
travel through a shuffle; they travel as ``sketch``: the low 16 bits of each value
(b-bit minwise hashing, Li & Koenig 2010), 2 bytes instead of 4 per permutation. Two different
minima agree in their low 16 bits with probability 2**-16, which biases the estimate by less
than 0.00002.

Rules for short fingerprints:
- empty: no shingles. The signature is datasketch's empty one (all ``2**32 - 1``) and the
  document has no buckets, so it is never a near-duplicate candidate.
- shorter than ``ngram``: the whole fingerprint is the one shingle, so such documents are
  near-duplicates only of documents with the same fingerprint.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
from datasketch import MinHash
from datasketch.lsh import _optimal_param
from datasketch.minhash import _fmix

CHUNK = 4096  # shingles permuted at once: num_perm * CHUNK * 4 bytes of scratch (2 MiB for 128)
FALSE_NEGATIVE_WEIGHT = 0.95  # weight of missed pairs in the band optimizer (false candidates: 1 - this)
VERIFY_SIGMAS = 2.0  # the check keeps estimates down to this many standard deviations below the threshold
SKETCH_DTYPE = np.dtype("<u2")  # b-bit sketch values: the low 16 bits of each signature value

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_EMPTY = np.iinfo(np.uint32).max


@dataclass(frozen=True)
class MinHashConfig:
    enabled: bool = True
    threshold: float = 0.8  # Jaccard similarity of shingle sets above which documents are near-duplicates
    num_perm: int = 128
    ngram: int = 5  # characters per shingle
    seed: int = 1
    bands: int = 0  # LSH bands; 0 = chosen for recall from threshold and num_perm (module doc); rows = num_perm // bands
    verify: bool = True  # check every LSH candidate pair by its estimated Jaccard before it becomes an edge
    all_pairs_max: int = 32  # with verify: buckets of up to this many documents check all pairs, larger ones a star

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError("threshold must be between 0 and 1 (exclusive)")
        if self.num_perm < 2 or self.ngram < 1:
            raise ValueError("num_perm must be at least 2 and ngram at least 1")
        if not 0 <= self.bands <= self.num_perm:
            raise ValueError("bands must be between 0 (automatic) and num_perm")
        if self.all_pairs_max < 1:
            raise ValueError("all_pairs_max must be at least 1")

    @property
    def band_rows(self) -> tuple[int, int]:
        return lsh_params(self.threshold, self.num_perm, self.bands)

    @property
    def rows(self) -> int:
        """Signature values per band; the first ``bands * rows`` values are banded, as in datasketch."""
        return self.band_rows[1]

    @property
    def band_count(self) -> int:
        return self.band_rows[0]

    @property
    def verify_cut(self) -> float:
        """The smallest estimated Jaccard the check accepts: threshold - 2 standard deviations of the estimate."""
        return verify_cut(self.threshold, self.num_perm)


@lru_cache(maxsize=None)
def lsh_params(threshold: float, num_perm: int, bands: int = 0) -> tuple[int, int]:
    """(bands, rows): given bands and ``num_perm // bands`` rows, or the recall-weighted optimum (module doc)."""
    if bands:
        return bands, num_perm // bands
    return _optimal_param(threshold, num_perm, 1.0 - FALSE_NEGATIVE_WEIGHT, FALSE_NEGATIVE_WEIGHT)


def verify_cut(threshold: float, num_perm: int) -> float:
    return threshold - VERIFY_SIGMAS * math.sqrt(threshold * (1.0 - threshold) / num_perm)


def candidate_probability(jaccard: float, bands: int, rows: int) -> float:
    """Probability that LSH proposes a pair of this Jaccard similarity: 1 - (1 - J^rows)^bands."""
    return 1.0 - (1.0 - jaccard**rows) ** bands


def _finalize(h: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: every input bit reaches every output bit."""
    h = (h ^ (h >> np.uint64(30))) * _MIX_1
    h = (h ^ (h >> np.uint64(27))) * _MIX_2
    return h ^ (h >> np.uint64(31))


def _fnv(columns: list[np.ndarray], length: int) -> np.ndarray:
    """64-bit FNV-1a over aligned columns of uint64 words, finalized: one hash per row."""
    h = np.full(length, _FNV_OFFSET, dtype=np.uint64)
    for column in columns:
        h ^= column
        h *= _FNV_PRIME
    return _finalize(h)


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)


def _window_hashes(codepoints: np.ndarray, width: int) -> np.ndarray:
    """The 32-bit hash of every window of ``width`` code points: ``width`` vector steps, no per-window loop."""
    count = len(codepoints) - width + 1
    return (_fnv([codepoints[i : i + count] for i in range(width)], count) >> np.uint64(32)).astype(np.uint32)


def shingle_hash(shingle: str) -> int:
    """The project's 32-bit shingle hash, usable as datasketch's ``hashfunc``.

    64-bit FNV-1a over the code points, splitmix64-finalized, top 32 bits: the same arithmetic
    that ``shingle_hash_chunks`` runs on whole arrays of windows.
    """
    return int(_window_hashes(_codepoints(shingle), len(shingle))[0])


def shingle_hash_chunks(fingerprint: str, ngram: int, chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """Yield the hashes of the fingerprint's shingles, at most ``chunk`` at a time (rules: module doc)."""
    if not fingerprint:
        return
    width = min(ngram, len(fingerprint))
    shingles = len(fingerprint) - width + 1
    for start in range(0, shingles, chunk):
        piece = fingerprint[start : min(start + chunk, shingles) + width - 1]
        yield _window_hashes(_codepoints(piece), width)


def shingle_hash_groups(
    fingerprints: Sequence[str], ngram: int, chunk: int = CHUNK
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(docs, hashes, starts)``: the shingle hashes of a group of at most ``chunk`` shingles.

    Document ``docs[i]``'s shingles in the group are ``hashes[starts[i]:starts[i + 1]]`` (the
    last up to the end). A document with more than ``chunk`` shingles comes in pieces of
    ``chunk`` shingles, each a group of its own, and its last piece; a document is listed at
    most once per group. Fingerprints shorter than ``ngram`` (and empty ones) are skipped:
    ``signatures`` treats them one by one.
    """
    pieces: list[str] = []
    docs: list[int] = []
    counts: list[int] = []
    total = 0  # shingles in the group so far
    for index, fingerprint in enumerate(fingerprints):
        shingles = len(fingerprint) - ngram + 1
        for start in range(0, max(shingles, 0), chunk):
            count = min(chunk, shingles - start)
            if pieces and total + count > chunk:
                yield _hash_group(pieces, docs, counts, ngram)
                pieces, docs, counts, total = [], [], [], 0
            pieces.append(fingerprint[start : start + count + ngram - 1])
            docs.append(index)
            counts.append(count)
            total += count
    if pieces:
        yield _hash_group(pieces, docs, counts, ngram)


def _hash_group(pieces: list[str], docs: list[int], counts: list[int], ngram: int) -> tuple[np.ndarray, ...]:
    """Hash every window of the joined pieces once, then keep the windows that lie inside one piece."""
    counts_ = np.asarray(counts, dtype=np.int64)
    lengths = counts_ + (ngram - 1)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # where each piece starts in the joined text
    starts = np.concatenate([[0], np.cumsum(counts_)[:-1]])  # where each piece's shingles start in the output
    hashes = _window_hashes(_codepoints("".join(pieces)), ngram)
    keep = np.arange(int(counts_.sum())) + np.repeat(offsets - starts, counts_)
    return np.asarray(docs, dtype=np.int64), hashes[keep], starts


class MinHashSigner:
    """Core. Holds datasketch's permutations for the config's seed; cheap to build and to pickle."""

    def __init__(self, cfg: MinHashConfig):
        self.cfg = cfg
        self._a, self._b = (p[:, None] for p in MinHash(num_perm=cfg.num_perm, seed=cfg.seed).permutations)
        self._band_ids = np.arange(cfg.band_count, dtype=np.uint64)[None, :]

    def signature(self, fingerprint: str) -> np.ndarray:
        """``num_perm`` uint32 values: the minimum of each permutation over all shingles."""
        signature = np.full(self.cfg.num_perm, _EMPTY, dtype=np.uint32)
        for hashes in shingle_hash_chunks(fingerprint, self.cfg.ngram):
            permuted = self._a * _fmix(hashes, 32)[None, :] + self._b
            np.minimum(signature, permuted.min(axis=1), out=signature)
        return signature

    def signatures(self, fingerprints: Sequence[str]) -> np.ndarray:
        """(documents, num_perm) uint32: ``signature`` of each, computed a group of shingles at a time."""
        signatures = np.full((len(fingerprints), self.cfg.num_perm), _EMPTY, dtype=np.uint32)
        scratch = np.empty((self.cfg.num_perm, CHUNK), dtype=np.uint32)
        for docs, hashes, starts in shingle_hash_groups(fingerprints, self.cfg.ngram, CHUNK):
            permuted = scratch[:, : len(hashes)]
            np.multiply(self._a, _fmix(hashes, 32)[None, :], out=permuted)
            np.add(permuted, self._b, out=permuted)
            minima = np.minimum.reduceat(permuted, starts, axis=1).T
            signatures[docs] = np.minimum(signatures[docs], minima)
        for index, fingerprint in enumerate(fingerprints):
            if 0 < len(fingerprint) < self.cfg.ngram:
                signatures[index] = self.signature(fingerprint)
        return signatures

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """(documents, bands) int64 bucket keys: a hash of the band index and the band's values."""
        bands, rows = self.cfg.band_rows
        banded = signatures[:, : bands * rows].reshape(len(signatures), bands, rows).astype(np.uint64)
        ids = np.broadcast_to(self._band_ids, banded.shape[:2])
        keys = _fnv([ids.ravel()] + [banded[:, :, j].ravel() for j in range(rows)], ids.size)
        return keys.view(np.int64).reshape(ids.shape)

    def buckets_of(self, fingerprints: Sequence[str], signatures: np.ndarray) -> pa.ListArray:
        """Per document, its bucket key in each band; an empty list for an empty fingerprint (never a candidate)."""
        lengths = np.array([self.cfg.band_count if fingerprint else 0 for fingerprint in fingerprints], dtype=np.int32)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        keys = self.band_keys(signatures[lengths > 0])
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(keys.ravel(), pa.int64()))

    def buckets(self, fingerprints: Sequence[str]) -> pa.ListArray:
        return self.buckets_of(fingerprints, self.signatures(fingerprints))


def sketches(signatures: np.ndarray) -> pa.FixedSizeBinaryArray:
    """One fixed-size binary value per signature: its values' low 16 bits (module doc)."""
    values = np.ascontiguousarray(signatures.astype(SKETCH_DTYPE))
    width = values.shape[1] * SKETCH_DTYPE.itemsize
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(values), [None, pa.py_buffer(values.tobytes())])


def sketch_values(column: pa.Array | pa.ChunkedArray, nulls: bool = False) -> np.ndarray:
    """(rows, num_perm) uint16 back from a sketch column. A null is an error, unless ``nulls``: then its
    row holds whatever its slot does (for a caller that never reads it)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.null_count and not nulls:
        raise ValueError("sketch column has nulls")
    width = column.type.byte_width
    if not len(column):
        return np.empty((0, width // SKETCH_DTYPE.itemsize), dtype=SKETCH_DTYPE)
    data = np.frombuffer(column.buffers()[1], dtype=np.uint8)[column.offset * width : (column.offset + len(column)) * width]
    return data.view(SKETCH_DTYPE).reshape(len(column), width // SKETCH_DTYPE.itemsize)


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise share of equal values of two (rows, num_perm) arrays of signatures or sketches."""
    return (a == b).mean(axis=1)
