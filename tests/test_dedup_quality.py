"""Near-duplicate quality of the real path (Normalizer -> dedup.apply on Ray) on a seeded Chinese set.

The set (``tests/neardup.py``) is made from the CMRC2018, C3 and DRCD paragraphs in
``../shared/data``; the tests skip when they are absent. Pairwise precision and recall of the
duplicate clusters must reach 0.98 and 0.95 with ``opencc: t2s`` and with ``opencc: none``
(a single-process datasketch ``MinHashLSH(0.8)`` on the same fingerprints reaches 1.00 / 0.90
on this set, whose mixtures are harder than the 0.97-recall sets the defaults were aimed at).
Both executors of the graph (one task, and the distributed shuffles) must find the same duplicates.
Figures print with ``pytest -s``.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from operators import dedup, normalize
from operators.columns import DETAIL, DOC_ID, FATE, FINGERPRINT, RAW, RECORD, SOURCE, TEXT
from operators.dedup.minhash import MinHashConfig, MinHashSigner, estimated_jaccard
from tests.conftest import shared_file
from tests.neardup import (
    SIMPLIFIED,
    TRADITIONAL,
    clusters_in_memory,
    jaccard,
    load_paragraphs,
    make_set,
    pair_scores,
    shingles,
)

CANDIDATES = "neardup/c3_m_neardup_candidates.jsonl"
MIN_PRECISION, MIN_RECALL = 0.98, 0.95


@pytest.fixture(scope="module")
def labelled():
    simplified = load_paragraphs([shared_file(p) for p in SIMPLIFIED])
    traditional = load_paragraphs([shared_file(p) for p in TRADITIONAL])
    return make_set(simplified, traditional, seed=0)


def found_duplicates(ray_local, docs, opencc: str) -> dict[str, str]:
    """doc_id -> kept doc_id, through normalize.apply and dedup.apply as the driver runs them."""
    import ray.data
    from ray.data.expressions import col

    table = pa.table(
        {
            DOC_ID: [d.doc_id for d in docs],
            SOURCE: ["neardup"] * len(docs),
            RECORD: pa.array(range(len(docs)), pa.int64()),
            RAW: [d.text for d in docs],
            FATE: pa.nulls(len(docs), pa.string()),
            DETAIL: pa.nulls(len(docs), pa.string()),
        }
    )
    records = normalize.apply(ray.data.from_arrow(table), normalize.NormalizeConfig(opencc=opencc)).materialize()
    pending = records.filter(expr=col(FATE).is_null()).select_columns([DOC_ID, SOURCE, RECORD, TEXT, FINGERPRINT])
    assert pending.count() == len(docs)  # nothing in the set is filtered
    output = dedup.apply(pending, dedup.DedupConfig())
    rows = output.duplicates.take_all()  # a test set of 1,500 documents: small enough to look at
    distributed = dedup.apply(pending, dedup.DedupConfig(local_max_docs=0)).duplicates.take_all()
    assert sorted(rows, key=lambda r: r[DOC_ID]) == sorted(distributed, key=lambda r: r[DOC_ID])
    if opencc == "t2s":  # the audit lists the same duplicates, each with a Jaccard estimate
        audit = [r for r in output.audit.take_all() if r[FATE] != "kept"]
        assert {r[DOC_ID]: r["kept_doc_id"] for r in audit} == {r[DOC_ID]: r[DETAIL] for r in rows}
        jaccards = [r["jaccard"] for r in audit]
        assert None not in jaccards and sum(jaccards) / len(jaccards) > 0.8
    return {row[DOC_ID]: row[DETAIL] for row in rows}


@pytest.mark.parametrize("opencc", ["t2s", "none"])
def test_near_duplicate_clusters_are_precise_and_complete(ray_local, labelled, opencc):
    duplicates = found_duplicates(ray_local, labelled, opencc)
    truth = {d.doc_id: d.cluster for d in labelled}
    scores = pair_scores(truth, {d: duplicates.get(d, d) for d in truth})
    clusters = {d.doc_id: d.cluster for d in labelled}
    kinds: Counter[str] = Counter()
    missed: Counter[str] = Counter()
    originals = {d.cluster: d.doc_id for d in labelled if d.kind == "original"}
    for d in labelled:
        if d.kind not in ("original", "singleton", "header_negative"):
            kind = "mixture" if "+" in d.kind else d.kind
            kinds[kind] += 1
            missed[kind] += duplicates.get(d.doc_id, d.doc_id) != duplicates.get(originals[d.cluster], originals[d.cluster])
    merged_negatives = sum(1 for d in labelled if d.kind == "header_negative" and d.doc_id in duplicates)
    print(json.dumps({"opencc": opencc, **scores.as_dict(), "copies_missed": dict(missed), "copies": dict(kinds),
                      "header_negatives_merged": merged_negatives}))
    assert scores.precision >= MIN_PRECISION, scores
    assert scores.recall >= MIN_RECALL, scores
    assert set(clusters) >= set(duplicates)


def test_the_in_memory_model_agrees(labelled):
    """The one-process model of the same rules (used for the sweeps in the dedup docstring) passes too; no Ray."""
    normalizer = normalize.Normalizer(normalize.NormalizeConfig())
    fingerprints = {d.doc_id: normalizer.normalize(d.text)[1] for d in labelled}
    truth = {d.doc_id: d.cluster for d in labelled}
    checked = pair_scores(truth, clusters_in_memory(fingerprints, MinHashConfig()))
    unchecked = pair_scores(truth, clusters_in_memory(fingerprints, MinHashConfig(), check=None))
    assert checked.precision >= MIN_PRECISION and checked.recall >= MIN_RECALL
    assert checked.precision >= unchecked.precision


def test_regression_pairs_from_c3():
    """Machine-mined C3 pairs (exact 5-gram Jaccard 0.30-0.69): the MinHash estimates track the exact Jaccard."""
    path = shared_file(CANDIDATES)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    normalizer = normalize.Normalizer(normalize.NormalizeConfig())
    a = [normalizer.normalize(r["text_a"])[1] for r in rows]
    b = [normalizer.normalize(r["text_b"])[1] for r in rows]
    cfg = MinHashConfig()
    signer = MinHashSigner(cfg)
    estimate = estimated_jaccard(signer.signatures(a), signer.signatures(b))
    exact = np.array([jaccard(shingles(x), shingles(y)) for x, y in zip(a, b)])
    mined = np.array([r["jaccard_char5"] for r in rows])
    assert np.abs(estimate - exact).mean() < 0.05  # 128 permutations: about 0.04 of noise at these levels
    assert np.abs(exact - mined).mean() < 0.05  # the fingerprint drops punctuation; the mined figure does not
