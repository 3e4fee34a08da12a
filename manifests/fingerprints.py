"""Stage fingerprints: what each stage's output depends on, hashed, so a refresh knows what to redo.

One sha256 per stage over the canonical JSON of the settings that change that stage's output,
plus what the settings point at:

- ``read``, ``normalize``: their config sections.
- ``dedup``: ``exact`` and ``minhash`` (the keeper rule and the graph depend on nothing else).
- ``segment``: ``model`` and ``tasks``, the sha256 of the model directory's files (or the hub id
  when it is not a local directory), and the sha256 of ``user_words``.
- ``tokenize``: the tokenize section and the vocab's sha256; ``write``: its section.

Settings that change only speed or memory (batch sizes, partitions, actors, GPUs, threads,
``max_batch_tokens``) are left out: the pipeline gives the same rows whatever they are
(``tests/test_determinism.py``), so changing them alone never triggers work.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

EXECUTION_ONLY = {
    "read": ("batch_size", "range_bytes"),
    "normalize": ("batch_size",),
    "dedup": ("batch_size", "partition_rows", "min_partitions", "local_max_docs"),
    "segment": ("num_gpus", "batch_size", "num_actors", "max_actors", "threads_per_actor", "max_batch_tokens"),
    "tokenize": (),
    "write": ("local_sort_max_rows", "local_sort_max_docs", "local_cache_max_docs"),
}
STAGES = tuple(EXECUTION_ONLY)
INPUT_STAGES = ("read", "normalize", "dedup")  # a change here re-reads every input


def _sha256(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def path_sha256(location: str | None) -> str | None:
    """sha256 over a local file, or over the (relative name, bytes) of every file below a local
    directory; None for anything else (a hub id is fingerprinted by its name)."""
    if not location:
        return None
    path = Path(location).expanduser()
    if path.is_file():
        files = [(path.name, path)]
    elif path.is_dir():
        files = sorted((str(p.relative_to(path)), p) for p in path.rglob("*") if p.is_file())
    else:
        return None
    digest = hashlib.sha256()
    for name, file in files:
        digest.update(name.encode() + b"\x00" + str(os.path.getsize(file)).encode() + b"\x00")
        with open(file, "rb") as stream:
            while chunk := stream.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def stage_fingerprints(config: dict[str, Any], vocab_sha256: str | None) -> dict[str, str]:
    """``{stage: sha256}`` for ``config`` (``BuildConfig.to_dict()``)."""
    prints = {}
    for stage in STAGES:
        section = {k: v for k, v in config[stage].items() if k not in EXECUTION_ONLY[stage]}
        if stage == "segment":
            section["model_sha256"] = path_sha256(section["model"])
            section["user_words_sha256"] = path_sha256(section.get("user_words"))
        if stage == "tokenize":
            section["vocab_sha256"] = vocab_sha256
        prints[stage] = _sha256(section)
    return prints


def changed(previous: dict[str, str] | None, current: dict[str, str]) -> list[str]:
    """The stages whose fingerprint differs (all of them when there is no previous build)."""
    previous = previous or {}
    return [stage for stage in STAGES if previous.get(stage) != current[stage]]
