"""Column names, fate values and the docs/fates schemas: the output contract, defined once."""

import pyarrow as pa

DOC_ID = "doc_id"
SOURCE = "source"
RECORD = "record"
RAW = "raw"
TEXT = "text"
FINGERPRINT = "fingerprint"
WORDS = "words"
POS = "pos"  # optional, per word: LTP part-of-speech tag (segment.tasks)
NER = "ner"  # optional, per word: BIO named-entity tag (segment.tasks)
INPUT_IDS = "input_ids"
WORD_START = "word_start"
FATE = "fate"
DETAIL = "detail"

KEPT = "kept"
EXACT_DUP = "exact_dup"
NEAR_DUP = "near_dup"
FILTERED = "filtered"
REJECTED = "rejected"
FATES = (KEPT, EXACT_DUP, NEAR_DUP, FILTERED, REJECTED)

DOCS_SCHEMA = pa.schema([(DOC_ID, pa.string()), (SOURCE, pa.string()), (TEXT, pa.string()), (WORDS, pa.list_(pa.string()))])
FATES_SCHEMA = pa.schema(
    [(SOURCE, pa.string()), (RECORD, pa.int64()), (DOC_ID, pa.string()), (FATE, pa.string()), (DETAIL, pa.string())]
)
TAG_COLUMNS = (POS, NER)  # docs columns in this order, only when segment.tasks asks for them

# dedup/*.parquet: one row per member of each duplicate cluster, its kept document included
CLUSTER = "cluster"  # int64: xxh3-64 of the kept doc_id
SIZE = "size"  # members of the cluster, the kept one included
KEPT_DOC_ID = "kept_doc_id"
JACCARD = "jaccard"  # estimated Jaccard with the kept document (MinHash sketches); null when MinHash is off
DEDUP_SCHEMA = pa.schema(
    [
        (CLUSTER, pa.int64()),
        (SIZE, pa.int64()),
        (KEPT_DOC_ID, pa.string()),
        (DOC_ID, pa.string()),
        (SOURCE, pa.string()),
        (RECORD, pa.int64()),
        (FATE, pa.string()),
        (JACCARD, pa.float64()),
    ]
)


def docs_schema(tasks=()) -> pa.Schema:
    """DOCS_SCHEMA plus a list<string> column for each tag task segmentation ran (``pos``, ``ner``)."""
    return pa.schema([*DOCS_SCHEMA, *((name, pa.list_(pa.string())) for name in TAG_COLUMNS if name in tasks)])
