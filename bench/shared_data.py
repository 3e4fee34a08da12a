"""What the benches run on: ../shared/data when it is there, else what this repository bundles.

../shared/data holds corpora some of which are research-only and never shipped, so every bench
also runs, on less text, from the bundled sample, vocab and tiny LTP model.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
CMRC = SHARED / "zh-simplified" / "cmrc2018_wiki.jsonl"
C3 = SHARED / "zh-simplified" / "c3_mixed.jsonl"
DRCD = SHARED / "zh-traditional" / "drcd_paragraphs.jsonl"
PKU_TEST = SHARED / "cws" / "pku_test.utf8"
PKU_GOLD = SHARED / "cws" / "pku_test_gold.utf8"
SHARED_VOCAB = SHARED / "vocab" / "bert-base-chinese-vocab.txt"
SAMPLE = REPO / "examples" / "sample"
ASSETS = REPO / "examples" / "assets"


def emit(record: dict) -> None:
    """One JSON line on stdout, flushed: what every bench prints."""
    print(json.dumps(record, ensure_ascii=False), flush=True)


def inputs_or_sample(shared: list[Path]) -> list[Path]:
    """`shared` when all of them are there, else the bundled sample's JSONL files."""
    return shared if all(path.exists() for path in shared) else sorted(SAMPLE.glob("*.jsonl"))


def legacy_model(workdir: Path) -> Path:
    """A legacy CWS model trained here on the PKU gold file, in the binary format of LTP's released
    models (it loads in 0.2 s, the JSON one in 1.6 s), else the bundled tiny model."""
    if not PKU_GOLD.exists():
        return ASSETS / "ltp-legacy"
    from tests.ltp_models import gold_trained_legacy_model

    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)  # the trainer prints its epochs on stdout, which is for the JSON lines
    try:
        return gold_trained_legacy_model(PKU_GOLD, workdir / "ltp-legacy-pku")
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def vocab_file() -> Path:
    """The BERT-base-Chinese vocab, else the bundled one."""
    return SHARED_VOCAB if SHARED_VOCAB.exists() else ASSETS / "vocab.txt"
