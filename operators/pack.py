"""Pack: cut the documents' token stream into training examples, RoBERTa FULL-SENTENCES style.

Documents are walked in order. Each example is ``[CLS] tokens [SEP]``, at most ``max_seq_len``
long; where one document ends inside an example, a ``[SEP]`` separates it from the next (a
document ending exactly at an example's end needs none). A document longer than the room left is
continued in the next example, cut before its last word start that fits, so one whole word stays
in one example; only a word longer than a whole example is cut inside (the continuation then
starts with ``word_start`` false). So examples may stop a word short of ``max_seq_len``. No token
is dropped or reordered, no example is padded, and empty documents add nothing. ``word_start`` is
true for ``[CLS]`` and ``[SEP]``.

Remainder policy: examples never span Ray batches (``tokenize.batch_size`` documents). The last
example of each batch, usually partly filled, is emitted as a shorter example: never dropped,
never padded. So there is at most one short example per batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from operators.columns import INPUT_IDS, WORD_START
from operators.tokenize import TokenizeConfig, VocabInfo, id_type

if TYPE_CHECKING:
    import ray.data

Example = tuple[np.ndarray, np.ndarray]  # (input_ids, word_start), same length


def example_schema(ids: pa.DataType) -> pa.Schema:
    """The columns of a packed example, exactly."""
    return pa.schema([pa.field(INPUT_IDS, pa.list_(ids)), pa.field(WORD_START, pa.list_(pa.bool_()))])


def shard_schema(
    tokenizer_spec: str,
    vocab_sha256: str,
    vocab_size: int,
    segment_model: str,
    max_seq_len: int,
    packing: str = "full",
) -> pa.Schema:
    """The schema of ``shards/*.arrow``, with metadata naming what made the examples."""
    return example_schema(id_type(vocab_size)).with_metadata(
        {
            "tokenizer": tokenizer_spec,
            "vocab_sha256": vocab_sha256,
            "vocab_size": str(vocab_size),
            "segment_model": segment_model,
            "max_seq_len": str(max_seq_len),
            "packing": packing,
        }
    )


@dataclass(frozen=True)
class FullPacker:
    """Core. A few numbers and no state between batches, so Ray ships it to plain tasks."""

    max_seq_len: int
    cls_id: int
    sep_id: int
    id_type: pa.DataType

    def __post_init__(self) -> None:
        if self.max_seq_len < 3:  # [CLS] token [SEP]; less could never make progress
            raise ValueError(f"max_seq_len must be at least 3, not {self.max_seq_len}")

    def pack(self, docs: Iterable[Example]) -> list[Example]:
        """Examples from documents given as (input_ids, word_start), in order."""
        body = self.max_seq_len - 2
        examples: list[Example] = []
        parts: list[Example] = []
        used = 0
        for ids, starts in docs:
            pos = 0
            while pos < len(ids):
                sep = 1 if used else 0
                take = _fit(starts, pos, body - used - sep, inside_word=not used)
                if take:
                    if sep:
                        parts.append(self._special(self.sep_id))
                    parts.append((ids[pos : pos + take], starts[pos : pos + take]))
                    used += sep + take
                    pos += take
                if pos < len(ids):  # the document goes on in the next example
                    examples.append(self._close(parts))
                    parts, used = [], 0
        if used:
            examples.append(self._close(parts))
        return examples

    def _special(self, token_id: int) -> Example:
        return np.array([token_id], dtype=self.id_type.to_pandas_dtype()), np.ones(1, dtype=bool)

    def _close(self, parts: list[Example]) -> Example:
        pieces = [self._special(self.cls_id), *parts, self._special(self.sep_id)]
        return (
            np.concatenate([ids for ids, _ in pieces]).astype(self.id_type.to_pandas_dtype(), copy=False),
            np.concatenate([starts for _, starts in pieces]),
        )

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Per-document token rows in, example rows out (a different count): input_ids and word_start only."""
        ids = batch.column(INPUT_IDS).combine_chunks()
        starts = batch.column(WORD_START).combine_chunks()
        examples = self.pack(zip(_lists(ids), _lists(starts)))
        schema = example_schema(self.id_type)
        return pa.Table.from_arrays(
            [
                pa.array([e_ids for e_ids, _ in examples], type=schema.field(INPUT_IDS).type),
                pa.array([e_starts for _, e_starts in examples], type=schema.field(WORD_START).type),
            ],
            schema=schema,
        )


def _fit(starts: np.ndarray, pos: int, room: int, inside_word: bool) -> int:
    """How many tokens from ``pos`` go into the room left: all, else up to the last word start that
    fits, else (only in an empty example, ``inside_word``) as many as fit."""
    left = len(starts) - pos
    if left <= room:
        return left
    if room <= 0:
        return 0
    word_starts = np.flatnonzero(starts[pos + 1 : pos + room + 1])
    if word_starts.size:
        return int(word_starts[-1]) + 1
    return room if inside_word else 0


def _lists(column: pa.ListArray) -> list[np.ndarray]:
    """One numpy array per row, sliced from the column's flat values without a copy per row."""
    values = column.values.to_numpy(zero_copy_only=False)
    offsets = column.offsets.to_numpy()
    return [values[a:b] for a, b in pairwise(offsets)]


def apply(ds: ray.data.Dataset, cfg: TokenizeConfig, vocab: VocabInfo) -> ray.data.Dataset:
    """The only code that touches ray.data: a task per batch of ``cfg.batch_size`` documents."""
    packer = FullPacker(
        max_seq_len=cfg.max_seq_len, cls_id=vocab.cls_id, sep_id=vocab.sep_id, id_type=vocab.id_type
    )
    return ds.map_batches(packer, batch_size=cfg.batch_size, batch_format="pyarrow")
