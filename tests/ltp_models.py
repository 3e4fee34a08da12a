"""Tiny LTP models that tests build for themselves, so no test needs the network."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

LEGACY_MODEL_FILE = "cws_model.json"
LEGACY_TAGGER_FILES = {"pos": "pos_model.json", "ner": "ner_model.json"}
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
HIDDEN_SIZE = 32
# A few of LTP's POS tags and its NER labels (Nh person, Ns place, Ni organisation, BIES + O).
POS_TAGS = ("n", "v", "a", "d", "r", "m", "q", "u", "p", "ns", "nh", "ni", "ws", "wp")
NER_TAGS = ("O", *(f"{edge}-{kind}" for kind in ("Nh", "Ns", "Ni") for edge in "BIES"))
# A rule tagger for the tiny models' training data: the tags only need to be learnable, not right.
GAZETTEER = {
    "北京": "Ns", "上海": "Ns", "中国": "Ns", "长城": "Ns", "黄河": "Ns", "长江": "Ns", "杭州": "Ns", "广州": "Ns",
    "小明": "Nh", "老师": "Nh",
}
ORGANISATION_ENDS = ("大学", "公司", "银行", "医院")
FUNCTION_WORDS = {"的": "u", "了": "u", "地": "u", "得": "u", "在": "p", "把": "p", "从": "p", "很": "d", "都": "d",
                  "也": "d", "不": "d", "就": "d", "我": "r", "你": "r", "他": "r", "她": "r", "我们": "r", "这": "r"}


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


def binary_legacy_model(source: Path, directory: Path) -> Path:
    """The same legacy CWS model in the Rust perceptron's binary format, as LTP's released legacy models
    ship: it loads about 10x faster than the canonical JSON (0.13 s vs 1.6 s for a PKU-trained model)."""
    from ltp_extension.perceptron import CWSModel

    directory.mkdir(parents=True, exist_ok=True)
    CWSModel.load(str(source / LEGACY_MODEL_FILE)).save(str(directory / "cws_model.bin"))
    _write_json(directory / "config.json", {"nerual": False, "tasks": {"cws": "cws_model.bin"}})
    return directory


def sighan_lines(path: Path) -> list[str]:
    """The sentences of a SIGHAN 2005 file, one a line: CRLF endings (and a BOM, if any) stripped, blank lines dropped."""
    return [line.rstrip("\r") for line in path.read_text(encoding="utf-8-sig").split("\n") if line.strip()]


def gold_trained_legacy_model(gold_file: Path, directory: Path) -> Path:
    """The benchmarks' legacy CWS model: trained on a SIGHAN gold file (words separated by spaces, one
    sentence a line) and saved in ``directory`` in the binary format of LTP's released legacy models.
    The training text and the canonical JSON model are left beside it."""
    training = directory.with_name(directory.name + "-train.txt")
    training.write_text("\n".join(" ".join(line.split()) for line in sighan_lines(gold_file)) + "\n", encoding="utf-8")
    canonical = train_legacy_cws_model(directory.with_name(directory.name + "-json"), training)
    return binary_legacy_model(canonical, directory)


def train_legacy_tagger_model(directory: Path, training_file: Path, epochs: int = 5) -> Path:
    """A legacy model with all three tasks: the CWS model above, plus POS and NER models trained on
    rule-made tags of the same sentences (see `tag_sentence`). `LTP(directory)` loads it."""
    from ltp_extension.perceptron import Algorithm, NERTrainer, POSTrainer

    train_legacy_cws_model(directory, training_file)
    lines = [line.split() for line in training_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    tagged = [tag_sentence(words) for words in lines]
    with tempfile.TemporaryDirectory() as scratch:
        for task, trainer_class, labels, fields in (
            ("pos", POSTrainer, POS_TAGS, lambda w, p, n: f"{w}/{p}"),
            ("ner", NERTrainer, NER_TAGS, lambda w, p, n: f"{w}/{p}/{n}"),
        ):
            data = Path(scratch) / f"{task}.txt"
            data.write_text("\n".join(" ".join(fields(*t) for t in sentence) for sentence in tagged) + "\n", encoding="utf-8")
            trainer = trainer_class(list(labels))
            trainer.epoch, trainer.shuffle, trainer.verbose = epochs, False, False
            trainer.algorithm = Algorithm("AP", 1)
            trainer.load_train_data(str(data))
            trainer.load_eval_data(str(data))
            raw_path = Path(scratch) / f"{task}.json"
            trainer.train().save(str(raw_path))
            raw = json.loads(raw_path.read_text(encoding="utf-8"))
            (directory / LEGACY_TAGGER_FILES[task]).write_text(canonical_model_json(raw), encoding="utf-8")
    _write_json(directory / "config.json", {"nerual": False, "tasks": {"cws": LEGACY_MODEL_FILE, **LEGACY_TAGGER_FILES}})
    return directory


def tag_sentence(words: list[str]) -> list[tuple[str, str, str]]:
    """(word, pos, ner) by rule: function words, punctuation, numbers, a gazetteer, `北京 大学`-style organisations."""
    tagged = []
    for i, word in enumerate(words):
        if word in FUNCTION_WORDS:
            pos = FUNCTION_WORDS[word]
        elif not any(ch.isalnum() for ch in word):
            pos = "wp"
        elif word.isdigit() or all(ch in "一二三四五六七八九十百千万两" for ch in word):
            pos = "m"
        elif word.isascii():
            pos = "ws"
        elif word in GAZETTEER:
            pos = {"Ns": "ns", "Nh": "nh"}[GAZETTEER[word]]
        else:
            pos = ("v", "n", "a")[len(word) % 3]
        ner = f"S-{GAZETTEER[word]}" if word in GAZETTEER else "O"
        if word in ORGANISATION_ENDS and i > 0 and tagged[-1][2].startswith("S-"):  # 北京 大学 -> B-Ni E-Ni
            tagged[-1] = (tagged[-1][0], "ni", "B-Ni")
            pos, ner = "ni", "E-Ni"
        tagged.append((word, pos, ner))
    return tagged


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


def build_tiny_neural_model(
    directory: Path, seed: int = 3, tasks: tuple[str, ...] = ("cws",), vocab: list[str] | None = None,
    backbone: dict | None = None, cws_crf: bool = False,
) -> Path:
    """Write a random-weight neural LTP model (BERT backbone, a token classifier per task); deterministic for a seed.

    `tasks` may add "pos" and "ner" (word-level heads, as LTP's own models have). `vocab` (default:
    `tiny_vocab()`) and `backbone` (a transformers config; default: one tiny BERT layer) let a bench
    build a model of a real LTP model's size; `cws_crf` gives the cws head a CRF (random transitions).
    """
    import torch

    from ltp_core.models.utils import instantiate

    directory.mkdir(parents=True, exist_ok=True)
    vocab = vocab or tiny_vocab()
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    _write_json(
        directory / "tokenizer_config.json",
        {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 512},
    )
    backbone = backbone or {
        "model_type": "bert",
        "hidden_size": HIDDEN_SIZE,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 2 * HIDDEN_SIZE,
        "max_position_embeddings": 512,
    }
    labels = {"cws": ["I-W", "B-W"], "pos": list(POS_TAGS), "ner": list(NER_TAGS)}
    model_config = {
        "_ltp_target_": "ltp_core.models.ltp_model.LTPModule",
        "backbone": {
            "_ltp_target_": "ltp_core.models.utils.load_transformers",
            "config": {**backbone, "vocab_size": len(vocab)},
        },
        "processor": {
            task: {"_ltp_target_": f"ltp_core.models.processor.{'TokenOnly' if task == 'cws' else 'WordsOnly'}"}
            for task in tasks
        },
        "heads": {
            task: {
                "_ltp_target_": "ltp_core.models.components.token.MLPTokenClassifier",
                "input_size": backbone["hidden_size"],
                "num_labels": len(labels[task]),
                **({"use_crf": True} if task == "cws" and cws_crf else {}),
            }
            for task in tasks
        },
    }
    torch.manual_seed(seed)
    model = instantiate(model_config)
    torch.save(model.state_dict(), directory / "pytorch_model.bin")
    vocabs = {task: labels[task] for task in tasks}
    _write_json(directory / "config.json", {"nerual": True, "model": model_config, "vocabs": vocabs})
    return directory


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2), encoding="utf-8")
