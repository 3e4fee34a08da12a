"""Tokenize: the word_start rule against an independent computation, tokenizer loading, one Ray run."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from operators import tokenize
from operators.columns import DOC_ID, INPUT_IDS, TEXT, WORD_START, WORDS
from operators.tokenize import (
    TokenizeConfig,
    TokenizerLoadError,
    WholeWordTokenizer,
    id_type,
    load_tokenizer,
    vocab_info,
    vocab_sha256,
)
from tests.conftest import shared_file
from tests.contracts import expected_tokens

# (text, LTP words): Chinese, English WordPiece, digits, [UNK], case and accents, full-width, dropped chars.
CASES = {
    "chinese": ("我爱北京天安门。", ["我", "爱", "北京", "天安门", "。"]),
    "english_word": ("使用tokenizer进行分词", ["使用", "tokenizer", "进行", "分词"]),
    "ltp_splits_a_wordpiece_word": ("tokenizer", ["token", "izer"]),
    "digits": ("2024年有366天", ["2024", "年", "有", "366", "天"]),
    "unk_own_word": ("我😀你", ["我", "😀", "你"]),
    "unk_inside_word": ("我😀你", ["我😀", "你"]),
    "unk_astral_cjk": ("中𠀀国", ["中𠀀", "国"]),
    "uppercase": ("BERT模型", ["BERT", "模型"]),
    "accents": ("Café很好，résumé", ["Café", "很", "好", "，", "résumé"]),
    "combining_mark": ("e\u0301中", ["e\u0301", "中"]),
    "full_width": ("ＡＢＣ中文", ["ＡＢＣ", "中文"]),
    "control_and_spaces": (
        "中\x00国 人\u3000好\u200b了",
        ["中", "\x00", "国", " ", "人", "\u3000", "好\u200b了"],
    ),
    "leading_dropped": ("\x00 中国", ["\x00", " ", "中国"]),
    "control_inside_word": ("a\x00b", ["a\x00b"]),
    "empty": ("", []),
}


@pytest.fixture(scope="module")
def core(vocab_path: Path) -> WholeWordTokenizer:
    return WholeWordTokenizer(TokenizeConfig(tokenizer=str(vocab_path)))


@pytest.fixture(scope="module")
def reference(vocab_path: Path):
    """The same vocab loaded on its own, for the independent computation."""
    return load_tokenizer(str(vocab_path))


def independent_word_start(reference, text: str, words: list[str]) -> tuple[list[int], list[bool]]:
    """The contract's rule, spelled out per token from token strings and character positions."""
    first_chars, position = set(), 0
    for word in words:
        first_chars.add(position)
        position += len(word)
    encoding = reference.backend_tokenizer.encode(text, add_special_tokens=False)
    flags = [
        not token.startswith("##") and start in first_chars
        for token, (start, _) in zip(encoding.tokens, encoding.offsets)
    ]
    return encoding.ids, flags


@pytest.mark.parametrize("name", CASES)
def test_word_start_matches_independent_rule(core, reference, name):
    text, words = CASES[name]
    [(ids, starts)] = core.encode([text], [words])
    expected_ids, expected_starts = independent_word_start(reference, text, words)
    assert ids.tolist() == expected_ids
    assert starts.tolist() == expected_starts


def tokens_and_flags(core, reference, text: str, words: list[str]) -> list[tuple[str, bool]]:
    [(ids, starts)] = core.encode([text], [words])
    return list(zip(reference.convert_ids_to_tokens(ids.tolist()), starts.tolist()))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("chinese", [("我", 1), ("爱", 1), ("北", 1), ("京", 0), ("天", 1), ("安", 0), ("门", 0), ("。", 1)]),
        (
            "english_word",
            [("使", 1), ("用", 0), ("token", 1), ("##izer", 0), ("进", 1), ("行", 0), ("分", 1), ("词", 0)],
        ),
        ("ltp_splits_a_wordpiece_word", [("token", 1), ("##izer", 0)]),
        ("digits", [("2024", 1), ("年", 1), ("有", 1), ("3", 1), ("##6", 0), ("##6", 0), ("天", 1)]),
        ("unk_own_word", [("我", 1), ("[UNK]", 1), ("你", 1)]),
        ("unk_inside_word", [("我", 1), ("[UNK]", 0), ("你", 1)]),
        ("unk_astral_cjk", [("中", 1), ("[UNK]", 0), ("国", 1)]),
        ("uppercase", [("bert", 1), ("模", 1), ("型", 0)]),
        ("full_width", [("[UNK]", 1), ("中", 1), ("文", 0)]),
        ("control_and_spaces", [("中", 1), ("国", 1), ("人", 1), ("好", 1), ("了", 0)]),
        ("leading_dropped", [("中", 1), ("国", 0)]),
        ("control_inside_word", [("a", 1), ("##b", 0)]),
        ("combining_mark", [("e", 1), ("中", 1)]),
    ],
)
def test_word_start_by_hand(core, reference, name, expected):
    text, words = CASES[name]
    assert tokens_and_flags(core, reference, text, words) == [(token, bool(flag)) for token, flag in expected]


def test_offsets_point_into_the_original_text(reference):
    """Lowercasing and accent stripping change the token text, not where it came from."""
    text = "Café很好，résumé"
    encoding = reference(text, add_special_tokens=False, return_offsets_mapping=True)
    pieces = [text[a:b] for a, b in encoding["offset_mapping"]]
    assert pieces == ["Café", "很", "好", "，", "r", "é", "s", "u", "m", "é"]


def test_whole_text_is_tokenized_once_not_word_by_word(core, reference):
    """LTP may split a WordPiece word; the tokens must still be those of the whole text."""
    text, words = CASES["ltp_splits_a_wordpiece_word"]
    [(ids, _)] = core.encode([text], [words])
    word_by_word = [i for word in words for i in reference(word, add_special_tokens=False)["input_ids"]]
    assert ids.tolist() == reference(text, add_special_tokens=False)["input_ids"]
    assert ids.tolist() != word_by_word


def test_text_spelling_special_tokens_stays_text(core, reference):
    text, words = "[SEP]和[MASK]及[CLS]", ["[SEP]", "和", "[MASK]", "及", "[CLS]"]
    [(ids, starts)] = core.encode([text], [words])
    specials = {
        reference.sep_token_id,
        reference.mask_token_id,
        reference.cls_token_id,
        reference.pad_token_id,
    }
    assert not specials & set(ids.tolist())
    # and the contract checker's own tokens of the text agree
    assert expected_tokens(pa.table({TEXT: [text], WORDS: [words]}), reference) == (ids.tolist(), starts.tolist())


def test_batch_encoding_equals_one_by_one(core):
    texts, words = zip(*CASES.values())
    batched = core.encode(list(texts), list(words))
    for (ids, starts), text, doc_words in zip(batched, texts, words):
        [(one_ids, one_starts)] = core.encode([text], [doc_words])
        assert ids.tolist() == one_ids.tolist() and starts.tolist() == one_starts.tolist()
    assert core.encode([], []) == []


def test_words_must_cover_the_text(core):
    with pytest.raises(ValueError, match="segmentation"):
        core.encode(["中国人"], [["中国"]])


def test_call_adds_typed_columns_and_keeps_rows(core):
    texts, words = zip(*CASES.values())
    batch = pa.table({DOC_ID: [f"d{i}" for i in range(len(texts))], TEXT: list(texts), WORDS: list(words)})
    out = core(batch)
    assert out.num_rows == batch.num_rows
    assert out.column_names == [DOC_ID, TEXT, WORDS, INPUT_IDS, WORD_START]
    assert out.schema.field(INPUT_IDS).type == pa.list_(pa.uint16())
    assert out.schema.field(WORD_START).type == pa.list_(pa.bool_())
    lengths = [
        len(ids) == len(starts)
        for ids, starts in zip(out[INPUT_IDS].to_pylist(), out[WORD_START].to_pylist())
    ]
    assert all(lengths)


def test_vocab_file_loads_every_line(vocab_path):
    """transformers 5 silently ignores `vocab_file=`: guard against a 5-token vocab."""
    lines = vocab_path.read_text(encoding="utf-8").splitlines()
    tokenizer = load_tokenizer(str(vocab_path))
    assert len(tokenizer) == len(lines)
    assert tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]", "中"]) == [
        lines.index("[CLS]"),
        lines.index("[SEP]"),
        lines.index("中"),
    ]


def test_local_directories_load(vocab_path, tmp_path):
    text = "使用tokenizer进行分词"
    expected = load_tokenizer(str(vocab_path))(text)["input_ids"]
    saved = tmp_path / "saved"
    load_tokenizer(str(vocab_path)).save_pretrained(saved)
    vocab_only = tmp_path / "vocab_only"
    vocab_only.mkdir()
    (vocab_only / "vocab.txt").write_bytes(vocab_path.read_bytes())
    for directory in (saved, vocab_only):
        tokenizer = load_tokenizer(str(directory))
        assert tokenizer.is_fast
        assert tokenizer(text)["input_ids"] == expected


@pytest.mark.parametrize("spec", ["/no/such/dir/vocab.txt", "./missing-tokenizer", "missing/vocab.txt"])
def test_missing_path_is_a_load_error(spec):
    with pytest.raises(TokenizerLoadError, match="no such file or directory") as err:
        load_tokenizer(spec)
    assert "\n" not in str(err.value)


def test_offline_hub_id_is_a_load_error():
    assert tokenize.HUB_ID.fullmatch("hfl/chinese-roberta-wwm-ext")
    with pytest.raises(TokenizerLoadError, match="download it elsewhere") as err:
        load_tokenizer("no-such-org-x7/no-such-tokenizer-x7")  # conftest sets HF_HUB_OFFLINE=1
    assert "tokenize.tokenizer" in str(err.value) and "\n" not in str(err.value)


def test_files_that_are_not_bert_vocabs_are_load_errors(tmp_path):
    binary = tmp_path / "model.bin"
    binary.write_bytes(bytes(range(256)))
    words = tmp_path / "words.txt"
    words.write_text("中\n国\n", encoding="utf-8")
    for path in (binary, words):
        with pytest.raises(TokenizerLoadError):
            load_tokenizer(str(path))


def test_vocab_info_and_hash(vocab_path):
    info = vocab_info(str(vocab_path))
    lines = vocab_path.read_text(encoding="utf-8").splitlines()
    assert info.size == len(lines)
    assert (info.cls_id, info.sep_id) == (lines.index("[CLS]"), lines.index("[SEP]"))
    # a plain vocab.txt (unique tokens, one a line) hashes to the file's own sha256
    assert (
        info.sha256
        == vocab_sha256(load_tokenizer(str(vocab_path)))
        == hashlib.sha256(vocab_path.read_bytes()).hexdigest()
    )
    assert info.id_type == pa.uint16()


def test_id_type_rule():
    assert id_type(21128) == pa.uint16()
    assert id_type(65536) == pa.uint16()
    assert id_type(65537) == pa.uint32()


@pytest.mark.parametrize(("field", "value"), [("packing", "sentences"), ("max_seq_len", 2), ("batch_size", 0)])
def test_config_is_validated(field, value):
    with pytest.raises(ValueError, match=f"tokenize.{field}"):
        TokenizeConfig(**{field: value})


def test_packing_modes_are_known():
    for packing in ("full", "doc", "none"):
        assert TokenizeConfig(packing=packing).packing == packing


def sentence_marks(vocab_path, text: str, words: list[str]) -> list[tuple[str, bool]]:
    core = WholeWordTokenizer(TokenizeConfig(tokenizer=str(vocab_path), packing="doc"))
    [(ids, _, sentences)] = core.encode_with_sentences([text], [words])
    return list(zip(load_tokenizer(str(vocab_path)).convert_ids_to_tokens(ids.tolist()), sentences.tolist()))


def test_sentence_starts_follow_sentence_ends_and_line_breaks(vocab_path):
    text = "我爱北京。你好！“中国”？天气\n很好；学习"
    words = ["我", "爱", "北京", "。", "你好", "！", "“", "中国", "”", "？", "天气", "\n", "很好", "；"]
    words.append("学习")
    starts = [token for token, start in sentence_marks(vocab_path, text, words) if start]
    assert starts == ["你", "“", "天", "很", "学"]


def test_sentence_starts_only_at_word_starts_and_after_closers(vocab_path):
    # 。 glued to the next character by the segmenter: no cut there (中 is no word start, and 国
    # does not follow a sentence end); ” stays with the sentence it closes
    text = "你好。中国”。”学习"
    words = ["你好", "。中", "国", "”", "。", "”", "学习"]
    marks = sentence_marks(vocab_path, text, words)
    assert [token for token, start in marks if start] == ["学"]
    core = WholeWordTokenizer(TokenizeConfig(tokenizer=str(vocab_path)))
    batch = pa.table({TEXT: [text], WORDS: [words]})
    assert "sentence_start" not in core(batch).column_names
    doc_core = WholeWordTokenizer(TokenizeConfig(tokenizer=str(vocab_path), packing="doc"))
    assert doc_core(batch).column_names[-1] == "sentence_start"


def test_vocab_info_names_the_specials(vocab_path):
    info = vocab_info(str(vocab_path))
    lines = vocab_path.read_text(encoding="utf-8").splitlines()
    assert dict(info.special_ids) == {t: lines.index(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}


def test_bert_base_chinese_ids():
    vocab = shared_file("vocab/bert-base-chinese-vocab.txt")
    core = WholeWordTokenizer(TokenizeConfig(tokenizer=str(vocab)))
    [(ids, starts)] = core.encode(["中国的，。"], [["中国", "的", "，", "。"]])
    assert ids.tolist() == [704, 1744, 4638, 8024, 511]
    assert starts.tolist() == [True, False, True, True, True]
    assert ids.dtype == np.uint16
    info = vocab_info(str(vocab))
    assert (info.size, info.cls_id, info.sep_id) == (21128, 101, 102)


def test_apply_on_ray(ray_local, vocab_path):
    import ray.data

    texts, words = zip(*CASES.values())
    rows = [{DOC_ID: f"d{i}", TEXT: t, WORDS: w} for i, (t, w) in enumerate(zip(texts, words))]
    cfg = TokenizeConfig(tokenizer=str(vocab_path), batch_size=4)
    ds = tokenize.apply(ray.data.from_items(rows), cfg).materialize()
    schema = ds.schema().base_schema
    assert schema.field(INPUT_IDS).type == pa.list_(pa.uint16())
    assert schema.field(WORD_START).type == pa.list_(pa.bool_())
    out = {row[DOC_ID]: row for row in ds.take_all()}
    assert len(out) == len(rows)
    core = WholeWordTokenizer(cfg)
    for row in rows:
        [(ids, starts)] = core.encode([row[TEXT]], [row[WORDS]])
        assert list(out[row[DOC_ID]][INPUT_IDS]) == ids.tolist()
        assert list(out[row[DOC_ID]][WORD_START]) == starts.tolist()


def test_workers_build_the_tokenizer_from_its_definition_without_transformers(vocab_path, tmp_path):
    """``apply``'s tasks get the tokenizer's definition (its ``tokenizers`` JSON) from the driver and
    build it from that: the same ids and word starts as the tokenizer loaded through transformers,
    in a worker process that never imports transformers (about 1 CPU second a process)."""
    import subprocess
    import sys

    cfg = TokenizeConfig(tokenizer=str(vocab_path), packing="doc")
    definition = load_tokenizer(cfg.tokenizer).backend_tokenizer.to_str()
    texts, words = zip(*CASES.values())
    batch = pa.table({TEXT: list(texts), WORDS: list(words)})
    assert tokenize._tokenize_batch(batch, cfg, definition).equals(WholeWordTokenizer(cfg)(batch))

    (tmp_path / "tokenizer.json").write_text(definition, encoding="utf-8")
    code = (
        "import sys; import pyarrow as pa; from operators import tokenize\n"
        f"cfg = tokenize.TokenizeConfig(tokenizer={str(vocab_path)!r}, packing='doc')\n"
        f"definition = open({str(tmp_path / 'tokenizer.json')!r}, encoding='utf-8').read()\n"
        "out = tokenize._tokenize_batch(pa.table({'text': ['我爱北京'], 'words': [['我', '爱', '北京']]}), cfg, definition)\n"
        "assert out.column('input_ids').to_pylist()[0], out\n"
        "print('transformers' in sys.modules)\n"
    )
    worker = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                            capture_output=True, text=True, check=True)
    assert worker.stdout.strip() == "False", worker.stdout + worker.stderr
