"""Rebuild the derived example assets, deterministically and offline.

From ``examples/assets/cws_train.txt`` (hand-segmented sentences written for this
project) and the sample inputs under ``examples/sample/`` it writes:

* ``examples/assets/ltp-legacy/``: a tiny LTP legacy (Rust perceptron) word
  segmentation model that ``ltp.LTP("examples/assets/ltp-legacy")`` loads:
  ``config.json`` (``{"nerual": false, "tasks": {"cws": "cws_model.json"}}``) and
  ``cws_model.json``. The trainer's own output is not byte-stable (hash-map order,
  and the binary format carries a random sync marker), so the model is saved as
  JSON and rewritten with features in sorted order: same weights, same bytes on
  every run.
* ``examples/assets/vocab.txt``: a small BERT WordPiece vocabulary laid out like
  bert-base-chinese (``[PAD]``, ``[unused1..99]``, ``[UNK]``, ``[CLS]``, ``[SEP]``,
  ``[MASK]``, then ASCII, other punctuation, every CJK character of the training
  file and the samples (as written and after OpenCC t2s), English words, and
  ``##`` continuation pieces).

Run from anywhere:

    python examples/make_assets.py
"""

from __future__ import annotations

import json
import string
import sys
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from operators.pack import is_chinese_char  # noqa: E402
from tests.ltp_models import LEGACY_MODEL_FILE as MODEL_FILE, train_legacy_cws_model  # noqa: E402

HERE = Path(__file__).resolve().parent
ASSETS = HERE / "assets"
SAMPLE_DIR = HERE / "sample"
CWS_TRAIN = ASSETS / "cws_train.txt"
MODEL_DIR = ASSETS / "ltp-legacy"
VOCAB = ASSETS / "vocab.txt"

EPOCHS = 10

SPECIALS = ["[PAD]", *(f"[unused{i}]" for i in range(1, 100)), "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<S>", "<T>"]

# Lowercase (the tokenizer lowercases). Common English words plus the technical
# words that show up in Chinese tech text; anything else falls back to the
# single-character pieces below, never to [UNK].
ENGLISH_WORDS = """
a about above after again against ai all also an and any api app apple apps are as at
back bank be because been before being bert best between big bit blog book both build but by
call camera can car card cd center chat check china chinese city class cloud code com computer
control cool copy cpu cuda data database day deep demo design dev did do docker does doing
download each easy email end english error even every fast file find first for free from
full game get git github gb go good google gpu great group hand has have he hello help her
here high him his home how html http https i id if image in info into ip is it its java job
just key kg km know lab language last learning left life like line linux list live ll load
log long love mac made make man map mb me memory mini mobile model more most mp3 my name net
network new news next no not now of off office ok old on one online only open or org os other
our out over page part pc pdf people phone photo play plus png post pro program project
pytorch python qq ram re read real right run same say school search see server set she show
site size so some sql start still store such system t tab team test text than that the their
them then there these they this time to today top tv two type ui up update url us usa use
user very video view vip vs was way we web well were what when where which while who why
wi wifi will win windows with word work world www x xml year yes you your zip
""".split()

SUFFIXES = """
##a ##able ##al ##ance ##ar ##ary ##as ##ate ##ation ##ce ##ch ##d ##e ##ed ##el ##en ##ence
##ent ##er ##ers ##es ##est ##et ##ful ##ia ##ic ##ical ##ie ##ies ##ing ##ion ##ions ##ism
##ist ##ity ##ive ##ize ##less ##ly ##ment ##ments ##ness ##on ##or ##ors ##ous ##s ##ship
##sion ##t ##th ##tion ##tions ##ty ##um ##us ##y
""".split()


# --- the segmentation model --------------------------------------------------------


def read_training_file(path: Path = CWS_TRAIN) -> list[str]:
    """The segmented sentences; fails on blank lines, tabs or doubled spaces."""
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines[-1] != "":
        raise ValueError(f"{path}: must end with a newline")
    lines = lines[:-1]
    for n, line in enumerate(lines):
        if not line or line != line.strip() or "  " in line or "\t" in line or "\r" in line:
            raise ValueError(f"{path}:{n + 1}: words must be separated by single spaces")
    return lines


# --- the vocabulary ----------------------------------------------------------------


def _source_texts() -> list[str]:
    """Every text whose characters the vocab must cover: as written, after t2s, after NFKC."""
    import opencc

    t2s = opencc.OpenCC("t2s").convert
    raw = [CWS_TRAIN.read_text(encoding="utf-8")]
    raw += [p.read_text(encoding="utf-8") for p in sorted(SAMPLE_DIR.iterdir()) if p.suffix in {".jsonl", ".txt"}]
    texts = []
    for text in raw:
        for variant in (text, t2s(text)):
            texts += [variant, unicodedata.normalize("NFKC", variant)]
    return texts


def build_vocab(texts: list[str]) -> list[str]:
    chars = {ch for text in texts for ch in text.lower() if not ch.isspace() and unicodedata.category(ch)[0] != "C"}
    ascii_chars = [chr(cp) for cp in range(33, 127)]
    other = sorted(ch for ch in chars if ord(ch) > 127 and not is_chinese_char(ch))
    cjk = sorted(ch for ch in chars if is_chinese_char(ch))
    pieces = sorted({"##" + ch for ch in string.digits + string.ascii_lowercase} | set(SUFFIXES))
    ordered = [*SPECIALS, *ascii_chars, *other, *cjk, *sorted(set(ENGLISH_WORDS)), *pieces, *("##" + ch for ch in cjk)]
    vocab, seen = [], set()
    for token in ordered:
        if token not in seen:
            seen.add(token)
            vocab.append(token)
    return vocab


def write_vocab(path: Path = VOCAB) -> Path:
    vocab = build_vocab(_source_texts())
    path.write_text("".join(token + "\n" for token in vocab), encoding="utf-8", newline="\n")
    return path


# --- a quick look at the results ----------------------------------------------------


def _sample_texts() -> list[str]:
    texts = []
    for path in sorted(SAMPLE_DIR.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                text = json.loads(line).get("text")
            except json.JSONDecodeError:
                continue
            if isinstance(text, str):
                texts.append(text)
    for path in sorted(SAMPLE_DIR.glob("*.txt")):
        texts += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return texts


def report() -> None:
    import opencc
    from ltp import LTP
    from transformers import BertTokenizerFast

    ltp = LTP(str(MODEL_DIR))
    print("cws:", ltp.pipeline(["我们在北京大学学习。"], tasks=["cws"]).cws)
    t2s = opencc.OpenCC("t2s").convert
    tokenizer = BertTokenizerFast(vocab=str(VOCAB))  # transformers 5 ignores vocab_file=
    ids = [i for text in _sample_texts() for i in tokenizer(t2s(text), add_special_tokens=False)["input_ids"]]
    unk = sum(i == tokenizer.unk_token_id for i in ids)
    print(f"vocab: {tokenizer.vocab_size} tokens; sample: {len(ids)} tokens, {unk} [UNK]")
    for path in (MODEL_DIR / "config.json", MODEL_DIR / MODEL_FILE, VOCAB, CWS_TRAIN):
        print(f"{path.relative_to(HERE.parent)}: {path.stat().st_size} bytes")


def main() -> None:
    read_training_file(CWS_TRAIN)  # validate first: the trainer is not chatty about bad lines
    train_legacy_cws_model(MODEL_DIR, CWS_TRAIN, epochs=EPOCHS)
    write_vocab()
    report()


if __name__ == "__main__":
    main()
