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

from bench.shared_data import CMRC, DRCD, inputs_or_sample, legacy_model, vocab_file  # noqa: E402


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
        inputs = inputs_or_sample([CMRC, DRCD])
        model = args.model or legacy_model(workdir)
        vocab = args.tokenizer or vocab_file()
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
