"""Column names, fate values and the docs/fates schemas: the output contract, defined once."""

import pyarrow as pa

DOC_ID = "doc_id"
SOURCE = "source"
RECORD = "record"
RAW = "raw"
TEXT = "text"
FINGERPRINT = "fingerprint"
WORDS = "words"
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
