"""Segment: LTP word segmentation, reassembled so that ``"".join(words) == text`` always; a neural model on an
actor pool, the legacy model on the CPU in plain tasks (``runs_in_tasks``).

LTP's neural model truncates at 512 tokens and pads a call to its longest input, so documents go in as
sentence pieces, sorted by length. The legacy perceptron has no length limit, but its memory grows by
~400 bytes a character of one call: texts up to ``LEGACY_PIECE_CHARS`` go in whole, longer ones in
pieces of about that size cut after sentence ends, and each call takes at most ``LEGACY_CALL_CHARS``.
LTP's words are then mapped back onto each text (``operators.segment.word_alignment``). Optionally
(``tasks``) each word also gets LTP's part-of-speech and named-entity tags, for LERT-style pretraining.

Words only from a neural model go through ``operators.segment.neural_cws``: the model's own modules with
batch-wise encoding and decoding instead of ``ltp.pipeline``'s per-sentence Python (the same words);
POS and NER, and models with user words, take ``ltp.pipeline``.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa

from operators.char_tokens import CharTokens
from operators.columns import TAG_COLUMNS
from operators.segment import neural_cws
from operators.segment.bert_words import with_bert_words
from operators.segment.ltp_loading import (
    TASKS,
    SegmentModelError,
    check_model,
    config_tasks,
    load_legacy,
    load_ltp,
    one_line,
    read_user_words,
)
from operators.segment.missing_words import with_words
from operators.segment.neural_cws import Piece
from operators.segment.word_alignment import Tagged, align, align_words

log = logging.getLogger(__name__)

NO_MODEL = "none"  # no LTP: BERT's own words (operators.segment.bert_words), for English and other space-delimited text
MAX_PIECE_TOKENS = 510  # LTP encodes with max_length=512, and [CLS] + [SEP] take two.
LEGACY_PIECE_CHARS = 1 << 15  # longer texts go to the legacy model in pieces (module doc)
LEGACY_CALL_CHARS = 1 << 17  # characters per legacy LTP call

_SENTENCE = re.compile(r"[^。！？!?；;…\r\n]*(?:[。！？!?；;…]+[”’」』）)】》]*)?\s*")
_SOFT_BREAK = re.compile(r"[，,、：:\s]")
_SEGMENT_ERROR = re.compile(r"\b(SegmentModelError|SegmentOutOfMemory): (\S.*)$", re.MULTILINE)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class SegmentConfig:
    """LTP model, tasks and actor resources.

    `model` is a hub id or a local dir (neural or legacy), or `none` for BERT's own words (no LTP).
    `tasks` is `["cws"]` (words only), plus `"pos"` and/or `"ner"` for per-word tags. `num_actors` is
    the pool size, or its minimum when `max_actors` is set (Ray Data then scales the pool between the
    two). `user_words` is a file of words, one a line, for LTP's `add_words` (LTP joins one only
    where it starts on a word start of the model). `threads_per_actor` is the CPUs Ray reserves per CPU actor (a GPU actor reserves
    none, so GPU nodes can offer Ray no CPUs and CPU stages never land on them), the legacy model's
    Rust thread pool (1 = no pool) and torch's CPU threads. `max_batch_tokens` bounds the padded tokens of
    one neural forward pass; after a CUDA out-of-memory error an actor halves it and retries.
    `precision` is the fast path's forward pass (``neural_cws``): fp32, or bf16/fp16 under autocast,
    which can flip a near-tied tag; it needs words only (no pos/ner, no user words) and a neural model.
    """

    model: str = "LTP/small"
    num_gpus: float = 0.0
    batch_size: int = 64
    num_actors: int = 1
    max_actors: int | None = None
    user_words: str | None = None
    threads_per_actor: int = 1
    max_batch_tokens: int = 16384
    tasks: tuple[str, ...] = ("cws",)
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.model == NO_MODEL and (self.tasks != ("cws",) or self.user_words is not None):
            raise ValueError("segment.model none gives BERT's words only: no tasks but cws, no user_words")
        for name in ("batch_size", "num_actors", "threads_per_actor"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_actors is not None and self.max_actors < self.num_actors:
            raise ValueError(f"max_actors must be at least num_actors ({self.num_actors})")
        if self.num_gpus < 0:
            raise ValueError("num_gpus must not be negative")
        if self.max_batch_tokens < MAX_PIECE_TOKENS + 2:
            raise ValueError(f"max_batch_tokens must be at least {MAX_PIECE_TOKENS + 2}, one full piece")
        unknown = [task for task in self.tasks if task not in TASKS]
        if unknown or "cws" not in self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks must list cws, optionally with pos and ner, each once; got {list(self.tasks)}")
        if self.precision not in neural_cws.PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(neural_cws.PRECISIONS)}, not {self.precision!r}")
        if self.precision != "fp32" and (self.tasks != ("cws",) or self.user_words is not None or self.model == NO_MODEL):
            raise ValueError(f"precision {self.precision} is the neural fast path's: words only (tasks [cws]), "
                             "no user_words, an LTP model")


class SegmentOutOfMemory(SegmentModelError):
    """A single piece does not fit in GPU memory even alone: the model cannot run with the memory given."""


def stage_error(error: BaseException) -> SegmentModelError | None:
    """The segment error behind a Ray error (an actor that could not load the model, a batch out of memory).

    Ray hands the driver an ActorDiedError or a RayTaskError whose text holds the traceback; this
    finds our one-line message in the chain (or in that text), so the CLI can print just it.
    """
    chain, seen = [error], set()
    while chain:
        current = chain.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if type(current) in (SegmentModelError, SegmentOutOfMemory):
            return current
        match = _SEGMENT_ERROR.search(_ANSI.sub("", str(current)))
        if match:
            return (SegmentOutOfMemory if match.group(1) == "SegmentOutOfMemory" else SegmentModelError)(match.group(2))
        chain += [getattr(current, "cause", None), current.__cause__, current.__context__]
    return None


def check_config(cfg: SegmentConfig) -> None:
    """What the driver checks before starting Ray: the model and its tasks, and the user-words file if any."""
    if cfg.model == NO_MODEL:
        return
    config = check_model(cfg.model)
    supported = config_tasks(config)
    missing = [task for task in cfg.tasks if task not in supported]
    if missing:
        raise SegmentModelError(
            f"segment.tasks asks for {missing[0]!r} but segment.model {cfg.model!r} only has {sorted(supported)}"
        )
    if cfg.user_words is not None and not Path(cfg.user_words).expanduser().is_file():
        raise SegmentModelError(f"segment.user_words {cfg.user_words!r}: no such file")


def actor_device(num_gpus: float, cuda_available: bool) -> str:
    """An actor that was given a GPU (Ray sets CUDA_VISIBLE_DEVICES to it) runs on it; others on the CPU."""
    return "cuda" if num_gpus > 0 and cuda_available else "cpu"


def split_sentences(text: str) -> list[str]:
    """Cut after sentence ends (with closing quotes/brackets) and line breaks; trailing whitespace stays."""
    return [match.group() for match in _SENTENCE.finditer(text) if match.group()]


def legacy_pieces(text: str, max_chars: int = LEGACY_PIECE_CHARS) -> list[str]:
    """`text` whole when it has at most `max_chars` characters; else pieces of about that size, cut after
    sentence ends (a longer sentence after its last soft break, else anywhere), never inside a whitespace run.
    Joined, the pieces are `text`."""
    if len(text) <= max_chars:
        return [text]
    pieces: list[str] = []
    for sentence in split_sentences(text):
        while len(sentence) > max_chars:
            soft = [m.end() for m in _SOFT_BREAK.finditer(sentence, max_chars // 2, max_chars)]
            cut = soft[-1] if soft else max_chars
            while cut < len(sentence) and sentence[cut].isspace() and sentence[cut - 1].isspace():
                cut += 1
            pieces.append(sentence[:cut])
            sentence = sentence[cut:]
        if pieces and len(pieces[-1]) + len(sentence) <= max_chars:
            pieces[-1] += sentence
        elif sentence:
            pieces.append(sentence)
    return pieces


def char_groups(texts: list[str], max_chars: int) -> list[list[str]]:
    """Consecutive texts in groups of at most `max_chars` characters (a longer text alone)."""
    groups: list[list[str]] = []
    size = 0
    for text in texts:
        if not groups or size + len(text) > max_chars:
            groups.append([])
            size = 0
        groups[-1].append(text)
        size += len(text)
    return groups


def split_long_sentence(sentence: str, ids: np.ndarray, offsets: np.ndarray, word_first: np.ndarray,
                        max_tokens: int) -> list[Piece]:
    """Cut a tokenized sentence into pieces of at most `max_tokens` tokens.

    Cuts fall before a token that starts a BERT word, so each piece re-tokenizes to the same tokens;
    the latest such cut after a comma or a space wins when it keeps at least half the window.
    """
    if len(ids) <= max_tokens:
        return [Piece(sentence, ids, offsets)]
    cuts = [0]
    while len(offsets) - cuts[-1] > max_tokens:
        first_token = cuts[-1]
        limit = first_token + max_tokens
        starts = (np.flatnonzero(word_first[first_token + 1 : limit + 1]) + first_token + 1).tolist() or [limit]
        soft = [k for k in starts if _SOFT_BREAK.search(sentence, offsets[k - 1][0], offsets[k][0])]
        cuts.append(soft[-1] if soft and soft[-1] - first_token >= max_tokens // 2 else starts[-1])
    pieces = []
    for first, end in zip(cuts, [*cuts[1:], len(ids)]):
        first_char = offsets[first][0] if first else 0
        end_char = offsets[end][0] if end < len(ids) else len(sentence)
        pieces.append(Piece(sentence[first_char:end_char], ids[first:end], offsets[first:end] - first_char))
    return pieces


def piece_tokens(tokenizer: Any) -> CharTokens:
    """The neural model's tokenizer as ``model_pieces`` takes it: text that spells a special token is
    that token, as in LTP's own call."""
    return CharTokens(tokenizer.backend_tokenizer, split_special_tokens=False)


def model_pieces(texts: Sequence[str], tokens: CharTokens, max_tokens: int = MAX_PIECE_TOKENS) -> list[list[Piece]]:
    """The pieces of each text that the neural model takes whole, tokenized by the model's own tokenizer
    (``tokens``, its ``CharTokens``) all at once."""
    sentences = [split_sentences(text) for text in texts]
    flat = [sentence for parts in sentences for sentence in parts]
    encoded = tokens.encode(flat)
    per_sentence = iter(zip(flat, *(encoded.per_text(column) for column in (encoded.ids, encoded.offsets,
                                                                              encoded.word_first))))
    return [[piece for _ in parts for piece in split_long_sentence(*next(per_sentence), max_tokens)] for parts in sentences]


def length_batches(token_counts: Sequence[int], max_batch_tokens: int) -> list[list[int]]:
    """Group indices by ascending length so a padded batch ([CLS]/[SEP] included) stays within the budget."""
    batches: list[list[int]] = []
    for index in sorted(range(len(token_counts)), key=lambda i: token_counts[i]):
        if not batches or (token_counts[index] + 2) * (len(batches[-1]) + 1) > max_batch_tokens:
            batches.append([])
        batches[-1].append(index)
    return batches


def padded_tokens(token_counts: Sequence[int]) -> int:
    """Tokens of one padded forward pass over pieces of these lengths, [CLS]/[SEP] included."""
    return len(token_counts) * (max(token_counts, default=0) + 2)


def run_batches(
    token_counts: Sequence[int],
    max_batch_tokens: int,
    run: Callable[[list[list[int]]], Iterator[list[Any]]],
    retry_on: tuple[type[BaseException], ...],
    on_retry: Callable[[int, BaseException], None] = lambda budget, error: None,
) -> tuple[list[Any], int]:
    """Run length-sorted batches; on a `retry_on` error, halve the budget and re-split the batch that failed.

    `run` takes the batches (lists of indices) and yields each one's outputs in order, so it may work
    on several at once; an error raised after k yields is the (k+1)-th batch's. Returns (one result
    per index, the budget that worked). A batch of one piece that still fails raises
    SegmentOutOfMemory: nothing smaller can be tried.
    """
    results: list[Any] = [None] * len(token_counts)
    pending = length_batches(token_counts, max_batch_tokens)
    while pending:
        done = 0
        try:
            for outputs in run(pending):
                for index, output in zip(pending[done], outputs):
                    results[index] = output
                done += 1
            pending = []
        except retry_on as error:
            group, pending = pending[done], pending[done + 1 :]
            if len(group) == 1:
                raise SegmentOutOfMemory(
                    f"segment: out of GPU memory on a single piece of {token_counts[group[0]]} tokens "
                    f"(batch budget already down to {max_batch_tokens} padded tokens): give each actor more "
                    "GPU memory (a larger segment.num_gpus, so fewer actors share a GPU) or use a smaller model"
                ) from None
            max_batch_tokens = max(MAX_PIECE_TOKENS + 2, padded_tokens([token_counts[i] for i in group]) // 2)
            on_retry(max_batch_tokens, error)
            split = length_batches([token_counts[i] for i in group], max_batch_tokens)
            if len(split) == 1:  # the halved budget still fits them all: halve the batch itself
                split = [split[0][: len(group) // 2], split[0][len(group) // 2 :]]
            pending = [[group[k] for k in part] for part in split] + pending
    return results, max_batch_tokens


class LtpSegmenter:
    """Core: loads LTP once per actor or worker process; documents in, words (and tags) out."""

    def __init__(self, cfg: SegmentConfig):
        self.cfg = cfg
        config = check_model(cfg.model)
        missing = [task for task in cfg.tasks if task not in config_tasks(config)]
        if missing:
            raise SegmentModelError(f"segment.tasks asks for {missing[0]!r} but segment.model {cfg.model!r} lacks it")
        self._neural = config["nerual"]
        self._tags = docs_columns(cfg)
        self._run_tasks = ["cws", *self._tags]
        self.max_batch_tokens = cfg.max_batch_tokens  # lowered for good after an out-of-memory retry
        self.oom_retries = 0
        if self._neural:
            import torch

            self.device = actor_device(cfg.num_gpus, torch.cuda.is_available())
            if cfg.num_gpus > 0 and self.device == "cpu":
                log.warning("segment: actor was given %s GPU but CUDA is not available; running on CPU", cfg.num_gpus)
            self._ltp = load_ltp(cfg.model, self.device)
            self._tokens = piece_tokens(self._ltp.tokenizer)
            self._oom_types: tuple[type[BaseException], ...] = (torch.cuda.OutOfMemoryError,)
        else:  # the legacy perceptron runs on CPU, without torch
            self.device = "cpu"
            self._ltp = load_legacy(cfg.model)
            self._oom_types = ()
        if cfg.user_words is not None:
            self._ltp.add_words(read_user_words(cfg.user_words))
        # words only, from a model the fast path reproduces: LTP's modules without LTP's loop
        words_only = self._neural and not self._tags and neural_cws.usable(self._ltp)
        self._fast = neural_cws.NeuralCws(self._ltp, self.device, cfg.precision) if words_only else None
        if cfg.precision != "fp32" and self._fast is None:
            raise SegmentModelError(f"segment.precision {cfg.precision} needs the neural fast path (a neural LTP model "
                                    f"with B-W/I-W labels and a BERT-style tokenizer); segment.model {cfg.model!r} "
                                    "does not take it: set precision fp32")

    def segment(self, texts: list[str]) -> list[list[str]]:
        """One word list per text; the result for a text does not depend on the other texts."""
        return [tagged.words for tagged in self.tag(texts)]

    def tag(self, texts: list[str]) -> list[Tagged]:
        """Words, and the tags of `cfg.tasks`, per text; independent of the other texts."""
        if self._neural:
            return self._tag_neural(texts)
        per_text = [legacy_pieces(text, LEGACY_PIECE_CHARS) for text in texts]  # bounded memory (module doc)
        calls = char_groups([piece for pieces in per_text for piece in pieces], LEGACY_CALL_CHARS)
        return self._joined(per_text, [tagged for call in calls for tagged in self._tag_legacy(call)])

    def _joined(self, per_text: list[list[Any]], piece_tags: list[Tagged]) -> list[Tagged]:
        """One Tagged per text from the Tagged of its pieces, in order."""
        parts_of = iter(piece_tags)
        tagged = []
        for pieces in per_text:
            parts = [next(parts_of) for _ in pieces]
            if len(parts) == 1:
                tagged.append(parts[0])
                continue
            tagged.append(
                Tagged(
                    [word for part in parts for word in part.words],
                    [tag for part in parts for tag in part.pos] if "pos" in self._tags else None,
                    [tag for part in parts for tag in part.ner] if "ner" in self._tags else None,
                )
            )
        return tagged

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Adds `words` (and `pos`/`ner`), list<string> columns, to the rows that lack them (rows that come with
        a segmentation cache's words keep them: ``missing_words``); no row disappears. Arrow in and out: the
        other columns pass through untouched, and the words become one Arrow array in C."""
        return with_words(batch, self._tags, self.tag)

    def _model_output(self, output: Any) -> list[tuple[list[str], ...]]:
        """(words, *tags) per input of one LTP call, tags in `self._tags` order."""
        return list(zip(output.cws, *(getattr(output, task) for task in self._tags)))

    def _align(self, text: str, output: tuple[list[str], ...] | None) -> Tagged:
        """Words (and tags) of one text or piece; `output` None where LTP was not called (nothing to segment)."""
        words, *tags = output or ([], *([] for _ in self._tags))
        if not tags:  # words only: the hot path of a build
            return Tagged(align_words(text, words))
        tagged = dict(zip(self._tags, tags))
        return align(text, words, tagged.get("pos"), tagged.get("ner"))

    def _tag_legacy(self, texts: list[str]) -> list[Tagged]:
        todo = [i for i, text in enumerate(texts) if text and not text.isspace()]
        found: dict[int, tuple[list[str], ...]] = {}
        if todo:
            parallel = self.cfg.threads_per_actor > 1
            output = self._ltp.pipeline([texts[i] for i in todo], tasks=self._run_tasks, parallelism=parallel)
            found = dict(zip(todo, self._model_output(output)))
        return [self._align(text, found.get(i)) for i, text in enumerate(texts)]

    def _tag_neural(self, texts: list[str]) -> list[Tagged]:
        per_text = model_pieces(texts, self._tokens)
        flat = [piece for pieces in per_text for piece in pieces]
        todo = [i for i, piece in enumerate(flat) if piece.tokens > 0]
        outputs, self.max_batch_tokens = run_batches(
            [flat[i].tokens for i in todo], self.max_batch_tokens,
            lambda groups: self._run_neural([[flat[todo[g]] for g in group] for group in groups]),
            self._oom_types, self._record_oom,
        )
        found = dict(zip(todo, outputs))
        return self._joined(per_text, [self._align(piece.text, found.get(i)) for i, piece in enumerate(flat)])

    def _run_neural(self, batches: list[list[Piece]]) -> Iterator[list[tuple[list[str], ...]]]:
        """(words, *tags) per piece, batch by batch: the fast path for words only, else LTP's own."""
        if self._fast is not None:
            for words in self._fast.words(batches):
                yield [(piece_words,) for piece_words in words]
            return
        for pieces in batches:
            output = self._ltp.pipeline([piece.text for piece in pieces], tasks=self._run_tasks, raw_format=True)
            yield self._model_output(output)

    def _record_oom(self, budget: int, error: BaseException) -> None:
        self.oom_retries += 1
        log.warning("segment: out of GPU memory (%s); retrying the batch within %d padded tokens", one_line(error), budget)
        _free_cuda_cache()


class SegmenterActor(LtpSegmenter):
    """The stage's segmenter in a Ray worker, the pool's actor or a task's process (``_worker_segmenter``): no
    more CPU threads than the CPUs Ray reserved for it.

    Set in the actor's own process rather than through a ``runtime_env``: a runtime env makes Ray
    start a fresh worker process for every actor instead of taking an idle one (seconds each).
    """

    def __init__(self, cfg: SegmentConfig):
        # read when the legacy model's first parallel call builds its Rust pool
        os.environ["RAYON_NUM_THREADS"] = str(cfg.threads_per_actor)
        LtpSegmenter.__init__(self, cfg)  # not super(): tests pickle subclasses of this class by value
        if self._neural:
            import torch

            torch.set_num_threads(cfg.threads_per_actor)


def runs_in_tasks(cfg: SegmentConfig) -> bool:
    """Plain tasks rather than an actor pool: BERT's words (no model), or LTP's legacy model on the CPU,
    which loads in a fraction of a second without torch, so each worker process loads it once
    (``_worker_segmenter``), no actor holds a CPU, and Ray fuses the stage into the tasks around it
    (the docs writer, the tokenizer). Neural models, whose loads take seconds and hundreds of MB, and
    anything asking for GPUs keep a pool of ``num_actors`` actors."""
    return cfg.model == NO_MODEL or (not cfg.num_gpus and not check_model(cfg.model)["nerual"])


def apply(ds: Any, cfg: SegmentConfig) -> Any:
    """The only code that touches ray.data: plain tasks where ``runs_in_tasks``, else an actor pool (fixed, or
    autoscaled), GPUs and CPU threads per actor."""
    import ray.data

    if cfg.model == NO_MODEL:
        return ds.map_batches(with_bert_words, batch_size=cfg.batch_size, batch_format="pyarrow",
                              udf_modifying_row_count=False)
    cfg = located_for_workers(cfg)
    if runs_in_tasks(cfg):
        return ds.map_batches(_segment_batch, fn_kwargs={"cfg": cfg}, batch_size=cfg.batch_size, batch_format="pyarrow",
                              num_cpus=cfg.threads_per_actor, udf_modifying_row_count=False)
    if cfg.max_actors is None:
        pool = ray.data.ActorPoolStrategy(size=cfg.num_actors)
    else:
        pool = ray.data.ActorPoolStrategy(min_size=cfg.num_actors, max_size=cfg.max_actors)
    return ds.map_batches(
        SegmenterActor,
        fn_constructor_kwargs={"cfg": cfg},
        batch_size=cfg.batch_size,
        batch_format="pyarrow",
        num_gpus=cfg.num_gpus or None,
        num_cpus=0 if cfg.num_gpus else cfg.threads_per_actor,  # GPU nodes may declare CPU: 0 (cluster.yaml)
        compute=pool,
        udf_modifying_row_count=False,
    )


def located_for_workers(cfg: SegmentConfig) -> SegmentConfig:
    """``cfg`` with its local model and user-words paths made absolute against the driver's working directory,
    which Ray's workers do not share when the build joins a running instance (``RAY_ADDRESS``) outside
    ``ray job submit --working-dir``: they start where Ray was started. With a job's working_dir they stay
    as written, for every worker runs in a copy of it. A hub id, which is no local path, stays as it is."""
    import ray

    if ray.get_runtime_context().runtime_env.working_dir():
        return cfg
    local = {name: str(Path(value).expanduser().resolve()) for name in ("model", "user_words")
             if (value := getattr(cfg, name)) is not None and Path(value).expanduser().exists()}
    return replace(cfg, **local)


def pool_cpus(cfg: SegmentConfig) -> int:
    """The CPUs the segmentation pool's actors hold for the whole pass (none in tasks, none on GPUs)."""
    return 0 if runs_in_tasks(cfg) or cfg.num_gpus else cfg.num_actors * cfg.threads_per_actor


@functools.lru_cache(maxsize=1)
def _worker_segmenter(cfg: SegmentConfig) -> SegmenterActor:
    """One legacy model per Ray worker process and config: workers live for the whole build."""
    return SegmenterActor(cfg)


def _segment_batch(batch: pa.Table, cfg: SegmentConfig) -> pa.Table:
    return _worker_segmenter(cfg)(batch)


def docs_columns(cfg: SegmentConfig) -> list[str]:
    """The tag tasks of this config, which are also the columns it adds to the docs table, in order."""
    return [name for name in TAG_COLUMNS if name in cfg.tasks]


def _free_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
