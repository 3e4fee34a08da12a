"""Segment: LTP word segmentation on actor pools, reassembled so that ``"".join(words) == text`` always.

LTP's neural model truncates at 512 tokens and pads a call to its longest input, so documents go in as
sentence pieces, sorted by length; the legacy perceptron has no limit and takes whole documents.
Whitespace never sits inside a word: each maximal whitespace run is a word of its own, and characters
LTP leaves out (e.g. zero-width marks the BERT tokenizer drops) become words of their own too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from operators.columns import TEXT, WORDS

CONFIG_NAME = "config.json"
NEURAL_WEIGHTS = "pytorch_model.bin"
MAX_PIECE_TOKENS = 510  # LTP encodes with max_length=512, and [CLS] + [SEP] take two.

_SENTENCE = re.compile(r"[^。！？!?；;…\r\n]*(?:[。！？!?；;…]+[”’」』）)】》]*)?\s*")
_SOFT_BREAK = re.compile(r"[，,、：:\s]")
_WHITESPACE = re.compile(r"\s+")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


@dataclass(frozen=True)
class SegmentConfig:
    """LTP model and actor resources.

    `model` is a hub id or a local dir (neural or legacy). `user_words` is a file of words, one a line,
    for LTP's `add_words` (LTP joins one only where it starts on a word start of the model).
    `threads_per_actor` is the CPUs Ray reserves per actor and the size of the legacy model's Rust
    thread pool (1 = no pool). `max_batch_tokens` bounds the padded tokens of one neural forward pass.
    """

    model: str = "LTP/small"
    num_gpus: float = 0.0
    batch_size: int = 64
    num_actors: int = 1
    user_words: str | None = None
    threads_per_actor: int = 1
    max_batch_tokens: int = 16384

    def __post_init__(self) -> None:
        for name in ("batch_size", "num_actors", "threads_per_actor"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.num_gpus < 0:
            raise ValueError("num_gpus must not be negative")
        if self.max_batch_tokens < MAX_PIECE_TOKENS + 2:
            raise ValueError(f"max_batch_tokens must be at least {MAX_PIECE_TOKENS + 2}, one full piece")


class SegmentModelError(ValueError):
    """The LTP model (or its user words) cannot be used; the message is one line for the CLI."""


def check_config(cfg: SegmentConfig) -> None:
    """What the driver checks before starting Ray: the model, and the user-words file if any."""
    check_model(cfg.model)
    if cfg.user_words is not None and not Path(cfg.user_words).expanduser().is_file():
        raise SegmentModelError(f"segment.user_words {cfg.user_words!r}: no such file")


def check_model(model: str) -> None:
    """Cheap validation of `segment.model`: a local LTP dir, or a hub id whose config.json can be fetched."""
    path = Path(model).expanduser()
    if path.is_dir():
        _check_ltp_config(path / CONFIG_NAME, model, local_dir=path)
    elif path.exists():
        raise SegmentModelError(f"segment.model {model!r} is a file, not an LTP model directory")
    elif _HUB_ID.match(model):
        _check_ltp_config(Path(_hub_fetch(model, CONFIG_NAME)), model)
    else:
        raise SegmentModelError(f"segment.model {model!r}: no such directory")


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


def split_sentences(text: str) -> list[str]:
    """Cut after sentence ends (with closing quotes/brackets) and line breaks; trailing whitespace stays."""
    return [match.group() for match in _SENTENCE.finditer(text) if match.group()]


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


def align_words(text: str, words: Sequence[str]) -> list[str]:
    """Map LTP's words onto `text` so they join to it exactly.

    Each word is matched at or after the previous one and its ends become cuts; text LTP skipped
    becomes words of its own. Each whitespace run is then one word (LTP glues spaces to a neighbour
    or drops them).
    """
    exact = "".join(words) == text
    if exact and not _WHITESPACE.search(text):  # the usual case, kept at C speed
        return [word for word in words if word]
    cuts = [0, *accumulate(len(word) for word in words if word)] if exact else _found_cuts(text, words)
    cuts = _whitespace_cuts(text, cuts)
    return [text[start:end] for start, end in zip(cuts, cuts[1:])]


def _found_cuts(text: str, words: Sequence[str]) -> list[int]:
    cuts, cursor = [0], 0
    for word in words:
        start = text.find(word, cursor) if word else -1
        if start >= 0:
            cursor = start + len(word)
            cuts += (start, cursor)
    return [*dict.fromkeys(cuts + [len(text)])]


def _whitespace_cuts(text: str, cuts: list[int]) -> list[int]:
    """Drop cuts inside whitespace runs and cut at both ends of each run; both inputs ascend."""
    runs = [match.span() for match in _WHITESPACE.finditer(text)]
    if not runs:
        return cuts
    merged, r = [], 0
    for cut in cuts:
        while r < len(runs) and runs[r][1] <= cut:
            merged += runs[r]
            r += 1
        if not (r < len(runs) and runs[r][0] < cut):
            merged.append(cut)
    return [*dict.fromkeys(merged)]


class LtpSegmenter:
    """Core: loads LTP once per actor; documents in, words out."""

    def __init__(self, cfg: SegmentConfig):
        import torch
        from ltp.nerual import LTP as NeuralLTP

        self.cfg = cfg
        device = "cuda" if cfg.num_gpus > 0 and torch.cuda.is_available() else "cpu"
        self._ltp = load_ltp(cfg.model, device)
        self._neural = isinstance(self._ltp, NeuralLTP)
        if cfg.user_words is not None:
            self._ltp.add_words(_read_user_words(cfg.user_words))

    def segment(self, texts: list[str]) -> list[list[str]]:
        """One word list per text; the result for a text does not depend on the other texts."""
        return self._segment_neural(texts) if self._neural else self._segment_legacy(texts)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray | pa.Array]:
        """Adds `words`, typed list<string> here: Ray would infer list<null> for a batch of empty lists."""
        texts = list(batch[TEXT])
        present = [i for i, text in enumerate(texts) if text is not None]
        words: list[list[str] | None] = [None] * len(texts)  # a null text gets null words
        for i, row_words in zip(present, self.segment([str(texts[i]) for i in present])):
            words[i] = row_words
        return {**batch, WORDS: pa.array(words, type=pa.list_(pa.string()))}

    def _segment_legacy(self, texts: list[str]) -> list[list[str]]:
        todo = [i for i, text in enumerate(texts) if text and not text.isspace()]
        found: dict[int, list[str]] = {}
        if todo:
            parallel = self.cfg.threads_per_actor > 1
            output = self._ltp.pipeline([texts[i] for i in todo], tasks=["cws"], parallelism=parallel)
            found = dict(zip(todo, output.cws))
        return [align_words(text, found.get(i, [])) for i, text in enumerate(texts)]

    def _segment_neural(self, texts: list[str]) -> list[list[str]]:
        per_text = [model_pieces(text, self._ltp.tokenizer) for text in texts]
        flat = [piece for pieces in per_text for piece in pieces]
        todo = [i for i, (_, count) in enumerate(flat) if count > 0]
        found: dict[int, list[str]] = {}
        for group in length_batches([flat[i][1] for i in todo], self.cfg.max_batch_tokens):
            indices = [todo[g] for g in group]
            output = self._ltp.pipeline([flat[i][0] for i in indices], tasks=["cws"])
            found.update(zip(indices, output.cws))
        piece_words = iter([align_words(piece, found.get(i, [])) for i, (piece, _) in enumerate(flat)])
        return [[word for _ in pieces for word in next(piece_words)] for pieces in per_text]


def apply(ds: Any, cfg: SegmentConfig) -> Any:
    """The only code that touches ray.data: a fixed actor pool, GPUs and CPU threads per actor."""
    import ray.data

    return ds.map_batches(
        LtpSegmenter,
        fn_constructor_kwargs={"cfg": cfg},
        batch_size=cfg.batch_size,
        batch_format="numpy",
        num_gpus=cfg.num_gpus or None,
        num_cpus=cfg.threads_per_actor,
        runtime_env={"env_vars": {"RAYON_NUM_THREADS": str(cfg.threads_per_actor)}},
        compute=ray.data.ActorPoolStrategy(size=cfg.num_actors),
    )


def _check_ltp_config(config_file: Path, model: str, local_dir: Path | None = None) -> None:
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
        if "model" not in config or "vocabs" not in config:
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


def _hub_fetch(model: str, filename: str) -> str:
    repo_id, _, revision = model.partition("@")
    try:
        from huggingface_hub import hf_hub_download

        return hf_hub_download(repo_id, filename, revision=revision or None)
    except Exception as error:  # offline, 404, auth, timeouts: all mean "not usable from here".
        raise _hub_error(model, error) from None


def _hub_snapshot(model: str) -> str:
    """Download a hub model to the local cache; ltp 4.2.14's own hub code breaks on huggingface_hub 1+."""
    repo_id, _, revision = model.partition("@")
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo_id, revision=revision or None)
    except Exception as error:
        raise _hub_error(model, error) from None


def _hub_error(model: str, error: Exception) -> SegmentModelError:
    return SegmentModelError(
        f"segment.model {model!r} is not a local directory and cannot be fetched from the Hugging Face Hub "
        f"({type(error).__name__}); download the model elsewhere (e.g. `hf download {model.partition('@')[0]}`), "
        "copy it here and set segment.model to that local directory"
    )


def _add_batch_encode_plus(tokenizer: Any) -> None:
    """ltp 4.2.14 calls `batch_encode_plus`, which transformers 5 removed; `__call__` takes the same kwargs."""
    if not hasattr(tokenizer, "batch_encode_plus"):
        tokenizer.batch_encode_plus = tokenizer.__call__


def _read_user_words(path: str) -> list[str]:
    try:
        lines = Path(path).expanduser().read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise SegmentModelError(f"segment.user_words {path!r}: {_one_line(error)}") from None
    return [word for word in (line.strip() for line in lines) if word]


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:300] or type(error).__name__
