"""LTP models for the segment stage: check them cheaply, fetch them from the hub, load them.

A model is a local directory or a hub id (``LTP/small``, ``LTP/legacy``). The driver checks it
before Ray starts, so that a typo or an unreachable hub is one line, not a dead actor pool; the
actors then load it. The legacy (Rust perceptron) model loads without torch and transformers.
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Sequence
from urllib.parse import urlsplit

CONFIG_NAME = "config.json"
NEURAL_WEIGHTS = "pytorch_model.bin"
TASKS = ("cws", "pos", "ner")  # LTP's names; cws = the words, and each tag task's docs column has its name
HUB_PROBE_TIMEOUT_S = 5.0

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


class SegmentModelError(ValueError):
    """The LTP model (or its user words) cannot be used; the message is one line for the CLI."""


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
    local = _local_dir(model)  # a hub error stays as it is, not wrapped as a load error
    try:
        ltp = LTP(str(local))
    except Exception as error:  # LTP raises anything from KeyError to torch's unpickling errors.
        raise SegmentModelError(f"segment.model {model!r} could not be loaded: {one_line(error)}") from error
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
    local = _local_dir(model)
    try:
        return LegacyLtp(local, config["tasks"])
    except Exception as error:  # the Rust loader raises RuntimeError with a backtrace
        raise SegmentModelError(f"segment.model {model!r} could not be loaded: {one_line(error)}") from error


def read_user_words(path: str) -> list[str]:
    """The words of a `segment.user_words` file, one a line (blank lines skipped), for LTP's `add_words`."""
    try:
        lines = Path(path).expanduser().read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise SegmentModelError(f"segment.user_words {path!r}: {one_line(error)}") from None
    return [word for word in (line.strip() for line in lines) if word]


def one_line(error: BaseException) -> str:
    """The first line of the message (Rust errors append a backtrace), whitespace collapsed, at most 300 chars."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    return " ".join(lines[0].split())[:300] if lines else type(error).__name__


def _check_ltp_config(config_file: Path, model: str, local_dir: Path | None = None) -> dict[str, Any]:
    """An LTP config names its kind (`nerual`, sic) and its weights; local weights must be there."""
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SegmentModelError(f"segment.model {model!r} is not an LTP model: no {CONFIG_NAME}") from None
    except (OSError, ValueError) as error:
        raise SegmentModelError(f"segment.model {model!r}: unreadable {CONFIG_NAME}: {one_line(error)}") from None
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
    """One file of a hub model (``_from_hub``)."""
    from huggingface_hub import hf_hub_download

    return _from_hub(model, functools.partial(hf_hub_download, filename=filename))


def _local_dir(model: str) -> Path:
    """The model's directory: `model` itself when it is one, else its hub snapshot (downloaded if need be)."""
    path = Path(model).expanduser()
    return path if path.is_dir() else Path(_hub_snapshot(model))


def _hub_snapshot(model: str) -> str:
    """A hub model's directory (``_from_hub``); ltp 4.2.14's own hub code breaks on huggingface_hub 1+."""
    from huggingface_hub import snapshot_download

    return _from_hub(model, snapshot_download)


def _from_hub(model: str, download: Callable[..., str]) -> str:
    """``download(repo_id, revision=...)`` of ``model`` (``repo@revision``): from the local cache if there,
    else downloaded after a quick reachability probe (``_probe_hub``)."""
    repo_id, _, revision = model.partition("@")
    try:
        return download(repo_id, revision=revision or None, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached: go to the network
        pass
    _probe_hub(model)
    try:
        return download(repo_id, revision=revision or None)
    except Exception as error:  # noqa: BLE001 - offline, 404, auth, timeouts: all mean "not usable from here"
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
        raise _hub_error(model, f"cannot reach {endpoint.hostname}: {one_line(error)}") from None


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
