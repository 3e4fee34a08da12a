"""Segment: LTP word segmentation on actor pools, reassembled so that ``"".join(words) == text`` always.

LTP's neural model truncates at 512 tokens and pads a call to its longest input, so documents go in as
sentence pieces, sorted by length. The legacy perceptron has no length limit, but its memory grows by
~400 bytes a character of one call: texts up to ``LEGACY_PIECE_CHARS`` go in whole, longer ones in
pieces of about that size cut after sentence ends, and each call takes at most ``LEGACY_CALL_CHARS``.
Whitespace never sits inside a word: each maximal whitespace run is a word of its own, and characters
LTP leaves out (e.g. zero-width marks the BERT tokenizer drops) become words of their own too.

Optionally (``tasks``) each word also gets LTP's part-of-speech tag and a named-entity tag, for
LERT-style pretraining. ``pos`` is LTP's tag of the model word the word comes from (null for
whitespace runs and text LTP skipped); ``ner`` is BIO over the words (``B-Ns``, ``I-Ns``, ``O``),
rebuilt from LTP's entity spans so that it stays valid where a model word was cut at whitespace.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence
from urllib.parse import urlsplit

import pyarrow as pa

from operators.columns import TAG_COLUMNS, TEXT, WORDS

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
NEURAL_WEIGHTS = "pytorch_model.bin"
MAX_PIECE_TOKENS = 510  # LTP encodes with max_length=512, and [CLS] + [SEP] take two.
LEGACY_PIECE_CHARS = 1 << 15  # longer texts go to the legacy model in pieces (module doc)
LEGACY_CALL_CHARS = 1 << 17  # characters per legacy LTP call
TASKS = ("cws", "pos", "ner")  # LTP's names; cws = the words, and each tag task's docs column has its name
OUTSIDE = "O"
HUB_PROBE_TIMEOUT_S = 5.0

_SENTENCE = re.compile(r"[^。！？!?；;…\r\n]*(?:[。！？!?；;…]+[”’」』）)】》]*)?\s*")
_SOFT_BREAK = re.compile(r"[，,、：:\s]")
_WHITESPACE = re.compile(r"\s+")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
_SEGMENT_ERROR = re.compile(r"\b(SegmentModelError|SegmentOutOfMemory): (\S.*)$", re.MULTILINE)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


@dataclass(frozen=True)
class SegmentConfig:
    """LTP model, tasks and actor resources.

    `model` is a hub id or a local dir (neural or legacy). `tasks` is `["cws"]` (words only), plus
    `"pos"` and/or `"ner"` for per-word tags. `num_actors` is the pool size, or its minimum when
    `max_actors` is set (Ray Data then scales the pool between the two). `user_words` is a file of
    words, one a line, for LTP's `add_words` (LTP joins one only where it starts on a word start of
    the model). `threads_per_actor` is the CPUs Ray reserves per CPU actor (a GPU actor reserves
    none, so GPU nodes can offer Ray no CPUs and CPU stages never land on them), the legacy model's
    Rust thread pool (1 = no pool) and torch's CPU threads. `max_batch_tokens` bounds the padded tokens of
    one neural forward pass; after a CUDA out-of-memory error an actor halves it and retries.
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

    def __post_init__(self) -> None:
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


class SegmentModelError(ValueError):
    """The LTP model (or its user words) cannot be used; the message is one line for the CLI."""


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


class Tagged(NamedTuple):
    """One text's words (joined, they are the text) and, when asked for, one tag per word."""

    words: list[str]
    pos: list[str | None] | None = None
    ner: list[str] | None = None


def check_config(cfg: SegmentConfig) -> None:
    """What the driver checks before starting Ray: the model and its tasks, and the user-words file if any."""
    config = check_model(cfg.model)
    supported = config_tasks(config)
    missing = [task for task in cfg.tasks if task not in supported]
    if missing:
        raise SegmentModelError(
            f"segment.tasks asks for {missing[0]!r} but segment.model {cfg.model!r} only has {sorted(supported)}"
        )
    if cfg.user_words is not None and not Path(cfg.user_words).expanduser().is_file():
        raise SegmentModelError(f"segment.user_words {cfg.user_words!r}: no such file")


def check_model(model: str) -> dict[str, Any]:
    """Cheap validation of `segment.model`: a local LTP dir, or a hub id whose config.json can be fetched.

    Returns the model's LTP config.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return _check_ltp_config(path / CONFIG_NAME, model, local_dir=path)
    if path.exists():
        raise SegmentModelError(f"segment.model {model!r} is a file, not an LTP model directory")
    if _HUB_ID.match(model):
        return _check_ltp_config(Path(_hub_fetch(model, CONFIG_NAME)), model)
    raise SegmentModelError(f"segment.model {model!r}: no such directory")


def config_tasks(config: dict[str, Any]) -> set[str]:
    """The tasks of TASKS an LTP config can run (the legacy NER model needs the POS model's tags)."""
    if config["nerual"]:
        vocabs = config.get("vocabs") or {}
        return {"cws"} | {task for task in TASKS if vocabs.get(task)}
    tasks = set(config.get("tasks") or ())
    return {task for task in TASKS if task in tasks and (task != "ner" or "pos" in tasks)}


def load_ltp(model: str, device: str = "cpu") -> Any:
    """Load LTP from a local dir or the hub; a neural model goes to `device` with the transformers-5 shim."""
    from ltp import LTP
    from ltp.nerual import LTP as NeuralLTP

    check_model(model)
    local = model if Path(model).expanduser().is_dir() else _hub_snapshot(model)
    try:
        ltp = LTP(str(Path(local).expanduser()))
    except Exception as error:  # LTP raises anything from KeyError to torch's unpickling errors.
        raise SegmentModelError(f"segment.model {model!r} could not be loaded: {_one_line(error)}") from error
    if isinstance(ltp, NeuralLTP):
        _add_batch_encode_plus(ltp.tokenizer)
        ltp.to(device)
    return ltp


class LegacyLtp:
    """`ltp.legacy.LTP`'s pipeline without importing torch and transformers (seconds and ~300 MB per actor).

    The same Rust perceptron models, called the same way and in the same order: words, the user-word
    hook, POS tags on the hooked words, NER tags from words and POS tags (raw per-word tags, as
    `raw_format=True` gives them). Fidelity to `ltp.LTP` itself is what the tests check.
    """

    class Output(NamedTuple):
        cws: list[list[str]]
        pos: list[list[str]] | None = None
        ner: list[list[str]] | None = None

    def __init__(self, directory: Path, tasks: dict[str, str]):
        from ltp_extension.algorithms import Hook
        from ltp_extension.perceptron import CWSModel, NERModel, POSModel

        loaders = {"cws": CWSModel, "pos": POSModel, "ner": NERModel}
        self.models = {task: loaders[task].load(str(directory / name)) for task, name in tasks.items() if task in loaders}
        self.supported_tasks = set(self.models)
        self.hook = Hook()

    def add_words(self, words: list[str], freq: int = 2) -> None:  # LTP's default frequency
        for word in words:
            self.hook.add_word(word, freq)

    def pipeline(self, texts: list[str], tasks: Sequence[str], parallelism: bool = True) -> "LegacyLtp.Output":
        words = self.models["cws"](texts, parallelism=parallelism)
        if len(self.hook):
            words = [self.hook.hook("".join(sentence), sentence) for sentence in words]
        pos = self.models["pos"](words, parallelism=parallelism) if "pos" in tasks or "ner" in tasks else None
        ner = self.models["ner"](words, pos, parallelism=parallelism) if "ner" in tasks else None
        return self.Output(words, pos, ner)


def load_legacy(model: str) -> LegacyLtp:
    """A legacy LTP model (local dir or hub id) as `LegacyLtp`; SegmentModelError if it is not one or will not load."""
    config = check_model(model)
    if config["nerual"]:
        raise SegmentModelError(f"segment.model {model!r} is a neural LTP model, not a legacy one")
    local = Path(model).expanduser() if Path(model).expanduser().is_dir() else Path(_hub_snapshot(model))
    try:
        return LegacyLtp(local, config["tasks"])
    except Exception as error:  # the Rust loader raises RuntimeError with a backtrace
        raise SegmentModelError(f"segment.model {model!r} could not be loaded: {_one_line(error)}") from error


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


def split_long_sentence(
    sentence: str, offsets: Sequence[tuple[int, int]], word_ids: Sequence[int | None], max_tokens: int
) -> list[tuple[str, int]]:
    """Cut a tokenized sentence into (piece, token count) with at most `max_tokens` tokens each.

    Cuts fall before a token that starts a BERT word, so each piece re-tokenizes to the same tokens;
    the latest such cut after a comma or a space wins when it keeps at least half the window.
    """
    pieces, first_token, first_char = [], 0, 0
    while len(offsets) - first_token > max_tokens:
        limit = first_token + max_tokens
        starts = [k for k in range(first_token + 1, limit + 1) if word_ids[k] != word_ids[k - 1]] or [limit]
        soft = [k for k in starts if _SOFT_BREAK.search(sentence, offsets[k - 1][0], offsets[k][0])]
        cut = soft[-1] if soft and soft[-1] - first_token >= max_tokens // 2 else starts[-1]
        pieces.append((sentence[first_char : offsets[cut][0]], cut - first_token))
        first_token, first_char = cut, offsets[cut][0]
    pieces.append((sentence[first_char:], len(offsets) - first_token))
    return pieces


def model_pieces(text: str, tokenizer: Any, max_tokens: int = MAX_PIECE_TOKENS) -> list[tuple[str, int]]:
    """Pieces of `text` the neural model takes whole, with token counts from the model's own tokenizer."""
    sentences = split_sentences(text)
    if not sentences:
        return []
    encodings = tokenizer(sentences, add_special_tokens=False, verbose=False).encodings  # no too-long warning
    return [
        piece
        for sentence, encoding in zip(sentences, encodings)
        for piece in split_long_sentence(sentence, encoding.offsets, encoding.word_ids, max_tokens)
    ]


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
    run: Callable[[list[int]], list[Any]],
    retry_on: tuple[type[BaseException], ...],
    on_retry: Callable[[int, BaseException], None] = lambda budget, error: None,
) -> tuple[list[Any], int]:
    """Run `run` over length-sorted batches; on a `retry_on` error, halve the budget and re-split that batch.

    Returns (one result per index, the budget that worked). A batch of one piece that still fails
    raises SegmentOutOfMemory: nothing smaller can be tried.
    """
    results: list[Any] = [None] * len(token_counts)
    pending = length_batches(token_counts, max_batch_tokens)[::-1]
    while pending:
        group = pending.pop()
        try:
            outputs = run(group)
        except retry_on as error:
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
            pending.extend([[group[k] for k in part] for part in split][::-1])
            continue
        for index, output in zip(group, outputs):
            results[index] = output
    return results, max_batch_tokens


def align_words(text: str, words: Sequence[str]) -> list[str]:
    """Map LTP's words onto `text` so they join to it exactly.

    Each word is matched at or after the previous one and its ends become cuts; text LTP skipped
    becomes words of its own. Each whitespace run is then one word (LTP glues spaces to a neighbour
    or drops them): its ends become cuts, and the cuts inside it go.
    """
    if "".join(words) == text:  # the usual case: every character kept, in order
        words = [word for word in words if word] if "" in words else list(words)
        if not _WHITESPACE.search(text):
            return words
        cuts = [0, *accumulate(map(len, words))]
    else:
        cuts = sorted({0, len(text), *(end for span in word_spans(text, words) if span for end in span)})
    for run in reversed(list(_WHITESPACE.finditer(text))):  # from the end, so earlier positions stay put
        start, end = run.span()
        cuts[bisect_left(cuts, start) : bisect_right(cuts, end)] = [start, end]
    return [text[start:end] for start, end in zip(cuts, cuts[1:])]


def word_spans(text: str, words: Sequence[str]) -> list[tuple[int, int] | None]:
    """(start, end) of each of LTP's words in `text`, matched in order; None for a word not found (or empty)."""
    if "".join(words) == text:
        ends = list(accumulate(len(word) for word in words))
        return [(end - len(word), end) if word else None for word, end in zip(words, ends)]
    spans: list[tuple[int, int] | None] = []
    cursor = 0
    for word in words:
        start = text.find(word, cursor) if word else -1
        spans.append((start, start + len(word)) if start >= 0 else None)
        cursor = start + len(word) if start >= 0 else cursor
    return spans


def align_tags(
    text: str,
    words: Sequence[str],
    aligned: Sequence[str],
    pos: Sequence[str] | None = None,
    ner: Sequence[str] | None = None,
) -> tuple[list[str | None] | None, list[str] | None]:
    """Carry LTP's per-model-word tags over to the aligned words (see the module docstring)."""
    spans = word_spans(text, words)
    found = [(span, k) for k, span in enumerate(spans) if span]
    starts = [span[0] for span, _ in found]
    positions = [0, *accumulate(len(word) for word in aligned)]
    pos_out: list[str | None] | None = None
    if pos is not None:
        pos_out = []
        for word, start in zip(aligned, positions):
            at = bisect_right(starts, start) - 1
            inside = at >= 0 and start < found[at][0][1] and not word.isspace()
            pos_out.append(pos[found[at][1]] if inside else None)
    ner_out: list[str] | None = None
    if ner is not None:
        ner_out = [OUTSIDE] * len(aligned)
        for label, first, last in _entities(ner):
            covered = [span for span in spans[first : last + 1] if span]
            if not covered:
                continue
            begin, end = covered[0][0], covered[-1][1]
            while begin < end and text[begin].isspace():
                begin += 1
            while end > begin and text[end - 1].isspace():
                end -= 1
            first_word, end_word = bisect_left(positions, begin), min(bisect_left(positions, end), len(aligned))
            for i in range(first_word, end_word):
                ner_out[i] = f"{'B' if i == first_word else 'I'}-{label}"
    return pos_out, ner_out


def align(text: str, words: Sequence[str], pos: Sequence[str] | None = None, ner: Sequence[str] | None = None) -> Tagged:
    """`align_words`, plus the tags when LTP gave them."""
    aligned = align_words(text, words)
    if pos is None and ner is None:
        return Tagged(aligned)
    return Tagged(aligned, *align_tags(text, words, aligned, pos, ner))


def _entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    from ltp_extension.algorithms import get_entities  # LTP's own decoder of BIO/BIES tags

    return get_entities(list(tags))


class LtpSegmenter:
    """Core: loads LTP once per actor; documents in, words (and tags) out."""

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
            self._oom_types: tuple[type[BaseException], ...] = (torch.cuda.OutOfMemoryError,)
        else:  # the legacy perceptron runs on CPU, without torch
            self.device = "cpu"
            self._ltp = load_legacy(cfg.model)
            self._oom_types = ()
        if cfg.user_words is not None:
            self._ltp.add_words(_read_user_words(cfg.user_words))

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
        """Adds `words` (and `pos`/`ner`), list<string> columns; no row disappears. Arrow in and out: the
        other columns pass through untouched, and the words become one Arrow array in C."""
        texts = batch[TEXT].to_pylist()
        present = [i for i, text in enumerate(texts) if text is not None]
        columns: dict[str, list[Any]] = {name: [None] * len(texts) for name in (WORDS, *self._tags)}
        for i, tagged in zip(present, self.tag([texts[i] for i in present])):
            columns[WORDS][i] = tagged.words  # a null text gets null words (and tags)
            for task in self._tags:
                columns[task][i] = getattr(tagged, task)
        for name, values in columns.items():
            batch = batch.append_column(name, pa.array(values, pa.list_(pa.string())))
        return batch

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
        per_text = [model_pieces(text, self._ltp.tokenizer) for text in texts]
        flat = [piece for pieces in per_text for piece in pieces]
        todo = [i for i, (_, count) in enumerate(flat) if count > 0]
        outputs, self.max_batch_tokens = run_batches(
            [flat[i][1] for i in todo], self.max_batch_tokens, lambda group: self._forward([flat[todo[g]][0] for g in group]),
            self._oom_types, self._record_oom,
        )
        found = dict(zip(todo, outputs))
        return self._joined(per_text, [self._align(piece, found.get(i)) for i, (piece, _) in enumerate(flat)])

    def _forward(self, pieces: list[str]) -> list[tuple[list[str], ...]]:
        output = self._ltp.pipeline(pieces, tasks=self._run_tasks, raw_format=True)
        return self._model_output(output)

    def _record_oom(self, budget: int, error: BaseException) -> None:
        self.oom_retries += 1
        log.warning("segment: out of GPU memory (%s); retrying the batch within %d padded tokens", _one_line(error), budget)
        _free_cuda_cache()


class SegmenterActor(LtpSegmenter):
    """The pool's actor: no more CPU threads than the CPUs Ray reserved for it.

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


def apply(ds: Any, cfg: SegmentConfig) -> Any:
    """The only code that touches ray.data: an actor pool (fixed, or autoscaled), GPUs and CPU threads per actor."""
    import ray.data

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


def docs_columns(cfg: SegmentConfig) -> list[str]:
    """The tag tasks of this config, which are also the columns it adds to the docs table, in order."""
    return [name for name in TAG_COLUMNS if name in cfg.tasks]


def _check_ltp_config(config_file: Path, model: str, local_dir: Path | None = None) -> dict[str, Any]:
    """An LTP config names its kind (`nerual`, sic) and its weights; local weights must be there."""
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SegmentModelError(f"segment.model {model!r} is not an LTP model: no {CONFIG_NAME}") from None
    except (OSError, ValueError) as error:
        raise SegmentModelError(f"segment.model {model!r}: unreadable {CONFIG_NAME}: {_one_line(error)}") from None
    if not isinstance(config, dict) or not isinstance(config.get("nerual"), bool):
        raise SegmentModelError(f"segment.model {model!r}: {CONFIG_NAME} is not an LTP config (no 'nerual' flag)")
    if config["nerual"]:
        if not isinstance(config.get("model"), dict) or not isinstance(config.get("vocabs"), dict):
            raise SegmentModelError(f"segment.model {model!r}: neural LTP {CONFIG_NAME} lacks 'model' or 'vocabs'")
        weights = [NEURAL_WEIGHTS]
    else:
        tasks = config.get("tasks")
        if not isinstance(tasks, dict) or "cws" not in tasks:
            raise SegmentModelError(f"segment.model {model!r}: legacy LTP {CONFIG_NAME} has no 'cws' task")
        weights = list(tasks.values())
    missing = [name for name in weights if not (local_dir / name).is_file()] if local_dir else []
    if missing:
        raise SegmentModelError(f"segment.model {model!r}: missing weights file {missing[0]}")
    return config


def _hub_fetch(model: str, filename: str) -> str:
    """One file of a hub model: from the local cache if there, else downloaded (after a quick reachability probe)."""
    from huggingface_hub import hf_hub_download

    repo_id, _, revision = model.partition("@")
    try:
        return hf_hub_download(repo_id, filename, revision=revision or None, local_files_only=True)
    except Exception:  # not cached: go to the network
        pass
    _probe_hub(model)
    try:
        return hf_hub_download(repo_id, filename, revision=revision or None)
    except Exception as error:  # offline, 404, auth, timeouts: all mean "not usable from here".
        raise _hub_error(model, type(error).__name__) from None


def _hub_snapshot(model: str) -> str:
    """Download a hub model to the local cache; ltp 4.2.14's own hub code breaks on huggingface_hub 1+."""
    from huggingface_hub import snapshot_download

    repo_id, _, revision = model.partition("@")
    try:
        return snapshot_download(repo_id, revision=revision or None, local_files_only=True)
    except Exception:
        pass
    _probe_hub(model)
    try:
        return snapshot_download(repo_id, revision=revision or None)
    except Exception as error:
        raise _hub_error(model, type(error).__name__) from None


def _probe_hub(model: str) -> None:
    """Fail in seconds where the hub cannot be reached: huggingface_hub retries for ~25 s, warning each time."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise _hub_error(model, "HF_HUB_OFFLINE is set")
    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return  # only the proxy knows; let huggingface_hub try
    endpoint = urlsplit(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname or "", port), timeout=HUB_PROBE_TIMEOUT_S).close()
    except OSError as error:
        raise _hub_error(model, f"cannot reach {endpoint.hostname}: {_one_line(error)}") from None


def _hub_error(model: str, reason: str) -> SegmentModelError:
    return SegmentModelError(
        f"segment.model {model!r} is not a local directory and cannot be fetched from the Hugging Face Hub "
        f"({reason}); download the model elsewhere (e.g. `hf download {model.partition('@')[0]}`), "
        "copy it here and set segment.model to that local directory"
    )


def _add_batch_encode_plus(tokenizer: Any) -> None:
    """ltp 4.2.14 calls `batch_encode_plus`, which transformers 5 removed; `__call__` takes the same kwargs."""
    if not hasattr(tokenizer, "batch_encode_plus"):
        tokenizer.batch_encode_plus = tokenizer.__call__


def _free_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _read_user_words(path: str) -> list[str]:
    try:
        lines = Path(path).expanduser().read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise SegmentModelError(f"segment.user_words {path!r}: {_one_line(error)}") from None
    return [word for word in (line.strip() for line in lines) if word]


def _one_line(error: BaseException) -> str:
    """The first line of the message (Rust errors append a backtrace), whitespace collapsed, at most 300 chars."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    return " ".join(lines[0].split())[:300] if lines else type(error).__name__
