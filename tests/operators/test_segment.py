"""Segment stage: exact reassembly, fidelity to LTP, batch independence, model errors, one Ray run."""

from __future__ import annotations

import json

import pytest

from operators.columns import TEXT, WORDS
from operators.segment import (
    MAX_PIECE_TOKENS,
    LtpSegmenter,
    SegmentConfig,
    SegmentModelError,
    align_words,
    apply,
    check_config,
    check_model,
    length_batches,
    load_ltp,
    model_pieces,
    split_sentences,
)

# A generated run of CJK characters with no sentence end: the neural model would truncate it.
RUN_ON = "".join(chr(0x4E00 + (i * 37) % 3000) for i in range(1400))
LONG = (
    "长文档的开头。\n"
    + RUN_ON
    + "，".join(["逗号分开的短语"] * 60)
    + " ".join(["words", "without", "sentence", "ends"] * 90)
    + "。最后一句！"
)
TEXTS = [
    "今天天气很好。",
    "我爱 北京  天安门\n\n你好！",
    "  前导空格和结尾空格  ",
    "Hello world, LTP 4.2 在 2024 年发布了 3 个版本。",
    "表情😀测试\t制表符🎉结束",
    "全角ＡＢＣ１２３　空格，半角abc。",
    "零宽\u200b字符\x00和控制符",
    "第一行\r\n第二行\n\n\n第三行",
    "",
    " \n\t ",
    "？！。",
    "“引号里的句子。”他说。",
    "naïve Café [SEP] x",
    LONG,
]


@pytest.fixture(scope="module")
def legacy(legacy_model_dir) -> LtpSegmenter:
    return LtpSegmenter(SegmentConfig(model=str(legacy_model_dir)))


@pytest.fixture(scope="module")
def neural(neural_model_dir) -> LtpSegmenter:
    return LtpSegmenter(SegmentConfig(model=str(neural_model_dir), max_batch_tokens=2048))


@pytest.fixture(scope="module")
def neural_ltp(neural_model_dir):
    return load_ltp(str(neural_model_dir))


def non_space(words: list[str]) -> list[str]:
    """LTP's words cut at whitespace, which is how the stage treats whitespace."""
    return [part for word in words for part in word.split()]


def test_split_sentences_rejoins_and_keeps_closers():
    assert split_sentences("你好。“好！”他说\n\n再见") == ["你好。", "“好！”", "他说\n\n", "再见"]
    for text in TEXTS:
        assert "".join(split_sentences(text)) == text


def test_model_pieces_fit_the_model_and_cut_between_bert_words(neural_ltp):
    tokenizer = neural_ltp.tokenizer
    assert len(tokenizer(LONG, add_special_tokens=False).input_ids) > 2 * MAX_PIECE_TOKENS
    pieces = model_pieces(LONG, tokenizer)
    assert "".join(piece for piece, _ in pieces) == LONG
    assert len(pieces) > len(split_sentences(LONG))
    whole = tokenizer(LONG, add_special_tokens=False).encodings[0]
    word_starts = {
        start for k, (start, _) in enumerate(whole.offsets) if k == 0 or whole.word_ids[k] != whole.word_ids[k - 1]
    }
    position = 0
    for piece, count in pieces:
        assert 0 < count <= MAX_PIECE_TOKENS
        assert count == len(tokenizer(piece, add_special_tokens=False).input_ids)
        assert position in word_starts
        position += len(piece)


def test_length_batches_sort_and_respect_the_budget():
    counts = [5, 300, 1, 40, 300, 8, 1000]
    batches = length_batches(counts, max_batch_tokens=700)
    assert sorted(i for batch in batches for i in batch) == list(range(len(counts)))
    order = [counts[i] for batch in batches for i in batch]
    assert order == sorted(order)
    for batch in batches:
        assert len(batch) == 1 or len(batch) * (max(counts[i] for i in batch) + 2) <= 700


def test_align_words_covers_whitespace_and_skipped_text():
    assert align_words("我爱 北京  天安门", ["我爱 ", "北京  ", "天安门"]) == ["我爱", " ", "北京", "  ", "天安门"]
    assert align_words("  a b", ["a b"]) == ["  ", "a", " ", "b"]
    assert align_words("\u200bab", ["a", "b"]) == ["\u200b", "a", "b"]
    assert align_words("abc", ["a", "?", "c"]) == ["a", "b", "c"]
    assert align_words("", []) == []


@pytest.mark.parametrize("name", ["legacy", "neural"])
def test_words_rejoin_exactly(name, request):
    segmenter = request.getfixturevalue(name)
    for text, words in zip(TEXTS, segmenter.segment(TEXTS)):
        assert "".join(words) == text
        assert all(words)
        assert all(word.isspace() or not any(c.isspace() for c in word) for word in words)
    assert segmenter.segment([""]) == [[]]


def test_neural_words_match_ltp_on_each_piece(neural, neural_ltp):
    for text, words in zip(TEXTS, neural.segment(TEXTS)):
        expected = []
        for piece, count in model_pieces(text, neural_ltp.tokenizer):
            expected += non_space(neural_ltp.pipeline([piece], tasks=["cws"]).cws[0]) if count else []
        assert [word for word in words if not word.isspace()] == expected


def test_legacy_words_match_ltp_on_whole_text(legacy, legacy_model_dir):
    ltp = load_ltp(str(legacy_model_dir))
    for text, words in zip(TEXTS, legacy.segment(TEXTS)):
        expected = non_space(ltp.pipeline([text], tasks=["cws"]).cws[0]) if text.strip() else []
        assert [word for word in words if not word.isspace()] == expected
    threaded = LtpSegmenter(SegmentConfig(model=str(legacy_model_dir), threads_per_actor=2))
    assert threaded.segment(TEXTS) == legacy.segment(TEXTS)


@pytest.mark.parametrize("name", ["legacy", "neural"])
def test_output_independent_of_batch(name, request):
    segmenter = request.getfixturevalue(name)
    together = segmenter.segment(TEXTS)
    assert [segmenter.segment([text])[0] for text in TEXTS] == together
    assert segmenter.segment(TEXTS[::-1])[::-1] == together


@pytest.mark.parametrize("model_fixture", ["legacy_model_dir", "neural_model_dir"])
def test_user_words_join_a_made_up_word(model_fixture, request, tmp_path):
    model = str(request.getfixturevalue(model_fixture))
    text = "蔑羟犇的公园很大。"
    plain = LtpSegmenter(SegmentConfig(model=model)).segment([text])[0]
    made_up = plain[0] + plain[1]  # LTP's hook only merges words that start on one of the model's word starts
    (tmp_path / "words.txt").write_text(f"\n{made_up}\n", encoding="utf-8")
    hooked = LtpSegmenter(SegmentConfig(model=model, user_words=str(tmp_path / "words.txt"))).segment([text])[0]
    assert made_up not in plain
    assert hooked == [made_up, *plain[2:]]


def test_config_rejects_unusable_resources():
    bad_values = ({"num_actors": 0}, {"threads_per_actor": 0}, {"batch_size": 0}, {"num_gpus": -1}, {"max_batch_tokens": 9})
    for bad in bad_values:
        with pytest.raises(ValueError, match=next(iter(bad))):
            SegmentConfig(**bad)


def assert_one_line_error(call, *fragments: str) -> None:
    with pytest.raises(SegmentModelError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_model_errors(tmp_path, legacy_model_dir):
    check_model(str(legacy_model_dir))
    assert_one_line_error(lambda: check_model(str(tmp_path / "missing")), "no such directory")
    assert_one_line_error(lambda: check_model(str(tmp_path)), "no config.json")
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    assert_one_line_error(lambda: check_model(str(tmp_path)), "not an LTP config")
    (tmp_path / "config.json").write_text(json.dumps({"nerual": False, "tasks": {"cws": "cws.bin"}}))
    assert_one_line_error(lambda: check_model(str(tmp_path)), "missing weights file cws.bin")
    (tmp_path / "config.json").write_text("{not json")
    assert_one_line_error(lambda: check_model(str(tmp_path)), "unreadable config.json")
    assert_one_line_error(lambda: check_model(str(tmp_path / "config.json")), "is a file")
    hub = ("download the model elsewhere", "set segment.model to that local directory")
    assert_one_line_error(lambda: check_model("LTP/no-such-model"), *hub)
    assert_one_line_error(lambda: load_ltp("LTP/no-such-model"), *hub)
    assert_one_line_error(lambda: LtpSegmenter(SegmentConfig(model=str(tmp_path / "missing"))), "no such directory")
    bad_words = SegmentConfig(model=str(legacy_model_dir), user_words=str(tmp_path / "none.txt"))
    assert_one_line_error(lambda: check_config(bad_words), "segment.user_words", "no such file")


def test_apply_adds_a_list_of_strings_column(ray_local, legacy_model_dir):
    import pyarrow as pa

    texts = ["", "", "今天天气很好。", "我爱 北京", "天气很好", "你好！\n再见"]  # first batch: only empty lists
    ds = ray_local.data.from_items([{TEXT: text, "doc_id": str(i)} for i, text in enumerate(texts)])
    out = apply(ds, SegmentConfig(model=str(legacy_model_dir), batch_size=2)).materialize()
    for block in ray_local.get(out.to_arrow_refs()):
        assert block.schema.field(WORDS).type == pa.list_(pa.string())
    rows = sorted(out.take_all(), key=lambda row: row["doc_id"])
    assert [row[TEXT] for row in rows] == texts
    assert ["".join(row[WORDS]) for row in rows] == texts
