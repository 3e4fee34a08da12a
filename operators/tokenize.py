"""Tokenize: one BERT WordPiece pass over each normalized text, and the whole-word flag per token.

The text is tokenized whole, never word by word, so the model sees the tokens it will see at
fine-tuning time; the LTP words only decide ``word_start``. Offsets from the fast tokenizer point
into the original text, so lowercasing, accent stripping and dropped characters (control chars,
whitespace) cannot shift a token off its word. Text that spells a special token ("[SEP]",
"[MASK]") is tokenized as plain text: only the packer places structural tokens. The tokens come
from ``operators.char_tokens``: the tokenizer's own, its answer for each CJK character and
punctuation mark looked up in a table, and only the rest of the text tokenized.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tokenizers import Tokenizer

from operators.char_tokens import CharTokens, split_by_counts
from operators.columns import INPUT_IDS, TEXT, WORD_START, WORDS

if TYPE_CHECKING:
    import ray.data
    from transformers import PreTrainedTokenizerBase

PACKINGS = ("full", "doc", "none")
CONTINUATION_PREFIX = "##"
SENTENCE_START = "sentence_start"  # per-token column for ``packing: doc`` only; never written to shards
SENTENCE_ENDS = frozenset("。！？!?；")
CLOSERS = frozenset("”’」』）)》〉】\"'")  # closing quotes/brackets stay with the sentence they close
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
BERT_SPECIALS = ("[UNK]", "[CLS]", "[SEP]")
HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "config.json")
# Packing groups (``batch_size`` documents) per tokenizer batch: one task per group spent much of its time
# between tasks (465 tasks at bench/e2e.py's 16x input, when the tokenizer was an actor pool).
CALL_GROUPS = 8
PIECE_CHARS = 1 << 16  # characters per tokenizer call; longer texts are cut (see ``safe_cuts``)
_SAFE_CUT = re.compile(r"[ \n\u4e00-\u9fff]")  # BERT always starts a new word at these
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


@dataclass(frozen=True)
class TokenizeConfig:
    """YAML keys ``tokenize.<field>``. ``tokenizer``: hub id, local directory, or vocab.txt path.

    ``packing`` (see ``operators/pack.py``): ``full`` fills examples with consecutive documents;
    ``doc`` gives each document its own examples, long ones cut at sentence starts; ``none`` gives
    one example per document, truncated to ``max_seq_len``, with a ``chinese_ref`` column.
    """

    tokenizer: str = "hfl/chinese-roberta-wwm-ext"
    max_seq_len: int = 512
    packing: str = "full"
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.packing not in PACKINGS:
            raise ValueError(f"tokenize.packing must be one of {', '.join(PACKINGS)}, not {self.packing!r}")
        if self.max_seq_len < 3:
            raise ValueError(
                f"tokenize.max_seq_len must be at least 3 ([CLS] token [SEP]), not {self.max_seq_len}"
            )
        if self.batch_size < 1:
            raise ValueError(f"tokenize.batch_size must be at least 1, not {self.batch_size}")


class TokenizerLoadError(ValueError):
    """``tokenize.tokenizer`` names nothing loadable; the message is one line, fit for the CLI."""


def load_tokenizer(spec: str) -> PreTrainedTokenizerBase:
    """A fast tokenizer (offsets are required) from a vocab.txt path, a local directory, or a hub id.

    A directory holding only a vocab.txt is read as that file. A hub id works offline once cached.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return _from_vocab_file(path)
    if path.is_dir():
        if (path / "vocab.txt").is_file() and not any((path / name).exists() for name in HF_TOKENIZER_FILES):
            return _from_vocab_file(path / "vocab.txt")
        return _from_pretrained(str(path), f"cannot load a tokenizer from directory {spec}")
    if spec.endswith(".txt") or not HUB_ID.fullmatch(spec):
        raise TokenizerLoadError(f"tokenize.tokenizer: no such file or directory: {spec}")
    return _from_pretrained(
        spec,
        f"cannot fetch tokenizer {spec!r} from the hub (offline?); download it elsewhere and set "
        "tokenize.tokenizer to the local directory or its vocab.txt",
    )


def _from_vocab_file(path: Path) -> PreTrainedTokenizerBase:
    """Chinese BERT vocabs are uncased, and every CJK char is its own word before WordPiece."""
    from transformers import BertTokenizer  # transformers 5: the fast one; `vocab_file=` would be ignored

    try:
        tokenizer = BertTokenizer(vocab=str(path), do_lower_case=True, tokenize_chinese_chars=True)
    except Exception as err:  # the tokenizers library raises bare Exception on unreadable vocabs
        raise TokenizerLoadError(f"cannot read vocab file {path}: {_first_line(err)}") from err
    missing = set(BERT_SPECIALS) - set(tokenizer.backend_tokenizer.get_vocab(with_added_tokens=False))
    if missing:
        raise TokenizerLoadError(f"{path} is not a BERT vocab.txt: it lacks {', '.join(sorted(missing))}")
    return tokenizer


def _from_pretrained(spec: str, failure: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(spec)
    except (OSError, ValueError) as err:
        raise TokenizerLoadError(f"{failure}: {_first_line(err)}") from err
    if not tokenizer.is_fast:
        raise TokenizerLoadError(
            f"tokenizer {spec!r} is not a fast tokenizer; offsets need one (tokenizer.json)"
        )
    return tokenizer


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def vocab_in_id_order(tokenizer: PreTrainedTokenizerBase | Tokenizer) -> list[str]:
    """Tokens indexed by id (added tokens included); ids the vocab skips hold ""."""
    vocab = tokenizer.get_vocab()
    tokens = [""] * (max(vocab.values()) + 1)
    for token, token_id in vocab.items():
        tokens[token_id] = token
    return tokens


def vocab_sha256(tokenizer: PreTrainedTokenizerBase) -> str:
    """Names the vocab in shard metadata: sha256 of the tokens in id order, one a line, UTF-8."""
    text = "".join(f"{token}\n" for token in vocab_in_id_order(tokenizer))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def id_type(vocab_size: int) -> pa.DataType:
    """Token ids are stored as uint16 when every id fits (vocab_size <= 65536), else uint32."""
    return pa.uint16() if vocab_size <= 1 << 16 else pa.uint32()


@dataclass(frozen=True)
class VocabInfo:
    """What packing and the shard schema need from a tokenizer; small enough to ship to every worker."""

    spec: str
    sha256: str
    size: int
    cls_id: int
    sep_id: int
    special_ids: tuple[tuple[str, int], ...] = ()  # (token, id) of the BERT specials the vocab has

    @property
    def id_type(self) -> pa.DataType:
        return id_type(self.size)


def vocab_info(spec: str) -> VocabInfo:
    """Load the tokenizer once on the driver: fails early with TokenizerLoadError, and describes it."""
    tokenizer = load_tokenizer(spec)
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise TokenizerLoadError(f"tokenizer {spec!r} has no [CLS] or [SEP] token")
    return VocabInfo(
        spec=spec,
        sha256=vocab_sha256(tokenizer),
        size=len(vocab_in_id_order(tokenizer)),
        cls_id=tokenizer.cls_token_id,
        sep_id=tokenizer.sep_token_id,
        special_ids=special_ids(tokenizer),
    )


def special_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[tuple[str, int], ...]:
    """(token, id) for each of [PAD] [UNK] [CLS] [SEP] [MASK] that the vocab holds, in that order."""
    vocab = tokenizer.get_vocab()
    return tuple((token, vocab[token]) for token in SPECIAL_TOKENS if token in vocab)


def continuation_mask(tokenizer: PreTrainedTokenizerBase | Tokenizer) -> np.ndarray:
    """Per token id: true for a WordPiece continuation (``##...``)."""
    return np.array([t.startswith(CONTINUATION_PREFIX) for t in vocab_in_id_order(tokenizer)], dtype=bool)


def word_starts(
    token_ids: np.ndarray, token_starts: np.ndarray, word_lengths: Sequence[int] | np.ndarray, continuation: np.ndarray
) -> np.ndarray:
    """word_start per token: not a ## continuation (``continuation_mask``), and the token's first char is the
    first char of a word. ``token_starts`` (char positions) and the words (their lengths) cover the same
    text: one document, or a batch of documents end to end, whose words join to it exactly."""
    lengths = np.asarray(word_lengths, dtype=np.int64)
    first_chars = np.zeros(int(lengths.sum()) + 1, dtype=bool)
    first_chars[np.cumsum(lengths) - lengths] = True
    return ~continuation[token_ids] & first_chars[token_starts]


class Tokens(NamedTuple):
    """A batch's tokens, its documents end to end: ``counts`` says how many belong to each document.
    ``offsets`` are (start, end) characters in the token's own document."""

    ids: np.ndarray
    word_start: np.ndarray
    offsets: np.ndarray
    counts: np.ndarray

    def per_document(self, values: np.ndarray) -> list[np.ndarray]:
        return split_by_counts(values, self.counts)

    def as_lists(self, values: np.ndarray) -> pa.ListArray:
        """One list per document, built from the flat values without a Python object per token."""
        bounds = np.zeros(len(self.counts) + 1, dtype=np.int32)
        np.cumsum(self.counts, out=bounds[1:])
        return pa.ListArray.from_arrays(pa.array(bounds), pa.array(values))


class WholeWordTokenizer:
    """Core. Loads the tokenizer once (once per worker process: ``_tokenizer_for``) and encodes a whole batch in one call."""

    def __init__(self, cfg: TokenizeConfig, backend: Tokenizer | None = None):
        """``backend``: the fast tokenizer's own (``tokenizers``) object, when the caller has it; else it is
        loaded from ``cfg.tokenizer`` through transformers."""
        backend = backend or load_tokenizer(cfg.tokenizer).backend_tokenizer
        self._tokens = CharTokens(backend, split_special_tokens=True)  # module doc
        self._sentences = cfg.packing == "doc"
        self._continuation = continuation_mask(backend)
        self._id_dtype = id_type(len(self._continuation)).to_pandas_dtype()

    def encode(self, texts: list[str], words: list[list[str]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(input_ids, word_start) per document; ``words`` is each text's segmentation."""
        return [(ids, starts) for ids, starts, _ in self.encode_with_sentences(texts, words)]

    def encode_with_sentences(
        self, texts: list[str], words: list[list[str]]
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """(input_ids, word_start, sentence_start) per document; sentence_start only for ``packing: doc``."""
        tokens = self.tokens(texts, pa.array(words, pa.list_(pa.string())))
        sentences = self._sentence_starts(texts, tokens) if self._sentences else [None] * len(texts)
        return list(zip(tokens.per_document(tokens.ids), tokens.per_document(tokens.word_start), sentences))

    def tokens(self, texts: list[str], words: pa.Array) -> Tokens:
        """The batch's tokens and word_start flags, computed over all its documents at once."""
        if not pc.all(pc.equal(pc.binary_join(words, ""), pa.array(texts, pa.string())), min_count=0).as_py():
            raise ValueError("segmentation does not cover the text: the joined words differ from it")
        ids, offsets, counts = encode_bounded(self._tokens, texts)
        lengths = np.fromiter(map(len, texts), np.int64, len(texts))
        token_starts = offsets[:, 0] + np.repeat(np.cumsum(lengths) - lengths, counts)  # in the texts end to end
        word_lengths = pc.utf8_length(words.flatten()).to_numpy(zero_copy_only=False)
        starts = word_starts(ids, token_starts, word_lengths, self._continuation)
        return Tokens(ids.astype(self._id_dtype), starts, offsets, counts)

    def _sentence_starts(self, texts: list[str], tokens: Tokens) -> list[np.ndarray]:
        per_document = zip(texts, tokens.per_document(tokens.offsets), tokens.per_document(tokens.word_start))
        return [sentence_starts(text, offsets, starts) for text, offsets, starts in per_document]

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Batch in, batch out: adds input_ids and word_start to every row; no row disappears."""
        texts = batch.column(TEXT).to_pylist()
        tokens = self.tokens(texts, batch.column(WORDS).combine_chunks())
        out = batch.append_column(INPUT_IDS, tokens.as_lists(tokens.ids)).append_column(
            WORD_START, tokens.as_lists(tokens.word_start)
        )
        if self._sentences:
            sentences = self._sentence_starts(texts, tokens)
            out = out.append_column(SENTENCE_START, tokens.as_lists(np.concatenate([np.zeros(0, bool), *sentences])))
        return out


def safe_cuts(text: str, max_chars: int = PIECE_CHARS) -> list[int]:
    """Where to cut ``text`` into pieces of about ``max_chars`` that tokenize exactly as the whole text does.

    A cut goes before a space, a line break or a CJK ideograph: BERT's normalizer pads every such
    ideograph with spaces and its pre-tokenizer splits at whitespace, so no word (and no WordPiece
    ``##`` continuation) spans the cut, and the normalizer's steps (NFD, lowercasing, accent
    stripping) work character by character. A stretch with no such character is not cut.
    Returns the start of every piece after the first.
    """
    cuts, start = [], 0
    while len(text) - start > max_chars:
        end = start + max_chars
        cut = next((c for c in range(end, start + max_chars // 2, -1) if _SAFE_CUT.match(text, c)), None)
        if cut is None:
            found = _SAFE_CUT.search(text, end)
            if found is None:
                break
            cut = found.start()
        cuts.append(cut)
        start = cut
    return cuts


def encode_bounded(
    tokens: CharTokens, texts: list[str], max_chars: int = PIECE_CHARS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, offsets, tokens per text): the tokens of ``texts`` end to end, equal to one tokenizer call
    over the whole texts, in bounded memory.

    The tokenizer's time grows faster than the length of one text, and its output costs memory per
    token; so texts go in calls of about ``max_chars`` characters, long ones cut at ``safe_cuts``.
    """
    ids: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    offsets: list[np.ndarray] = [np.zeros((0, 2), dtype=np.int64)]
    owners: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]  # the text of each token
    call: list[tuple[int, int, str]] = []  # (text index, piece start, piece)
    size = 0

    def run() -> None:
        encoded = tokens.encode([piece for _, _, piece in call])
        ids.append(encoded.ids)
        offsets.append(encoded.offsets + np.repeat([start for _, start, _ in call], encoded.counts)[:, None])
        owners.append(np.repeat([index for index, _, _ in call], encoded.counts))

    for index, text in enumerate(texts):
        bounds = [0, *safe_cuts(text, max_chars), len(text)]
        for start, end in zip(bounds, bounds[1:]):
            call.append((index, start, text[start:end]))
            size += end - start
            if size >= max_chars:
                run()
                call, size = [], 0
    if call:
        run()
    return np.concatenate(ids), np.concatenate(offsets), np.bincount(np.concatenate(owners), minlength=len(texts))


def sentence_starts(text: str, offsets: np.ndarray, word_start: np.ndarray) -> np.ndarray:
    """Per token: true where a new sentence begins, so ``packing: doc`` may cut there.

    A sentence begins at a word start that follows a line break in the text, or that follows a
    token ending in 。！？!?； (closing quotes and brackets after it still belong to the sentence
    before). The first token is not marked: there is nothing to cut before it.
    """
    marks = np.zeros(len(offsets), dtype=bool)
    pending, previous_end = False, 0
    for i, (start, end) in enumerate(offsets):
        piece = text[start:end]
        if piece and piece[0] in CLOSERS and not ("\n" in text[previous_end:start]):
            previous_end = end
            continue  # a closer keeps a pending sentence end pending
        if i and word_start[i] and (pending or "\n" in text[previous_end:start]):
            marks[i] = True
        pending = bool(piece) and piece[-1] in SENTENCE_ENDS
        previous_end = end
    return marks


def apply(ds: ray.data.Dataset, cfg: TokenizeConfig) -> ray.data.Dataset:
    """The only code that touches ray.data: plain tasks, the tokenizer built once per worker process.

    Batches of ``CALL_GROUPS`` packing groups, whatever the blocks: a document's tokens do not depend
    on its batch, and the packer regroups the rows (``operators.pack.apply``). Tasks, not an actor
    pool: in the build's streaming pass the segmentation actors hold their CPUs, and a tokenizer
    actor holding another would leave none to the packer and the writer on a small machine. The
    tasks get the tokenizer's definition (its ``tokenizers`` JSON) from the driver and build it from
    that: importing transformers costs a worker process about 1 CPU second."""
    definition = load_tokenizer(cfg.tokenizer).backend_tokenizer.to_str()
    return ds.map_batches(
        _tokenize_batch,
        fn_kwargs={"cfg": cfg, "definition": definition},
        batch_size=batch_rows(cfg),
        batch_format="pyarrow",
        udf_modifying_row_count=False,
    )


def batch_rows(cfg: TokenizeConfig) -> int:
    """Documents per tokenizer call: ``CALL_GROUPS`` packing groups."""
    return cfg.batch_size * CALL_GROUPS


@functools.lru_cache(maxsize=2)
def _tokenizer_for(cfg: TokenizeConfig, definition: str) -> WholeWordTokenizer:
    """One tokenizer per Ray worker process and config: workers live for the whole build."""
    return WholeWordTokenizer(cfg, Tokenizer.from_str(definition))


def _tokenize_batch(batch: pa.Table, cfg: TokenizeConfig, definition: str) -> pa.Table:
    return _tokenizer_for(cfg, definition)(batch)
