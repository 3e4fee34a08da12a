"""MinHash signatures and LSH band buckets for near-duplicate detection. Ray-free.

Chinese has no spaces, so a document's fingerprint is shingled by characters: every window of
``ngram`` consecutive characters is one shingle. Shingles are hashed vectorized, never in a
Python loop per shingle: a chunk of the fingerprint is encoded as UTF-32 into a numpy array of
code points, and all its windows are hashed at once (``ngram`` vector steps per chunk).
Documents are processed in chunks of ``CHUNK`` shingles, so a multi-MB document needs a few MB.

Signatures use datasketch's own permutations and pre-mix (scheme ``affine32``): for the same
seed, a signature equals ``datasketch.MinHash(num_perm, seed=seed, hashfunc=shingle_hash)``
updated with the same shingles. Band and row counts come from datasketch's optimal-parameter
routine. ``_fmix`` and ``_optimal_param`` are datasketch internals: the pinned datasketch
version and the equality tests hold them in place.

Rules for short fingerprints:
- empty: no shingles. The signature is datasketch's empty one (all ``2**32 - 1``) and the
  document has no buckets, so it is never a near-duplicate candidate.
- shorter than ``ngram``: the whole fingerprint is the one shingle, so such documents are
  near-duplicates only of documents with the same fingerprint.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
from datasketch import MinHash
from datasketch.lsh import _optimal_param
from datasketch.minhash import _fmix

CHUNK = 4096  # shingles hashed and permuted at once: num_perm * CHUNK * 4 bytes of scratch

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


@dataclass(frozen=True)
class MinHashConfig:
    enabled: bool = True
    threshold: float = 0.8  # Jaccard similarity of shingle sets above which documents are near-duplicates
    num_perm: int = 128
    ngram: int = 5  # characters per shingle
    seed: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError("threshold must be between 0 and 1 (exclusive)")
        if self.num_perm < 2 or self.ngram < 1:
            raise ValueError("num_perm must be at least 2 and ngram at least 1")

    @property
    def bands(self) -> int:
        return lsh_params(self.threshold, self.num_perm)[0]

    @property
    def rows(self) -> int:
        """Signature values per band; the first ``bands * rows`` values are banded, as in datasketch."""
        return lsh_params(self.threshold, self.num_perm)[1]


@lru_cache(maxsize=None)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) minimizing false positives + false negatives equally, as ``MinHashLSH`` does."""
    return _optimal_param(threshold, num_perm, 0.5, 0.5)


def _finalize(h: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: every input bit reaches every output bit."""
    h = (h ^ (h >> np.uint64(30))) * _MIX_1
    h = (h ^ (h >> np.uint64(27))) * _MIX_2
    return h ^ (h >> np.uint64(31))


def _fnv(columns: list[np.ndarray], length: int) -> np.ndarray:
    """64-bit FNV-1a over aligned columns of uint64 words, finalized: one hash per row."""
    h = np.full(length, _FNV_OFFSET, dtype=np.uint64)
    for column in columns:
        h = (h ^ column) * _FNV_PRIME
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


class MinHashSigner:
    """Core. Holds datasketch's permutations for the config's seed; cheap to build and to pickle."""

    def __init__(self, cfg: MinHashConfig):
        self.cfg = cfg
        self._a, self._b = (p[:, None] for p in MinHash(num_perm=cfg.num_perm, seed=cfg.seed).permutations)
        self._band_ids = np.arange(cfg.bands, dtype=np.uint64)[None, :]

    def signature(self, fingerprint: str) -> np.ndarray:
        """``num_perm`` uint32 values: the minimum of each permutation over all shingles."""
        signature = np.full(self.cfg.num_perm, np.iinfo(np.uint32).max, dtype=np.uint32)
        for hashes in shingle_hash_chunks(fingerprint, self.cfg.ngram):
            permuted = self._a * _fmix(hashes, 32)[None, :] + self._b
            np.minimum(signature, permuted.min(axis=1), out=signature)
        return signature

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """(documents, bands) int64 bucket keys: a hash of the band index and the band's values."""
        bands, rows = self.cfg.bands, self.cfg.rows
        banded = signatures[:, : bands * rows].reshape(len(signatures), bands, rows).astype(np.uint64)
        ids = np.broadcast_to(self._band_ids, banded.shape[:2])
        keys = _fnv([ids.ravel()] + [banded[:, :, j].ravel() for j in range(rows)], ids.size)
        return keys.view(np.int64).reshape(ids.shape)

    def buckets(self, fingerprints: Sequence[str]) -> pa.ListArray:
        """Per document, its bucket key in each band; an empty list for an empty fingerprint (never a candidate)."""
        candidates = [i for i, fingerprint in enumerate(fingerprints) if fingerprint]
        signatures = np.empty((len(candidates), self.cfg.num_perm), dtype=np.uint32)
        for row, i in enumerate(candidates):
            signatures[row] = self.signature(fingerprints[i])
        lengths = np.zeros(len(fingerprints), dtype=np.int32)
        lengths[candidates] = self.cfg.bands
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(self.band_keys(signatures).ravel()))
