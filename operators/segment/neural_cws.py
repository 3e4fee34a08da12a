"""Words from LTP's neural model without LTP's per-sentence Python loop (issue #24).

``ltp.pipeline(pieces, tasks=["cws"])`` spends its host time in Python: per-token loops over each
encoding's offsets, tag names looked up one by one, ``get_entities`` per sentence, and word-index
tensors built per sentence for tasks that a words-only call never runs. On a GPU that host work
leaves the device idle between forward passes. ``NeuralCws`` calls the same modules of the loaded
model (backbone, the cws processor and head: same weights, same label vocabulary) and does the rest
per batch:

- encoding: none of its own: the stage has tokenized each piece to cut it (``Piece``, with
  ``operators.char_tokens``: the tokenizer's tokens, CJK characters looked up in a table), so a
  batch's arrays are those ids between [CLS] and [SEP], padded as LTP pads them, filled in one go;
- the forward pass under ``torch.inference_mode`` (and ``torch.autocast`` to bf16 or fp16 when
  ``segment.precision`` asks: a near-tied tag may then flip, which ``bench/segment.py --precision``
  counts); the tags are the argmax of the head's logits on the device (or its CRF's Viterbi decode,
  when the head has one), copied back once per batch;
- decoding with numpy over the whole batch: the tokens LTP treats as characters (the first token of
  each character span), a word starting at the first of them and at every ``B-W`` tag, so the words
  are each piece cut at those characters' offsets: one slice per word, no loop per token.

On CUDA the host's work overlaps the device's: the forward pass of batch k is launched, its tags
come back by a non-blocking copy into pinned memory, and meanwhile the host decodes batch k-1 and
builds batch k+1 (``words``). On a CPU the forward pass is the host's work, one batch after another.

The words equal LTP's own output on every piece (``tests/test_neural_cws.py``). A model whose cws
labels are not ``B-W``/``I-W``, or an LTP with user words (LTP's hook re-cuts its words), keeps
LTP's own path (``usable``), as do the POS and NER tasks; so does a tokenizer that does not wrap a
text as [CLS] text [SEP] padded on the right, as BERT's and ELECTRA's do.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, NamedTuple

import numpy as np

WORD_BEGIN, WORD_INSIDE = "B-W", "I-W"  # LTP's cws labels
PRECISIONS = ("fp32", "bf16", "fp16")  # the forward pass's: fp32, or autocast to a half type
MODEL_INPUTS = {"input_ids", "token_type_ids", "attention_mask"}
_PROBE = "中文 Philammon 123"


class Piece(NamedTuple):
    """Part of a text that the neural model takes whole, with its tokens (no [CLS]/[SEP]) as the model's
    tokenizer cut it, so that no one encodes it again."""

    text: str
    ids: np.ndarray
    offsets: np.ndarray  # (tokens, 2): each token's character span in `text`

    @property
    def tokens(self) -> int:
        return len(self.ids)


def usable(ltp: Any) -> bool:
    """Whether ``NeuralCws`` gives this LTP's words exactly: B-W/I-W labels, no user words, and a
    tokenizer that wraps a text as [CLS] text [SEP] (type 0) and pads on the right."""
    tokenizer = ltp.tokenizer
    plain, wrapped = tokenizer(_PROBE, add_special_tokens=False), tokenizer(_PROBE)
    bert_style = (
        wrapped["input_ids"] == [tokenizer.cls_token_id, *plain["input_ids"], tokenizer.sep_token_id]
        and not any(wrapped.get("token_type_ids", []))
        and tokenizer.padding_side == "right"
        and set(tokenizer.model_input_names) <= MODEL_INPUTS
    )
    return bert_style and set(ltp.cws_vocab) == {WORD_BEGIN, WORD_INSIDE} and not len(ltp.hook)


@dataclass
class Encoded:
    """One batch on the host: the texts, the model's inputs and each content token's character span."""

    texts: list[str]
    inputs: dict[str, Any]  # torch tensors, as the tokenizer returns them: input_ids, attention_mask, ...
    starts: np.ndarray  # (batch, tokens): character start of each token between [CLS] and the last column
    ends: np.ndarray


class NeuralCws:
    """The fast path's core: pieces in, words per piece out, batch by batch."""

    def __init__(self, ltp: Any, device: str, precision: str = "fp32"):
        tokenizer = ltp.tokenizer
        self.cls_id, self.sep_id, self.pad_id = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
        self.input_names = tokenizer.model_input_names
        self.backbone = ltp.model.backbone
        self.processor = ltp.model.processor["cws"]
        self.head = ltp.model.task_heads["cws"]
        self.begin, self.inside = ltp.cws_vocab.index(WORD_BEGIN), ltp.cws_vocab.index(WORD_INSIDE)
        self.device = device
        self.precision = precision

    def encode(self, pieces: Sequence[Piece]) -> Encoded:
        """The batch's arrays as LTP's encoding gives them: [CLS] ids [SEP], padded to the longest."""
        import torch

        lengths = np.fromiter((piece.tokens for piece in pieces), dtype=np.int64, count=len(pieces))
        width = int(lengths.max(initial=0))
        rows = np.repeat(np.arange(len(pieces)), lengths)
        columns = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        ids = np.full((len(pieces), width + 2), self.pad_id, dtype=np.int64)
        ids[rows, columns + 1] = np.concatenate([piece.ids for piece in pieces]) if pieces else []
        spans = np.zeros((len(pieces), width, 2), dtype=np.int64)  # between [CLS] and the last column
        spans[rows, columns] = np.concatenate([piece.offsets for piece in pieces]) if pieces else np.zeros((0, 2))
        ids[:, 0] = self.cls_id
        ids[np.arange(len(pieces)), lengths + 1] = self.sep_id
        arrays = {
            "input_ids": ids,
            "token_type_ids": np.zeros_like(ids),
            "attention_mask": (np.arange(width + 2) < (lengths + 2)[:, None]).astype(np.int64),
        }
        inputs = {name: torch.from_numpy(arrays[name]) for name in self.input_names}
        if self.device == "cuda":
            inputs = {name: tensor.pin_memory() for name, tensor in inputs.items()}
        return Encoded([piece.text for piece in pieces], inputs, spans[..., 0], spans[..., 1])

    def tags(self, batch: Encoded) -> tuple[Any, Any]:
        """The forward pass and the tag of each token: a (batch, tokens) host tensor and, on CUDA, the
        event after which the non-blocking copy into it has landed (``_decoded`` waits for it)."""
        import torch

        half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        device_type = "cuda" if self.device == "cuda" else "cpu"
        with torch.inference_mode(), torch.autocast(device_type, dtype=half, enabled=half is not None):
            inputs = {name: tensor.to(self.device, non_blocking=True) for name, tensor in batch.inputs.items()}
            outputs = self.backbone(**inputs)
            hidden, mask = self.processor(outputs=outputs, attention_mask=inputs["attention_mask"],
                                          word_index=None, word_attention_mask=None)
            result = self.head(hidden, mask)
            if result.crf is not None:  # the CRF's own Viterbi decode, as LTP runs it
                decoded = result.crf.decode(torch.log_softmax(result.logits, dim=-1), mask)
                padded = np.full(tuple(mask.shape), self.inside, dtype=np.uint8)
                for row, row_tags in enumerate(decoded):
                    padded[row, : len(row_tags)] = row_tags
                return torch.from_numpy(padded), None
            tags = result.logits.argmax(dim=-1).to(torch.uint8)
            if self.device != "cuda":
                return tags, None
            host = torch.empty(tags.shape, dtype=tags.dtype, pin_memory=True)
            host.copy_(tags, non_blocking=True)
            landed = torch.cuda.Event()
            landed.record()
            return host, landed

    def decode(self, batch: Encoded, tags: np.ndarray) -> list[list[str]]:
        """Each piece cut where LTP's words start (module doc), for the whole batch at once."""
        starts, ends = batch.starts, batch.ends
        # LTP reads a row's tokens up to the first (0, 0) span ([SEP], padding), skips empty spans and
        # takes the first token of each run of tokens with the same span as one character
        before_end = ~np.logical_or.accumulate((starts == 0) & (ends == 0), axis=1)
        positions = np.flatnonzero((before_end & (starts != ends)).ravel())
        rows, flat_starts, flat_ends = positions // starts.shape[1], starts.ravel()[positions], ends.ravel()[positions]
        first = _run_starts(rows, flat_starts, flat_ends)
        rows, positions, flat_starts = rows[first], positions[first], flat_starts[first]
        word_start = _run_starts(rows) | (tags.ravel()[positions] == self.begin)
        rows, cuts = rows[word_start], flat_starts[word_start].tolist()
        bounds = np.searchsorted(rows, np.arange(len(batch.texts) + 1)).tolist()
        words = []
        for row, piece in enumerate(batch.texts):
            at = [*cuts[bounds[row] : bounds[row + 1]], len(piece)]
            words.append([piece[a:b] for a, b in pairwise(at)])
        return words

    def words(self, batches: Iterable[Sequence[Piece]]) -> Iterator[list[list[str]]]:
        """Words per piece of each batch, in order, one batch in flight: on CUDA the host builds batch
        k+1 and decodes batch k-1 while the device runs batch k (on a CPU each pass ends before the
        next starts). An error in one batch (a CUDA out-of-memory) comes after the words of every
        batch before it, so a caller can retry from that batch."""
        pending: tuple[Encoded, tuple[Any, Any]] | None = None
        for pieces in batches:
            encoded = self.encode(pieces)
            try:
                launched = (encoded, self.tags(encoded))
            except BaseException:
                if pending is not None:
                    yield self._decoded(*pending)
                raise
            if pending is not None:
                yield self._decoded(*pending)
            pending = launched
        if pending is not None:
            yield self._decoded(*pending)

    def _decoded(self, batch: Encoded, tags: tuple[Any, Any]) -> list[list[str]]:
        """``decode`` once the batch's tags have landed on the host."""
        host, landed = tags
        if landed is not None:
            landed.synchronize()
        return self.decode(batch, host.numpy())


def _run_starts(*columns: np.ndarray) -> np.ndarray:
    """Where a run of equal rows (all ``columns`` equal to the row before) starts: the first row and every
    row that differs from the one before."""
    starts = np.zeros(len(columns[0]), dtype=bool)
    starts[:1] = True
    for column in columns:
        starts[1:] |= column[1:] != column[:-1]
    return starts
