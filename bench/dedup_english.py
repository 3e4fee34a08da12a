"""Near-duplicate quality on English text: character n-grams (the stage's shingles) against word n-grams.

    python bench/dedup_english.py [--seed 0]

The set is ``tests/neardup_en.py``'s (Python's reference docs, edited copies, hard negatives). The
documents are normalized as the pipeline normalizes them (``opencc: none``); then a one-process model
of the near-duplicate step (``tests.neardup.clusters_in_memory``: the stage's own signer, LSH
buckets, check and components) clusters them, once per setting:

- ``char``: the stage's shingles, n-grams of the dedup fingerprint's characters;
- ``word``: n-grams of the text's words (runs of letters and digits, casefolded), each word mapped
  to one character so that the same signer hashes word n-grams.

Prints one JSON line per setting: pairwise precision and recall of the clusters. The stage itself,
on Ray, is checked at its defaults by ``tests/test_dedup_quality_english.py``.
"""

from __future__ import annotations

import argparse
import re
import sys
import unicodedata
from pathlib import Path

import pyarrow as pa
import xxhash

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.shared_data import emit  # noqa: E402
from operators.columns import DETAIL, DOC_ID, FATE, FINGERPRINT, RAW, RECORD, SOURCE, TEXT  # noqa: E402
from operators.dedup.minhash import MinHashConfig  # noqa: E402
from operators.normalize import NormalizeConfig, Normalizer  # noqa: E402
from tests.neardup import clusters_in_memory, pair_scores  # noqa: E402
from tests.neardup_en import make_set, paragraphs  # noqa: E402

SETTINGS = [("char", 5, 0.8), ("char", 5, 0.7), ("word", 2, 0.8), ("word", 3, 0.8), ("word", 3, 0.7), ("word", 5, 0.8)]


def word_units(text: str) -> str:
    """One character per word (a code point above the BMP from its hash): character n-grams of the
    result are word n-grams of the text."""
    words = re.findall(r"\w+", unicodedata.normalize("NFKC", text).casefold())
    return "".join(chr(0x10000 + xxhash.xxh32_intdigest(word.encode("utf-8", "surrogatepass")) % 0x100000) for word in words)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    docs = make_set(paragraphs(), seed=args.seed)
    table = pa.table({
        DOC_ID: [d.doc_id for d in docs], SOURCE: ["neardup_en"] * len(docs), RECORD: pa.array(range(len(docs)), pa.int64()),
        RAW: [d.text for d in docs], FATE: pa.nulls(len(docs), pa.string()), DETAIL: pa.nulls(len(docs), pa.string()),
    })
    normalized = Normalizer(NormalizeConfig(opencc="none"))(table)
    ids = normalized[DOC_ID].to_pylist()
    units = {"char": dict(zip(ids, normalized[FINGERPRINT].to_pylist())),
             "word": dict(zip(ids, map(word_units, normalized[TEXT].to_pylist())))}
    truth = {d.doc_id: d.cluster for d in docs}
    for unit, ngram, threshold in SETTINGS:
        found = clusters_in_memory(units[unit], MinHashConfig(ngram=ngram, threshold=threshold))
        emit({"bench": "dedup_english", "docs": len(docs), "unit": unit, "ngram": ngram, "threshold": threshold,
              **pair_scores(truth, found).as_dict()})


if __name__ == "__main__":
    main()
