"""Pack: cut the documents' token stream into training examples (``tokenize.packing``).

``full`` (RoBERTa FULL-SENTENCES style, the default). Documents are walked in order. Each example
is ``[CLS] tokens [SEP]``, at most ``max_seq_len`` long; where one document ends inside an example,
a ``[SEP]`` separates it from the next (a document ending exactly at an example's end needs none).
A document longer than the room left is continued in the next example, cut before its last word
start that fits, so one whole word stays in one example; only a word longer than a whole example
is cut inside (the continuation then starts with ``word_start`` false). So examples may stop a word
short of ``max_seq_len``. No token is dropped or reordered, no example is padded, and empty
documents add nothing. ``word_start`` is true for ``[CLS]`` and ``[SEP]``.
Remainder policy: examples never span Ray batches (``tokenize.batch_size`` documents). The last
example of each batch, usually partly filled, is emitted as a shorter example: never dropped,
never padded. So there is at most one short example per batch.

``doc`` (one document per example, DOC-SENTENCES without crossing documents). A document that
fits is one example ``[CLS] doc [SEP]``. A longer one is cut greedily into several, each ending
before the last sentence start that fits (``operators.tokenize.sentence_starts``: after
。！？!?； and line breaks); a sentence longer than a whole example is cut before its last word
start that fits, and only a word longer than an example is cut inside. No token is dropped or
reordered; there is no remainder (every example is as long as its sentences make it).

``none`` (one document per example, for scripts written against transformers' ``mlm_wwm``
research example). Each non-empty document is one example ``[CLS] first max_seq_len-2 tokens
[SEP]``. Remainder policy: the tokens of a document past ``max_seq_len - 2`` are dropped (what
``truncation=True, max_length=max_seq_len`` does). The extra column ``chinese_ref`` (list<int32>)
lists, as ``run_chinese_ref.py`` defines it, the positions (``[CLS]`` = 0) of the tokens that
are Chinese characters continuing a multi-character Chinese word; see ``chinese_ref()``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from operators.columns import INPUT_IDS, WORD_START, WORDS
from operators.tokenize import SENTENCE_START, TokenizeConfig, VocabInfo, id_type, load_tokenizer, vocab_in_id_order

if TYPE_CHECKING:
    import ray.data

CHINESE_REF = "chinese_ref"
Example = tuple[np.ndarray, np.ndarray]  # (input_ids, word_start), same length


def example_schema(ids: pa.DataType, packing: str = "full") -> pa.Schema:
    """The columns of a packed example, exactly (``none`` adds ``chinese_ref``)."""
    fields = [pa.field(INPUT_IDS, pa.list_(ids)), pa.field(WORD_START, pa.list_(pa.bool_()))]
    if packing == "none":
        fields.append(pa.field(CHINESE_REF, pa.list_(pa.int32())))
    return pa.schema(fields)


def shard_schema(
    tokenizer_spec: str,
    vocab_sha256: str,
    vocab_size: int,
    segment_model: str,
    max_seq_len: int,
    packing: str = "full",
) -> pa.Schema:
    """The schema of ``shards/*.arrow``, with metadata naming what made the examples."""
    return example_schema(id_type(vocab_size), packing).with_metadata(
        {
            "tokenizer": tokenizer_spec,
            "vocab_sha256": vocab_sha256,
            "vocab_size": str(vocab_size),
            "segment_model": segment_model,
            "max_seq_len": str(max_seq_len),
            "packing": packing,
        }
    )


def shard_schema_for(vocab: VocabInfo, segment_model: str, cfg: TokenizeConfig) -> pa.Schema:
    """``shard_schema`` for a build, plus ``special_ids`` (JSON {token: id}) so that trainers need
    not load the tokenizer to find [PAD], [MASK] and the other specials."""
    schema = shard_schema(vocab.spec, vocab.sha256, vocab.size, segment_model, cfg.max_seq_len, cfg.packing)
    return schema.with_metadata({**schema.metadata, b"special_ids": json.dumps(dict(vocab.special_ids)).encode()})


class _ExampleTable:
    """Turns a list of examples into the typed example table of one packing mode."""

    def _table(self, examples: list[Example], packing: str = "full", refs: list[list[int]] | None = None) -> pa.Table:
        schema = example_schema(self.id_type, packing)
        arrays = [
            pa.array([e_ids for e_ids, _ in examples], type=schema.field(INPUT_IDS).type),
            pa.array([e_starts for _, e_starts in examples], type=schema.field(WORD_START).type),
        ]
        if refs is not None:
            arrays.append(pa.array(refs, type=schema.field(CHINESE_REF).type))
        return pa.Table.from_arrays(arrays, schema=schema)


@dataclass(frozen=True)
class FullPacker(_ExampleTable):
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
        return self._table(self.pack(zip(_lists(ids), _lists(starts))))


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


@dataclass(frozen=True)
class DocPacker(_ExampleTable):
    """Core of ``packing: doc``: each document on its own, long ones cut at sentence starts."""

    max_seq_len: int
    cls_id: int
    sep_id: int
    id_type: pa.DataType

    def __post_init__(self) -> None:
        if self.max_seq_len < 3:
            raise ValueError(f"max_seq_len must be at least 3, not {self.max_seq_len}")

    def pack(self, docs: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> list[Example]:
        """Examples from documents given as (input_ids, word_start, sentence_start), in order."""
        body = self.max_seq_len - 2
        dtype = self.id_type.to_pandas_dtype()
        one = np.ones(1, dtype=bool)
        examples: list[Example] = []
        for ids, starts, sentences in docs:
            pos = 0
            while pos < len(ids):
                take = _fit(sentences, pos, body, inside_word=False) or _fit(starts, pos, body, inside_word=True)
                examples.append(
                    (
                        np.concatenate([[self.cls_id], ids[pos : pos + take], [self.sep_id]]).astype(dtype),
                        np.concatenate([one, starts[pos : pos + take], one]),
                    )
                )
                pos += take
        return examples

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Per-document token rows (with sentence_start) in, example rows out."""
        columns = [_lists(batch.column(name).combine_chunks()) for name in (INPUT_IDS, WORD_START, SENTENCE_START)]
        return self._table(self.pack(zip(*columns)))


class TruncatingPacker(_ExampleTable):
    """Core of ``packing: none``: one truncated example per document, with ``chinese_ref``.

    Needs the vocab's token strings for ``chinese_ref``: pass them as ``tokens``, or they are
    read from ``vocab.spec`` on first use.
    """

    def __init__(self, max_seq_len: int, vocab: VocabInfo, tokens: list[str] | None = None):
        if max_seq_len < 3:
            raise ValueError(f"max_seq_len must be at least 3, not {max_seq_len}")
        self.max_seq_len, self.vocab, self.id_type = max_seq_len, vocab, vocab.id_type
        self._tokens = tokens

    @property
    def tokens(self) -> list[str]:
        if self._tokens is None:
            self._tokens = vocab_in_id_order(load_tokenizer(self.vocab.spec))
        return self._tokens

    def pack(self, docs: Iterable[tuple[np.ndarray, np.ndarray, list[str]]]) -> tuple[list[Example], list[list[int]]]:
        """(examples, chinese_ref per example) from (input_ids, word_start, words) per document."""
        body = self.max_seq_len - 2
        dtype = self.id_type.to_pandas_dtype()
        one = np.ones(1, dtype=bool)
        examples, refs = [], []
        for ids, starts, words in docs:
            if not len(ids):
                continue
            example_ids = np.concatenate([[self.vocab.cls_id], ids[:body], [self.vocab.sep_id]]).astype(dtype)
            examples.append((example_ids, np.concatenate([one, starts[:body], one])))
            refs.append(chinese_ref([self.tokens[i] for i in example_ids], words))
        return examples, refs

    def __call__(self, batch: pa.Table) -> pa.Table:
        ids = _lists(batch.column(INPUT_IDS).combine_chunks())
        starts = _lists(batch.column(WORD_START).combine_chunks())
        examples, refs = self.pack(zip(ids, starts, batch.column(WORDS).to_pylist()))
        return self._table(examples, "none", refs)


def is_chinese_char(char: str) -> bool:
    """The CJK ranges of BERT's tokenizer (and of ``run_chinese_ref.py``)."""
    cp = ord(char)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def _all_chinese(text: str) -> bool:
    return all(map(is_chinese_char, text))


def chinese_ref(tokens: list[str], words: list[str]) -> list[int]:
    """The ``chinese_ref`` of one example, as transformers' ``run_chinese_ref.py`` defines it.

    ``tokens`` are the example's token strings ([CLS] at 0), ``words`` the document's
    segmentation. The multi-character, all-Chinese words of the document form a set; walking
    the tokens left to right, a run of tokens that starts with a Chinese token and spells the
    longest word of that set is one word, and its tokens after the first are continuations.
    A continuation (or a WordPiece ``##`` piece) that is a single Chinese character is listed.
    Like the script, this re-matches the word set rather than the word positions, so where the
    same characters were segmented differently within one document the two can disagree with
    ``word_start``; the project's own collators use ``word_start``.
    """
    vocabulary = {word for word in words if len(word) > 1 and _all_chinese(word)}
    longest = max(map(len, vocabulary), default=0)
    continuation = [token.startswith("##") for token in tokens]
    start = 0
    while start < len(tokens):
        step = 1
        if longest and _all_chinese(tokens[start]):
            for length in range(min(len(tokens) - start, longest), 1, -1):
                if "".join(tokens[start : start + length]) in vocabulary:
                    continuation[start + 1 : start + length] = [True] * (length - 1)
                    step = length
                    break
        start += step
    return [
        i
        for i, (token, cont) in enumerate(zip(tokens, continuation))
        if cont and len(piece := token.removeprefix("##")) == 1 and is_chinese_char(piece)
    ]


def apply(ds: ray.data.Dataset, cfg: TokenizeConfig, vocab: VocabInfo) -> ray.data.Dataset:
    """The only code that touches ray.data: a task per batch of ``cfg.batch_size`` documents.

    ``none`` needs the vocab's token strings for ``chinese_ref``: they are read here, once, and
    travel with the packer (a few hundred kB), so packing stays a plain task. An actor pool would
    hold a CPU for good, and on a 2-CPU machine it starves the plain tasks beside the segmentation pool.
    Every packer batch is a block of exactly ``cfg.batch_size`` documents in the docs table's order
    (the last one shorter), whatever blocks the tokenizer made: so the examples depend only on that
    order, and a refresh or a re-pack packs as a full build does. When the map before it takes
    batches of a multiple of ``cfg.batch_size`` rows (pass 2 counts the tokenized documents so),
    Ray fuses this repartition, the packer and the shard writer into that map's tasks: each task
    packs and writes the documents it maps (2,048 with the default sizes), and no task holds more.
    """
    ds = ds.repartition(target_num_rows_per_block=cfg.batch_size, strict=True)
    if cfg.packing == "none":
        tokens = vocab_in_id_order(load_tokenizer(vocab.spec))
        packer = TruncatingPacker(cfg.max_seq_len, vocab, tokens)
        return ds.map_batches(packer, batch_size=cfg.batch_size, batch_format="pyarrow")
    core = DocPacker if cfg.packing == "doc" else FullPacker
    packer = core(max_seq_len=cfg.max_seq_len, cls_id=vocab.cls_id, sep_id=vocab.sep_id, id_type=vocab.id_type)
    return ds.map_batches(packer, batch_size=cfg.batch_size, batch_format="pyarrow")
