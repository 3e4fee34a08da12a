"""Per-stage and end-to-end throughput of a real build.

    python bench/stages.py [--out DIR] [--model LTP_DIR] [--tokenizer VOCAB_OR_DIR]

Input: ../shared/data's CMRC2018 (simplified) and DRCD (traditional) paragraphs when present,
else the bundled sample. Segmenter: a legacy LTP model trained here on the SIGHAN PKU gold
file when it is present (else the bundled tiny model). Tokenizer: the BERT-base-Chinese
vocab when present (else the bundled vocab). Prints one JSON line per stage and one for the
whole build, then checks the output against the contracts.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.ltp_models import train_legacy_cws_model  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
SHARED_INPUTS = [SHARED / "zh-simplified" / "cmrc2018_wiki.jsonl", SHARED / "zh-traditional" / "drcd_paragraphs.jsonl"]
SHARED_VOCAB = SHARED / "vocab" / "bert-base-chinese-vocab.txt"
PKU_GOLD = SHARED / "cws" / "pku_test_gold.utf8"


def default_inputs() -> list[Path]:
    if all(p.exists() for p in SHARED_INPUTS):
        return SHARED_INPUTS
    return sorted((REPO / "examples" / "sample").glob("*.jsonl"))


def default_model(workdir: Path) -> Path:
    if not PKU_GOLD.exists():
        return REPO / "examples" / "assets" / "ltp-legacy"
    lines = PKU_GOLD.read_text(encoding="utf-8-sig").replace("\r", "").split("\n")
    training = workdir / "pku_train.txt"
    training.write_text("\n".join(" ".join(line.split()) for line in lines if line.strip()) + "\n", encoding="utf-8")
    return train_legacy_cws_model(workdir / "ltp-legacy-pku", training)


def default_tokenizer() -> Path:
    return SHARED_VOCAB if SHARED_VOCAB.exists() else REPO / "examples" / "assets" / "vocab.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="output dir (default: a temporary dir)")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--tokenizer", type=Path, default=None)
    args = parser.parse_args()

    from pipeline.config import load_config
    from pipeline.driver import build_corpus
    from tests.contracts import check_corpus
    from transformers import BertTokenizerFast

    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        inputs = default_inputs()
        model = args.model or default_model(workdir)
        vocab = args.tokenizer or default_tokenizer()
        out = args.out or workdir / "out"
        config = workdir / "bench.yaml"
        config.write_text(
            json.dumps(
                {
                    "inputs": [str(p) for p in inputs],
                    "output": str(out),
                    "segment": {"model": str(model)},
                    "tokenize": {"tokenizer": str(vocab), "max_seq_len": 512},
                }
            )
        )
        report = build_corpus(load_config(config))
        for stage, row in report["stages"].items():
            print(json.dumps({"stage": stage, **row}))
        print(
            json.dumps(
                {
                    "stage": "end_to_end",
                    "seconds": report["seconds"],
                    "mb_per_s": round(report["input_bytes"] / 1e6 / report["seconds"], 3),
                    "input_mb": round(report["input_bytes"] / 1e6, 3),
                    "inputs": [p.name for p in inputs],
                    "fates": report["fates"],
                    "corpus": report["corpus"],
                }
            )
        )
        tokenizer = BertTokenizerFast(vocab=str(vocab))
        check_corpus(out, inputs, tokenizer, max_seq_len=512)
        print(json.dumps({"contracts": "ok"}))


if __name__ == "__main__":
    main()
