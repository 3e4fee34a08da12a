"""The words a batch still lacks: the segment stage fills in only those.

A refresh sends its documents through the segment stage in their order with the words the
segmentation cache holds already attached (``pipeline.segmented_docs``): those rows keep their
words and tags, and only the others go to the model, so the cached and the new documents need no join
and no sort to come out together in order.
"""

from __future__ import annotations

from typing import Callable, Sequence

import pyarrow as pa

from operators.columns import TEXT, WORDS
from operators.segment.word_alignment import Tagged


def with_words(batch: pa.Table, tags: Sequence[str], tag: Callable[[list[str]], list[Tagged]]) -> pa.Table:
    """``batch`` with ``words`` and the ``tags`` columns (list<string>): a row's own where it has words
    already, else what ``tag`` gives for its text (one ``Tagged`` per text, in order), null for a null text.
    No row disappears; a batch whose rows all have their words comes back as it is."""
    names = (WORDS, *tags)
    texts = batch[TEXT].to_pylist()
    known = batch[WORDS].is_valid().to_pylist() if WORDS in batch.column_names else [False] * len(texts)
    todo = [i for i, (text, has) in enumerate(zip(texts, known)) if text is not None and not has]
    if not todo and WORDS in batch.column_names:
        return batch
    columns = {name: batch[name].to_pylist() if name in batch.column_names else [None] * len(texts) for name in names}
    for i, tagged in zip(todo, tag([texts[i] for i in todo])):
        for name in names:
            columns[name][i] = getattr(tagged, name)
    batch = batch.drop_columns([name for name in names if name in batch.column_names])
    for name in names:
        batch = batch.append_column(name, pa.array(columns[name], pa.list_(pa.string())))
    return batch
