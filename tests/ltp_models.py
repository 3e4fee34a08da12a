"""Tiny LTP models that tests build for themselves, so no test needs the network."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

LEGACY_MODEL_FILE = "cws_model.json"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
HIDDEN_SIZE = 32


def train_legacy_cws_model(directory: Path, training_file: Path, epochs: int = 10) -> Path:
    """Train the Rust perceptron on space-separated words, one sentence a line; returns a dir ``ltp.LTP`` loads.

    Deterministic: no shuffling, one training thread, and the model saved as canonical JSON
    (the trainer's own files differ run to run in hash-map order).
    """
    from ltp_extension.perceptron import Algorithm, CWSTrainer

    trainer = CWSTrainer()
    trainer.epoch = epochs
    trainer.shuffle = False
    trainer.verbose = False
    trainer.algorithm = Algorithm("AP", 1)  # averaged perceptron, one thread
    trainer.load_train_data(str(training_file))
    trainer.load_eval_data(str(training_file))  # without eval data the trainer stops after epoch 1
    model = trainer.train()

    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        raw_path = Path(scratch) / "raw.json"
        model.save(str(raw_path))
        raw = json.loads(raw_path.read_text(encoding="utf-8"))
    (directory / LEGACY_MODEL_FILE).write_text(canonical_model_json(raw), encoding="utf-8")
    _write_json(directory / "config.json", {"nerual": False, "tasks": {"cws": LEGACY_MODEL_FILE}})
    return directory


def canonical_model_json(raw: dict) -> str:
    """The trainer's JSON with features renumbered in sorted order (weights moved along)."""
    features, params = raw["features"], raw["parameters"]
    first = min(features.values())  # indices below `first` hold the label transitions
    width = len(params) // (first + len(features))
    if sorted(features.values()) != list(range(first, first + len(features))) or len(params) != width * (
        first + len(features)
    ):
        raise ValueError("unexpected layout of the perceptron model JSON")
    keys = sorted(features)
    ordered = list(params[: first * width])
    for key in keys:
        index = features[key]
        ordered.extend(params[index * width : (index + 1) * width])
    canon = {
        "definition": raw["definition"],
        "features": {key: first + i for i, key in enumerate(keys)},
        "parameters": ordered,
    }
    return json.dumps(canon, ensure_ascii=False, separators=(",", ":"))


def tiny_vocab() -> list[str]:
    """Specials, printable ASCII (whole and `##`), CJK punctuation, full-width forms and the basic CJK block."""
    ascii_chars = [chr(c) for c in range(0x21, 0x7F)]
    wide = [chr(c) for c in (*range(0x3001, 0x3040), *range(0xFF01, 0xFF5F))]
    cjk = [chr(c) for c in range(0x4E00, 0xA000)]
    return [*SPECIAL_TOKENS, *ascii_chars, *(f"##{c}" for c in ascii_chars), *wide, *cjk]


def build_tiny_neural_model(directory: Path, seed: int = 3) -> Path:
    """Write a random-weight neural LTP CWS model (BERT backbone, token classifier); deterministic for a seed."""
    import torch

    from ltp_core.models.utils import instantiate

    directory.mkdir(parents=True, exist_ok=True)
    vocab = tiny_vocab()
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    _write_json(
        directory / "tokenizer_config.json",
        {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 512},
    )
    model_config = {
        "_ltp_target_": "ltp_core.models.ltp_model.LTPModule",
        "backbone": {
            "_ltp_target_": "ltp_core.models.utils.load_transformers",
            "config": {
                "model_type": "bert",
                "vocab_size": len(vocab),
                "hidden_size": HIDDEN_SIZE,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "intermediate_size": 2 * HIDDEN_SIZE,
                "max_position_embeddings": 512,
            },
        },
        "processor": {"cws": {"_ltp_target_": "ltp_core.models.processor.TokenOnly"}},
        "heads": {
            "cws": {
                "_ltp_target_": "ltp_core.models.components.token.MLPTokenClassifier",
                "input_size": HIDDEN_SIZE,
                "num_labels": 2,
            }
        },
    }
    torch.manual_seed(seed)
    model = instantiate(model_config)
    torch.save(model.state_dict(), directory / "pytorch_model.bin")
    _write_json(directory / "config.json", {"nerual": True, "model": model_config, "vocabs": {"cws": ["I-W", "B-W"]}})
    return directory


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2), encoding="utf-8")
