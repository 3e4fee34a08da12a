"""Normalize core: cleanup, exactly one OpenCC pass, filter reasons, the dedup fingerprint."""

from __future__ import annotations

import json
import sys
import unicodedata

import pyarrow as pa
import pytest

from operators import normalize
from operators.columns import DETAIL, FATE, FILTERED, FINGERPRINT, RAW, REJECTED, TEXT
from operators.normalize import (
    EMPTY,
    LOW_CJK_SHARE,
    TOO_SHORT,
    NormalizeConfig,
    Normalizer,
    changed_chars,
    clean,
    fingerprint,
)
from tests.conftest import shared_file


def test_clean_drops_invisible_characters_and_unifies_spaces():
    raw = "\ufeff  第一\u200b段\u00a0文字\x07。\u3000第二句\t结束  \r\n\r\n\r\n\r\n 第二段\ue163 "
    assert clean(raw) == "第一段 文字。 第二句 结束\n\n第二段"


def test_clean_composes_to_nfc_and_optionally_folds_width():
    assert clean("e\u0301") == "\u00e9"
    assert clean("ＡＢＣ１２３！") == "ＡＢＣ１２３！"
    assert clean("ＡＢＣ１２３！", fullwidth_to_halfwidth=True) == "ABC123!"


def test_the_deletion_tables_follow_the_unicode_categories_over_every_code_point():
    """``clean`` deletes control, format, private-use, surrogate and unassigned characters but \\n and \\t;
    ``fingerprint`` deletes punctuation, separators, symbols and those: ``str.translate`` over tables
    filled one character at a time, checked against the categories for all of Unicode."""
    every = "".join(map(chr, range(sys.maxunicode + 1)))
    categories = [unicodedata.category(ch) for ch in every]
    try:
        dropped = {"Cc", "Cf", "Co", "Cs", "Cn"}
        visible = "".join(ch for ch, cat in zip(every, categories) if ch in "\n\t" or cat not in dropped)
        assert every.translate(normalize._INVISIBLE) == visible
        printable = "".join(ch for ch in every if ch.isprintable())  # ``clean`` skips the lookups for these
        assert printable.translate(normalize._INVISIBLE) == printable
        fingerprinted = "".join(ch for ch, cat in zip(every, categories) if cat[0] not in "PZSC")
        assert every.translate(normalize._NOT_IN_FINGERPRINT) == fingerprinted
    finally:  # a table holds an entry per character seen: not a million for the rest of the run
        normalize._INVISIBLE.clear()
        normalize._NOT_IN_FINGERPRINT.clear()


def test_changed_chars_counts_replaced_characters_astral_and_surrogates_included():
    assert changed_chars("於倫敦", "於倫敦") == 0
    assert changed_chars("於倫敦", "于伦敦") == 2
    assert changed_chars("a\U00020000\ud800b", "a\U00020001\ud800c") == 2  # one code point each
    assert changed_chars("乾隆年間", "乾隆年间的") == 2  # lengths differ: what is not in a matching block


def test_opencc_output_is_a_fixed_point_by_default():
    """t2s is not idempotent (於倫敦 -> 於伦敦 -> 于伦敦): by default the output no longer changes under t2s."""
    text, _, _ = Normalizer(NormalizeConfig(min_chars=1)).normalize("於倫敦")
    assert text == "于伦敦"
    single, _, _ = Normalizer(NormalizeConfig(min_chars=1, opencc_fixed_point=False)).normalize("於倫敦")
    assert single == "於伦敦"


def test_none_keeps_script_but_fingerprint_is_simplified():
    normalizer = Normalizer(NormalizeConfig(opencc="none", min_chars=1))
    text, print_, _ = normalizer.normalize("漢字，Ａb c！")
    assert text == "漢字，Ａb c！"
    assert print_ == fingerprint("汉字，Ａb c！") == "汉字abc"


def test_traditional_and_simplified_copies_share_a_fingerprint():
    normalizer = Normalizer(NormalizeConfig(opencc="none", min_chars=1))
    assert normalizer.normalize("台灣的經濟發展，很快。")[1] == normalizer.normalize("台湾的 经济发展 很快")[1]


@pytest.mark.parametrize(
    ("raw", "cfg", "reason"),
    [
        (" \u200b ", {}, EMPTY),
        ("短文本", {}, TOO_SHORT),
        ("An English sentence long enough to keep.", {}, None),
        ("An English sentence long enough to keep.", {"min_cjk_share": 0.5}, LOW_CJK_SHARE),
        ("这是一个足够长的中文句子，用来测试过滤规则是否正确。", {"min_cjk_share": 0.5}, None),
    ],
)
def test_filters_give_reasons(raw, cfg, reason):
    assert Normalizer(NormalizeConfig(**cfg)).normalize(raw)[2] == reason


def test_unknown_opencc_config_is_rejected():
    with pytest.raises(ValueError, match="unknown OpenCC config 'x2y'"):
        NormalizeConfig(opencc="x2y")


def test_batch_marks_rows_and_passes_rejected_rows_through():
    batch = pa.table(
        {
            "doc_id": ["a", "b", "c"],
            RAW: ["漢字很長的一段文字，足夠通過二十個字的長度過濾。", "短", None],
            FATE: [None, None, REJECTED],
            DETAIL: [None, None, "malformed_json"],
        }
    )
    out = Normalizer(NormalizeConfig()).__call__(batch)
    assert out.num_rows == 3 and RAW not in out.column_names
    assert out.column(TEXT).to_pylist()[0] == "汉字很长的一段文字，足够通过二十个字的长度过滤。"
    assert out.column(FATE).to_pylist() == [None, FILTERED, REJECTED]
    assert out.column(DETAIL).to_pylist() == [None, TOO_SHORT, "malformed_json"]
    assert out.column(FINGERPRINT).to_pylist()[2] is None


def test_opencc_project_testcases():
    """OpenCC's own test cases (single-pass expectations), for the configs a Chinese corpus uses."""
    cases = json.loads(shared_file("opencc/testcases.strict.json").read_text(encoding="utf-8"))["cases"]
    checked = 0
    for config in ("t2s", "tw2s", "hk2s"):
        normalizer = Normalizer(NormalizeConfig(opencc=config, min_chars=0, opencc_fixed_point=False))
        for case in cases:
            expected = case["expected"].get(config)
            if expected is not None and clean(case["input"]) == case["input"]:
                assert normalizer._convert(config, case["input"]) == expected, case["id"]
                checked += 1
    assert checked > 50
