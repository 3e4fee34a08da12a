"""Near-duplicate quality of the real path (normalize -> dedup on Ray) on a seeded English set.

The set (``tests/neardup_en.py``) is made from Python's own reference docs, so it runs everywhere.
At the defaults (character 5-grams of the fingerprint, threshold 0.8) the clusters must reach a
pairwise precision of 0.99 and a recall of 0.95. ``bench/dedup_english.py`` compares word
shingles, which do worse on this set. Figures print with ``pytest -s``.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from operators import dedup, normalize
from operators.columns import DETAIL, DOC_ID, FATE, FINGERPRINT, RAW, RECORD, SOURCE, TEXT
from tests.neardup import pair_scores
from tests.neardup_en import make_set, paragraphs

MIN_PRECISION, MIN_RECALL = 0.99, 0.95


@pytest.fixture(scope="module")
def labelled():
    return make_set(paragraphs(), seed=0)


def test_english_near_duplicates_are_precise_and_complete_at_the_defaults(ray_local, labelled):
    import ray.data
    from ray.data.expressions import col

    table = pa.table({
        DOC_ID: [d.doc_id for d in labelled], SOURCE: ["neardup_en"] * len(labelled),
        RECORD: pa.array(range(len(labelled)), pa.int64()), RAW: [d.text for d in labelled],
        FATE: pa.nulls(len(labelled), pa.string()), DETAIL: pa.nulls(len(labelled), pa.string()),
    })
    records = normalize.apply(ray.data.from_arrow(table), normalize.NormalizeConfig(opencc="none")).materialize()
    pending = records.filter(expr=col(FATE).is_null()).select_columns([DOC_ID, SOURCE, RECORD, TEXT, FINGERPRINT])
    assert pending.count() == len(labelled)
    duplicates = {row[DOC_ID]: row[DETAIL] for row in dedup.apply(pending, dedup.DedupConfig()).duplicates.take_all()}
    truth = {d.doc_id: d.cluster for d in labelled}
    scores = pair_scores(truth, {d: duplicates.get(d, d) for d in truth})
    merged_negatives = sum(1 for d in labelled if d.kind == "header_negative" and d.doc_id in duplicates)
    print(json.dumps({"set": "english", **scores.as_dict(), "header_negatives_merged": merged_negatives}))
    assert scores.precision >= MIN_PRECISION and scores.recall >= MIN_RECALL, scores
